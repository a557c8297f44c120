"""The one scoring function: cosine similarity of queries with cell embeddings.

Every score of a query against cells goes through :func:`cosine_scores`: maps (direct,
from a field, server tiles), searches, captions and retrieval evaluation. Cell
embeddings are unit vectors, stored as float16 where they are kept (half the memory
and bandwidth of float32); torch's half-precision matrix-vector product reads them
directly, which on CPUs beats a float32 mat-vec over the same cells
(benchmarks/bench_maps.py), at ~1e-4 absolute error on scores in [-1, 1].
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

# Rows scored per product: bounds the float32 output and keeps operands cache-sized.
SCORE_BLOCK = 262_144


@torch.inference_mode()
def cosine_scores(
    cells: np.ndarray, queries: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """(Q, N) float32 similarities of (N, D) unit cell vectors (float16, or anything
    else as float32) with (Q, D) unit queries, written into ``out`` if given."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if cells.dtype != np.float16:
        cells = np.asarray(cells, dtype=np.float32)
    n = len(cells)
    out = np.empty((len(q), n), dtype=np.float32) if out is None else out
    half = cells.dtype == np.float16
    tq = torch.from_numpy(q).to(torch.float16 if half else torch.float32)
    # copy_ widens the product straight into ``out``: no float32 temporary, no numpy copy.
    into = torch.from_numpy(out)
    for s in range(0, n, SCORE_BLOCK):
        block = cells[s : s + SCORE_BLOCK]
        with warnings.catch_warnings():  # shared read-only arrays: only ever read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tc = torch.from_numpy(block)
        if len(q) == 1:
            into[0, s : s + len(block)].copy_(torch.mv(tc, tq[0]))
        else:
            into[:, s : s + len(block)].copy_(torch.mm(tq, tc.T))
    return out

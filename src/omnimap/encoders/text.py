"""Frozen text teachers from Hugging Face transformers (local dir or hub name).

Sentence-transformers models such as all-MiniLM-L6-v2 are used the way they were
trained: token embeddings mean-pooled over the attention mask, then L2-normalised.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np
import xxhash

from omnimap.errors import DataError


class HFTextEncoder:
    """A transformers encoder with mean pooling, loaded lazily on first use."""

    def __init__(
        self, name_or_path: str | os.PathLike, max_length: int = 128, batch_size: int = 256
    ):
        self.source = str(name_or_path)
        self.max_length = max_length
        self.batch_size = batch_size

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()

    @cached_property
    def _model(self):
        import torch  # noqa: F401  (imported for its side effect of loading torch first)
        from transformers import AutoModel, AutoTokenizer

        kwargs = {"local_files_only": True} if self.is_local else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source, **kwargs)
            model = AutoModel.from_pretrained(self.source, **kwargs).eval()
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot load text encoder {self.source!r}: {first}") from None
        return tokenizer, model

    @cached_property
    def dim(self) -> int:
        return int(self._model[1].config.hidden_size)

    @cached_property
    def key(self) -> str:
        """Identifies the weights: a digest of the local weight files, else the hub name."""
        if not self.is_local:
            return "hub:" + self.source
        h = xxhash.xxh3_64()
        for f in sorted(Path(self.source).glob("*.safetensors")) + sorted(
            Path(self.source).glob("tokenizer*.json")
        ):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        return "local:" + h.hexdigest()

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(N, dim) float32 unit vectors."""
        import torch
        from tqdm.auto import tqdm

        tokenizer, model = self._model
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sort by length so each batch pads little; restore order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="teacher", unit="batch", disable=not progress):
                idx = order[start : start + self.batch_size]
                batch = tokenizer(
                    [texts[i] for i in idx], padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                )  # fmt: skip
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().numpy()
        return out

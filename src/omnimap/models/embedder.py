"""Running a student over cells: the time-free overhead part o, the location/time part
m, and their fusion normalize(o + m) under an input mode.

Modes (which inputs the student sees): "full" (imagery, location, time), "no_time"
(imagery, location: the time-free map), "imagery_only", "no_imagery" (location and
time), "location_only".
"""

from __future__ import annotations

import numpy as np
import torch

from omnimap.core.errors import InputError
from omnimap.geo.climatefeat import model_inputs
from omnimap.geo.timefeat import LocalTime
from omnimap.models.checkpoint import LoadedModel
from omnimap.models.dynamic import uses_climate
from omnimap.sources import PatchSource, source_from_config

MODES = {  # mode -> (uses imagery, uses location, uses time)
    "full": (True, True, True),
    "no_time": (True, True, False),
    "imagery_only": (True, False, False),
    "no_imagery": (False, True, True),
    "location_only": (False, True, False),
}
OVERHEAD_BATCH = 4096  # cells per forward pass: big enough for fast GEMMs, small for cache
DYNAMIC_BATCH = 16_384  # the location/time MLP is ~20x cheaper per cell
SAMPLE_BATCH = 256  # samples with their own patches (CLIP towers are heavy)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mode_for(when) -> str:
    """The mode of a map at ``when`` (None: time-free)."""
    return "full" if when is not None else "no_time"


class Embedder:
    """Runs a student over cells: overhead, dynamic and fused embeddings."""

    def __init__(self, model: LoadedModel, imagery: PatchSource | None = None):
        self.model = model
        self._imagery = imagery
        self.dim = int(model.config["dim"])
        self.climate_inputs = uses_climate(model.config)

    def metadata(self, lon, lat, local: LocalTime | None) -> np.ndarray:
        """(N, F) dynamic-encoder inputs of places and local times (None: unknown)."""
        return model_inputs(lon, lat, local, self.climate_inputs)

    @property
    def imagery(self) -> PatchSource:
        """The imagery the model was trained on, checked against its recorded key
        (opened on first use: samples that bring their own patches need none)."""
        if self._imagery is None:
            self._imagery = source_from_config(self.model.config["imagery"])
        return self._imagery

    @torch.inference_mode()
    def overhead(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """(N, D) float32 unnormalised overhead embeddings o; NaN where the imagery has
        no patch (outside a GeoTIFF, a failed tile), so those cells are nodata."""
        out = np.empty((len(lon), self.dim), dtype=np.float32)
        for s in range(0, len(lon), OVERHEAD_BATCH):
            rows = slice(s, s + OVERHEAD_BATCH)
            batch = self.imagery.read(lon[rows], lat[rows])
            out[rows] = self.model.student.encode_overhead(torch.from_numpy(batch.patches)).numpy()
            out[rows][~batch.ok] = np.nan
        return out

    @torch.inference_mode()
    def dynamic(self, meta: torch.Tensor) -> torch.Tensor:
        """(n, D) location/time embeddings of (n, F) metadata values (one batch)."""
        return self.model.student.encode_dynamic(meta)

    @torch.inference_mode()
    def sample_parts(self, patches: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unnormalised (o, m) of samples that carry their own patches and metadata
        (a pairs table's photos, each at its own time), in batches."""
        o = np.empty((len(patches), self.dim), np.float32)
        m = np.empty((len(patches), self.dim), np.float32)
        for s in range(0, len(patches), SAMPLE_BATCH):
            rows = slice(s, s + SAMPLE_BATCH)
            o[rows] = self.model.student.encode_overhead(torch.from_numpy(patches[rows])).numpy()
            m[rows] = self.model.student.encode_dynamic(torch.from_numpy(meta[rows])).numpy()
        return o, m

    def samples(self, patches: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """(N, D) unit embeddings normalize(o + m) of samples."""
        o, m = self.sample_parts(patches, meta)
        return unit(o + m)

    @torch.inference_mode()
    def fused(
        self, lon, lat, local: LocalTime | None, mode: str, overhead: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """(N, D) unit vectors for cells, under a mode, written into ``out`` if given.

        ``overhead`` (float16 or float32) may be given, e.g. from a cache or a field; it
        is never modified. The arithmetic runs in torch, in place, batch by batch:
        full-size temporaries cost more in page faults than the maths itself."""
        out = self._summed(lon, lat, local, mode, overhead, out)
        total = torch.from_numpy(out)
        total.div_(torch.linalg.vector_norm(total, dim=1, keepdim=True).clamp_min_(1e-12))
        return out

    @torch.inference_mode()
    def variance(
        self, lon, lat, local: LocalTime | None, mode: str, overhead: np.ndarray | None = None
    ) -> np.ndarray:
        """(N,) a probabilistic student's predicted variance of each cell's embedding
        (the mean over dimensions of sigma^2; PSM): how unsure it is there and then."""
        if self.model.student.variance is None:
            name = self.model.config.get("name", self.model.path.name)
            raise InputError(f"model {name!r} has no variance head: it was not trained with \"probabilistic\": true")
        summed = torch.from_numpy(self._summed(lon, lat, local, mode, overhead))
        log_var = self.model.student.variance(summed)
        return log_var.exp().mean(dim=1).numpy().astype(np.float32)

    def _summed(
        self, lon, lat, local: LocalTime | None, mode: str, overhead: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """(N, D) o + m before normalising, under a mode (the parts it uses)."""
        use_img, use_loc, use_time = MODES[mode]
        out = np.empty((len(lon), self.dim), dtype=np.float32) if out is None else out
        total = torch.from_numpy(out)
        if use_img:
            o = np.ascontiguousarray(self.overhead(lon, lat) if overhead is None else overhead)
            if o.flags.writeable:  # torch converts float16 -> float32 on all cores
                total.copy_(torch.from_numpy(o))
            else:  # torch cannot wrap read-only arrays (shared cache entries)
                np.copyto(out, o)
        else:
            total.zero_()
        if use_loc:
            meta = torch.from_numpy(self.metadata(lon, lat, local if use_time else None))
            for s in range(0, len(meta), DYNAMIC_BATCH):
                total[s : s + DYNAMIC_BATCH] += self.dynamic(meta[s : s + DYNAMIC_BATCH])
        return out

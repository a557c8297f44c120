"""Where and when the atlas samples the world, and which blocks it never trains on.

The spatial hold-out is whole 10-degree blocks; training also avoids a buffer around
them, wider than half an overhead patch, so no held-out pixel is ever seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from omnimap.datasets.atlas.layers import OCEAN, GroundLayers
from omnimap.geo.bbox import BBox


@dataclass(frozen=True)
class HoldOut:
    blocks: tuple[tuple[int, int], ...]  # (row, col) of held-out blocks, row 0 at 90N
    block_deg: float = 10.0
    buffer_deg: float = 0.6
    _set: frozenset = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_set", frozenset(map(tuple, self.blocks)))

    def _block_of(self, lon, lat):
        lon = np.asarray(lon, np.float64)
        lat = np.asarray(lat, np.float64)
        n_rows, n_cols = int(round(180 / self.block_deg)), int(round(360 / self.block_deg))
        row = np.clip(np.floor((90.0 - lat) / self.block_deg).astype(int), 0, n_rows - 1)
        col = np.mod(np.floor((lon + 180.0) / self.block_deg).astype(int), n_cols)
        return row, col

    def _in_blocks(self, lon, lat) -> np.ndarray:
        row, col = self._block_of(lon, lat)
        code = row * 1000 + col
        held = np.array([r * 1000 + c for r, c in self._set], dtype=np.int64)
        return np.isin(code, held)

    def contains(self, lon, lat) -> np.ndarray:
        """Points inside held-out blocks."""
        return self._in_blocks(lon, lat)

    def near(self, lon, lat) -> np.ndarray:
        """Points inside held-out blocks or within ``buffer_deg`` of one."""
        lon = np.asarray(lon, np.float64)
        lat = np.asarray(lat, np.float64)
        out = np.zeros(lon.shape, dtype=bool)
        for dx in (-self.buffer_deg, 0.0, self.buffer_deg):
            for dy in (-self.buffer_deg, 0.0, self.buffer_deg):
                out |= self._in_blocks(lon + dx, np.clip(lat + dy, -90, 90))
        return out

    def bboxes(self) -> list[BBox]:
        d = self.block_deg
        return [
            BBox(-180 + c * d, 90 - (r + 1) * d, -180 + (c + 1) * d, 90 - r * d)
            for r, c in self.blocks
        ]

    def to_json(self) -> dict:
        return {
            "block_deg": self.block_deg,
            "buffer_deg": self.buffer_deg,
            "blocks": [list(b) for b in self.blocks],
        }

    @classmethod
    def from_json(cls, data: dict) -> HoldOut:
        return cls(
            blocks=tuple(tuple(int(v) for v in b) for b in data["blocks"]),
            block_deg=float(data["block_deg"]),
            buffer_deg=float(data["buffer_deg"]),
        )


def choose_holdout(
    layers: GroundLayers, land_fraction: float = 0.12, seed: int = 0, block_deg: float = 10.0,
    classes_needed: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16), min_pixels: int = 1500,
) -> HoldOut:  # fmt: skip
    """Random land blocks (area-weighted) until ``land_fraction`` of the land is held out, then more
    blocks (still in random order) until every class in ``classes_needed`` has at
    least ``min_pixels`` MODIS pixels held out, so every evaluation prompt has truth."""
    lc = layers.land_cover
    px = int(round(block_deg / 0.05))
    n_rows, n_cols = lc.shape[0] // px, lc.shape[1] // px
    blocks = lc.reshape(n_rows, px, n_cols, px).transpose(0, 2, 1, 3).reshape(n_rows, n_cols, -1)
    hist = np.stack([(blocks == k).sum(-1) for k in range(17)], axis=-1)  # (rows, cols, 17)
    land = hist[..., 1:].sum(-1)
    # Land *area*: a block near a pole covers far less ground than one at the equator.
    area = land * np.cos(np.radians(90.0 - (np.arange(n_rows) + 0.5) * block_deg))[:, None]
    # Random order weighted by land area (Efraimidis-Spirakis), so the held-out set
    # is not dominated by the many small high-latitude blocks.
    weight = np.maximum(area.ravel() / area.max(), 1e-9)
    order = np.argsort(-(np.random.default_rng(seed).random(weight.size) ** (1.0 / weight)))
    chosen: list[tuple[int, int]] = []
    held = np.zeros(17, dtype=np.int64)
    held_area, target = 0.0, land_fraction * area.sum()
    for flat in order:  # first pass: land share
        r, c = divmod(int(flat), n_cols)
        if land[r, c] >= 0.15 * px * px and held_area < target:
            chosen.append((r, c))
            held += hist[r, c]
            held_area += area[r, c]
    for k in classes_needed:  # second pass: class coverage
        for flat in order:
            if held[k] >= min_pixels:
                break
            r, c = divmod(int(flat), n_cols)
            if (r, c) not in chosen and hist[r, c, k] > 0:
                chosen.append((r, c))
                held += hist[r, c]
    return HoldOut(blocks=tuple(sorted(chosen)), block_deg=block_deg)


def sample_points(
    layers: GroundLayers, n: int, rng: np.random.Generator, ocean_keep: float = 0.15,
    place_share: float = 0.1, accept=None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Points uniform on the sphere (ocean thinned to ``ocean_keep``), plus a share
    near populated places (weighted by sqrt(population)) so towns and cities are not
    vanishingly rare. ``accept(lon, lat) -> bool array`` filters candidates."""
    out_lon, out_lat = [], []
    n_places = int(round(n * place_share))
    p_lon, p_lat, pop = layers._places
    weight = np.sqrt(np.maximum(pop, 1.0))
    weight /= weight.sum()
    have_uniform = have_place = 0
    while have_uniform < n - n_places or have_place < n_places:
        m = 2 * n + 1000
        lon = rng.uniform(-180.0, 180.0, m)
        lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, m)))
        keep = (layers.surface_at(lon, lat) != OCEAN) | (rng.random(m) < ocean_keep)
        if accept is not None:
            keep &= accept(lon, lat)
        take = min(int(keep.sum()), n - n_places - have_uniform)
        out_lon.append(lon[keep][:take])
        out_lat.append(lat[keep][:take])
        have_uniform += take
        idx = rng.choice(len(pop), size=m, p=weight)
        # Jitter up to ~10 km: the place's surroundings, not just its centre pixel.
        lon = np.mod(p_lon[idx] + rng.normal(0, 0.06, m) + 180.0, 360.0) - 180.0
        lat = np.clip(p_lat[idx] + rng.normal(0, 0.06, m), -89.99, 89.99)
        keep = np.ones(m, bool) if accept is None else accept(lon, lat)
        take = min(int(keep.sum()), n_places - have_place)
        out_lon.append(lon[keep][:take])
        out_lat.append(lat[keep][:take])
        have_place += take
    lon, lat = np.concatenate(out_lon), np.concatenate(out_lat)
    perm = rng.permutation(len(lon))
    return lon[perm], lat[perm]


def sample_times(
    n: int, rng: np.random.Generator, years: tuple[int, int] = (2016, 2025)
) -> dict[str, np.ndarray]:
    """Uniform local dates in the given years and uniform local solar hours."""
    year = rng.integers(years[0], years[1] + 1, n)
    start = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    length = ((year + 1 - 1970).astype("datetime64[Y]").astype("datetime64[D]") - start).astype(int)
    date = start + (rng.random(n) * length).astype(int).astype("timedelta64[D]")
    month = date.astype("datetime64[M]")
    return {
        "year": year.astype(np.int16),
        "month": (month.astype(np.int64) % 12 + 1).astype(np.int16),
        "day": ((date - month.astype("datetime64[D]")).astype(np.int64) + 1).astype(np.int16),
        "hour": rng.uniform(0.0, 24.0, n).astype(np.float32),
        "day_of_year": ((date - start).astype(np.int64) + 1).astype(np.int16),
    }

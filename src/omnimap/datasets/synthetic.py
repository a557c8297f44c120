"""A small synthetic cross-view world, made offline: an overhead GeoTIFF and the
ground photos a visitor would take in it.

The land is a Voronoi mosaic of a few cover types, each with its own colour and
texture seen from above. A photo shows a sky whose brightness follows the local hour
over ground of that cover's colour, lit by the same daylight. So what a photo looks
like depends on the overhead image (which cover) *and* on the time (how bright),
and a student can learn both, as on real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

# name, colour from above, colour on the ground, texture period in pixels (0: flat)
COVERS = (
    ("water", (30, 70, 140), (40, 90, 160), 0),
    ("forest", (30, 90, 40), (40, 110, 50), 3),
    ("fields", (190, 170, 70), (200, 180, 90), 6),
    ("town", (130, 130, 135), (150, 150, 155), 4),
    ("sand", (220, 200, 150), (230, 210, 170), 0),
)
NIGHT_SKY, DAY_SKY = np.array([12, 14, 40]), np.array([120, 170, 235])


def daylight(hour: np.ndarray) -> np.ndarray:
    """0 at night .. 1 around noon, from the local solar hour."""
    return np.clip(
        1.5 * np.cos(2 * np.pi * (np.asarray(hour, float) - 13.0) / 24.0) + 0.35, 0.0, 1.0
    )


@dataclass(frozen=True)
class SyntheticWorld:
    west: float = 9.0
    south: float = 45.0
    east: float = 9.12
    north: float = 45.08
    regions: int = 24
    seed: int = 0

    @property
    def _sites(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        lon = rng.uniform(self.west, self.east, self.regions)
        lat = rng.uniform(self.south, self.north, self.regions)
        return lon, lat, np.arange(self.regions) % len(COVERS)

    def cover(self, lon, lat) -> np.ndarray:
        """Index into COVERS of the land at each point (nearest site, metric-ish)."""
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        s_lon, s_lat, kinds = self._sites
        k = np.cos(np.radians((self.south + self.north) / 2))
        d = ((lon[..., None] - s_lon) * k) ** 2 + (lat[..., None] - s_lat) ** 2
        return kinds[d.argmin(axis=-1)]

    def write_geotiff(
        self, path: str | Path, crs: str = "EPSG:32632", pixel_m: float = 20.0
    ) -> Path:
        """The overhead image as an RGB GeoTIFF in ``crs`` (UTM by default, so patches
        are really warped from another CRS)."""
        import rasterio
        from rasterio.transform import from_origin
        from rasterio.warp import transform, transform_bounds

        left, bottom, right, top = transform_bounds(
            "EPSG:4326", crs, self.west, self.south, self.east, self.north
        )
        width, height = int((right - left) / pixel_m), int((top - bottom) / pixel_m)
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        xs, ys = left + cols * pixel_m, top - rows * pixel_m
        lon, lat = transform(crs, "EPSG:4326", xs.ravel(), ys.ravel())
        cover = self.cover(np.asarray(lon), np.asarray(lat)).reshape(height, width)
        image = np.empty((3, height, width), dtype=np.float64)
        noise = np.random.default_rng(self.seed + 1).normal(0, 8, (height, width))
        for i, (_, above, _, period) in enumerate(COVERS):
            mask = cover == i
            texture = 18 * np.sign(np.sin(2 * np.pi * (cols + rows) / period)) if period else 0.0
            for c in range(3):
                image[c][mask] = (
                    (above[c] + texture + noise)[mask] if period else (above[c] + noise)[mask]
                )
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8", "crs": crs,
                   "transform": from_origin(left, top, pixel_m, pixel_m), "photometric": "RGB"}  # fmt: skip
        with rasterio.open(out, "w", **profile) as ds:
            ds.write(np.clip(np.rint(image), 0, 255).astype(np.uint8))
        return out

    def sample_points(
        self, n: int, seed: int, margin: float = 0.01
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points inside the world, ``margin`` degrees from its edge (whole patches)."""
        rng = np.random.default_rng(seed)
        lon = rng.uniform(self.west + margin, self.east - margin, n)
        lat = rng.uniform(self.south + margin, self.north - margin, n)
        return lon, lat

    def sample_times(self, n: int, seed: int) -> list[datetime]:
        """Local civil times over a year, at any hour."""
        rng = np.random.default_rng(seed)
        start = datetime(2021, 1, 1)
        return [start + timedelta(days=int(d), minutes=int(m))
                for d, m in zip(rng.integers(0, 365, n), rng.integers(0, 24 * 60, n), strict=True)]  # fmt: skip

    def photo(
        self, lon: float, lat: float, solar_hour: float, size: int = 64, seed: int = 0
    ) -> np.ndarray:
        """(size, size, 3) uint8: sky lit by the hour over ground of the cover here."""
        rng = np.random.default_rng(seed)
        light = float(daylight(solar_hour))
        _, _, ground, period = COVERS[int(self.cover(lon, lat))]
        img = np.empty((size, size, 3), dtype=np.float64)
        horizon = size // 3 + int(rng.integers(-3, 4))
        img[:horizon] = NIGHT_SKY + light * (DAY_SKY - NIGHT_SKY)
        rows, cols = np.mgrid[horizon:size, 0:size]
        texture = (
            20 * np.sign(np.sin(2 * np.pi * (cols + 2 * rows) / period))[..., None]
            if period
            else 0.0
        )
        img[horizon:] = (np.array(ground) + texture) * (0.25 + 0.75 * light)
        img += rng.normal(0, 6, img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

"""The real global layers the atlas describes the ground from.

- MODIS MCD12C1 2019 IGBP land cover (0.05 deg): what covers the ground.
- basemap's land/sea/lake mask (5 arc-min): ocean vs inland water, distance to coast.
- Shaded relief (1/30 deg): terrain ruggedness (local contrast of the hillshade).
- GeoNames populated places (>= 500 people): settlement size nearby.
- ERA5 2000-2025 monthly climate normals (``resources.climate``): temperature and
  precipitation at the place and date.
- pvlib's 5-arc-minute elevation (``resources.elevation``): height above sea level.

All lookups are vectorised: arrays of lon/lat in, arrays out.
"""

from __future__ import annotations

import gzip
import json
from functools import cached_property

import numpy as np
from PIL import Image
from scipy import ndimage

from omnimap.core.errors import DataError
from omnimap.resources import climate as climate_normals
from omnimap.resources import elevation as elevation_grid
from omnimap.resources import packages as resources

N_CLASSES = 17  # IGBP classes 0..16
IGBP_NAMES = (
    "water", "evergreen needleleaf forest", "evergreen broadleaf forest",
    "deciduous needleleaf forest", "deciduous broadleaf forest", "mixed forest",
    "closed shrublands", "open shrublands", "woody savannas", "savannas", "grasslands",
    "permanent wetlands", "croplands", "urban and built-up", "cropland/natural mosaic",
    "snow and ice", "barren",
)  # fmt: skip

# Land/sea mask values (basemap lsmask files).
OCEAN, LAND, LAKE = 0, 1, 2
LSMASK_SHAPE = (2160, 4320)  # 5 arc-minute global grid
KM_PER_DEGREE = 111.32


def _index(lon, lat, shape, wrap=True):
    """Row/col of the cells holding each point on a global north-up grid."""
    rows, cols = shape
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    c = np.floor((lon + 180.0) / 360.0 * cols).astype(np.int64)
    c = np.mod(c, cols) if wrap else np.clip(c, 0, cols - 1)
    r = np.clip(np.floor((90.0 - lat) / 180.0 * rows).astype(np.int64), 0, rows - 1)
    return r, c


class GroundLayers:
    """Lazy loader of the layers; each is read once and kept in memory."""

    @cached_property
    def land_cover(self) -> np.ndarray:
        path = resources.modis_land_cover()
        try:
            with Image.open(path) as im:
                lc = np.asarray(im)
        except OSError as exc:
            raise DataError(f"cannot read land cover {path}: {exc}") from None
        if lc.shape != (3600, 7200) or lc.max() >= N_CLASSES:
            raise DataError(f"unexpected land cover raster {path}: shape {lc.shape}")
        return lc

    @cached_property
    def land_sea(self) -> np.ndarray:
        raw = gzip.decompress(resources.land_sea_mask("5", "h").read_bytes())
        mask = np.frombuffer(raw, dtype=np.uint8)
        if mask.size != LSMASK_SHAPE[0] * LSMASK_SHAPE[1]:
            raise DataError("land/sea mask has an unexpected size")
        # basemap stores the mask south-up; flip to north-up like every other layer.
        return mask.reshape(LSMASK_SHAPE)[::-1].copy()

    @cached_property
    def coast_distance_km(self) -> np.ndarray:
        """Distance to the nearest ocean/land boundary, positive on land and at sea.

        Computed on the 5' grid in pixel units scaled by the north-south pixel
        size; east-west distances are overestimated towards the poles, which is
        acceptable for the coarse classes (coast, inland, far offshore) it feeds.
        """
        ocean = self.land_sea == OCEAN
        km_per_px = 180.0 / LSMASK_SHAPE[0] * KM_PER_DEGREE
        tiled = np.concatenate([ocean[:, -64:], ocean, ocean[:, :64]], axis=1)  # wrap in lon
        to_ocean = ndimage.distance_transform_edt(~tiled)[:, 64:-64]
        to_land = ndimage.distance_transform_edt(tiled)[:, 64:-64]
        return (np.where(ocean, to_land, to_ocean) * km_per_px).astype(np.float32)

    @cached_property
    def ruggedness(self) -> np.ndarray:
        """Std-dev of hillshade brightness over land in a ~0.33 deg window, at 1/15 deg.

        Only land pixels count: the sea's light-blue tint would otherwise make every
        coastline look rugged. Water is told by its colour in the image itself (blue
        well above red), so the mask matches the picture pixel for pixel.
        """
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 60_000_000)
        with Image.open(resources.shaded_relief()) as im:
            rgb = np.asarray(im, dtype=np.int16)
        h, w = rgb.shape[:2]
        water = (rgb[..., 2] - rgb[..., 0] > 28) & (rgb[..., 2] >= rgb[..., 1])
        lum = rgb.mean(axis=-1, dtype=np.float32)
        del rgb

        def down(a):  # 1/30 deg -> 1/15 deg
            return a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3), dtype=np.float32)

        land = down(~water)
        lum = down(lum * ~water) / np.maximum(land, 1e-6)
        land = (land >= 0.75).astype(np.float32)
        weight = np.maximum(ndimage.uniform_filter(land, 5, mode="wrap"), 1e-6)
        mean = ndimage.uniform_filter(lum * land, 5, mode="wrap") / weight
        mean_sq = ndimage.uniform_filter(lum * lum * land, 5, mode="wrap") / weight
        std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
        return np.where(land > 0, std, 0.0).astype(np.float32)

    @cached_property
    def _places(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        path = resources.geonames_file("cities500.json")
        try:
            with open(path, encoding="utf-8") as fh:
                cities = json.load(fh)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read populated places {path}: {exc}") from None
        rows = [(c["longitude"], c["latitude"], c.get("population") or 0) for c in cities.values()]
        arr = np.asarray(rows, dtype=np.float64)
        return arr[:, 0], arr[:, 1], arr[:, 2]

    @cached_property
    def largest_place_nearby(self) -> np.ndarray:
        """Population of the largest place within ~0.1 deg (0.05 deg grid, 5x5 max)."""
        lon, lat, pop = self._places
        grid = np.zeros((3600, 7200), dtype=np.float32)
        r, c = _index(lon, lat, grid.shape)
        np.maximum.at(grid, (r, c), pop.astype(np.float32))
        return ndimage.maximum_filter(grid, size=5, mode="wrap")

    @cached_property
    def places_nearby(self) -> np.ndarray:
        """Number of populated places within ~0.125 deg (0.05 deg grid, 5x5 sum)."""
        lon, lat, _ = self._places
        grid = np.zeros((3600, 7200), dtype=np.float32)
        r, c = _index(lon, lat, grid.shape)
        np.add.at(grid, (r, c), 1.0)
        return ndimage.uniform_filter(grid, size=5, mode="wrap") * 25.0

    # The process-wide singletons, not attributes: the layers are sent to spawned
    # training processes, and those load their own copies.
    @property
    def climate(self) -> climate_normals.ClimateNormals:
        return climate_normals.climate_normals()

    @property
    def elevation(self) -> elevation_grid.Elevation:
        return elevation_grid.elevation()

    # -- point lookups ---------------------------------------------------------

    def land_cover_counts(self, lon, lat, half: int = 2) -> np.ndarray:
        """(N, 17) class counts in the (2*half+1)^2 MODIS window around each point."""
        lc = self.land_cover
        r, c = _index(lon, lat, lc.shape)
        offsets = np.arange(-half, half + 1)
        rr = np.clip(r[:, None, None] + offsets[None, :, None], 0, lc.shape[0] - 1)
        cc = np.mod(c[:, None, None] + offsets[None, None, :], lc.shape[1])
        window = lc[rr, cc].reshape(len(r), -1)
        counts = np.zeros((len(r), N_CLASSES), dtype=np.int16)
        np.add.at(counts, (np.repeat(np.arange(len(r)), window.shape[1]), window.ravel()), 1)
        return counts

    def land_cover_at(self, lon, lat) -> np.ndarray:
        r, c = _index(lon, lat, self.land_cover.shape)
        return self.land_cover[r, c]

    def surface_at(self, lon, lat) -> np.ndarray:
        r, c = _index(lon, lat, LSMASK_SHAPE)
        return self.land_sea[r, c]

    def coast_km_at(self, lon, lat) -> np.ndarray:
        r, c = _index(lon, lat, LSMASK_SHAPE)
        return self.coast_distance_km[r, c]

    def ruggedness_at(self, lon, lat) -> np.ndarray:
        r, c = _index(lon, lat, self.ruggedness.shape)
        return self.ruggedness[r, c]

    def largest_place_at(self, lon, lat) -> np.ndarray:
        r, c = _index(lon, lat, (3600, 7200))
        return self.largest_place_nearby[r, c]

    def places_at(self, lon, lat) -> np.ndarray:
        r, c = _index(lon, lat, (3600, 7200))
        return self.places_nearby[r, c]

    def elevation_m_at(self, lon, lat) -> np.ndarray:
        """Metres above sea level; 0 where the grid has no data (sea, beyond 85 deg)."""
        return np.nan_to_num(self.elevation.elevation_m(lon, lat), nan=0.0)

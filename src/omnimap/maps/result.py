"""A computed map: the score raster plus what it shows, and its outputs.

``X.tif`` is the data (Cloud-Optimized GeoTIFF), ``X.png`` a picture for people,
``X.geojson`` the top places as points and ``X.stac.json`` their STAC Item. Every file
is written atomically, and the four of a map as one unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.core.fileio import atomic_path, atomic_paths, json_text
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.geojson import points_collection, write_points
from omnimap.maps.render import render_map
from omnimap.maps.stac import SIMILARITY, Values, stac_document, stac_path

UNCERTAINTY_LABEL = "predicted variance of the embedding (higher = less sure)"


@dataclass
class MapResult:
    scores: np.ndarray  # (nrows, ncols) float32, NaN = nodata
    grid: LatLonGrid
    prompt: str
    when: When | None = None  # None = time-free map
    place: str = ""  # e.g. "Alps" or "-10,35,30,60"
    model: str = ""  # model name for metadata
    crs: str = "EPSG:4326"
    values: Values = SIMILARITY  # what the cells hold (a posterior: PROBABILITY)
    uncertainty: np.ndarray | None = None  # (nrows, ncols) predicted variance: band 2 (PSM)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if self.scores.shape != self.grid.shape:
            raise ValueError(
                f"scores of shape {self.scores.shape} do not fit grid {self.grid.shape}"
            )
        if self.uncertainty is not None:
            self.uncertainty = np.asarray(self.uncertainty, dtype=np.float32)
            if self.uncertainty.shape != self.grid.shape:
                raise ValueError(f"uncertainty of shape {self.uncertainty.shape} does not fit grid {self.grid.shape}")

    @property
    def transform(self):
        return self.grid.transform

    @property
    def title(self) -> str:
        parts = [f'"{self.prompt}"', self.place, self.when.describe() if self.when else "any time"]
        return " · ".join(p for p in parts if p)

    @property
    def covers_world(self) -> bool:
        return self.grid.ncols * self.grid.resolution >= 360.0 - 1e-9

    def peaks(self, k: int = 10, min_distance: int | None = None) -> list[dict]:
        """The ``k`` highest local maxima, best first: dicts of lon, lat, score, rank, row, col.

        A cell is a maximum if no cell within ``min_distance`` cells (a square window)
        scores higher; NaN never counts. Equal neighbours (plateaus) give one peak, the
        first in row-major order. Longitude wraps around on a whole-world grid.
        """
        from scipy import ndimage

        nrows, ncols = self.grid.shape
        if min_distance is None:
            min_distance = max(1, round(min(nrows, ncols) / 30))
        values = np.where(np.isfinite(self.scores), self.scores, -np.inf)
        local_max = ndimage.maximum_filter(
            values,
            size=2 * min_distance + 1,
            mode=("constant", "wrap" if self.covers_world else "constant"),
            cval=-np.inf,
        )
        candidates = np.flatnonzero((values == local_max) & np.isfinite(values))
        order = candidates[np.argsort(-values.ravel()[candidates], kind="stable")]
        chosen: list[tuple[int, int]] = []
        for index in order:
            if len(chosen) >= k:
                break
            row, col = divmod(int(index), ncols)
            if not any(self._within(row, col, r, c, min_distance) for r, c in chosen):
                chosen.append((row, col))
        lons, lats = self.grid.lons(), self.grid.lats()
        return [
            {
                "lon": float(lons[c]),
                "lat": float(lats[r]),
                "score": float(self.scores[r, c]),
                "rank": rank,
                "row": r,
                "col": c,
            }
            for rank, (r, c) in enumerate(chosen, start=1)
        ]

    def _within(self, r1: int, c1: int, r2: int, c2: int, distance: int) -> bool:
        dc = abs(c1 - c2)
        if self.covers_world:
            dc = min(dc, self.grid.ncols - dc)
        return abs(r1 - r2) <= distance and dc <= distance

    def _metadata(self) -> dict[str, str]:
        return {
            "prompt": self.prompt,
            "when": self.when.dt.isoformat() if self.when else "none",
            "model": self.model,
            "place": self.place,
            "description": self.values.note,
        }

    def write_geotiff(self, path: str | Path) -> Path:
        """Write a float32 Cloud-Optimized GeoTIFF (EPSG:4326, nodata NaN): the scores,
        and the uncertainty as band 2 when there is one.

        A grid crossing the antimeridian stays one raster whose x axis runs past 180
        (e.g. 170 to 190); GDAL reads that as valid EPSG:4326.
        """
        path = Path(path)
        with atomic_path(path, suffix=".tmp.tif") as tmp:
            self._write_geotiff_to(tmp)
        return path

    def _write_geotiff_to(self, path: Path) -> None:
        import rasterio

        profile = {
            "driver": "COG",
            "height": self.grid.nrows,
            "width": self.grid.ncols,
            "count": 1 if self.uncertainty is None else 2,
            "dtype": "float32",
            "crs": self.crs,
            "transform": self.transform,
            "nodata": np.nan,
            "compress": "deflate",
            "predictor": 3,
            "blocksize": 512,
            "resampling": "average",
            # Overviews of a 1-column raster keep width 1, which COG validation rejects.
            "overviews": "NONE" if self.grid.ncols == 1 else "AUTO",
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(self.scores, 1)
            dst.update_tags(**self._metadata())
            dst.set_band_description(1, self.values.label)
            if self.uncertainty is None:
                dst.units = (self.values.unit,)
            else:
                dst.write(np.where(np.isnan(self.scores), np.nan, self.uncertainty), 2)
                dst.set_band_description(2, UNCERTAINTY_LABEL)
                dst.units = (self.values.unit, "")

    def write_geojson(self, path: str | Path, k: int = 10) -> Path:
        """Write the top ``k`` peaks as an RFC 7946 FeatureCollection of points."""
        return write_points(path, self.peaks(k), ("rank", "score"), **self._geojson_meta())

    def _geojson_meta(self) -> dict:
        meta = self._metadata()
        meta["when"] = self.when.dt.isoformat() if self.when else None
        return meta

    def write_png(self, path: str | Path) -> Path:
        """Render the map for people: scores, coastlines, colour bar and top peaks."""
        path = Path(path)
        figure = render_map(self)
        with atomic_path(path, suffix=".tmp.png") as tmp:
            figure.savefig(tmp, format="png")
        return path

    def write(
        self,
        tif_path: str | Path,
        png: bool = True,
        geojson: bool = True,
        k: int = 10,
        stac: bool = True,
    ) -> dict[str, Path]:
        """Write X.tif and, beside it, X.png, X.geojson and a STAC Item X.stac.json
        describing them; returns the paths by kind. The files are one unit: all are
        written to temp files and renamed together, or none is (DataError on a full
        disk), so an earlier run's set is never mixed with this one's."""
        tif_path = Path(tif_path)
        paths = {"tif": tif_path}
        if png:
            paths["png"] = tif_path.with_suffix(".png")
        if geojson:
            paths["geojson"] = tif_path.with_suffix(".geojson")
        if stac:
            paths["stac"] = stac_path(tif_path)
        figure = render_map(self) if png else None
        with atomic_paths(list(paths.values())) as temps:
            tmp = dict(zip(paths, temps, strict=True))
            self._write_geotiff_to(tmp["tif"])
            if png:
                figure.savefig(tmp["png"], format="png")
            if geojson:
                collection = points_collection(self.peaks(k), ("rank", "score"),
                                               **self._geojson_meta())  # fmt: skip
                tmp["geojson"].write_text(json_text(collection), encoding="utf-8")
            if stac:
                item = stac_document(self, tif_path, png_path=paths.get("png"),
                                     geojson_path=paths.get("geojson"))  # fmt: skip
                tmp["stac"].write_text(json_text(item), encoding="utf-8")
        return paths

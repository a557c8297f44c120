"""A computed map: the score raster plus what it shows, and its three outputs.

``X.tif`` is the data (Cloud-Optimized GeoTIFF), ``X.png`` a picture for people and
``X.geojson`` the top places as points. Every file is written atomically.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.fileio import atomic_path, write_json_atomic
from omnimap.geo.bbox import wrap_lon
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When

UNITS_NOTE = "cosine similarity; higher = more likely"
COLORBAR_LABEL = "similarity to prompt (higher = more likely)"
PNG_PEAKS = 5


@dataclass
class MapResult:
    scores: np.ndarray  # (nrows, ncols) float32, NaN = nodata
    grid: LatLonGrid
    prompt: str
    when: When | None = None  # None = time-free map
    place: str = ""  # e.g. "Alps" or "-10,35,30,60"
    model: str = ""  # model name for metadata
    crs: str = "EPSG:4326"

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if self.scores.shape != self.grid.shape:
            raise ValueError(
                f"scores of shape {self.scores.shape} do not fit grid {self.grid.shape}"
            )

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
            "description": UNITS_NOTE,
        }

    def write_geotiff(self, path: str | Path) -> Path:
        """Write a single-band float32 Cloud-Optimized GeoTIFF (EPSG:4326, nodata NaN).

        A grid crossing the antimeridian stays one raster whose x axis runs past 180
        (e.g. 170 to 190); GDAL reads that as valid EPSG:4326.
        """
        import rasterio

        path = Path(path)
        profile = {
            "driver": "COG",
            "height": self.grid.nrows,
            "width": self.grid.ncols,
            "count": 1,
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
        with atomic_path(path, suffix=".tmp.tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(self.scores, 1)
            dst.update_tags(**self._metadata())
            dst.set_band_description(1, COLORBAR_LABEL)
            dst.units = ("cosine similarity",)
        return path

    def write_geojson(self, path: str | Path, k: int = 10) -> Path:
        """Write the top ``k`` peaks as an RFC 7946 FeatureCollection of points."""
        path = Path(path)
        features = [
            {
                "type": "Feature",
                "geometry": {
                    "type": "Point",
                    "coordinates": [round(p["lon"], 6), round(p["lat"], 6)],
                },
                "properties": {"rank": p["rank"], "score": round(p["score"], 6)},
            }
            for p in self.peaks(k)
        ]
        meta = self._metadata()
        meta["when"] = self.when.dt.isoformat() if self.when else None
        write_json_atomic(path, {"type": "FeatureCollection", **meta, "features": features})
        return path

    def write_png(self, path: str | Path) -> Path:
        """Render the map for people: scores, coastlines, colour bar and top peaks."""
        path = Path(path)
        figure = _render(self)
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
        describing them; returns the paths by kind."""
        tif_path = Path(tif_path)
        out = {"tif": self.write_geotiff(tif_path)}
        if png:
            out["png"] = self.write_png(tif_path.with_suffix(".png"))
        if geojson:
            out["geojson"] = self.write_geojson(tif_path.with_suffix(".geojson"), k=k)
        if stac:
            from omnimap.maps.stac import write_stac_item  # stac.py imports this module

            out["stac"] = write_stac_item(
                self, out["tif"], png_path=out.get("png"), geojson_path=out.get("geojson")
            )
        return out


# --- rendering -------------------------------------------------------------------

FIG_WIDTH_IN, DPI = 12.0, 100
_DEGREE_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 20, 30, 45, 60, 90)


def _tick_step(span_deg: float) -> float:
    """A round number of degrees giving at most 7 tick intervals."""
    return next((s for s in _DEGREE_STEPS if span_deg / s <= 7), 90)


def _coast_resolution(width_deg: float) -> str:
    if width_deg >= 100.0:
        return "c"
    return "l" if width_deg >= 20.0 else "i"


def _color_limits(scores: np.ndarray) -> tuple[float, float]:
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [2, 98]))
    if high - low < 1e-6:
        low, high = low - 0.01, high + 0.01
    return low, high


def _lon_label(x: float, _pos=None) -> str:
    lon = wrap_lon(round(x, 6))
    hemi = "E" if 0 < lon < 180 else "W" if lon < 0 and lon != -180 else ""
    return f"{abs(lon):g}°{hemi}"


def _lat_label(y: float, _pos=None) -> str:
    return f"{abs(y):g}°{'N' if y > 0 else 'S' if y < 0 else ''}"


def _render(result: MapResult):
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    west, south, east, north = result.grid.bounds
    aspect = 1.0 / max(math.cos(math.radians((south + north) / 2.0)), 0.25)
    ratio = (north - south) * aspect / (east - west)
    height_in = float(np.clip(FIG_WIDTH_IN * 0.8 * ratio + 1.6, 4.0, 14.0))

    figure = Figure(figsize=(FIG_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.set_facecolor("#bdbdbd")  # nodata shows as grey
    vmin, vmax = _color_limits(result.scores)
    image = ax.imshow(
        np.ma.masked_invalid(result.scores),
        cmap=colormaps["magma"],
        vmin=vmin,
        vmax=vmax,
        extent=(west, east, south, north),
        origin="upper",
        interpolation="antialiased",
    )
    ax.set_aspect(aspect)
    _draw_coastlines(ax, result.grid.bounds)
    _draw_peaks(ax, result)
    _format_axes(ax, result.grid.bounds)
    # "$" would start matplotlib's mathtext.
    ax.set_title(textwrap.fill(result.title, 90).replace("$", r"\$"), fontsize=13)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.9, pad=0.02, extend="both")
    colorbar.set_label(COLORBAR_LABEL)
    return figure


def _draw_coastlines(ax, bounds: tuple[float, float, float, float]) -> None:
    from matplotlib import patheffects
    from matplotlib.collections import LineCollection

    from omnimap.data.coastlines import coastlines_in, drawable

    resolution = _coast_resolution(bounds[2] - bounds[0])
    lines = [drawable(ring) for ring in coastlines_in(bounds, resolution)]
    halo = [patheffects.withStroke(linewidth=1.8, foreground=(0, 0, 0, 0.45))]
    ax.add_collection(LineCollection(lines, colors="white", linewidths=0.7, path_effects=halo))


def _draw_peaks(ax, result: MapResult) -> None:
    from matplotlib import patheffects

    west, north, res = result.grid.west, result.grid.north, result.grid.resolution
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]  # readable on any colour
    for peak in result.peaks(PNG_PEAKS):
        # Continuous x (past 180 on an antimeridian map), not the wrapped peak["lon"].
        x, y = west + (peak["col"] + 0.5) * res, north - (peak["row"] + 0.5) * res
        ax.plot(
            x, y, "o", markersize=7, color="#22d3ee", markeredgecolor="white", markeredgewidth=1.3
        )
        ax.annotate(
            str(peak["rank"]),
            (x, y),
            xytext=(5, 4),
            textcoords="offset points",
            color="white",
            fontsize=9,
            fontweight="bold",
            path_effects=outline,
        )


def _format_axes(ax, bounds: tuple[float, float, float, float]) -> None:
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    west, south, east, north = bounds
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.xaxis.set_major_locator(MultipleLocator(_tick_step(east - west)))
    ax.yaxis.set_major_locator(MultipleLocator(_tick_step(north - south)))
    ax.xaxis.set_major_formatter(FuncFormatter(_lon_label))
    ax.yaxis.set_major_formatter(FuncFormatter(_lat_label))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")

"""Pictures for people: a rendered map (PNG beside every GeoTIFF) and contact sheets of
overhead patches (search results)."""

from __future__ import annotations

import math
import textwrap
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omnimap.core.fileio import atomic_path
from omnimap.geo.bbox import wrap_lon
from omnimap.resources.coastlines import coastlines_in, drawable

if TYPE_CHECKING:  # annotations only: result.py renders through here
    from omnimap.maps.result import MapResult

FIG_WIDTH_IN, DPI = 12.0, 100
PNG_PEAKS = 5  # peaks marked on a rendered map
_DEGREE_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 20, 30, 45, 60, 90)


def _tick_step(span_deg: float) -> float:
    """A round number of degrees giving at most 7 tick intervals."""
    return next((s for s in _DEGREE_STEPS if span_deg / s <= 7), 90)


def _coast_resolution(width_deg: float) -> str:
    if width_deg >= 100.0:
        return "c"
    return "l" if width_deg >= 20.0 else "i"


def color_limits(scores: np.ndarray) -> tuple[float, float]:
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


def render_map(result: MapResult):
    """The map as a matplotlib Figure: scores, coastlines, colour bar and top peaks."""
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
    vmin, vmax = color_limits(result.scores)
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
    title, families = drawable_text(textwrap.fill(result.title, 90))
    ax.set_title(title.replace("$", r"\$"), fontsize=13, family=families)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.9, pad=0.02, extend="both")
    colorbar.set_label(result.values.label)
    return figure


LEGEND_MAX = 40  # classes listed beside a class map (the most common first)


def render_classes(index: np.ndarray, grid, names: list[str], rgb: np.ndarray, title: str):
    """A categorical map (``index``: class per cell, -1 nodata) with a legend of the
    classes present, most common first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    west, south, east, north = grid.bounds
    aspect = 1.0 / max(math.cos(math.radians((south + north) / 2.0)), 0.25)
    ratio = (north - south) * aspect / (east - west)
    height_in = float(np.clip(FIG_WIDTH_IN * 0.8 * ratio + 1.6, 4.0, 14.0))
    figure = Figure(figsize=(FIG_WIDTH_IN + 3.0, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.set_facecolor("#bdbdbd")  # nodata shows as grey
    cmap = ListedColormap(rgb / 255.0)
    ax.imshow(np.ma.masked_less(index, 0), cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5,
              extent=(west, east, south, north), origin="upper", interpolation="nearest")  # fmt: skip
    ax.set_aspect(aspect)
    _draw_coastlines(ax, grid.bounds)
    _format_axes(ax, grid.bounds)
    title, families = drawable_text(title)
    ax.set_title(title.replace("$", r"\$"), fontsize=13, family=families)
    counts = np.bincount(index[index >= 0], minlength=len(names))
    present = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0][:LEGEND_MAX]
    total = max(int(counts.sum()), 1)
    handles = [Patch(color=rgb[i] / 255.0, label=f"{names[i]} ({counts[i] / total:.0%})".replace("$", r"\$"))
               for i in present]  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False, title="most likely class")  # fmt: skip
    return figure


MISSING_GLYPH = "\ufffd"  # drawn by DejaVu Sans (matplotlib's own font) as a marked "?"


def drawable_text(text: str) -> tuple[str, list[str]]:
    """``text`` and the font families to draw it with: matplotlib's default font, then
    installed fonts for the characters it lacks (CJK, say, where a system has them).
    Characters no installed font has become U+FFFD, so matplotlib never warns about a
    missing glyph nor draws an empty box (emoji, mostly: colour fonts are not drawable)."""
    from matplotlib import font_manager, rcParams

    primary = font_manager.FontProperties(family=rcParams["font.family"])
    families = [font_manager.fontManager.findfont(primary)]
    out = []
    for ch in text:
        if ch in "\n\t" or ord(ch) in _charmap(families[0]):
            out.append(ch)
            continue
        path = next((f for f in _fallback_fonts() if ord(ch) in _charmap(f)), None)
        if path is None:
            out.append(MISSING_GLYPH if ord(MISSING_GLYPH) in _charmap(families[0]) else "?")
            continue
        if path not in families:
            families.append(path)
        out.append(ch)
    names = []
    for path in families:
        name = font_manager.FontProperties(fname=path).get_name()
        if name not in names:
            names.append(name)
    return "".join(out), names


@cache
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError):
        return frozenset()


@cache
def _fallback_fonts() -> list[str]:
    """Installed outline fonts, those with the most characters first."""
    from matplotlib import font_manager

    paths = {f.fname for f in font_manager.fontManager.ttflist}
    return sorted(paths, key=lambda p: -len(_charmap(p)))


def _draw_coastlines(ax, bounds: tuple[float, float, float, float]) -> None:
    from matplotlib import patheffects
    from matplotlib.collections import LineCollection

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


def contact_sheet(
    patches: np.ndarray, labels: list[str], title: str, out: str | Path, columns: int = 4
) -> Path:
    """A grid of (3, P, P) patches with a label under each, written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, math.ceil(len(patches) / columns))
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows + 0.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, patch, label in zip(axes.ravel(), patches, labels, strict=False):
        ax.imshow(np.asarray(patch).transpose(1, 2, 0), interpolation="nearest")
        label, families = drawable_text(label)
        ax.set_title(label, fontsize=8, family=families)
    title, families = drawable_text(title)
    figure.suptitle(title, fontsize=10, family=families)
    out = Path(out)
    with atomic_path(out, suffix=".tmp.png") as tmp:
        figure.savefig(tmp, format="png")
    return out

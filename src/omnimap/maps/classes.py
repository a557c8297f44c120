"""Class-set maps: P(class | place, time) for a whole set of classes at once.

Each class is a text the model's teacher embeds; the cell scores of all classes come
from one matrix product (cells x classes) through ``maps.scoring.cosine_scores`` (the
engine's ``score``), and a softmax over the classes with the model's learned
temperature turns them into probabilities. Outputs: ``X.tif`` (one float32 band per
class, band descriptions = class names), ``X-class.tif`` (the most likely class, with
a colour table) and ``X.png`` (that map with a legend). Every file is written
atomically, and bad class sets fail before anything is computed or written.

Built-in sets: ``transient`` (the 40 transient scene attributes of Laffont et al.
2014, "Transient attributes for high-level understanding and editing of outdoor
scenes", SIGGRAPH), ``scenes`` (outdoor scene categories) and ``igbp`` (the 17 IGBP
land-cover classes of MODIS MCD12).
"""

from __future__ import annotations

import difflib
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnimap.core.errors import InputError
from omnimap.core.fileio import atomic_path
from omnimap.datasets.atlas.layers import IGBP_NAMES
from omnimap.geo.grid import LatLonGrid
from omnimap.geo.timefeat import When
from omnimap.maps.engine import MapEngine
from omnimap.maps.render import render_classes

MAX_CLASSES = 256

# Laffont et al. 2014, Table 1 (the paper's names; two are written out in words).
TRANSIENT = (
    "dirty", "daylight", "night", "sunrise/sunset", "dawn/dusk", "sunny", "clouds", "fog",
    "storm", "snow", "warm", "cold", "busy", "beautiful", "flowers", "spring", "summer",
    "autumn", "winter", "glowing", "colorful", "dull", "rugged", "midday", "dark", "bright",
    "dry", "moist", "windy", "rain", "ice", "cluttered", "soothing", "stressful", "exciting",
    "sentimental", "mysterious", "boring", "gloomy", "lush",
)  # fmt: skip
SCENES = (
    "beach", "desert", "sand dunes", "rainforest", "coniferous forest", "deciduous forest",
    "savanna", "grassland", "farmland", "rice paddies", "vineyard", "orchard", "mountains",
    "glacier", "tundra", "swamp", "lake", "river", "open sea", "harbor", "city", "suburbs",
    "village", "highway", "airport", "industrial area", "canyon", "volcano", "ski slope",
    "park", "pasture", "coral reef",
)  # fmt: skip
BUILTIN_SETS: dict[str, tuple[str, ...]] = {
    "transient": TRANSIENT,
    "scenes": SCENES,
    "igbp": IGBP_NAMES,
}


@dataclass(frozen=True)
class ClassSet:
    name: str  # the built-in set's name or the file's stem
    classes: tuple[str, ...]


def check_classes(classes, name: str = "classes", label: str | None = None) -> ClassSet:
    """A valid class set ``name``: 2..MAX_CLASSES distinct non-empty names (case-insensitive);
    errors call it ``label``."""
    label = label or name
    cleaned = tuple(" ".join(str(c).split()) for c in classes)
    if not cleaned or all(not c for c in cleaned):
        raise InputError(f"{label} holds no classes")
    if any(not c for c in cleaned):
        raise InputError(f"{label} has an empty class name")
    if len(cleaned) > MAX_CLASSES:
        raise InputError(f"{label} has {len(cleaned)} classes; at most {MAX_CLASSES} are allowed")
    seen: dict[str, str] = {}
    for c in cleaned:
        key = c.lower()
        if key in seen:
            raise InputError(f"{label} lists {c!r} twice")
        seen[key] = c
    if len(cleaned) < 2:
        raise InputError(f"{label} needs at least 2 classes, got {len(cleaned)}")
    return ClassSet(name, cleaned)


def read_class_set(spec: str | Path) -> ClassSet:
    """A built-in set by name, or a UTF-8 text file of one class per line (blank lines
    and lines starting with # are skipped)."""
    text = str(spec).strip()
    if not text:
        raise InputError("--classes is empty; give a set name or a file of one class per line")
    if text.lower() in BUILTIN_SETS:
        return ClassSet(text.lower(), BUILTIN_SETS[text.lower()])
    path = Path(text)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read class file {path.name}: {exc}") from None
        names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        return check_classes(names, path.stem, f"class file {path.name}")
    if path.suffix or "/" in text or "\\" in text:
        raise InputError(f"class file {text!r} does not exist")
    close = difflib.get_close_matches(text.lower(), list(BUILTIN_SETS), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InputError(
        f"unknown class set {text!r}; {hint}built-in sets: {', '.join(BUILTIN_SETS)} "
        "(or give a .txt file of one class per line)"
    )


@torch.inference_mode()
def softmax(logits: np.ndarray, axis: int = 0, scale: float = 1.0, in_place: bool = False) -> np.ndarray:
    """Softmax of ``logits * scale`` along ``axis`` (torch: all cores, in place, ~10x
    numpy's exp on a 40-class map); NaN (nodata) cells stay NaN. ``in_place``
    overwrites a float32 ``logits`` array the caller owns instead of copying it."""
    own = in_place and logits.dtype == np.float32 and logits.flags.writeable
    t = torch.from_numpy(logits if own else np.array(logits, dtype=np.float32))
    if scale != 1.0:
        t.mul_(scale)
    t.sub_(t.amax(dim=axis, keepdim=True)).exp_()
    t.div_(t.sum(dim=axis, keepdim=True))
    return t.numpy()


def temperature_of(engine: MapEngine) -> float:
    """The model's learned softmax temperature (the InfoNCE logit scale)."""
    t = engine.model.config.get("temperature")
    if t is None or not (float(t) > 0):
        raise InputError(f"model {engine.name} records no learned temperature; it cannot give probabilities")
    return float(t)


def class_probabilities(
    engine: MapEngine, classes: ClassSet, grid: LatLonGrid, when: When | None
) -> np.ndarray:
    """(C, nrows, ncols) float32 P(class | place, time): one product cells x classes."""
    scores = engine.score(list(classes.classes), grid, when)
    return softmax(scores, axis=0, scale=1.0 / temperature_of(engine), in_place=True)


def colours(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours: matplotlib's qualitative tables, then hues."""
    from matplotlib import colormaps  # heavy: only when writing maps
    from matplotlib.colors import hsv_to_rgb

    table = [colormaps[name].colors for name in ("tab20", "tab20b", "tab20c")]
    base = [c for t in table for c in t]
    if n > len(base):
        hues = (np.arange(n - len(base)) * 0.618034) % 1.0
        base += [tuple(c) for c in hsv_to_rgb(np.stack([hues, np.full_like(hues, 0.65),
                                                         np.full_like(hues, 0.85)], 1))]  # fmt: skip
    return (np.asarray(base[:n]) * 255).round().astype(np.uint8)


@dataclass
class ClassMapResult:
    probabilities: np.ndarray  # (C, nrows, ncols) float32, NaN = nodata
    grid: LatLonGrid
    classes: ClassSet
    when: When | None = None
    place: str = ""
    model: str = ""
    temperature: float = 0.0
    crs: str = "EPSG:4326"

    @property
    def argmax(self) -> np.ndarray:
        """(nrows, ncols) index of the most likely class; -1 = nodata."""
        p = self.probabilities
        valid = np.isfinite(p).all(axis=0)
        out = np.where(valid, np.argmax(np.nan_to_num(p, nan=-1.0), axis=0), -1)
        return out.astype(np.int32)

    @property
    def title(self) -> str:
        parts = [f"classes: {self.classes.name}", self.place,
                 self.when.describe() if self.when else "any time"]  # fmt: skip
        return " · ".join(p for p in parts if p)

    def _tags(self) -> dict[str, str]:
        return {
            "class_set": self.classes.name,
            "classes": json.dumps(list(self.classes.classes)),
            "when": self.when.dt.isoformat() if self.when else "none",
            "model": self.model,
            "place": self.place,
            "temperature": f"{self.temperature:.6g}",
            "description": "P(class | place, time): softmax over the classes of cosine / temperature",
        }

    def _profile(self, count: int, dtype: str, nodata) -> dict:
        return {
            "driver": "COG", "height": self.grid.nrows, "width": self.grid.ncols, "count": count,
            "dtype": dtype, "crs": self.crs, "transform": self.grid.transform, "nodata": nodata,
            "compress": "deflate", "blocksize": 512,
            "overviews": "NONE" if self.grid.ncols == 1 else "AUTO",
        }  # fmt: skip

    def write_probabilities(self, path: str | Path) -> Path:
        import rasterio

        path = Path(path)
        profile = {**self._profile(len(self.classes.classes), "float32", np.nan), "predictor": 3,
                   "resampling": "average"}  # fmt: skip
        with atomic_path(path, suffix=".tmp.tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(self.probabilities)
            dst.update_tags(**self._tags())
            for i, name in enumerate(self.classes.classes, start=1):
                dst.set_band_description(i, name)
        return path

    def write_categorical(self, path: str | Path) -> Path:
        import rasterio

        path = Path(path)
        n = len(self.classes.classes)
        dtype, nodata = ("uint8", 255) if n < 255 else ("uint16", 65535)
        index = self.argmax
        data = np.where(index >= 0, index, nodata).astype(dtype)
        profile = {**self._profile(1, dtype, nodata), "resampling": "mode"}
        table = {i: (*map(int, c), 255) for i, c in enumerate(colours(n))}
        with atomic_path(path, suffix=".tmp.tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data, 1)
            dst.write_colormap(1, table)
            dst.update_tags(**self._tags())
            dst.update_tags(1, **{f"class_{i}": name for i, name in enumerate(self.classes.classes)})
            dst.set_band_description(1, "most likely class (see tags class_N)")
        return path

    def write_png(self, path: str | Path) -> Path:
        path = Path(path)
        figure = render_classes(self.argmax, self.grid, list(self.classes.classes),
                                colours(len(self.classes.classes)),
                                textwrap.fill(self.title, 90))  # fmt: skip
        with atomic_path(path, suffix=".tmp.png") as tmp:
            figure.savefig(tmp, format="png")
        return path

    def write(self, tif_path: str | Path, png: bool = True) -> dict[str, Path]:
        """X.tif (probabilities), X-class.tif (most likely class) and X.png."""
        tif_path = Path(tif_path)
        out = {"probabilities": self.write_probabilities(tif_path)}
        out["classes"] = self.write_categorical(tif_path.with_name(tif_path.stem + "-class.tif"))
        if png:
            out["png"] = self.write_png(tif_path.with_suffix(".png"))
        return out

    def shares(self) -> list[tuple[str, float]]:
        """Each class's share of the valid cells as the most likely class, largest first."""
        index = self.argmax
        valid = index >= 0
        counts = np.bincount(index[valid], minlength=len(self.classes.classes))
        total = max(int(valid.sum()), 1)
        order = np.argsort(-counts, kind="stable")
        return [(self.classes.classes[i], counts[i] / total) for i in order if counts[i] > 0]

"""Sources from config dicts (a trained model's ``imagery``) and from CLI strings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omnimap.core.errors import DataError, InputError
from omnimap.sources.base import PatchSource

DEFAULT_GROUND_SIZE_M = 500.0
DEFAULT_PIXELS = 224
# Options recorded in a source's config (they change the pixels or must travel with
# them), and options that only change how pixels are fetched on this machine.
CONFIG_OPTIONS = {
    "bmng": (),
    "geotiff": ("bands", "rescale", "min_coverage", "attribution"),
    "xyz": ("tile_size", "max_zoom", "min_coverage", "requests_per_second", "attribution"),
}
RUNTIME_OPTIONS = {
    "bmng": (),
    "geotiff": (),
    "xyz": ("timeout_s", "max_attempts", "backoff_s", "workers", "cache", "max_cache_bytes"),
}


# Source modules are imported on use: the tile stack (httpx, morecantile) costs
# half a second that a Blue Marble map should not pay.
def _build(kind: str, config: Mapping[str, Any], runtime: Mapping[str, Any]) -> PatchSource:
    if kind not in CONFIG_OPTIONS:
        raise InputError(f"unknown imagery type {kind!r}; expected bmng, geotiff or xyz")
    unknown = sorted(set(runtime) - set(RUNTIME_OPTIONS[kind]))
    if unknown:
        raise InputError(f"{kind} imagery does not take option(s) {', '.join(unknown)}")
    options = {n: config[n] for n in CONFIG_OPTIONS[kind] if config.get(n) is not None}
    if kind == "bmng":
        from omnimap.sources.bmng import BlueMarbleNative, BlueMarbleResampled

        if "ground_size_m" in config:
            return BlueMarbleResampled(config["ground_size_m"], config["pixels"])
        return BlueMarbleNative(int(config.get("patch_size", 16)))
    geometry = (
        config.get("ground_size_m", DEFAULT_GROUND_SIZE_M),
        config.get("pixels", DEFAULT_PIXELS),
    )
    if kind == "geotiff":
        from omnimap.sources.geotiff import GeoTiffSource

        return GeoTiffSource(config["path"], *geometry, **options)
    from omnimap.sources.xyz import XyzSource

    return XyzSource(config["url"], *geometry, **options, **runtime)


def source_from_config(
    config: Mapping[str, Any], *, check_key: bool = True, **runtime: Any
) -> PatchSource:
    """The source a config dict describes (``PatchSource.to_config`` output).

    ``runtime`` options that do not change the pixels (an XYZ source's ``cache``,
    ``timeout_s``, ``max_attempts``...) go to the constructor. Older configs name
    the type under ``name`` (``{"name": "bmng", "patch_size": 16}``). With
    ``check_key`` a recorded ``key`` must match the rebuilt source's: a model trained
    on one image must not silently map another.
    """
    kind = str(config.get("type", config.get("name")))
    try:
        source = _build(kind, config, runtime)
    except KeyError as exc:
        raise InputError(f"imagery config of type {kind!r} lacks {exc.args[0]!r}") from None
    recorded = config.get("key")
    if check_key and recorded is not None and recorded != source.key:
        raise DataError(
            f"imagery changed: the config was made with {recorded}, the source is now {source.key}"
        )
    return source


def open_source(
    spec: str,
    ground_size_m: float = DEFAULT_GROUND_SIZE_M,
    pixels: int = DEFAULT_PIXELS,
    **options: Any,
) -> PatchSource:
    """A source from a CLI string: ``bmng``, a GeoTIFF path, or an XYZ URL template.

    ``bmng`` here is Blue Marble resampled to the given ground geometry, like every
    other source. ``options`` are the kind's config and runtime options.
    """
    if spec == "bmng":
        kind, config = "bmng", {}
    elif spec.startswith(("http://", "https://")):
        kind, config = "xyz", {"url": spec}
    elif Path(spec).suffix.lower() in (".tif", ".tiff") or Path(spec).is_file():
        kind, config = "geotiff", {"path": spec}
    else:
        raise InputError(f"imagery {spec!r} is not 'bmng', an http(s) tile URL or a GeoTIFF file")
    config = {"ground_size_m": ground_size_m, "pixels": pixels, **config}
    runtime = {k: v for k, v in options.items() if k not in CONFIG_OPTIONS[kind]}
    config.update((k, v) for k, v in options.items() if k in CONFIG_OPTIONS[kind])
    return _build(kind, config, runtime)

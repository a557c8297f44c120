"""Named regions for ``--region``: the world, natural regions, continents, countries, places.

Names match case-, accent- and whitespace-insensitively. When a name means several things
the broadest kind wins: world > natural region > continent > country (name, ISO2 or ISO3
code) > populated place. Places may be qualified by country: "Paris, FR", "Paris, France".

Countries and continents are shapes (Natural Earth polygons, :mod:`omnimap.geo.shapes`):
their box is the extent of the polygons (Alaska and Hawaii are in the US; Russia, Fiji and
the US cross the antimeridian) and :meth:`Region.mask` marks the cells inside, so a map of
a country has nodata outside it. Natural regions and places are boxes.

Every table loads on first use and is memoised; natural regions, continents and countries
never touch the city files. Places are looked up in cities15000.json first, by name then
by alternate name, and in cities500.json by name only.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import json
import math
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import NamedTuple

import numpy as np

from omnimap.core.errors import InputError
from omnimap.core.lru import LRUCache
from omnimap.geo import shapes
from omnimap.geo.bbox import BBox, wrap_lon
from omnimap.geo.grid import LatLonGrid
from omnimap.resources.packages import geonames_file

WORLD_NAMES = ("World", "Earth", "Globe")

# Place extents: half-size (degrees of latitude) is 0.5 up to 10k people and 1.5 from 10M
# people up, log-linear between. Longitude half-size is divided by cos(lat) so the box is
# roughly square on the ground, stretched at most MAX_LON_STRETCH times near the poles.
PLACE_HALF_MIN, PLACE_HALF_MAX = 0.5, 1.5
PLACE_POP_SMALL, PLACE_POP_LARGE = 1e4, 1e7
MAX_LON_STRETCH = 4.0

COUNTRY_ALIASES = {"uk": "GB", "great britain": "GB"}

CONTINENT_NAMES = shapes.CONTINENTS
# Masks of recent (shape, grid) pairs: a server's tiles ask for the same ones again.
MASK_CACHE_ENTRIES = 256
MASK_CACHE_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class Region:
    name: str  # canonical display name, e.g. "France", "Alps", "Paris, FR"
    kind: str  # "continent" | "country" | "natural" | "place" | "world"
    bbox: BBox  # for a shape: the extent of its polygons
    shape: str | None = None  # a country's ISO2 code or a continent's name; None: a box

    def geometry(self, resolution: float):
        """The region's polygons at the Natural Earth scale fit for ``resolution``, or None
        for a box."""
        if self.shape is None:
            return None
        if self.kind == "continent":
            return shapes.continent_shape(self.shape, resolution=resolution)
        return shapes.country_shape(self.shape, resolution=resolution)

    def mask(self, grid: LatLonGrid) -> np.ndarray | None:
        """Read-only (nrows, ncols) bool: True for the grid's cells inside the region's
        shape; None for a box region (every cell counts)."""
        if self.shape is None:
            return None
        return _masks.get_or_compute((self.kind, self.shape, grid), lambda: self._mask(grid))

    def _mask(self, grid: LatLonGrid) -> np.ndarray:
        mask = shapes.grid_mask(self.geometry(grid.resolution), grid)
        mask.flags.writeable = False
        return mask


_masks: LRUCache[np.ndarray] = LRUCache(MASK_CACHE_ENTRIES, MASK_CACHE_BYTES, lambda m: m.nbytes)


def resolve_region(name: str) -> Region:
    """The region called ``name``; InputError (one line, with suggestions) if none is."""
    key = _norm(name)
    if not key:
        raise InputError("region name is empty")
    for lookup in (_world, _natural_regions().get, _continent, _country, _place):
        region = lookup(key)
        if region is not None:
            return region
    raise InputError(_unknown_message(name.strip()))


def region_names() -> list[str]:
    """Canonical names of the world, natural regions, continents and countries.

    Populated places are accepted too but not listed (tens of thousands of them).
    """
    names = [WORLD_NAMES[0]]
    names += sorted({r.name for r in _natural_regions().values()})
    names += sorted(CONTINENT_NAMES)
    names += sorted(c["name"].strip() for c in _countries().values())
    return list(dict.fromkeys(names))  # Greenland, Antarctica: listed once


def _norm(text: str) -> str:
    """Casefolded, accents stripped, runs of whitespace collapsed: the matching key."""
    if text.isascii():  # most geonames names; much faster when indexing a city file
        return " ".join(text.lower().split())
    stripped = unicodedata.normalize("NFKD", text).translate(_combining_marks())
    return " ".join(stripped.casefold().split())


@cache
def _combining_marks() -> dict[int, None]:
    """str.translate table deleting every combining mark (the accents NFKD splits off)."""
    return {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.combining(chr(cp))}


def _unknown_message(name: str) -> str:
    key = _norm(name)
    # Regions first: "Alsp" should offer the Alps before Alsip, Illinois.
    suggestions: list[str] = []
    for pool in (_region_pool(), _place_pool()):
        matches = difflib.get_close_matches(key, pool, n=5, cutoff=0.6)
        suggestions += [pool[m] for m in matches]
    suggestions = list(dict.fromkeys(suggestions))[:5]
    if not suggestions:
        return f"unknown region {name!r}; use a continent, country, natural region or city name"
    return f"unknown region {name!r}; did you mean: {', '.join(suggestions)}?"


@cache
def _region_pool() -> dict[str, str]:
    """Normalised name or alias -> display name of natural regions, continents, countries."""
    pool = {key: region.name for key, region in _natural_regions().items()}
    pool.update(_continents())
    pool.update({_norm(c["name"]): c["name"].strip() for c in _countries().values()})
    return pool


@cache
def _place_pool() -> dict[str, str]:
    """Normalised name -> name of places of 15000+ people (cities500 is too big to load)."""
    by_name = _places_by_name("cities15000.json")
    return {key: places[0].name for key, places in by_name.items()}


def _world(key: str) -> Region | None:
    if key in (n.lower() for n in WORLD_NAMES):
        return Region(WORLD_NAMES[0], "world", BBox.world())
    return None


# --- natural regions and continents: small tables, no city files -------------------------


@cache
def _natural_regions() -> dict[str, Region]:
    """Normalised name or alias -> Region, from the curated natural_regions.json."""
    text = resources.files("omnimap.resources").joinpath("natural_regions.json").read_text("utf-8")
    table = {}
    for entry in json.loads(text)["regions"]:
        region = Region(entry["name"], "natural", BBox(*entry["bbox"]))
        for alias in [entry["name"], *entry["aliases"]]:
            table[_norm(alias)] = region
    return table


@cache
def _continents() -> dict[str, str]:
    """Normalised name -> continent name; the shapes load when one is asked for."""
    return {_norm(name): name for name in CONTINENT_NAMES}


def _continent(key: str) -> Region | None:
    name = _continents().get(key)
    if name is None:
        return None
    return Region(name, "continent", _continent_bbox(name), shape=name)


@cache
def _continent_bbox(name: str) -> BBox:
    return shapes.shape_bbox(shapes.continent_shape(name, scale="10m"))


# --- countries ---------------------------------------------------------------------------


@cache
def _countries() -> dict[str, dict]:
    """ISO2 code -> geonames country record."""
    return json.loads(geonames_file("countries.json").read_text("utf-8"))


@cache
def _country_codes() -> dict[str, str]:
    """Normalised country name, ISO2 or ISO3 code, or alias -> ISO2 code."""
    codes = dict(COUNTRY_ALIASES)
    for iso2, record in _countries().items():
        # geonames says "The Netherlands"; accept "Netherlands" too.
        name = _norm(record["name"])
        for key in (name, name.removeprefix("the "), _norm(iso2), _norm(record["iso3"])):
            codes[key] = iso2
    return codes


def _country(key: str) -> Region | None:
    iso2 = _country_codes().get(key)
    if iso2 is None:
        return None
    name = _countries()[iso2]["name"].strip()
    if shapes.find_country(iso2) is None:
        raise InputError(f"country {name!r} has no shape in {shapes.PIP_NAME!r}")
    bbox = shapes.shape_bbox(shapes.country_shape(iso2, scale="10m"))
    return Region(name, "country", bbox, shape=iso2)


def _wrapped_bbox(west: float, width: float, south: float, north: float) -> BBox:
    """A BBox from an unwrapped west edge and width: wraps longitudes, clamps latitudes."""
    south, north = max(south, -90.0), min(north, 90.0)
    if width >= 360.0:
        return BBox(-180.0, south, 180.0, north)
    east = wrap_lon(west + width)
    return BBox(wrap_lon(west), south, 180.0 if east == -180.0 else east, north)


# --- populated places --------------------------------------------------------------------


class _Place(NamedTuple):
    name: str
    country: str  # ISO2
    lat: float
    lon: float
    population: int


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building big acyclic tables of places.

    Otherwise it rescans the growing heap over and over, doubling the load time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_city_file(filename: str) -> dict[str, dict]:
    """geonameid -> raw place record; not memoised, cities500's take hundreds of MB."""
    return json.loads(geonames_file(filename).read_text("utf-8"))


def _as_place(rec: dict) -> _Place:
    return _Place(
        rec["name"], rec["countrycode"], rec["latitude"], rec["longitude"], rec["population"]
    )


@cache
@_gc_paused()
def _places(filename: str) -> list[_Place]:
    """Every place of a city file, compact: shared by place lookup and country extents."""
    return [_as_place(rec) for rec in _read_city_file(filename).values()]


@cache
@_gc_paused()
def _places_by_name(filename: str) -> dict[str, list[_Place]]:
    table: dict[str, list[_Place]] = {}
    for place in _places(filename):
        table.setdefault(_norm(place.name), []).append(place)
    return table


@cache
@_gc_paused()
def _places_by_alias() -> dict[str, list[_Place]]:
    """cities15000 places by geonames alternatenames (exonyms such as Munich, Moskva).

    cities500's 1.2 million alternatenames would take seconds to index on every unknown
    name, for small places rarely asked for by another name; those match by name only.
    """
    table: dict[str, list[_Place]] = {}
    for rec in _read_city_file("cities15000.json").values():
        place = _as_place(rec)
        for alias in {_norm(a) for a in rec["alternatenames"]}:
            table.setdefault(alias, []).append(place)
    return table


def _place(key: str) -> Region | None:
    """The most populous place called ``key``, optionally qualified as "name, country"."""
    name, country = key, None
    if "," in key:
        head, tail = (part.strip() for part in key.rsplit(",", 1))
        # Only a country qualifies; geonames names may contain commas themselves.
        if tail in _country_codes():
            name, country = head, _country_codes()[tail]
    for table in _place_tables():
        found = [p for p in table.get(name, []) if country in (None, p.country)]
        if found:
            return _place_region(max(found, key=lambda p: p.population))
    return None


def _place_tables() -> Iterator[dict[str, list[_Place]]]:
    """Lookup tables in order, each loaded only when the ones before it missed.

    Names before aliases, and cities15000 before cities500, which is 5x the size.
    """
    yield _places_by_name("cities15000.json")
    yield _places_by_alias()
    yield _places_by_name("cities500.json")


def _place_region(place: _Place) -> Region:
    half = _place_half_size(place.population)
    half_lon = half / max(math.cos(math.radians(place.lat)), 1.0 / MAX_LON_STRETCH)
    bbox = _wrapped_bbox(place.lon - half_lon, 2 * half_lon, place.lat - half, place.lat + half)
    return Region(f"{place.name}, {place.country}", "place", bbox)


def _place_half_size(population: int) -> float:
    low, high = math.log10(PLACE_POP_SMALL), math.log10(PLACE_POP_LARGE)
    t = (math.log10(max(population, 1)) - low) / (high - low)
    return PLACE_HALF_MIN + (PLACE_HALF_MAX - PLACE_HALF_MIN) * min(max(t, 0.0), 1.0)

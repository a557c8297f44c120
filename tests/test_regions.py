"""--region names: natural regions, continents, countries, places, and the extent cache."""

from __future__ import annotations

import pytest

from omnimap.core.errors import InputError
from omnimap.geo import regions
from omnimap.geo.regions import resolve_region

MONT_BLANC = (6.86, 45.83)
MATTERHORN = (7.66, 45.98)
PARIS = (2.35, 48.86)
MARSEILLE = (5.37, 43.30)
NEW_YORK = (-74.01, 40.71)
DENVER = (-104.99, 39.74)
MOSCOW = (37.62, 55.76)
VLADIVOSTOK = (131.89, 43.12)
PARIS_TEXAS = (-95.56, 33.66)
BERLIN = (13.40, 52.52)
NAIROBI = (36.82, -1.29)
SYDNEY = (151.21, -33.87)
AUCKLAND = (174.76, -36.85)
ANCHORAGE = (-149.90, 61.22)
HONOLULU = (-157.86, 21.31)


def contains(region, point) -> bool:
    return bool(region.bbox.contains(*point))


def test_alps_contain_mont_blanc_and_matterhorn():
    alps = resolve_region("Alps")
    assert (alps.name, alps.kind) == ("Alps", "natural")
    assert contains(alps, MONT_BLANC) and contains(alps, MATTERHORN)


@pytest.mark.parametrize("spelling", ["alps", "ALPS", " Alps ", "the  alps", "Alpes"])
def test_names_match_loosely(spelling):
    assert resolve_region(spelling) == resolve_region("Alps")


def test_natural_regions_and_continents_read_no_city_file(monkeypatch):
    def refuse(filename):
        raise AssertionError(f"{filename} was read")

    monkeypatch.setattr(regions, "_read_city_file", refuse)
    assert resolve_region("Himalaya").name == "Himalayas"
    assert resolve_region("Rockies").name == "Rocky Mountains"
    assert resolve_region("Europe").kind == "continent"


def test_precedence_world_natural_continent_country():
    assert resolve_region("Earth").kind == "world"
    assert resolve_region("globe").bbox.width == 360
    assert resolve_region("Greenland").kind == "natural"  # also a country
    assert resolve_region("Antarctica").kind == "continent"  # also a country


def test_france_is_metropolitan():
    france = resolve_region("France")
    assert (france.name, france.kind) == ("France", "country")
    assert contains(france, PARIS) and contains(france, MARSEILLE)
    assert not contains(france, NEW_YORK)
    assert france.bbox.west > -6  # no overseas territories
    assert resolve_region("FR") == resolve_region("fra") == france


def test_russia_and_fiji_cross_the_antimeridian():
    russia = resolve_region("Russia")
    assert russia.bbox.crosses_antimeridian
    assert contains(russia, MOSCOW) and contains(russia, VLADIVOSTOK)
    assert resolve_region("Fiji").bbox.crosses_antimeridian


def test_countries_keep_their_far_parts():
    assert resolve_region("Chile").bbox.west < -109  # Easter Island
    usa = resolve_region("United States")
    assert contains(usa, DENVER) and contains(usa, NEW_YORK)
    assert contains(usa, ANCHORAGE) and contains(usa, HONOLULU)
    assert (usa.kind, usa.shape) == ("country", "US")
    assert resolve_region("USA") == resolve_region("us") == usa


def test_places_pick_the_most_populous_or_the_named_country():
    paris = resolve_region("Paris")
    assert (paris.name, paris.kind) == ("Paris, FR", "place")
    assert contains(paris, PARIS)
    assert resolve_region("Paris, France") == paris
    paris_us = resolve_region("Paris, US")
    assert paris_us.name == "Paris, US"
    assert contains(paris_us, PARIS_TEXAS)


def test_place_names_ignore_accents():
    zurich = resolve_region("Zürich")
    assert zurich.name == "Zürich, CH"
    assert resolve_region("Zurich") == zurich


def test_place_boxes_wrap_and_clamp():
    fiji = regions._place_region(regions._Place("Taveuni", "FJ", -16.8, 179.9, 1000))
    assert fiji.bbox.crosses_antimeridian
    assert fiji.bbox.contains(179.9, -16.8) and fiji.bbox.contains(-179.9, -16.8)
    polar = regions._place_region(regions._Place("Pole", "AQ", 89.9, 0.0, 1000))
    assert polar.bbox.north == 90.0


def test_continents():
    assert contains(resolve_region("Europe"), BERLIN)
    assert contains(resolve_region("Africa"), NAIROBI)
    oceania = resolve_region("Oceania")
    assert contains(oceania, SYDNEY) and contains(oceania, AUCKLAND)
    assert oceania.bbox.crosses_antimeridian and oceania.bbox.width < 180


def test_unknown_name_suggests_on_one_line():
    with pytest.raises(InputError) as err:
        resolve_region("Alsp")
    message = str(err.value)
    assert "Alps" in message and "\n" not in message


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name_is_an_input_error(name):
    with pytest.raises(InputError):
        resolve_region(name)


def test_region_names_list_every_kind_once():
    names = regions.region_names()
    assert {"World", "Alps", "Europe", "France"} <= set(names)
    assert len(names) == len(set(names))

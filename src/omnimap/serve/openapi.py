"""What the OpenAPI schema says about the server, kept true to what it does (a
schemathesis run checks it): the parameters' types and bounds, every status code an
endpoint answers with, and each body's media type. The handlers still parse every
parameter themselves (:mod:`.params`); this only describes them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from omnimap.core.errors import InputError
from omnimap.geo.place import parse_bbox
from omnimap.geo.regions import region_names
from omnimap.maps.engine import MAX_QUERY_CHARS
from omnimap.serve import params

# A prompt: some non-space character, no control characters (params.prompt).
_PROMPT_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
# ISO-8601 dates of 1900-2100 (Feb 29 of any year: a 400 where it is not a leap year), optionally with a time and a UTC offset.
_DAY = r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-9]))"
_WHEN_PATTERN = (
    rf"^(19[0-9]{{2}}|20[0-9]{{2}})-{_DAY}"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?$"
)
_NUMBER = r"-?[0-9]{1,3}(\.[0-9]{1,6})?"

Prompt = Annotated[str, Query(
    description="What to map, in words (the CLI's prompt).", max_length=MAX_QUERY_CHARS,
    pattern=_PROMPT_PATTERN,
)]  # fmt: skip
When = Annotated[str | None, Query(
    description="ISO-8601 date-time; without an offset it is local solar time at every cell "
    "(the CLI's --when). Omitted: the time-free map.", max_length=64, pattern=_WHEN_PATTERN,
)]  # fmt: skip
BBoxParam = Annotated[str | None, Query(
    description="W,S,E,N in degrees (the CLI's --bbox); 400 unless S < N and W != E. "
    "Give a bbox or a region, not both.", max_length=200, pattern=rf"^{_NUMBER}(,{_NUMBER}){{3}}$",
)]  # fmt: skip
RegionParam = Annotated[str | None, Query(
    description="A named region (the CLI's --region): the world, a natural region, a "
    "continent or a country (their shapes: nodata outside), or a populated place.",
    max_length=200,
)]  # fmt: skip
TopK = Annotated[str | None, Query(
    description="How many places.", json_schema_extra={"type": "integer", "minimum": 1,
                                                       "maximum": params.MAX_TOP_K},
)]  # fmt: skip
Resolution = Annotated[str | None, Query(
    description="Cell size in degrees; 400 when the map would exceed the server's cells.",
    json_schema_extra={"type": "number", "minimum": 0.001, "maximum": 10.0},
)]  # fmt: skip
Zoom = Annotated[str, Path(json_schema_extra={"type": "integer", "minimum": 0,
                                              "maximum": params.MAX_ZOOM})]  # fmt: skip
TileIndex = Annotated[str, Path(
    description="0 to 2^z - 1 (400 beyond).", json_schema_extra={"type": "integer", "minimum": 0},
)]  # fmt: skip


AssetName = Annotated[str, Path(
    description="A file of the built page.", max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
)]  # fmt: skip


class Detail(BaseModel):
    detail: str


def _error(description: str) -> dict[str, Any]:
    return {"model": Detail, "description": description}


BAD_REQUEST = {400: _error("A parameter is wrong; the detail says which and why.")}
UNAVAILABLE = {503: _error("The model's data is missing, or the server is at its bound of "
                           "downloads (then with Retry-After).")}  # fmt: skip
NOT_MODIFIED = {304: {"description": "The ETag in If-None-Match still matches."}}


def binary(media_types: str | list[str], description: str) -> dict[int, dict[str, Any]]:
    types = [media_types] if isinstance(media_types, str) else media_types
    content = {t: {"schema": {"type": "string", "format": "binary"}} for t in types}
    return {200: {"content": content, "description": description}}


def geojson(description: str) -> dict[int, dict[str, Any]]:
    return {200: {"content": {"application/geo+json": {"schema": {"type": "object"}}},
                  "description": description}}  # fmt: skip


def validation_message(exc: RequestValidationError) -> str:
    """One line for people: the handlers' own parser's message where it has one (a
    missing or blank q says what q is; a bad date says how to write one)."""
    for error in exc.errors():
        name = str(error["loc"][-1])
        parse = _PARSERS.get(name)
        if parse is not None and error["type"] in ("missing", "string_pattern_mismatch"):
            try:
                parse(error.get("input") if error["type"] != "missing" else None)
            except InputError as err:
                return str(err)
        if error["type"] == "string_too_long":
            limit = error.get("ctx", {}).get("max_length")
            if name == "q":
                return f"q is {len(error['input'])} characters long; the limit is {limit}"
            return f"{name} is too long; the limit is {limit} characters"
        return f"{name}: {error['msg']}"
    return "bad request"


def _parse_when(text: str | None) -> None:
    params.when(text)
    raise InputError("when must be ISO-8601 such as 2024-01-15T09:00 (1900-2100)")


def _parse_bbox(text: str | None) -> None:
    parse_bbox(text or "")
    raise InputError("bbox must be W,S,E,N in degrees, e.g. 5,43,10,47")


def _parse_name(text: str | None) -> None:
    raise InputError(f"no asset {str(text)[:80]!r}")


_PARSERS = {"q": params.prompt, "when": _parse_when, "bbox": _parse_bbox, "name": _parse_name}


def describe(app: FastAPI) -> None:
    """Make ``app.openapi()`` list what the server answers: no 422 (validation errors
    are 400s), and a 414 on every operation (the URL limits apply before routing)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for path in schema["paths"].values():
                for operation in path.values():
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)
                    responses["414"] = {
                        "description": "The URL is longer than the server accepts.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}},
                    }
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            schemas["Detail"] = Detail.model_json_schema()
            _tidy_parameters(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _tidy_parameters(schema: dict) -> None:
    """A parameter described as an integer or number is that, not "string or null" (an
    optional query parameter is simply left out); the region lists the names it knows
    (places are accepted too)."""
    names = region_names()
    for path in schema["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                inner = parameter["schema"]
                if parameter["name"] == "region":
                    inner.update({"type": "string", "enum": names})
                if "type" in inner:
                    inner.pop("anyOf", None)
                elif "anyOf" in inner:  # optional strings: the string branch
                    inner.update(next(b for b in inner.pop("anyOf") if b.get("type") == "string"))

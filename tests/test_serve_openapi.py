"""The server's OpenAPI schema matches what it does: schemathesis, with all its checks,
against a real server on loopback (bounded examples; a formula stands in for a model)."""

from __future__ import annotations

import threading
import time
from itertools import product

import httpx
import numpy as np
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from omnimap.cli.serve import bind
from omnimap.geo.grid import LatLonGrid
from omnimap.serve.app import create_app

MAX_EXAMPLES = 25  # per operation: a bounded run, a few seconds each
MODEL_EXAMPLES = 8  # /locate scores its whole grid with a real (tiny) model
REQUEST_TIMEOUT_S = 120  # a loaded 2-core CI machine; the first calls load data


class FormulaScorer:
    """Smooth scores of the cell centres: the server's work without a model."""

    name, key, lattice = "formula", "formula-1", None

    def score(self, prompt, grid: LatLonGrid, when):
        lon, lat = np.meshgrid(grid.lons(), grid.lats())
        phase = (len(prompt) % 7) / 7.0
        return (np.cos(np.radians(lat)) * np.sin(np.radians(lon) + phase)).astype(np.float32)


def _serve(app):
    """The app on a loopback port, in a thread; (url, server)."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


@pytest.fixture(scope="module")
def servers(tmp_path_factory, tiny_model_dir):
    """A formula-backed server for the map endpoints (maps of up to 1.1M cells), and
    one with the tiny model for what needs a model itself (/locate)."""
    static = tmp_path_factory.mktemp("static")
    (static / "index.html").write_text("<!doctype html><title>omnimap</title>")
    running = [_serve(create_app(scorer=FormulaScorer(), static_dir=static)),
               _serve(create_app(str(tiny_model_dir), static_dir=static))]  # fmt: skip
    urls = {"formula": running[0][0], "model": running[1][0]}
    # First calls load the coastlines, the world map and the model: not what is tested.
    for name, path in (("formula", "/coastlines.geojson"), ("formula", "/legend?q=sea"),
                       ("model", "/locate?q=sea")):  # fmt: skip
        assert httpx.get(urls[name] + path, timeout=REQUEST_TIMEOUT_S).status_code == 200
    yield urls
    for _, server, thread in running:
        server.should_exit = True
        thread.join(10)


NEEDS_MODEL = {"/locate"}


def run_operation(operation, mode, base_url: str, examples: int) -> None:
    """Every check of schemathesis on ``examples`` generated requests of one operation."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case):
        case.call_and_validate(base_url=base_url, timeout=REQUEST_TIMEOUT_S)

    check()


@pytest.mark.slow
def test_the_server_does_what_its_schema_says(servers):
    schema = schemathesis.openapi.from_url(f"{servers['formula']}/openapi.json")
    # Rules across parameters that OpenAPI cannot state (x and y below 2^z, S < N, a
    # bbox or a region, the server's map size) make some schema-valid requests a
    # documented 400; each is still checked against the schema (status, Detail body).
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "400"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    failures = []
    assert NEEDS_MODEL <= {op.path for op in operations}
    for operation, mode in product(operations, GenerationMode):
        base_url = servers["model" if operation.path in NEEDS_MODEL else "formula"]
        examples = MAX_EXAMPLES if operation.path not in NEEDS_MODEL else MODEL_EXAMPLES
        try:
            run_operation(operation, mode, base_url, examples)
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # no schema-invalid request exists
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises groups; collect all
            if isinstance(exc, KeyboardInterrupt):
                raise
            inner = getattr(exc, "exceptions", ())
            detail = "; ".join(f"{type(e).__name__}: {e}"[:800] for e in inner) or str(exc)[:1500]
            failures.append(f"{operation.label} ({mode.value}): {detail}")
    assert not failures, "\n\n".join(failures)

"""The server's OpenAPI schema matches what it does: schemathesis, with all its checks,
against a real server on loopback (bounded examples; a formula stands in for a model)."""

from __future__ import annotations

import threading
import time
from itertools import product

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


class FormulaScorer:
    """Smooth scores of the cell centres: the server's work without a model."""

    name, key, lattice = "formula", "formula-1", None

    def score(self, prompt, grid: LatLonGrid, when):
        lon, lat = np.meshgrid(grid.lons(), grid.lats())
        phase = (len(prompt) % 7) / 7.0
        return (np.cos(np.radians(lat)) * np.sin(np.radians(lon) + phase)).astype(np.float32)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    static = tmp_path_factory.mktemp("static")
    (static / "index.html").write_text("<!doctype html><title>omnimap</title>")
    app = create_app(scorer=FormulaScorer(), static_dir=static)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.slow
def test_the_server_does_what_its_schema_says(base_url):
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    # Rules across parameters that OpenAPI cannot state (x and y below 2^z, S < N, a
    # bbox or a region, the server's map size) make some schema-valid requests a
    # documented 400; each is still checked against the schema (status, Detail body).
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "400"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    failures = []
    for operation, mode in product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case):
            case.call_and_validate(base_url=base_url)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # no schema-invalid request exists
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises groups; collect all
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)

"""Ray for field builds: checked and started before a field is written, its workers
fit the CPUs it sees, and its authentication is chosen before import (no warning)."""

from __future__ import annotations

import logging
import os
import sys
import types

import pytest
from typer.testing import CliRunner

from omnimap.cli.main import app
from omnimap.core.errors import DataError
from omnimap.fields import ray_engine


class FakeRay(types.ModuleType):
    """The few calls start_ray makes, recording the environment Ray would start in."""

    def __init__(self, cpus: int = 2, fail: Exception | None = None):
        super().__init__("ray")
        self.cpus, self.fail, self.up, self.auth_mode = cpus, fail, False, "unset"

    def is_initialized(self):
        return self.up

    def init(self, **_kw):
        self.auth_mode = os.environ.get("RAY_AUTH_MODE")
        if self.fail is not None:
            raise self.fail
        self.up = True

    def cluster_resources(self):
        return {"CPU": float(self.cpus)}

    def shutdown(self):
        self.up = False


@pytest.fixture()
def fake_ray(monkeypatch):
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    return ray


def build_args(out, tiny_model_dir, *extra):
    return ["field", "build", "--out", str(out), "--bbox", "0,40,4,44", "--resolution", "2",
            "--model", str(tiny_model_dir), "--engine", "ray", *extra]  # fmt: skip


def test_without_ray_the_build_says_how_to_get_it_and_writes_nothing(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # restored after the test
    out = tmp_path / "world.field"
    result = CliRunner().invoke(app, build_args(out, tiny_model_dir))
    assert isinstance(result.exception, DataError)
    message = str(result.exception)
    assert "pip install 'omnimap[ray]'" in message and "\n" not in message
    assert not out.exists()


def test_a_cluster_that_does_not_start_leaves_no_field(fake_ray, tmp_path, tiny_model_dir):
    fake_ray.fail = RuntimeError("Failed to start the raylet\n(many lines of log)")
    out = tmp_path / "world.field"
    result = CliRunner().invoke(app, build_args(out, tiny_model_dir, "--workers", "8"))
    assert isinstance(result.exception, DataError)
    assert str(result.exception) == "Ray's cluster did not start: Failed to start the raylet"
    assert not out.exists()


def test_workers_default_to_and_are_capped_at_the_cpus_ray_sees(fake_ray, caplog):
    assert ray_engine.start_ray(None) == 2
    assert ray_engine.start_ray(1) == 1
    with caplog.at_level(logging.WARNING, logger=ray_engine.__name__):
        assert ray_engine.start_ray(8) == 2
    assert "--workers 8: Ray sees 2 CPUs, so 2 actors run" in caplog.text
    fake_ray.cpus = 0
    with pytest.raises(DataError, match="no CPUs"):
        ray_engine.start_ray(None)


def test_a_local_cluster_gets_its_auth_mode_before_ray_starts(fake_ray, monkeypatch):
    ray_engine.start_ray(None)
    assert fake_ray.auth_mode == "token"  # said, so Ray does not warn that it chose it
    ray_engine.stop_ray()
    assert not fake_ray.up
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_ADDRESS", "ray://cluster:10001")
    ray_engine.start_ray(None)
    assert fake_ray.auth_mode is None  # a cluster we join keeps its own mode
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    fake_ray.up = False
    monkeypatch.delenv("RAY_ADDRESS")
    ray_engine.start_ray(None)
    assert fake_ray.auth_mode == "disabled"  # the user's choice stands

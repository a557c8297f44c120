"""What the Makefile's set-up promises: `make install` (and so `make demo`) builds the
web page, and `make test` says loudly when the browser test could not run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

NOTICE = "*** SKIPPED browser test: install chromium chromium-driver"


def make(*args: str) -> str:
    proc = subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    return proc.stdout


def test_missing_chromium_is_reported(tmp_path):
    missing = make("browser-check", f"CHROMIUM={tmp_path / 'chromium'}")
    assert NOTICE in missing and ".ci/run" in missing
    assert make("browser-check", "CHROMIUM=/bin/sh", "CHROMEDRIVER=/bin/sh") == ""


def test_make_test_reports_after_pytest_and_keeps_its_status():
    plan = make("-n", "-B", "test")
    run = next(line for line in plan.splitlines() if "pytest" in line)
    assert "SKIPPED browser test" in run and run.rstrip().endswith("exit $status")


def test_install_and_demo_build_the_web_page():
    for target in ("install", "demo"):
        plan = make("-n", "-B", target)
        assert "npm run --prefix web build" in plan, target

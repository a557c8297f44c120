"""The web page is part of the package: setup.py builds it with npm before the package
files are copied, so a wheel (from a clone or from the sdist) carries it."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _copy_sources(dest: Path) -> Path:
    """The files a clone has (git ls-files), without build outputs."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in files.stdout.decode().split("\0"):
        if name and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.fixture()
def tree(tmp_path):
    """setup.py and web/ as in a clone, with an ``npm`` that writes the page like the
    real build does (no network, no Node.js) and logs its calls."""
    root = tmp_path / "repo"
    (root / "src" / "omnimap" / "serve").mkdir(parents=True)
    shutil.copy2(REPO / "setup.py", root / "setup.py")
    shutil.copytree(REPO / "web", root / "web", ignore=shutil.ignore_patterns("node_modules"))
    fake = tmp_path / "npm"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import pathlib, sys
        root = pathlib.Path({str(root)!r})
        with open(root / "npm.log", "a") as log:
            log.write(" ".join(sys.argv[1:]) + "\\n")
        if sys.argv[1] == "ci":
            (root / "web" / "node_modules").mkdir(exist_ok=True)
            (root / "web" / "node_modules" / ".package-lock.json").write_text("{{}}")
        else:
            static = root / "src" / "omnimap" / "serve" / "static"
            static.mkdir(exist_ok=True)
            (static / "app.js").write_text("built")
            (static / "index.html").write_text("<!doctype html>")
        """))
    fake.chmod(0o755)
    return root, fake


def _hook(root: Path) -> dict:
    return runpy.run_path(str(root / "setup.py"), run_name="omnimap_setup")


def _npm_calls(root: Path) -> list[str]:
    log = root / "npm.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_build_runs_npm_once_and_again_when_a_source_changes(tree, monkeypatch):
    root, fake = tree
    monkeypatch.setenv("NPM", str(fake))
    hook = _hook(root)
    hook["build_page"]()
    calls = _npm_calls(root)
    assert [c.split()[0] for c in calls] == ["ci", "run"]
    assert (root / "src/omnimap/serve/static/index.html").is_file()
    hook["build_page"]()  # up to date: nothing runs
    assert _npm_calls(root) == calls
    source = root / "web/src/main.js"
    later = (root / "src/omnimap/serve/static/index.html").stat().st_mtime + 10
    os.utime(source, (later, later))
    hook["build_page"]()  # a newer source: built again (node_modules already there)
    assert [c.split()[0] for c in _npm_calls(root)] == ["ci", "run", "run"]


def test_without_npm_the_build_fails_in_one_line(tree, monkeypatch):
    root, _ = tree
    monkeypatch.setenv("NPM", str(root / "no-such-npm"))
    with pytest.raises(SystemExit) as exc:
        _hook(root)["build_page"]()
    message = str(exc.value)
    assert "needs npm" in message and "\n" not in message
    assert not (root / "src/omnimap/serve/static").exists()


def test_the_sdist_lists_the_web_sources():
    manifest = (REPO / "MANIFEST.in").read_text()
    for entry in ("web/package.json", "web/package-lock.json", "web/build.mjs",
                  "recursive-include web/src", "prune web/node_modules", "setup.py"):  # fmt: skip
        assert entry in manifest
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "/src/omnimap/serve/static/" in ignored  # built, never committed


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm (Node.js) to build the page")
def test_a_wheel_built_from_a_clone_carries_the_page(tmp_path):
    pytest.importorskip("build", reason="needs the 'build' package (dev extra)")
    root = _copy_sources(tmp_path / "clone")
    if (REPO / "web/node_modules/.package-lock.json").is_file():  # offline: reuse the install
        shutil.copytree(REPO / "web/node_modules", root / "web/node_modules", symlinks=True)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", "dist", "."],
        cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = (root / "dist").glob("omnimap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for asset in ("index.html", "app.js", "app.css"):
        assert f"omnimap/serve/static/{asset}" in names
    assert not any("node_modules" in n or n.startswith("web/") for n in names)

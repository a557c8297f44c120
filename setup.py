"""The wheel carries the web page: building the package builds it from web/ with npm.

Everything else about the package is in pyproject.toml. This hook only runs the npm
build (``npm ci`` then ``npm run build``, which writes src/omnimap/serve/static/)
before setuptools copies the package files, so ``python -m build`` and ``pip install``
from a clone or an sdist give an installation whose ``omnimap serve`` has its page.
The built files are never committed. A build that cannot make them fails with one
line saying what is missing, rather than yielding a package without its page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
STATIC = ROOT / "src" / "omnimap" / "serve" / "static"
PAGE = STATIC / "index.html"


def web_sources() -> list[Path]:
    files = [WEB / "package.json", WEB / "package-lock.json", WEB / "build.mjs"]
    return files + sorted(p for p in (WEB / "src").rglob("*") if p.is_file())


def page_is_current() -> bool:
    """True when the built page is newer than every source it is built from."""
    if not PAGE.is_file():
        return False
    built = min(p.stat().st_mtime for p in STATIC.iterdir() if p.is_file())
    return all(p.stat().st_mtime <= built for p in web_sources() if p.exists())


def build_page() -> None:
    if page_is_current():
        return
    if not (WEB / "package.json").is_file():
        if PAGE.is_file():
            return  # an sdist without web/ but with the built page
        raise SystemExit("omnimap: neither web/ nor a built page; cannot package the web map")
    npm = os.environ.get("NPM", "npm")
    if shutil.which(npm) is None:
        raise SystemExit(
            "omnimap: building the web map needs npm (Node.js 18+); install it, "
            "e.g. apt-get install npm, and build again"
        )
    if not (WEB / "node_modules" / ".package-lock.json").is_file():
        subprocess.run([npm, "ci", "--prefix", str(WEB), "--no-audit", "--no-fund"], check=True)
    subprocess.run([npm, "run", "--prefix", str(WEB), "build"], check=True)
    if not PAGE.is_file():
        raise SystemExit(f"omnimap: the npm build did not write {PAGE.relative_to(ROOT)}")


class BuildPyWithPage(build_py):
    def run(self) -> None:
        build_page()
        super().run()


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import it
    setup(cmdclass={"build_py": BuildPyWithPage})

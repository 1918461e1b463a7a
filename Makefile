# Two commands on a fresh machine: `make run` (main job, offline defaults) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
EXTRAS := pipeline,dashboards,ml,online,store,monitor,scale,dev
export PATH := $(BIN):$(PATH)
# PostgreSQL for the storage tests (tools/services.sh creates this role and database on loopback)
export TRADING_TEST_PG_URL ?= postgresql+psycopg://trading:trading@127.0.0.1:5432/trading_test
# torch's CPU wheel lies on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
WHEELS := $(wildcard /opt/wheels)
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check $(if $(WHEELS),--find-links $(WHEELS)) -c requirements.lock

.PHONY: run install services snapshot lab dashboard test nbtest pytest bench soak readme lock clean monitor

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP_INSTALL) 'torch==2.13.0'
	$(PIP_INSTALL) -e '.[$(EXTRAS)]'
	$(BIN)/trading-warmup  # compile the numba kernels into their on-disk cache now, not on a user's first call (the README's set-up step)
	touch $@

install: $(STAMP)

# Rebuilt only when the code that writes it changes; byte-identical output keeps data.dvc valid.
data/manifest.json: $(STAMP) $(wildcard trading/data/*.py)
	trading-data snapshot --source bundled --out data

snapshot: data/manifest.json

run: install snapshot
	dvc repro
	@echo
	@echo "Reports (HTML + metrics JSON):"
	@find reports -name '*.html' -o -name 'metrics.json' | sort | sed 's/^/  /'

# JupyterLab over the whole repository, on loopback only and with a token (jupyter-server generates one per start and
# prints the URL with it; JUPYTER_TOKEN=... sets your own, which is then not printed); no browser is opened,
# so it works on a remote machine too (ssh -L 8888:127.0.0.1:8888 ...). LAB_PORT=... picks another port.
LAB_PORT ?= 8888
lab: install
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser --notebook-dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root)

# The trading dashboard (Voila): 127.0.0.1 only, a fresh token printed with the URL (TRADING_DASHBOARD_TOKEN=... sets
# your own, which is then not printed), kernels without an open page culled after 10 min and at most 8 alive.
# DASHBOARD_PORT=... picks another port; the plain `voila` line is in nbs/apps/05_serve.ipynb.
DASHBOARD_PORT ?= 8866
dashboard: install snapshot
	$(PY) -m trading.apps.serve nbs/apps/dashboard.ipynb --port $(DASHBOARD_PORT)

# Debian packages and servers the integration tests use (Chromium now; PostgreSQL when storage lands).
services:
	tools/services.sh

nbtest: install snapshot  # some chapters read the pinned snapshot in data/
	nbdev-test --n-workers 2

# two workers, a test file per worker at a time (files share fixtures and scratch databases are per test): this machine has 2 cores
pytest: install snapshot services
	pytest -q -n 2 --dist loadfile

test: nbtest pytest

# Speed against the field's libraries and baselines, as ratios measured in the same run (not tests).
# Compiled kernels only (trading.core.jit's interpreted first call would otherwise time Python on an uncached signature);
# bench/cold_start.py sets the mode of each process it measures itself.
bench: export TRADING_KERNELS = compiled
bench: install snapshot services
	$(PY) bench/backtest_speed.py
	$(PY) bench/store_ingest.py
	$(PY) bench/risk_speed.py
	$(PY) bench/live_speed.py
	$(PY) bench/dask_speed.py  # research work on a 2-process LocalCluster vs one process: speed-up, identical numbers, task split
	$(PY) bench/rl_speed.py
	$(PY) bench/sentiment_speed.py  # encoder vs lexicons; the 100,000-headline goal extrapolated from 4,000 (--full measures it)
	$(PY) bench/stream_load.py  # WebSocket stream: 50 clients x 1,000 events/s, loss and p99 delivery latency
	$(PY) bench/dashboard_update_latency.py  # the dashboard on the stream vs polling the store: click -> state on screen
	$(PY) bench/perbar_speed.py
	$(PY) bench/cold_start.py
	$(PY) bench/csv_import.py --repeat 5
	$(PY) bench/sweep_progress.py  # the sweeps' progress bar on and off, as a ratio

# Crash harness: 1,000 SIGKILLs of a paper bot at named points of the order lifecycle, then 200 of a bot trading
# through alpaca-py against the loopback fake Alpaca (CI runs 50 + 20 of them in make test); the store's own soak:
# 4 writer processes racing over the same bars (600 trials per engine), 5 backups of a 150 MiB SQLite file (and of
# PostgreSQL) under a busy writer, 40 SIGKILLs of an ingest per engine; 5,000 mutated files through the importer;
# and the network layer's goals and fault suite at full size (make test runs all of them small).
soak: install
	$(PY) tests/soak.py --kills 1000
	$(PY) tests/soak.py --venue alpaca --kills 200
	$(PY) tests/soak_store.py --writers 4 --trials 50 --backups 5 --ballast-mib 150 --kills 40
	$(PY) tests/fuzz_input.py --cases 5000
	$(PY) tests/net_soak.py --full  # network layer: 1,000 orders vs the fake's (6x compressed) 200/min limit, 30 s drops x 10 min (20x compressed), faults
	$(PY) tests/soak_lock_bytes.py params.yaml  # the regime artifact: same bytes under 1 and 2 BLAS threads (dvc.lock stays put)
	$(PY) tests/soak_rl_bytes.py params.yaml  # the rl checkpoints and reports: same bytes under 1 and 2 BLAS threads, in-process and on dask workers
	$(PY) tests/dashboard_soak.py --loads 30 --cap 4  # dashboard: kernels capped/culled over 30 loads, 503 when all pages are open, paint and update latency

# Prometheus (127.0.0.1:9090) and Alertmanager (127.0.0.1:9093) with the configs in monitor/, data in artifacts/monitor;
# bots' exporters register in monitor/targets/. Ctrl-C stops both (nbs/monitor/02_services.ipynb).
monitor: install services
	$(PY) -c 'from trading.monitor.services import main; raise SystemExit(main())'

readme: install
	$(PY) tools/readme.py

# Refresh the pins after changing dependencies in pyproject.toml.
lock: install
	{ echo "# Exact versions the Makefile installs (pip constraints). Regenerate with: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | sort -f; } > requirements.lock

clean:
	rm -rf $(VENV) artifacts

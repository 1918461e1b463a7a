"""Voila dashboards served by a real Voila process on loopback, driven in headless Chromium by Playwright."""
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, ROOT

# the trading dashboard is rendered and driven by tests/test_dashboard_live.py (a bots' store of its own)
DASHBOARDS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "nbs" / "apps").glob("[!0-9_]*.ipynb") if p.name != "dashboard.ipynb")
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by tools/services.sh
# the closed network refuses Chromium's background connections; keep it from trying
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir():
    if not (ROOT / "data" / "manifest.json").exists():
        subprocess.run([BIN / "trading-data", "snapshot", "--out", ROOT / "data"], check=True, timeout=300)
    return ROOT / "data"


def start_voila(notebook: str, procs: list, env: dict | None = None, **serve_kw) -> str:
    "Serve `notebook` exactly as `make dashboard` does (loopback, a token, culled and capped kernels); returns the URL with the token."
    from trading.apps.serve import token_of, voila_argv
    port = _free_port()
    argv = voila_argv(notebook, port, voila=str(BIN / "voila"), **serve_kw) + ["--show_tracebacks=True"]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(proc)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "voila/static/", timeout=5).close()
            break
        except urllib.error.HTTPError:  # any HTTP answer means the server is up
            break
        except OSError:
            assert proc.poll() is None, f"voila exited with {proc.returncode}"
            time.sleep(0.3)
    else:
        raise AssertionError(f"voila did not come up for {notebook}")
    return f"{url}?token={token_of(argv)}"


@pytest.fixture
def voila(data_dir):
    "Start Voila for a dashboard notebook on a free loopback port; yields a function returning its URL (token included)."
    procs = []

    def start(notebook: str, **kw) -> str:
        return start_voila(notebook, procs, **kw)

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=30)


@pytest.mark.parametrize("notebook", DASHBOARDS)
def test_dashboard_renders_without_errors(notebook, voila):
    with urllib.request.urlopen(voila(notebook), timeout=120) as r:
        html = r.read().decode()
    assert "Traceback" not in html and "There was an error" not in html, html[-3000:]
    assert "application/vnd.jupyter.widget-view+json" in html  # the widget was built and displayed


def test_data_explorer_in_a_browser(voila, tmp_path):
    assert CHROMIUM.exists(), "Chromium is missing: run tools/services.sh (make test does)"
    from playwright.sync_api import sync_playwright

    url = voila("nbs/apps/data_explorer.ipynb")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1200})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, timeout=120_000)
        page.wait_for_selector(".bqplot path.line", timeout=120_000)
        status = page.locator("text=/symbols, .* bars \\(real data\\)/")
        first = status.inner_text()
        assert len(page.locator(".bqplot").first.locator("path.line").all()) >= 1
        # a person switches dataset: the status line and the chart follow
        page.select_option("select", "sp500")
        page.wait_for_function("() => document.body.innerText.includes('sp500: 1 symbols')", timeout=60_000)
        assert status.inner_text() != first and "1999-01-04" in status.inner_text()
        page.screenshot(path=str(tmp_path / "data_explorer.png"), full_page=True)
        browser.close()
    assert not errors, errors

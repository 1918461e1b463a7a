"""`dvc plots show` draws the pipeline's plots with no network: the page carries Vega itself (.dvc/plots/offline.html).

DVC's own page loads Vega from a CDN, which left the plots blank offline. Here the page is rendered in Chromium with
every non-file request refused, and the chart must draw one line per backtest run named in its legend.
"""
import csv

import pytest

from conftest import BIN, ROOT, run
from test_dashboards import CHROMIUM, CHROMIUM_ARGS

playwright = pytest.importorskip("playwright.sync_api")


def test_dvc_plots_render_offline(tmp_path):
    if not CHROMIUM.exists(): pytest.skip("Chromium is not installed (make services installs it)")
    out = tmp_path / "dvc_plots"
    run(BIN / "dvc", "plots", "show", "-o", out)
    page_html = (out / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in page_html and "vegaEmbed" in page_html
    with open(ROOT / "reports" / "backtests" / "equity.csv") as f: runs = next(csv.reader(f))[1:]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        asked = []
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else (asked.append(r.request.url), r.abort()))
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "index.html").as_uri())
        page.wait_for_selector("svg .role-legend", timeout=30_000)  # vega-embed drew the chart and its legend
        labels = page.evaluate("() => [...document.querySelectorAll('svg .role-legend-label text')].map(t => t.textContent)")
        lines = page.locator("svg .mark-line.role-mark path").count()
        browser.close()
    assert not asked, f"the plot page asked the network for {asked[:3]}"
    assert not errors, errors
    assert set(runs) <= set(labels), (runs, labels)  # every run named in the legend
    assert lines >= len(runs), (lines, runs)  # and drawn

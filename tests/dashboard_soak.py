"""Dashboard serving soak and latency benchmark (make soak): many page loads stay under the kernel cap and are culled;
with every allowed page open (connected) one more load gets 503; first meaningful paint and update latency measured.

    python tests/dashboard_soak.py --loads 30 --cap 4
"""
import argparse
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_dashboard_live import _field, _select, _tab, kernels  # noqa: E402
from test_dashboards import CHROMIUM, CHROMIUM_ARGS, start_voila  # noqa: E402


def tiny_notebook(d: Path) -> Path:
    nb = d / "tiny.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                                         "source": ["import ipywidgets as w\nw.HTML('page')"]}],
                              "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}))
    return nb


def wait_kernels(pid, target, timeout=120):
    deadline = time.monotonic() + timeout
    while kernels(pid) > target and time.monotonic() < deadline: time.sleep(0.5)
    return kernels(pid)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loads", type=int, default=30)
    ap.add_argument("--cap", type=int, default=4)
    a = ap.parse_args()
    from playwright.sync_api import expect, sync_playwright
    procs, ok = [], True
    tmp = Path(tempfile.mkdtemp())
    try:
        # the idle timeout must outlast a page's render-then-connect gap (seconds on a busy machine), else an open page loses its kernel
        url = start_voila(str(tiny_notebook(tmp)), procs, max_kernels=a.cap, cull_idle_timeout=20, cull_interval=2)
        pid = procs[-1].pid
        peak = 0
        for _ in range(a.loads):
            urllib.request.urlopen(url, timeout=120).read()
            peak = max(peak, kernels(pid))
        left = wait_kernels(pid, 0, timeout=180)
        print(f"{a.loads} loads: at most {peak} kernels (cap {a.cap}); {left} left after idling")
        ok &= peak <= a.cap and left == 0
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            pages = [browser.new_page() for _ in range(a.cap)]
            for p in pages:
                p.goto(url, timeout=120_000)
                expect(p.get_by_text("page").first).to_be_visible(timeout=120_000)
            time.sleep(25)  # longer than the idle timeout: connected pages keep their kernels
            kept = kernels(pid)
            try:
                urllib.request.urlopen(url, timeout=120).read(); refused = None
            except urllib.error.HTTPError as e:
                refused = e.code
            print(f"{a.cap} pages open: {kept} kernels kept past the idle timeout; one more load -> HTTP {refused}")
            ok &= kept == a.cap and refused == 503
            for p in pages: p.close()
            left = wait_kernels(pid, 0, timeout=180)
            print(f"pages closed: {left} kernels left after the timeout")
            ok &= left == 0
            # the trading dashboard: first meaningful paint and update latency
            env = {"TRADING_DB_URL": f"sqlite:///{tmp / 'bots.db'}", "TRADING_DASHBOARD_STATE_DIR": str(tmp / "bots")}
            durl = start_voila("nbs/apps/dashboard.ipynb", procs, env=env)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t = time.monotonic()
            page.goto(durl, timeout=180_000)
            expect(page.locator(".bots-header")).to_contain_text("none yet", timeout=180_000)
            paint = time.monotonic() - t
            _tab(page, "Control")
            _field(page, "Bot name").fill("bench")
            _select(page, "Strategy").select_option("buy_and_hold")
            _field(page, "Params").fill("{}")
            _field(page, "s / bar").fill("1"); _field(page, "s / bar").press("Enter")
            page.get_by_role("button", name="Start bot").click()
            expect(page.locator(".control-msg")).to_contain_text("started", timeout=60_000)
            _tab(page, "Execution")
            expect(page.locator("table.fills-table", has_text="AAPL").first).to_be_visible(timeout=60_000)
            _tab(page, "Control")
            _field(page, "Symbol").fill("AAPL"); _select(page, "Side").select_option("sell"); _field(page, "Qty").fill("1")
            t = time.monotonic()
            page.get_by_role("button", name="Send order").click()
            expect(page.locator(".control-msg")).to_contain_text("accepted", timeout=30_000)
            cid = page.locator(".control-msg").inner_text().split("order ", 1)[1].split(" ", 1)[0]
            _tab(page, "Execution")
            expect(page.locator("table.fills-table", has_text=cid).first).to_be_visible(timeout=30_000)
            fill_latency = time.monotonic() - t
            _tab(page, "Control")
            t = time.monotonic()
            page.get_by_role("button", name="Halt").click()
            expect(page.locator(".bots-header")).to_contain_text("bench · paper · halted", timeout=30_000)
            halt_latency = time.monotonic() - t
            print(f"dashboard: first meaningful paint {paint:.1f} s; ticket click -> fill on screen {fill_latency:.1f} s "
                  f"(includes waiting for the next 1 s bar); halt click -> state on screen {halt_latency:.1f} s (poll interval 1 s)")
            browser.close()
    finally:
        for p in procs:
            p.terminate(); p.wait(timeout=30)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

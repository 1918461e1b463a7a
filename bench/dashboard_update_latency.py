"""Dashboard update latency: the stream against the store poller it replaced as the default when a stream server runs.

The same page (nbs/apps/dashboard.ipynb served as `make dashboard` serves it, in headless Chromium) runs a paper bot
started from its panel; a person clicks Halt, then Resume, and we time each click until the new state is on screen.
The state change is journalled at once by the click (it does not wait for a bar), so the time is the feed's:
  poll    no stream configured: the page reads the store's journal every `interval` (1 s)
  stream  TRADING_STREAM_URL/TOKEN set: a stream server reads the journal every --publish-interval (default 0.1 s) and
          pushes over the WebSocket; the page's client wakes it at once
Prints median (min-max) of --rounds clicks per mode and the ratio poll / stream. Wall time, one browser, this machine.

    python bench/dashboard_update_latency.py --rounds 6
"""
import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_dashboard_live import _field, _select, _tab  # noqa: E402
from test_dashboards import CHROMIUM, CHROMIUM_ARGS, start_voila  # noqa: E402


def clicks(browser, url: str, rounds: int) -> list[float]:
    "Seconds from a Halt/Resume click to the new state in the page's header, `rounds` times each."
    from playwright.sync_api import expect
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url, timeout=180_000)
    header = page.locator(".bots-header")
    expect(header).to_contain_text("none yet", timeout=180_000)
    _tab(page, "Control")
    _field(page, "Bot name").fill("lat")
    _select(page, "Strategy").select_option("buy_and_hold")
    _field(page, "Params").fill("{}")
    _field(page, "Bars").fill("2000"); _field(page, "Bars").press("Enter")
    _field(page, "s / bar").fill("1"); _field(page, "s / bar").press("Enter")
    page.get_by_role("button", name="Start bot").click()
    expect(header).to_contain_text("lat · paper · active", timeout=60_000)
    _tab(page, "Execution")
    expect(page.locator("table.fills-table", has_text="AAPL").first).to_be_visible(timeout=60_000)  # trading (past its warm-up)
    _tab(page, "Control")
    out = []
    for _ in range(rounds):
        for button, state in (("Halt", "halted"), ("Resume", "active")):
            t = time.monotonic()
            page.get_by_role("button", name=button).click()
            try: expect(header).to_contain_text(f"lat · paper · {state}", timeout=30_000)
            except AssertionError: raise AssertionError(f"{button}: {page.locator('.control-msg').inner_text()} | {page.locator('.feed-status').inner_text()}") from None
            out.append(time.monotonic() - t)
    page.get_by_role("button", name="Stop bot").click()
    page.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6, help="Halt+Resume pairs per mode")
    ap.add_argument("--modes", default="poll,stream", help="comma-separated: poll, stream")
    ap.add_argument("--publish-interval", type=float, default=0.1, help="seconds between the stream server's reads of the store")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright
    from trading.monitor.stream import JournalPublisher, StreamHub, StreamServer
    from trading.store.engine import make_engine
    res, procs = {}, []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for mode in a.modes.split(","):
                tmp = Path(tempfile.mkdtemp())
                env = {"TRADING_DB_URL": f"sqlite:///{tmp / 'bots.db'}", "TRADING_DASHBOARD_STATE_DIR": str(tmp / "bots")}
                srv = pub = None
                if mode == "stream":
                    token = secrets.token_urlsafe(24)
                    srv = StreamServer(StreamHub(), token).start()
                    pub = JournalPublisher(make_engine(env["TRADING_DB_URL"]), srv.hub, interval=a.publish_interval).start()
                    env |= {"TRADING_STREAM_URL": srv.url, "TRADING_STREAM_TOKEN": token}
                try:
                    res[mode] = clicks(browser, start_voila("nbs/apps/dashboard.ipynb", procs, env=env), a.rounds)
                finally:
                    if pub: pub.stop()
                    if srv: srv.stop()
                    for p in procs: p.terminate(); p.wait(timeout=30)
                    procs.clear()
        finally:
            browser.close()
    med = {m: statistics.median(v) for m, v in res.items()}
    for m, v in res.items():
        print(f"{m:6s} click -> state on screen: median {med[m] * 1e3:6.0f} ms  (min {min(v) * 1e3:.0f}, max {max(v) * 1e3:.0f}; {len(v)} clicks)")
    if len(med) == 2: print(f"poll / stream median ratio: {med['poll'] / med['stream']:.1f}x (stream server reading the store every {a.publish_interval} s; the page's poll interval 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The trading dashboard served as `make dashboard` serves it, driven in headless Chromium: the token, a paper bot started
from the panel, a ticket order filled and the P&L moving as they arrive through the WebSocket stream (the dashboard reads
no events from the store), a risk reject with its reason, a halt; and the kernel culling and cap."""
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest

from sqlalchemy import select

from conftest import ROOT
from test_dashboards import CHROMIUM, CHROMIUM_ARGS, _free_port, start_voila
from trading.monitor.stream import JournalPublisher, StreamHub, StreamServer
from trading.store.engine import make_engine, read
from trading.store.schema import fills, orders

VIEWS = ("Portfolio", "Bots", "Execution", "Risk", "News", "Control", "Research")


def kernels(pid: int) -> int:
    "Kernel processes a Voila server has running now."
    try:
        return sum("ipykernel" in " ".join(c.cmdline()) for c in psutil.Process(pid).children(recursive=True) if c.is_running())
    except psutil.NoSuchProcess:
        return 0


@pytest.fixture
def servers():
    procs = []
    yield procs
    for p in procs:
        p.terminate()
        p.wait(timeout=30)


def _get(url: str) -> tuple[str, str]:
    "(final URL after redirects, body) of a GET."
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.geturl(), r.read().decode()


def test_kernels_are_capped_and_culled(servers, tmp_path):
    "Voila's default kept one kernel per load forever (8 loads, 9 kernels); here they stay under the cap and go once idle."
    nb = tmp_path / "tiny.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": ["print('page')"]}],
                              "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}))
    url = start_voila(str(nb), servers, max_kernels=2, cull_idle_timeout=3, cull_interval=1)
    pid = servers[-1].pid
    base = url.split("?")[0]
    # no token: the login page, and no kernel spent on the request
    final, body = _get(base)
    assert "/login" in final and "print(" not in body
    assert kernels(pid) == 0
    counts = []
    for _ in range(5):
        final, body = _get(url)
        assert "page" in body and "/login" not in final
        counts.append(kernels(pid))
    assert max(counts) <= 2, counts
    deadline = time.monotonic() + 60
    while kernels(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert kernels(pid) == 0, "idle kernels of closed pages were not culled"


def _field(page, label: str):
    return page.locator(f".widget-inline-hbox:has(> label:text-is('{label}')) input").first


def _select(page, label: str):
    return page.locator(f".widget-inline-hbox:has(> label:text-is('{label}')) select").first


def _tab(page, title: str):
    page.locator(".lm-TabBar-tab", has_text=title).first.click()


def _no_horizontal_overflow(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.fixture
def stream(tmp_path):
    "A stream server publishing the test store's journal (what `python -m trading.monitor.stream` runs), here so the test can pause it."
    db_url = f"sqlite:///{tmp_path / 'bots.db'}"
    token = secrets.token_urlsafe(24)
    srv = StreamServer(StreamHub(), token).start()
    engine = make_engine(db_url)
    publisher = JournalPublisher(engine, srv.hub, interval=0.1).start()
    yield db_url, srv, token, publisher
    publisher.stop(); srv.stop(); engine.dispose()


def _filled(engine, client_order_id: str) -> bool:
    with read(engine) as conn:
        return conn.execute(select(fills.c.id).join(orders, orders.c.id == fills.c.order_id).where(orders.c.client_order_id == client_order_id)).first() is not None


def test_dashboard_steers_a_paper_bot_in_a_browser(servers, tmp_path, stream):
    assert CHROMIUM.exists(), "Chromium is missing: run tools/services.sh (make test does)"
    from playwright.sync_api import expect, sync_playwright

    t0 = time.monotonic()
    lap = lambda what: print(f"{time.monotonic() - t0:6.1f} s  {what}")  # where the wall time goes (pytest -s)
    db_url, srv, token, publisher = stream
    env = {"TRADING_DB_URL": db_url, "TRADING_DASHBOARD_STATE_DIR": str(tmp_path / "bots"),
           "TRADING_STREAM_URL": srv.url, "TRADING_STREAM_TOKEN": token}
    url = start_voila("nbs/apps/dashboard.ipynb", servers, env=env)
    lap("voila up")
    base = url.split("?")[0]
    # only loopback listens (the machine's other addresses refuse the port)
    port = int(base.rsplit(":", 1)[1].strip("/"))
    for addr in {a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET} - {"127.0.0.1"}:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, port)) != 0, f"the dashboard answers on {addr}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        lap("browser up")
        # refused without the token
        page.goto(base, timeout=120_000)
        assert "/login" in page.url and page.locator(".bots-header").count() == 0
        # logged in with it
        page.goto(url, timeout=180_000)
        header = page.locator(".bots-header")
        expect(header).to_contain_text("none yet", timeout=120_000)
        expect(page.locator(".feed-status").first).to_contain_text(f"live via stream {srv.url}", timeout=30_000)  # subscribed, not polling the store
        lap("page rendered")
        # start a paper bot from the panel
        _tab(page, "Control")
        _field(page, "Bot name").fill("pw-bot")
        _select(page, "Strategy").select_option("buy_and_hold")  # buys once, then holds: the ticket below is deterministic
        _field(page, "Params").fill("{}")
        _field(page, "Bars").fill("150"); _field(page, "Bars").press("Enter")
        _field(page, "s / bar").fill("0.25"); _field(page, "s / bar").press("Enter")
        page.get_by_role("button", name="Start bot").click()
        msg = page.locator(".control-msg")
        expect(msg).to_contain_text("started pw-bot on paper", timeout=60_000)
        expect(header).to_contain_text("pw-bot · paper · active", timeout=30_000)  # the broker, always on screen
        lap("bot started")
        _tab(page, "Execution")
        expect(page.locator("table.fills-table", has_text="AAPL").first).to_be_visible(timeout=60_000)  # the bot bought
        lap("bot invested")
        # an order from the ticket (a sale from the position: the bot holds no spare cash): accepted, filled on the next bar.
        # The stream is paused meanwhile: the fill is in the store but must not reach the page until the stream carries it.
        publisher.stop()
        _tab(page, "Control")
        _field(page, "Symbol").fill("AAPL")
        _select(page, "Side").select_option("sell")
        _field(page, "Qty").fill("1")
        page.get_by_role("button", name="Send order").click()
        expect(msg).to_contain_text("accepted", timeout=30_000)
        cid = msg.inner_text().split("order ", 1)[1].split(" ", 1)[0]
        journal = make_engine(db_url)
        deadline = time.monotonic() + 30
        while not _filled(journal, cid):
            assert time.monotonic() < deadline, "the ticket order was never filled"
            time.sleep(0.1)
        _tab(page, "Execution")
        page.wait_for_timeout(2_500)  # over two of the fallback's poll intervals: a store poller would have shown it by now
        assert page.locator("table.fills-table", has_text=cid).count() == 0, "the fill reached the page without the stream"
        publisher.start()
        expect(page.locator("table.fills-table", has_text=cid).first).to_be_visible(timeout=30_000)  # the fill arrived through the stream, no reload
        streamed, _ = srv.hub.replay("fills", 0)
        assert any(cid in text for _, text in streamed)  # published by the stream server ...
        assert page.locator(".feed-status", has_text="over the WebSocket").count() == 1  # ... and received by the page's WebSocket client
        journal.dispose()
        lap("fill seen")
        # the P&L line moves while the bot runs
        _tab(page, "Portfolio")
        summary = page.locator("text=/Equity .* Cash/").first
        expect(summary).to_be_visible(timeout=30_000)
        first = summary.inner_text()
        page.wait_for_function(f"() => !document.body.innerText.includes({json.dumps(first)})", timeout=30_000)
        lap("P&L moved")
        # an oversized order: refused by the gross-exposure limit, with the reason on screen
        _tab(page, "Control")
        _select(page, "Side").select_option("buy")
        _field(page, "Qty").fill("1000000")
        page.get_by_role("button", name="Send order").click()
        expect(msg).to_contain_text("rejected", timeout=30_000)
        expect(msg).to_contain_text("gross", timeout=5_000)
        _tab(page, "Execution")
        expect(page.locator("table.rejects-table", has_text="max_gross").first).to_be_visible(timeout=30_000)
        lap("reject seen")
        # halt: the state changes on screen
        _tab(page, "Control")
        page.get_by_role("button", name="Halt").click()
        expect(header).to_contain_text("pw-bot · paper · halted", timeout=30_000)
        lap("halted")
        # every view: a screenshot, and nothing wider than the window
        shots = tmp_path / "screens"
        shots.mkdir()
        for view in VIEWS:
            _tab(page, view)
            page.wait_for_timeout(800 if view != "Research" else 100)
            if view == "Risk":  # the heatmap is computed on first view
                expect(page.get_by_text("Correlation of daily returns").first).to_be_visible(timeout=60_000)
            if view == "Research":
                expect(page.locator("h3", has_text="Backtest explorer").first).to_be_visible(timeout=120_000)
                expect(page.locator("h3", has_text="Data explorer").first).to_be_visible(timeout=120_000)
                page.wait_for_selector(".bqplot path.line >> visible=true", timeout=60_000)
            page.screenshot(path=str(shots / f"{view.lower()}.png"), full_page=True)
            if os.environ.get("DASHBOARD_SCREENSHOTS"):  # the docs' pictures (nbs/apps/images)
                page.screenshot(path=str(ROOT / os.environ["DASHBOARD_SCREENSHOTS"] / f"dashboard_{view.lower()}.png"), full_page=True)
            assert _no_horizontal_overflow(page), f"{view}: the page scrolls sideways"
            lap(f"screenshot {view}")
        _tab(page, "Control")
        page.get_by_role("button", name="Stop bot").click()
        expect(msg).to_contain_text("stopped", timeout=30_000)
        browser.close()
    assert not errors, errors


def test_make_dashboard_serves_the_page_live_from_a_stream_of_its_own(tmp_path):
    "`python -m trading.apps.serve` (what `make dashboard` runs) starts a journal stream beside Voila and points the page at it; stopped, it stops both."
    assert CHROMIUM.exists(), "Chromium is missing: run tools/services.sh (make test does)"
    from playwright.sync_api import expect, sync_playwright
    port, token = _free_port(), secrets.token_urlsafe(24)
    env = {**os.environ, "TRADING_DB_URL": f"sqlite:///{tmp_path}/bots.db", "TRADING_DASHBOARD_STATE_DIR": str(tmp_path / "bots"),
           "TRADING_DASHBOARD_TOKEN": token}
    for configured in ("TRADING_STREAM_URL", "TRADING_STREAM_TOKEN"): env.pop(configured, None)
    proc = subprocess.Popen([sys.executable, "-m", "trading.apps.serve", "nbs/apps/dashboard.ipynb", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        printed = [proc.stdout.readline() for _ in range(3)]
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        assert printed[0].startswith(f"Dashboard: http://127.0.0.1:{port}/?token=") and token not in "".join(printed), printed
        assert printed[2].startswith("Live updates: journal stream ws://127.0.0.1:"), printed
        stream_port = int(printed[2].strip().rsplit(":", 1)[1])
        deadline = time.monotonic() + 90
        while True:
            try: urllib.request.urlopen(f"http://127.0.0.1:{port}/voila/static/", timeout=5).close(); break
            except urllib.error.HTTPError: break  # any HTTP answer: up
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the dashboard did not come up"
                time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/?token={token}", timeout=180_000)
            expect(page.locator(".feed-status").first).to_contain_text(f"live via stream ws://127.0.0.1:{stream_port}", timeout=120_000)
            browser.close()
        children = psutil.Process(proc.pid).children()
        assert len(children) == 2, [c.cmdline() for c in children]  # voila and the stream
    finally:
        proc.terminate()
        code = proc.wait(timeout=60)
    assert code == 0
    for child in children: assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child.cmdline()
    for p in (port, stream_port):
        with socket.socket() as s: assert s.connect_ex(("127.0.0.1", p)) != 0, f"port {p} still answers after the dashboard stopped"

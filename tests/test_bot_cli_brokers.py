"""`trading-bot run --broker alpaca | ccxt:binance` as a real process on the wall clock, against loopback fakes (no internet).

The test process serves the fake venue (trading API on a `PaperVenue`, the venue's book is the oracle) and the fake
market-data API; every new fetch of the bot reveals one more completed daily bar and moves the venue's price to its
close. A 429 and an accept-then-time-out are injected on order submits during the run. Afterwards the journal
(read by `trading-bot orders/positions/reconcile` and from the store) must agree with the venue, with no order sent twice.
"""
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest
from sqlalchemy import create_engine, select

from fakes.alpaca_server import AlpacaServer, make_bars
from fakes.alpaca_trading_server import AlpacaTradingServer
from fakes.binance_trading_server import RollingBinance
from fakes.exchange_server import make_candles
from trading.data.calendars import expected_timestamps
from trading.store.schema import orders as orders_t

KEY, SECRET = "PKCLIBROKER42", "cli-broker-secret-value-31"
CCXT_KEY, CCXT_SECRET = "cli-binance-key-77", "cli-binance-secret-value-55"
PARAMS = '{"fast": 2, "slow": 6, "allocation": "equal"}'
WARM, TRADE = 30, 12  # bars visible at the first fetch, then one more per loop
TIMEOUT = 1.0  # the bot's --request-timeout, seconds


def bot_exe() -> list[str]:
    exe = Path(sys.executable).parent / "trading-bot"
    return [str(exe)] if exe.exists() else [shutil.which("trading-bot")]


def run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_", "APCA_"))}
    env.update(APCA_API_KEY_ID=KEY, APCA_API_SECRET_KEY=SECRET, TRADING_CCXT_API_KEY=CCXT_KEY, TRADING_CCXT_SECRET=CCXT_SECRET)
    return subprocess.run(bot_exe() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def journal(db: Path, name: str) -> dict:
    eng = create_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as conn:
            rows = conn.execute(select(orders_t.c.client_order_id, orders_t.c.status, orders_t.c.filled_qty).where(orders_t.c.run_id == name)).all()
    finally:
        eng.dispose()
    return {r.client_order_id: (r.status, Decimal(r.filled_qty)) for r in rows}


def positions_printed(out: str) -> dict:
    return {} if out.strip() == "(flat)" else {s: Decimal(q) for s, q in (line.split() for line in out.strip().splitlines())}


def decisions(cids) -> list:
    "(decision, seq) per client id: one venue order each, or something was sent twice."
    return [tuple(c.rsplit("-", 2)[1:]) for c in cids]


# -- Alpaca ---------------------------------------------------------------------------------------------------------

SYMBOLS = ["AAPL", "JPM", "XOM"]
_today = pd.Timestamp.now(tz="UTC").normalize()
SESSIONS = list(expected_timestamps("XNYS", _today - pd.Timedelta(days=200), _today - pd.Timedelta(days=1)))[-(WARM + TRADE):]
STAMPS = [pd.Timestamp(s.date(), tz="America/New_York").tz_convert("UTC") for s in SESSIONS]  # Alpaca: daily bars open at midnight New York
FULL = {s: make_bars(STAMPS, seed=i + 1, price=p) for i, (s, p) in enumerate(zip(SYMBOLS, [180.0, 150.0, 110.0]))}


class RollingAlpacaData(AlpacaServer):
    "Alpaca's data API where each new bars request (not a page of one) sees one more bar; the venue's price follows."
    def __init__(self, trading: AlpacaTradingServer, **kw):
        super().__init__({s: b[:WARM - 1] for s, b in FULL.items()}, **kw)
        self.trading, self.visible, self.fetches = trading, WARM - 1, 0

    def route(self, path, query, headers):
        if path == "/v2/stocks/bars" and not query.get("page_token"):
            self.fetches += 1
            self.visible = min(self.visible + 1, len(STAMPS))
            for s, bars in FULL.items():
                self.stock_bars[s] = bars[:self.visible]
                self.trading.set_price(s, bars[self.visible - 1]["c"])
        return super().route(path, query, headers)


@pytest.fixture
def alpaca():
    trading = AlpacaTradingServer(keys=(KEY, SECRET)).start()
    for s, bars in FULL.items():
        trading.add_asset(s, bars[WARM - 2]["c"])
    data = RollingAlpacaData(trading, keys=(KEY, SECRET)).start()
    yield trading, data
    data.stop()
    trading.stop()


def test_alpaca_bot_process_matches_the_venue_through_faults(alpaca, tmp_path):
    trading, data = alpaca
    db, name = tmp_path / "bots.db", "cli-alpaca"
    common = ["--db", f"sqlite:///{db}", "--state-dir", str(tmp_path / "bots"), "--name", name]
    # the first order POST is throttled (refused before acting); the next one takes effect and its answer never comes in time
    trading.fault("/v2/orders", status=429, method="POST", headers={"Retry-After": "0"}, body='{"code": 42910000, "message": "rate limit exceeded"}')
    trading.fault("/v2/orders", status=200, method="POST", after=True, delay=TIMEOUT + 1.0)
    r = run(["run", "--strategy", "sma_crossover", "--params", PARAMS, "--broker", "alpaca", "--symbols", ",".join(SYMBOLS),
             "--iterations", str(TRADE), "--interval", "0", "--lookback-days", "120", "--request-timeout", str(TIMEOUT),
             "--trading-url", trading.url, "--data-url", data.url, *common], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(paper)" in r.stdout and "reconciled (ok)" in r.stdout
    assert data.fetches == TRADE

    venue = trading.venue
    posts = [json.loads(b) for m, p, _, b in trading.log if (m, p) == ("POST", "/v2/orders")]
    assert len(venue.orders) >= 3, "the strategy should have traded"
    # orders at the venue == orders in the journal, status and filled quantity included
    j = journal(db, name)
    assert set(j) == set(venue.orders)
    assert all(j[c] == (o.status.value, o.filled_qty) for c, o in venue.orders.items()), (j, venue.orders)
    # no duplicates: one POST per intent, plus the throttled one's second try; no decision/seq twice
    sent = Counter(p["client_order_id"] for p in posts)
    assert posts[0]["client_order_id"] == posts[1]["client_order_id"] and sent[posts[0]["client_order_id"]] == 2  # the 429'd intent, sent again once
    assert sorted(sent.values())[:-1] == [1] * (len(sent) - 1) and set(sent) == set(j)  # every other intent POSTed exactly once
    assert len(set(decisions(venue.orders))) == len(venue.orders)
    assert trading.hits("/v2/orders:by_client_order_id"), "the uncertain submit was looked up, not re-sent"
    # positions: the CLI's journal view equals the venue's book, and reconciliation says so
    p = run(["positions", *common], tmp_path)
    assert p.returncode == 0, p.stderr
    assert positions_printed(p.stdout) == venue.positions() != {}
    o = run(["orders", *common], tmp_path)
    assert o.returncode == 0 and all(c in o.stdout for c in venue.orders)
    rec = run(["reconcile", *common], tmp_path)  # the trading URL was stored with the run
    assert rec.returncode == 0, rec.stdout + rec.stderr
    # a second run continues the same bot: nothing is decided twice, nothing re-sent
    n = len(venue.orders)
    again = run(["run", "--strategy", "sma_crossover", "--params", PARAMS, "--broker", "alpaca", "--symbols", ",".join(SYMBOLS),
                 "--iterations", "1", "--interval", "0", "--lookback-days", "120", "--trading-url", trading.url, "--data-url", data.url, *common], tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(venue.orders) == n and journal(db, name).keys() == venue.orders.keys()
    assert SECRET not in r.stdout + r.stderr + p.stdout + rec.stdout + again.stdout + again.stderr


def test_alpaca_refuses_real_money_without_every_switch(alpaca, tmp_path):
    trading, data = alpaca
    common = ["--db", f"sqlite:///{tmp_path}/bots.db", "--trading-url", trading.url, "--data-url", data.url]
    r = run(["run", "--strategy", "sma_crossover", "--broker", "alpaca", "--live", "--iterations", "1", *common], tmp_path)
    assert (r.returncode, r.stderr.startswith("trading-bot: error:"), "TRADING_ALPACA_PAPER=false" in r.stderr) == (2, True, True)
    assert trading.log == [] and data.log == []  # refused before any request


# -- ccxt:binance ---------------------------------------------------------------------------------------------------

PAIRS = ["BTC/USDT", "ETH/USDT"]
_start_ms = int((_today - pd.Timedelta(days=WARM + TRADE)).value // 1_000_000)
CANDLES = {"BTC/USDT": make_candles(_start_ms, WARM + TRADE, seed=5, price=40_000.0),
           "ETH/USDT": make_candles(_start_ms, WARM + TRADE, seed=6, price=2_000.0)}  # the last one opened yesterday 00:00 UTC


def test_ccxt_binance_bot_process_matches_the_venue_through_faults(tmp_path):
    srv = RollingBinance(CANDLES, WARM, cash="100000").start()
    try:
        db, name = tmp_path / "bots.db", "cli-binance"
        common = ["--db", f"sqlite:///{db}", "--state-dir", str(tmp_path / "bots"), "--name", name]
        srv.fault("/api/v3/order", status=429, method="POST", headers={"Retry-After": "0"}, body='{"code": -1003, "msg": "Too many requests."}')
        srv.fault("/api/v3/order", status=200, method="POST", after=True, delay=TIMEOUT + 1.0)
        r = run(["run", "--strategy", "sma_crossover", "--params", PARAMS, "--broker", "ccxt:binance", "--symbols", ",".join(PAIRS),
                 "--iterations", str(TRADE), "--interval", "0", "--lookback-days", str(WARM + TRADE + 5), "--request-timeout", str(TIMEOUT),
                 "--trading-url", srv.url, *common], tmp_path)
        assert r.returncode == 0, r.stderr
        assert srv.fetches == TRADE
        venue = srv.venue
        posts = [{k: v[-1] for k, v in parse_qs(b.decode()).items()} for m, p, _, b in srv.log if (m, p) == ("POST", "/api/v3/order")]
        assert len(venue.orders) >= 3, "the strategy should have traded"
        j = journal(db, name)
        refused = {c for c, (status, _) in j.items() if status == "rejected"}  # refused by the venue's filters: never in its book
        assert set(j) - refused == set(venue.orders), {c: j[c] for c in set(j) ^ set(venue.orders) if c in j}
        assert all(j[c] == (o.status.value, o.filled_qty) for c, o in venue.orders.items()), (j, venue.orders)
        # every client id POSTed once, except the throttled one (refused before acting, sent again once); the timed-out one was looked up
        sent = Counter(p["newClientOrderId"] for p in posts)
        assert posts[0]["newClientOrderId"] == posts[1]["newClientOrderId"] and sent[posts[0]["newClientOrderId"]] == 2
        assert sorted(sent.values())[:-1] == [1] * (len(sent) - 1) and set(sent) == set(j)
        assert len(set(decisions(venue.orders))) == len(venue.orders)
        p = run(["positions", *common], tmp_path)
        assert p.returncode == 0, p.stderr
        assert positions_printed(p.stdout) == venue.positions() != {}
        rec = run(["reconcile", *common], tmp_path)
        assert rec.returncode == 0, rec.stdout + rec.stderr
        assert CCXT_SECRET not in r.stdout + r.stderr + p.stdout + rec.stdout
    finally:
        srv.stop()

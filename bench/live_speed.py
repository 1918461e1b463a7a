"""Benchmark (not a test): the trading core's speed, as ratios and distributions measured in one run.

    python bench/live_speed.py [--orders 1000] [--repeat 3] [--pg-url URL]

1. Orders through the order manager and the paper broker, per second: each order's intent committed
   to the journal before the submit, the acknowledgement and the fill journalled after. Journals:
   SQLite synchronous=FULL (what a bot uses), SQLite synchronous=NORMAL, PostgreSQL (when a URL is
   given). Baseline in the same run: the same orders straight into the paper venue, no journal.
2. Decision-to-submit latency of a bot (strategy -> risk limits -> intents committed -> first submit),
   p50/p99 over every bar of a year of five stocks.
3. Restart reconciliation with 500 open orders and 1,000 fills in the journal, on the paper venue and
   through alpaca-py against the loopback fake Alpaca (default request budget 160/min): seconds from
   a new process's manager to ACTIVE with an explained reconciliation. Goal: <= 5 s.
Medians with [min, max] over --repeat runs.
"""
import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from trading.core.orders import Order  # noqa: E402
from trading.core.settings import Settings  # noqa: E402
from trading.data.bundled import BundledSource  # noqa: E402
from trading.live.broker import RequestBudget  # noqa: E402
from trading.live.manager import OrderManager, TradingState, client_order_id  # noqa: E402
from trading.live.paper import PaperBroker, PaperVenue  # noqa: E402
from trading.live.runner import BotRunner, bars_at  # noqa: E402
from trading.risk.limits import RiskLimits  # noqa: E402
from trading.store.engine import make_engine  # noqa: E402
from trading.strategies.base import MarketData  # noqa: E402
from trading.strategies.rules import SMACrossover  # noqa: E402

SYMS = [f"S{i:02d}" for i in range(10)]
T0 = pd.Timestamp("2024-01-02", tz="UTC")


def stats(xs):
    return f"{statistics.median(xs):,.1f} [{min(xs):,.1f}, {max(xs):,.1f}]"


def venue_with_prices(immediate=True, cash=10**9):
    v = PaperVenue(cash=cash, immediate=immediate)
    v.on_bar(T0, {s: dict(open=100.0, high=101.0, low=99.0, close=100.0, volume=1e9) for s in SYMS})
    return v


def batches(bot, n):
    "n market orders in decisions of 10 (one per symbol), deterministic ids."
    out = []
    for d in range(n // len(SYMS)):
        ts = T0 + pd.Timedelta(minutes=d + 1)
        out.append((ts, [Order(symbol=s, side="buy", qty=Decimal(1), client_order_id=client_order_id(bot, ts, i), ts_created=ts.to_pydatetime())
                         for i, s in enumerate(SYMS)]))
    return out


def through_manager(url, n, durable):
    venue = venue_with_prices()
    om = OrderManager(make_engine(url, durable=durable), PaperBroker(venue), "bench", clock=lambda: dt.datetime.now(dt.timezone.utc))
    om.start()
    work = batches("bench", n)
    t = time.perf_counter()
    for ts, orders in work:
        om.place(ts, orders)
        om.sync()
    dt_ = time.perf_counter() - t
    assert len(om.fills()) == n and om.positions() == venue.positions()
    om.engine.dispose()
    return n / dt_


def straight_to_venue(n):
    venue = venue_with_prices()
    work = batches("raw", n)
    t = time.perf_counter()
    for _, orders in work:
        for o in orders:
            venue.submit(o)
    return n / (time.perf_counter() - t)


def pg_db(pg_url):
    admin = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"trading_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    def drop():
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return make_url(pg_url).set(database=name).render_as_string(hide_password=False), drop


def latency(tmp):
    data = MarketData.from_bars(BundledSource(["sp20"]).bars(["AAPL", "JPM", "XOM", "MSFT", "KO"], start="2018-01-01", end="2019-12-31"))
    start = 252
    venue = PaperVenue(cash=1_000_000)
    venue.on_bar(data.index[start - 1], bars_at(data, start - 1))
    marks = []

    class Timed(PaperBroker):
        def submit(self, order):
            marks.append(time.perf_counter())
            return super().submit(order)
    om = OrderManager(make_engine(f"sqlite:///{tmp}/lat.db", durable=True), Timed(venue), "lat", clock=lambda: venue.now)
    om.start()
    runner = BotRunner(om, SMACrossover(fast=5, slow=20, allocation="equal"), limits=RiskLimits(max_gross=1.0))
    lat = []
    for i in range(start, len(data.index)):
        t = data.index[i]
        venue.on_bar(t, bars_at(data, i))
        om.sync()
        marks.clear()
        t0 = time.perf_counter()
        runner.step(data.until(t))
        if marks:
            lat.append((marks[0] - t0) * 1e3)
    return lat


def restart(tmp, kind, n_open=500, n_filled=1000):
    "Seconds for a new manager on a journal with n_open open orders and n_filled fills to reach ACTIVE."
    if kind == "paper":
        venue = venue_with_prices(immediate=True)
        make_broker = lambda: PaperBroker(venue)  # noqa: E731
        srv = None
    else:
        from fakes.alpaca_trading_server import AlpacaTradingServer
        venue = venue_with_prices(immediate=True)
        srv = AlpacaTradingServer(venue, keys=("PKBENCH", "bench-secret")).start()
        for s in SYMS:
            srv.add_asset(s, 100.0)
        settings = Settings(_env_file=None, APCA_API_KEY_ID="PKBENCH", APCA_API_SECRET_KEY="bench-secret")
        from trading.live.alpaca import AlpacaBroker
        make_broker = lambda budget=None: AlpacaBroker(settings=settings, url_override=srv.url, budget=budget, fractional=True)  # noqa: E731
    url = f"sqlite:///{tmp}/restart-{kind}-{uuid.uuid4().hex[:6]}.db"
    setup_broker = make_broker() if kind == "paper" else make_broker(RequestBudget(per_minute=10**7, burst=10**6))
    om = OrderManager(make_engine(url, durable=True), setup_broker, "restart", clock=lambda: dt.datetime.now(dt.timezone.utc))
    om.start()
    for ts, orders in batches("restart", n_filled):
        om.place(ts, orders)
    ts = T0 + pd.Timedelta(days=1)
    resting = [Order(symbol=SYMS[i % len(SYMS)], side="buy", qty=Decimal(1), order_type="limit", limit_price=Decimal(50), time_in_force="gtc",
                     client_order_id=client_order_id("restart", ts, i), ts_created=ts.to_pydatetime()) for i in range(n_open)]
    om.place(ts, resting)
    om.sync()
    assert len(om.fills()) == n_filled and len(om.orders(open_only=True)) == n_open
    om.engine.dispose()
    before = 0 if srv is None else len(srv.log)
    t = time.perf_counter()
    om2 = OrderManager(make_engine(url, durable=True), make_broker(), "restart")  # default request budget
    rep = om2.start()
    secs = time.perf_counter() - t
    ok = rep.explained and om2.state is TradingState.ACTIVE and rep.orders_checked == n_open
    requests = None if srv is None else len(srv.log) - before
    if srv is not None:
        srv.stop()
    return secs, ok, requests


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pg-url", default=os.environ.get("TRADING_TEST_PG_URL"))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"1. {a.orders} market orders, decisions of 10, through the order manager + paper broker (orders/s, median [min, max] of {a.repeat})")
        base = [straight_to_venue(a.orders) for _ in range(a.repeat)]
        full = [through_manager(f"sqlite:///{tmp}/full-{i}.db", a.orders, True) for i in range(a.repeat)]
        norm = [through_manager(f"sqlite:///{tmp}/norm-{i}.db", a.orders, False) for i in range(a.repeat)]
        print(f"   paper venue alone (no journal)       {stats(base)}")
        print(f"   manager, SQLite synchronous=FULL     {stats(full)}   = {statistics.median(full) / statistics.median(base):.3f}x the venue alone")
        print(f"   manager, SQLite synchronous=NORMAL   {stats(norm)}")
        if a.pg_url:
            pg = []
            for _ in range(a.repeat):
                url, drop = pg_db(a.pg_url)
                try:
                    pg.append(through_manager(url, a.orders, True))
                finally:
                    drop()
            print(f"   manager, PostgreSQL                  {stats(pg)}")
        lat = latency(tmp)
        q = pd.Series(lat).quantile([0.5, 0.99])
        print(f"2. decision-to-first-submit latency over {len(lat)} decisions with orders (ms): p50 {q[0.5]:.1f}, p99 {q[0.99]:.1f}, max {max(lat):.1f}")
        print("3. restart with 500 open orders and 1,000 fills in the journal: seconds to ACTIVE (goal <= 5 s)")
        for kind in ("paper", "alpaca"):
            runs = [restart(tmp, kind) for _ in range(a.repeat)]
            secs = [r[0] for r in runs]
            req = runs[0][2]
            print(f"   {kind:7s} {stats(secs)} s; reconciled and ACTIVE: {all(r[1] for r in runs)}" + (f"; {req} HTTP requests for the restart" if req else ""))


if __name__ == "__main__":
    main()

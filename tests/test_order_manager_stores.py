"""The order manager's journal on both engines: SQLite (a file) and a real PostgreSQL 15 (TRADING_TEST_PG_URL).

A paper bot trades through the manager; a second manager (a restarted process) must find the same
positions, cash and orders; concurrent appliers of the same fills (a trade-updates stream racing a
REST sync) must store each execution once; live mode refuses a journal that may lose commits."""
import datetime as dt
import threading
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import create_engine

from test_store import kind, new_db  # noqa: F401 - fixtures: both engines, scratch databases
from trading.backtest.events import Costs
from trading.core.errors import InputValidationError
from trading.core.orders import Order
from trading.data.bundled import BundledSource
from trading.live.manager import OrderManager, TradingState, client_order_id
from trading.live.paper import PaperBroker, PaperVenue
from trading.live.runner import BotRunner, bars_at, run_simulated
from trading.store.engine import make_engine
from trading.strategies.base import MarketData
from trading.strategies.rules import SMACrossover

T = pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC")


def _bar(p):
    return dict(open=p, high=p, low=p, close=p, volume=1e9)


class LiveBroker(PaperBroker):
    name, is_live = "live-test", True


def test_bot_survives_a_restart_on_both_engines(kind, new_db):  # noqa: F811
    url = new_db(kind)
    data = MarketData.from_bars(BundledSource(["sp20"]).bars(["AAPL", "JPM", "XOM"], start="2019-01-01", end="2019-09-30"))
    venue = PaperVenue(cash=100_000)
    venue.on_bar(data.index[39], bars_at(data, 39))
    om = OrderManager(make_engine(url, durable=True), PaperBroker(venue), "sma", clock=lambda: venue.now)
    assert om.durable, om.durability
    om.start()
    run_simulated(BotRunner(om, SMACrossover(fast=5, slow=20, allocation="equal")), venue, data, 40)
    assert len(om.fills()) > 5
    assert om.positions() == venue.positions() and om.cash() == venue.cash
    om.engine.dispose()
    again = OrderManager(make_engine(url, durable=True), PaperBroker(venue), "sma", clock=lambda: venue.now)
    rep = again.start()
    assert rep.explained and again.state is TradingState.ACTIVE
    assert again.positions() == venue.positions() and again.cash() == venue.cash
    assert list(again.orders()["client_order_id"]) == list(venue.orders)
    again.engine.dispose()


def test_concurrent_first_application(kind, new_db):  # noqa: F811
    "Fills arriving from several threads at once, none journalled yet: each is stored exactly once."
    url = new_db(kind)
    venue = PaperVenue(cash=10**7, immediate=True)
    venue.on_bar(T[0], {"AAA": _bar(10.0)})
    om = OrderManager(make_engine(url, durable=True), PaperBroker(venue), "race2", clock=lambda: venue.now)
    om.start()
    om.place(T[0], [Order(symbol="AAA", side="buy", qty=Decimal(1), client_order_id=client_order_id("race2", T[0], i), ts_created=T[0]) for i in range(30)])
    fills = venue.fills()
    managers = [OrderManager(make_engine(url, durable=True), PaperBroker(venue), "race2") for _ in range(4)]
    errors, results = [], []

    def apply_all(m, seq):
        try:
            results.extend(m.apply_fill(f) for f in seq)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=apply_all, args=(m, fills[::-1] if i % 2 else fills)) for i, m in enumerate(managers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results.count(True) == 30 and results.count(False) == 3 * 30
    assert len(om.fills()) == 30
    assert om.positions() == {"AAA": Decimal(30)} == venue.positions()
    assert set(om.orders()["status"]) == {"filled"}
    for m in managers:
        m.engine.dispose()


def test_fees_paid_in_other_assets_on_both_engines(kind, new_db):  # noqa: F811
    """Fees in the base asset shrink positions, fees in BNB touch neither position nor cash, quote fees cost cash: the
    journal (SQLite folds rows in Python, PostgreSQL sums NUMERICs per symbol and fee asset) matches the venue exactly."""
    url = new_db(kind)
    venue = PaperVenue(cash=100_000, costs=Costs(fee_rate=0.001), immediate=True)
    for s, p in (("BTC/USDT", 40_000.0), ("ETH/USDT", 2_000.0), ("SOL/USDT", 100.0)):
        venue.set_price(s, p)
    venue.balances["BNB"] = Decimal(10)
    paid_in = {"BTC/USDT": "base", "ETH/USDT": "BNB", "SOL/USDT": "quote"}

    def charge(o, qty, price, fee):
        how = paid_in[o.symbol]
        if how == "base":
            return (o.symbol.split("/")[0], qty * Decimal("0.001")) if o.side == "buy" else ("USDT", fee)
        return ("BNB", (fee / 400).quantize(Decimal("1e-8"))) if how == "BNB" else ("USDT", fee)
    venue.fee_charge = charge
    om = OrderManager(make_engine(url, durable=True), PaperBroker(venue), "fees", clock=lambda: venue.now)
    om.start()
    cid = lambda t, i: client_order_id("fees", t, i)
    om.place(T[0], [Order(symbol=s, side="buy", qty=Decimal(q), client_order_id=cid(T[0], i), ts_created=T[0])
                    for i, (s, q) in enumerate((("BTC/USDT", "0.01"), ("ETH/USDT", "0.5"), ("SOL/USDT", "3")))])
    om.sync()
    assert om.positions() == venue.positions() == {"BTC/USDT": Decimal("0.00999"), "ETH/USDT": Decimal("0.5"), "SOL/USDT": Decimal(3)}
    assert om.cash() == venue.cash
    om.place(T[1], [Order(symbol="BTC/USDT", side="sell", qty=Decimal("0.00499"), client_order_id=cid(T[1], 0), ts_created=T[1]),
                    Order(symbol="ETH/USDT", side="sell", qty=Decimal("0.2"), client_order_id=cid(T[1], 1), ts_created=T[1])])
    rep = om.reconcile()
    assert rep.explained and rep.cash_diff == 0
    assert om.positions() == venue.positions() and om.cash() == venue.cash and venue.balances["BNB"] < 10
    om.engine.dispose()
    again = OrderManager(make_engine(url, durable=True), PaperBroker(venue), "fees", clock=lambda: venue.now)  # a fresh fold of the journal
    assert again.positions() == venue.positions() and again.cash() == venue.cash
    assert set(again.fills()["fee_asset"]) == {"BTC", "USDT", "BNB"}
    again.engine.dispose()


def test_live_refuses_a_journal_that_can_lose_commits(kind, new_db):  # noqa: F811
    url = new_db(kind)
    if kind == "sqlite":
        weak = make_engine(url)  # synchronous=NORMAL
    else:
        weak = create_engine(url, connect_args={"options": "-c synchronous_commit=off"})
    with pytest.raises(InputValidationError, match="durable journal"):
        OrderManager(weak, LiveBroker(PaperVenue()), "live", live=True)
    OrderManager(make_engine(url, durable=True), LiveBroker(PaperVenue()), "live", live=True)  # durable: accepted

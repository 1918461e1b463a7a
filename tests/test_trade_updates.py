"""A bot's journal follows Alpaca's trade-update stream (alpaca-py's TradingStream against the loopback fake):
statuses and fills land without a poll, duplicated/reordered/dropped events change nothing, a reconnect
reconciles, and an update for an order the bot never placed halts it."""
import datetime as dt
import time
from decimal import Decimal

import pytest

from fakes.alpaca_trading_server import AlpacaTradingServer
from trading.core.orders import Order
from trading.core.settings import Settings
from trading.live.alpaca import AlpacaBroker
from trading.live.manager import OrderManager, TradingState, client_order_id
from trading.live.runner import follow_trade_updates
from trading.store.engine import make_engine, read
from trading.store.schema import events

KEY, SECRET = "PKSTREAM42", "stream-secret-value-77"
T0 = dt.datetime(2024, 3, 1, 15, tzinfo=dt.timezone.utc)


def wait(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def bot(tmp_path):
    srv = AlpacaTradingServer(keys=(KEY, SECRET)).start()
    srv.add_asset("AAPL", 190.0)
    srv.start_stream()
    broker = AlpacaBroker(Settings(_env_file=None, APCA_API_KEY_ID=KEY, APCA_API_SECRET_KEY=SECRET), url_override=srv.url,
                          stream_url=srv.stream_url, sleep=lambda s: None)
    om = OrderManager(make_engine(f"sqlite:///{tmp_path}/j.db", durable=True), broker, "streamer")
    om.start()
    handle = follow_trade_updates(om, reconnect_backoff=0.05)
    wait(lambda: srv.connections == 1)
    yield srv, om
    handle.stop()
    broker.close()
    srv.stop()


def order(i, qty="2"):
    ts = T0 + dt.timedelta(minutes=i)
    return Order(symbol="AAPL", side="buy", qty=Decimal(qty), client_order_id=client_order_id("streamer", ts, 0), ts_created=ts), ts


def reconciles(om):
    with read(om.engine) as conn:
        return conn.execute(events.select().where(events.c.kind == "reconcile", events.c.run_id == om.bot)).all()


def test_fills_arrive_without_polling_and_faults_change_nothing(bot):
    srv, om = bot
    o, ts = order(1)
    om.place(ts, [o])  # the fake fills market orders on arrival; nobody calls sync()
    wait(lambda: len(om.fills()) == 1)
    assert om.orders()["status"].tolist() == ["filled"] and om.positions() == {"AAPL": Decimal(2)}

    srv.duplicate_next = 2
    o, ts = order(2, "1")
    om.place(ts, [o])
    wait(lambda: len(om.fills()) == 2)
    srv.hold_next = 1  # "new" after "fill"
    o, ts = order(3, "1")
    om.place(ts, [o])
    wait(lambda: len(om.fills()) == 3)
    time.sleep(0.3)
    assert len(om.fills()) == 3 and set(om.orders()["status"]) == {"filled"}
    assert om.positions() == {"AAPL": Decimal(4)} == om.broker.positions()

    srv.drop_next = 2  # lost events: the journal catches up at the next sync/reconcile
    o, ts = order(4, "1")
    om.place(ts, [o])  # place() itself records the acknowledgement
    n = len(reconciles(om))
    srv.disconnect()
    wait(lambda: srv.connections == 2)
    wait(lambda: len(reconciles(om)) == n + 1)  # the reconnect reconciled
    wait(lambda: len(om.fills()) == 4)
    assert om.positions() == {"AAPL": Decimal(5)} == om.broker.positions()
    assert om.state is TradingState.ACTIVE


def test_an_update_for_a_foreign_order_halts(bot):
    srv, om = bot
    om.broker.submit(Order(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="placed-by-hand"))  # someone else on the account
    wait(lambda: om.state is TradingState.HALTED)

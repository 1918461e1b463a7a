"""CcxtBroker through unmodified ccxt against a loopback Binance spot venue (the venue's book is the oracle)."""
import datetime as dt
import json
import logging
import socket
from decimal import Decimal
from urllib.parse import parse_qs

import pandas as pd
import pytest

from fakes.binance_trading_server import BinanceTradingServer
from trading.core.errors import BrokerError, InputValidationError, OrderRejectedError
from trading.core.orders import Order
from trading.core.settings import MASK, Settings, install_redaction
from trading.data.exchanges import _rewrite_hosts
from trading.live.broker import DuplicateClientOrderIdError, SubmitUncertainError, VenueUnavailableError
from trading.live.ccxt import CcxtBroker
from trading.live.manager import OrderManager, TradingState, client_order_id
from trading.store.engine import make_engine

PRICES = {"BTC/USDT": 40_000.0, "ETH/USDT": 2_000.0}
KEY, SECRET = "binkey-1234567", "binsecret-7654321"
KEYS = Settings(_env_file=None, ccxt_api_key=KEY, ccxt_secret=SECRET)
Q8 = Decimal("0.00000001")


@pytest.fixture
def srv():
    s = BinanceTradingServer(PRICES, cash="10000").start()
    yield s
    s.stop()


def broker(srv, **kw):
    kw.setdefault("timeout", 2.0)
    return CcxtBroker("binance", ["BTC/USDT", "ETH/USDT"], settings=KEYS, base_url=srv.url, **kw)


def order(qty, side="buy", symbol="BTC/USDT", **kw):
    return Order(symbol=symbol, side=side, qty=Decimal(qty), **kw)


def posts(srv):
    "Form bodies of every order POST the venue received."
    return [{k: v[-1] for k, v in parse_qs(body.decode()).items()} for m, p, _, body in srv.log if (m, p) == ("POST", "/api/v3/order")]


def limit(qty, price, **kw):
    return order(qty, order_type="limit", limit_price=Decimal(price), time_in_force="gtc", **kw)


def test_round_trip_with_fractional_sizes(srv):
    b = broker(srv)
    rules = b.market_rules("BTC/USDT")
    assert (rules.qty_step, rules.min_qty, rules.min_notional, rules.price_tick) == (Decimal("0.00001"), Decimal("0.00001"), Decimal(5), Decimal("0.01"))

    buy = b.submit(o := order("0.00123"))
    assert (buy.status.value, buy.filled_qty, buy.avg_fill_price, buy.client_order_id) == ("filled", Decimal("0.00123"), Decimal(40_000), o.client_order_id)
    assert posts(srv)[-1]["newClientOrderId"] == o.client_order_id and posts(srv)[-1]["quantity"] == "0.00123"
    assert b.get_order(o.client_order_id).status.value == "filled"
    assert b.get_order("never-sent") is None
    assert b.positions() == {"BTC/USDT": Decimal("0.00123")}
    assert b.cash() == srv.venue.cash.quantize(Q8) == Decimal("9950.7508")  # 10000 - 49.20 - 0.0492 commission

    rest = b.submit(lim := limit("0.01", "1900.00", symbol="ETH/USDT"))
    assert rest.status.value == "accepted" and rest.limit_price == Decimal(1900) and rest.time_in_force == "gtc"
    assert [x.client_order_id for x in b.open_orders()] == [lim.client_order_id]
    assert b.cash() == Decimal("9950.7508")  # total: the 19 USDT the limit order locks still counts
    b.cancel(lim.client_order_id)
    assert b.get_order(lim.client_order_id).status.value == "canceled" and b.open_orders() == []
    b.cancel(lim.client_order_id)  # already final: a no-op
    b.cancel("never-sent")

    sell = b.submit(order("0.00023", side="sell"))
    assert sell.status.value == "filled"
    assert b.positions() == {"BTC/USDT": Decimal("0.001")} == srv.venue.positions()

    fills = b.fills()
    assert [(f.fill_id, f.client_order_id, f.side.value, f.qty, f.price) for f in fills] == [
        ("1", o.client_order_id, "buy", Decimal("0.00123"), Decimal(40_000)), ("2", sell.client_order_id, "sell", Decimal("0.00023"), Decimal(40_000))]
    assert fills[0].fee == Decimal("0.0492") and fills[0].ts_event.tzinfo is not None
    assert fills[1] in b.fills(since=fills[1].ts_event) and b.fills(since=fills[1].ts_event + dt.timedelta(milliseconds=1)) == []
    assert len(posts(srv)) == 3
    assert b.request_count == len(srv.log)  # every HTTP request spent a token of the budget


def test_a_restarted_broker_finds_orders_and_names_fills(srv):
    o = order("0.001")
    broker(srv).submit(o)
    fresh = broker(srv)  # no memory of the submit
    assert fresh.get_order(o.client_order_id).filled_qty == Decimal("0.001")
    again = broker(srv)
    assert [f.client_order_id for f in again.fills()] == [o.client_order_id]
    assert any(p == "/api/v3/allOrders" for _, p, _, _ in srv.log)  # myTrades has no client ids: the order list names them


@pytest.mark.parametrize("bad,match", [
    (order("0.0001"), "notional"),  # 4 USDT < 5
    (order("0.000015"), "step"),  # ccxt would silently truncate it to 0.00001
    (limit("0.001", "39999.999"), "tick"),
    (order("0.001", order_type="limit", limit_price=Decimal(39_000)), "24/7"),  # time_in_force=day
    (order("0.001", order_type="stop", stop_price=Decimal(41_000)), "not supported"),
    (order("1", symbol="SOL/USDT"), "symbols"),
])
def test_orders_the_venue_would_refuse_are_refused_before_sending(srv, bad, match):
    with pytest.raises(OrderRejectedError, match=match):
        broker(srv).submit(bad)
    assert posts(srv) == [] and srv.venue.orders == {}


def test_client_ids_binance_would_refuse_are_refused_before_sending(srv):
    with pytest.raises(InputValidationError, match="36"):
        broker(srv).submit(order("0.001", client_order_id="x" * 37))
    with pytest.raises(InputValidationError, match="client_order_id"):
        broker(srv).submit(order("0.001", client_order_id="a b"))
    assert posts(srv) == []


@pytest.mark.parametrize("msg", ["Filter failure: LOT_SIZE", "Filter failure: NOTIONAL"])
def test_venue_filter_failures_are_rejections(srv, msg):
    srv.fault("/api/v3/order", 400, json.dumps({"code": -1013, "msg": msg}), method="POST")
    with pytest.raises(OrderRejectedError, match=msg.split(": ")[1]) as e:
        broker(srv).submit(order("0.001"))
    assert not isinstance(e.value, DuplicateClientOrderIdError)


def test_duplicate_client_order_id(srv):
    b, o = broker(srv), order("0.001")
    b.submit(o)
    with pytest.raises(DuplicateClientOrderIdError, match="Duplicate order sent"):
        b.submit(o)
    assert len(srv.venue.orders) == 1 and len(posts(srv)) == 2


def test_insufficient_balance_is_a_rejection(srv):
    b = broker(srv)
    with pytest.raises(OrderRejectedError, match="insufficient balance") as e:
        b.submit(order("1"))  # 40 000 USDT with 10 000 in the account
    assert not isinstance(e.value, DuplicateClientOrderIdError)
    with pytest.raises(OrderRejectedError, match="insufficient balance"):
        b.submit(order("0.01", side="sell"))  # no BTC to sell
    assert srv.venue.orders == {} and b.cash() == Decimal(10_000)


def test_rate_limited_submit_creates_nothing(srv):
    srv.fault("/api/v3/order", 429, '{"code": -1003, "msg": "Too many requests."}', headers={"Retry-After": "0.7"}, method="POST")
    b, o = broker(srv), order("0.001")
    with pytest.raises(VenueUnavailableError) as e:
        b.submit(o)
    assert e.value.retry_after == 0.7 and not isinstance(e.value, SubmitUncertainError)
    assert b.get_order(o.client_order_id) is None and srv.venue.orders == {} and len(posts(srv)) == 1


def test_the_venue_own_limit_answers_429_and_its_retry_after_is_honoured_so_no_ban_follows():
    """The fake bans (418) after two 429s that were not waited out. We honour the first 429's Retry-After (60 s) in
    full: nothing more is sent during the pause, and no caller sleeps longer than max_wait (here 1 s): each call
    fails at once with a typed error. Before the network layer, the same 12 calls hammered on into a 418 ban."""
    with BinanceTradingServer(PRICES, limit=(6, 60), ban_after=2, ban_seconds=90) as s:
        b = broker(s, max_wait=1.0, read_retries=2)
        errors = []
        for _ in range(12):
            try:
                b.cash()
            except VenueUnavailableError as e:
                errors.append(e)
        assert len(s.requests) == 7  # 6 allowed (markets + accounts), one 429, then silence until the venue's pause ends
        assert "429" in str(errors[0]) and "asked to wait 60 s" in str(errors[0])  # longer than max_wait: not retried, typed now
        assert len(errors) >= 6 and all("nothing was sent" in str(e) for e in errors[1:]) and all("418" not in str(e) for e in errors)
        assert all(e.retry_after == 1.0 for e in errors)  # what a caller may sleep: capped
        state = b.net_state()
        assert state["limits"]["capped"] == 1 and state["retries"]["retries"] == 0
        assert set(state["breakers"].values()) == {"closed"}  # our own hold-backs are not venue failures


@pytest.mark.parametrize("after", [False, True])
def test_5xx_on_submit_is_uncertain_and_never_retried(srv, after):
    srv.fault("/api/v3/order", 503, '{"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}',
              method="POST", after=after)
    b, o = broker(srv), order("0.001")
    with pytest.raises(SubmitUncertainError):
        b.submit(o)
    assert len(posts(srv)) == 1  # no blind retry
    found = b.get_order(o.client_order_id)  # the venue is the oracle
    assert len(srv.venue.orders) == (1 if after else 0)
    assert (found is not None) == after
    if after:
        assert found.status.value == "filled" and found.client_order_id == o.client_order_id


@pytest.mark.timeout(30)
def test_accepted_then_timed_out_submit_is_found_by_client_id(srv):
    srv.fault("/api/v3/order", 200, "{}", delay=3.0, after=True, method="POST")
    b, o = broker(srv, timeout=0.5), order("0.00042")
    with pytest.raises(SubmitUncertainError, match="RequestTimeout"):
        b.submit(o)
    assert len(posts(srv)) == 1
    found = broker(srv).get_order(o.client_order_id)  # even from a fresh process
    assert found.status.value == "filled" and found.filled_qty == Decimal("0.00042")
    assert list(srv.venue.orders) == [o.client_order_id]


def test_garbled_answer_to_an_accepted_submit_is_uncertain(srv):
    srv.fault("/api/v3/order", 200, '{"symbol": "BTCUSDT", "orderId": ', after=True, method="POST")
    b, o = broker(srv), order("0.001")
    with pytest.raises(SubmitUncertainError, match="not JSON"):
        b.submit(o)
    assert b.get_order(o.client_order_id).status.value == "filled" and len(posts(srv)) == 1


def test_an_accepted_submit_answered_with_nonsense_is_uncertain(srv):
    srv.fault("/api/v3/order", 200, '{"orderId": 1, "status": "MAYBE"}', after=True, method="POST")
    b, o = broker(srv), order("0.001")
    with pytest.raises(SubmitUncertainError, match="unreadable"):
        b.submit(o)
    assert b.get_order(o.client_order_id).status.value == "filled" and len(posts(srv)) == 1


def test_connection_refused_is_unavailable_not_uncertain(srv):
    b = broker(srv)
    b.market_rules("BTC/USDT")  # markets loaded from the live server
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    b.exchange.urls["api"] = _rewrite_hosts(b.exchange.urls["api"], dead)
    with pytest.raises(VenueUnavailableError) as e:
        b.submit(limit("0.001", "39000.00"))
    assert not isinstance(e.value, SubmitUncertainError)


def test_partial_fills(srv):
    b, o = broker(srv), order("0.002")
    srv.venue.partial_fraction = 0.5
    first = b.submit(o)
    assert (first.status.value, first.filled_qty, first.remaining_qty) == ("partially_filled", Decimal("0.001"), Decimal("0.001"))
    assert [x.client_order_id for x in b.open_orders()] == [o.client_order_id]
    srv.venue.set_price("BTC/USDT", 40_100.0)  # the resting remainder fills half again
    srv.venue.partial_fraction = None
    srv.venue.set_price("BTC/USDT", 40_200.0)  # and then the rest
    done = b.get_order(o.client_order_id)
    assert done.status.value == "filled" and done.filled_qty == Decimal("0.002")
    fills = b.fills()
    assert [(f.qty, f.price) for f in fills] == [(Decimal("0.001"), Decimal(40_000)), (Decimal("0.0005"), Decimal(40_100)), (Decimal("0.0005"), Decimal(40_200))]
    assert {f.client_order_id for f in fills} == {o.client_order_id} and len({f.fill_id for f in fills}) == 3
    assert abs(done.avg_fill_price - Decimal("40075")) < Decimal("1e-6")
    assert b.positions() == {"BTC/USDT": Decimal("0.002")}


def test_partially_filled_then_canceled(srv):
    b, o = broker(srv), order("0.002")
    srv.venue.partial_fraction = 0.5
    b.submit(o)
    b.cancel(o.client_order_id)
    gone = b.get_order(o.client_order_id)
    assert (gone.status.value, gone.filled_qty) == ("canceled", Decimal("0.001"))
    assert b.open_orders() == [] and b.positions() == {"BTC/USDT": Decimal("0.001")}


def test_secrets_never_reach_logs_or_errors(srv, caplog):
    caplog.set_level(logging.DEBUG)
    install_redaction(KEYS)
    b = broker(srv)
    b.submit(order("0.001"))
    b.cash()
    srv.fault("/api/v3/order", 401, json.dumps({"code": -2015, "msg": f"Invalid API-key {KEY}, IP, or permissions for action."}), method="POST")
    with pytest.raises(OrderRejectedError) as e:
        b.submit(order("0.001"))
    assert MASK in str(e.value)
    assert {k.lower(): v for k, v in srv.requests[-1][2].items()}["x-mbx-apikey"] == KEY  # the key did go to the venue
    assert f"X-MBX-APIKEY': '{MASK}'" in caplog.text  # ccxt logged its request headers, key masked
    for text in (str(e.value), repr(e.value), caplog.text, repr(b)):
        assert KEY not in text and SECRET not in text


def test_unknown_order_status_is_an_error_not_a_guess(srv):
    b, o = broker(srv), order("0.001")
    b.submit(o)
    body = {"symbol": "BTCUSDT", "orderId": 1, "clientOrderId": o.client_order_id, "price": "0", "origQty": "0.001", "executedQty": "0.001",
            "cummulativeQuoteQty": "40", "status": "HALTED_BY_MOON", "timeInForce": "GTC", "type": "MARKET", "side": "BUY", "time": 1, "updateTime": 2}
    srv.fault("/api/v3/order", 200, json.dumps(body), method="GET")
    with pytest.raises(BrokerError, match="unknown status 'HALTED_BY_MOON'"):
        b.get_order(o.client_order_id)


def test_a_trade_of_an_order_nobody_knows_keeps_no_client_id(srv):
    b, o = broker(srv), order("0.001")
    b.submit(o)
    ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    stranger = {"symbol": "BTCUSDT", "id": 77, "orderId": 999, "orderListId": -1, "price": "39000.00000000", "qty": "0.00050000",
                "quoteQty": "19.5", "commission": "0.00000050", "commissionAsset": "BTC", "time": ms, "isBuyer": True, "isMaker": False}
    mine = {**stranger, "id": 1, "orderId": 1, "price": "40000.00000000", "qty": "0.00100000", "commission": "0.04000000", "commissionAsset": "USDT"}
    srv.fault("/api/v3/myTrades", 200, json.dumps([mine, stranger]))
    fills = {f.fill_id: f for f in b.fills()}
    assert fills["1"].client_order_id == o.client_order_id
    assert fills["77"].client_order_id is None and fills["77"].venue_order_id == "999"
    assert fills["77"].fee == Decimal("0.0195")  # commission in BTC, valued at the trade price
    assert [q.get("orderId") for p, q, _ in srv.requests if p == "/api/v3/allOrders"] == ["999"]


def test_malformed_or_failing_reads_are_typed(srv):
    b = broker(srv, read_retries=0)
    srv.fault("/api/v3/account", 200, "<html>maintenance</html>")
    with pytest.raises(VenueUnavailableError, match="not JSON"):
        b.cash()
    srv.fault("/api/v3/openOrders", 502, "Bad Gateway")
    with pytest.raises(VenueUnavailableError):
        b.open_orders()
    srv.fault("/api/v3/account", 200, json.dumps({"balances": "nope"}))
    with pytest.raises(BrokerError, match="no USDT entry"):
        b.cash()  # not "zero cash"
    assert b.cash() == Decimal(10_000)  # and the next answer is fine


@pytest.mark.parametrize("commission", ["received", "BNB"])
def test_a_bot_books_fees_where_the_venue_charged_them(tmp_path, commission):
    """Binance takes a buy's commission out of the coins bought (or out of BNB): the journal must agree with the
    balances to the last unit, so reconciliation is explained and the bot keeps trading."""
    srv = BinanceTradingServer({**PRICES, "BNB/USDT": 400.0}, cash="10000", commission=commission, assets={"BNB": "1"}).start()
    try:
        b = broker(srv)
        om = OrderManager(make_engine(f"sqlite:///{tmp_path}/journal.db", durable=True), b, "feebot", sleep=lambda s: None)
        assert om.start().explained
        t0 = pd.Timestamp.now(tz="UTC").floor("s")
        cid = lambda t, i: client_order_id("feebot", t, i)
        om.place(t0, [order("0.01", client_order_id=cid(t0, 0)), order("0.5", symbol="ETH/USDT", client_order_id=cid(t0, 1))])
        om.sync()
        venue_assets = {a["asset"]: Decimal(a["free"]) + Decimal(a["locked"]) for a in srv._account()[1]["balances"]}
        if commission == "received":  # 0.1% of what was bought is missing from the balances, and no USDT was charged for it
            assert (venue_assets["BTC"], venue_assets["ETH"], venue_assets["USDT"]) == (Decimal("0.00999"), Decimal("0.4995"), Decimal(8600))
            assert venue_assets["BNB"] == 1
        else:  # 0.4 + 1 USDT of fees paid with BNB at 400
            assert (venue_assets["BTC"], venue_assets["ETH"], venue_assets["USDT"]) == (Decimal("0.01"), Decimal("0.5"), Decimal(8600))
            assert venue_assets["BNB"] == Decimal(1) - Decimal("0.001") - Decimal("0.0025")
        assert om.positions() == b.positions() == {"BTC/USDT": venue_assets["BTC"], "ETH/USDT": venue_assets["ETH"]}
        assert om.cash() == b.cash() == Decimal(8600)
        t1 = t0 + pd.Timedelta(seconds=1)
        om.place(t1, [order("0.004", side="sell", client_order_id=cid(t1, 0)),
                      order(str(om.positions()["ETH/USDT"]), side="sell", symbol="ETH/USDT", client_order_id=cid(t1, 1))])
        rep = om.reconcile()
        assert rep.explained and rep.position_diffs == {} and om.state is TradingState.ACTIVE
        assert om.positions() == b.positions() and om.cash() == b.cash()  # exactly: positions to the satoshi, cash to the cent and below
        fills = om.fills()
        if commission == "received":
            assert list(zip(fills["side"], fills["fee_asset"])) == [("buy", "BTC"), ("buy", "ETH"), ("sell", "USDT"), ("sell", "USDT")]
            assert om.positions() == {"BTC/USDT": Decimal("0.00599")}
            assert om.cash() == Decimal(8600) + Decimal(160) - Decimal("0.16") + Decimal("0.4995") * 2000 * Decimal("0.999")
        else:
            assert set(fills["fee_asset"]) == {"BNB"} and om.positions() == {"BTC/USDT": Decimal("0.006")}
            assert om.cash() == Decimal(8600) + Decimal(160) + Decimal(1000)  # no USDT went on fees
        assert sum(fills["fee"]) > 0  # still reported, valued in USDT
        om.engine.dispose()
    finally:
        srv.stop()

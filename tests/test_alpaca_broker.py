"""`AlpacaBroker` through alpaca-py, unmodified, against a loopback Alpaca Trading API backed by a `PaperVenue` (no internet)."""
import datetime as dt
import logging
import socket
import time
from decimal import Decimal

import pytest
from alpaca.trading.models import Asset, Order as SdkOrder, Position, TradeAccount, TradeActivity, TradeUpdate

from fakes.alpaca_trading_server import AlpacaTradingServer
from trading.core.errors import BrokerError, OrderRejectedError
from trading.core.orders import Order, OrderStatus
from trading.core.settings import MASK, Settings, install_redaction
from trading.live.alpaca import AlpacaBroker
from trading.live.broker import DuplicateClientOrderIdError, RequestBudget, SubmitUncertainError, VenueUnavailableError

KEY, SECRET = "PKTRADELOOP42", "trade-loop-secret-value-77"
WRONG = "wrong-secret-value-13"
OPT = "AAPL240621C00190000"


@pytest.fixture
def srv():
    s = AlpacaTradingServer(keys=(KEY, SECRET)).start()
    s.add_asset("AAPL", 190.0).add_asset("BRK.A", 600_000.0, fractionable=False).add_asset(OPT, 5.0, "us_option")
    s.add_asset("BTC/USD", 60_000.0, "crypto", min_order_size="0.0001", min_trade_increment="0.000001", price_increment="0.5")
    yield s
    s.stop()


def settings(secret=SECRET):
    return Settings(_env_file=None, APCA_API_KEY_ID=KEY, APCA_API_SECRET_KEY=secret)


def broker(srv, **kw):
    kw.setdefault("timeout", 2.0)
    kw.setdefault("sleep", lambda s: None)
    return AlpacaBroker(settings(kw.pop("secret", SECRET)), url_override=srv.url, **kw)


def posts(srv):
    return [r for r in srv.log if r[0] == "POST" and r[1] == "/v2/orders"]


def buy(symbol="AAPL", qty="10", **kw):
    return Order(symbol=symbol, side="buy", qty=Decimal(qty), **kw)


# -- round trips ---------------------------------------------------------------------------------------------

def test_equity_round_trip_and_the_wire_parses_with_alpaca_py_models(srv):
    b = broker(srv)
    o = b.submit(buy(client_order_id="eq-1"))
    assert (o.status, o.filled_qty, o.avg_fill_price, o.client_order_id) == (OrderStatus.FILLED, 10, Decimal("190.0"), "eq-1")
    assert b.get_order("eq-1") == o
    assert b.get_order("never-sent") is None
    assert b.positions() == {"AAPL": Decimal(10)}
    assert b.cash() == Decimal(100_000) - 1900
    (f,) = b.fills()
    assert (f.venue_order_id, f.client_order_id, f.qty, f.price, f.multiplier) == (o.venue_order_id, "eq-1", 10, Decimal("190.0"), 1)
    assert b.fills(since=f.ts_event) == [f] and b.fills(since=f.ts_event + dt.timedelta(seconds=1)) == []
    # the fake speaks what alpaca-py's own models accept
    c = b._client
    SdkOrder(**c.get_order_by_client_id("eq-1"))
    [Position(**p) for p in c.get_all_positions()]
    TradeAccount(**c.get_account())
    [TradeActivity(**a) for a in c.get("/account/activities/FILL")]
    Asset(**c.get("/assets/BTCUSD"))
    assert all(r[0] in ("GET", "POST") for r in srv.log)


def test_fractional_shares_and_rules_from_the_asset(srv):
    b = broker(srv)
    o = b.submit(buy(qty="1.234567891"))
    assert (o.qty, o.filled_qty) == (Decimal("1.234567891"), Decimal("1.234567891"))
    assert b.positions() == {"AAPL": Decimal("1.234567891")}
    assert b.market_rules("AAPL").qty_step == Decimal("1e-9") and b.market_rules("BRK.A").qty_step == 1
    with pytest.raises(OrderRejectedError, match="not fractionable"):
        b.submit(buy("BRK.A", "0.01"))
    with pytest.raises(OrderRejectedError, match="DAY"):
        b.submit(buy(qty="0.5", time_in_force="gtc"))
    assert broker(srv, fractional=False).market_rules("AAPL").qty_step == 1  # an explicit answer asks nobody
    assert [r[1] for r in srv.log if r[1].startswith("/v2/assets")] == ["/v2/assets/AAPL", "/v2/assets/BRK.A"]


def test_option_contracts_carry_the_multiplier(srv):
    b = broker(srv)
    b.submit(buy(OPT, "2", client_order_id="opt-1"))
    assert b.cash() == Decimal(100_000) - 2 * Decimal("5.0") * 100
    (f,) = b.fills()
    assert (f.symbol, f.multiplier, f.to_fill().notional) == (OPT, 100, Decimal(1000))
    r = b.market_rules(OPT)
    assert (r.multiplier, r.qty_step, r.min_qty) == (100, 1, 1)
    with pytest.raises(OrderRejectedError, match="whole contracts"):
        b.submit(buy(OPT, "1.5"))


def test_crypto_pairs_keep_their_slash_and_rules_come_from_the_asset(srv):
    b = broker(srv)
    o = b.submit(buy("BTC/USD", "0.015", time_in_force="gtc"))
    assert (o.symbol, o.status) == ("BTC/USD", OrderStatus.FILLED)
    assert b.positions() == {"BTC/USD": Decimal("0.015")}  # Alpaca says BTCUSD in positions
    r = b.market_rules("BTC/USD")
    assert (r.qty_step, r.min_qty, r.price_tick) == (Decimal("0.000001"), Decimal("0.0001"), Decimal("0.5"))
    with pytest.raises(OrderRejectedError, match="time_in_force"):
        b.submit(buy("BTC/USD", "0.01"))  # day orders do not exist for crypto


def test_limit_order_rests_then_cancel_is_idempotent(srv):
    b = broker(srv)
    o = b.submit(buy(qty="5", order_type="limit", limit_price=Decimal("150.25"), client_order_id="lim-1"))
    assert (o.status, o.order_type, o.limit_price) == (OrderStatus.ACCEPTED, "limit", Decimal("150.25"))
    assert [x.client_order_id for x in b.open_orders()] == ["lim-1"]
    b.cancel("lim-1")
    assert b.get_order("lim-1").status is OrderStatus.CANCELED and b.open_orders() == []
    n = len(srv.log)
    b.cancel("lim-1")
    b.cancel("never-sent")
    assert not any(r[0] == "DELETE" for r in srv.log[n:])  # final and unknown orders: looked up, not deleted


def test_stop_and_market_on_close_orders_go_out_as_alpaca_types(srv):
    import json
    b = broker(srv)
    b.submit(Order(symbol="AAPL", side="buy", qty=1, order_type="stop_limit", stop_price=Decimal(200), limit_price=Decimal("201.5")))
    moc = b.submit(Order(symbol="AAPL", side="buy", qty=1, order_type="market_on_close", time_in_force="cls"))
    sent = [json.loads(r[3]) for r in posts(srv)]
    assert [(s["type"], s["time_in_force"]) for s in sent] == [("stop_limit", "day"), ("market", "cls")]
    assert (sent[0]["stop_price"], sent[0]["limit_price"]) == (200, 201.5)
    assert moc.order_type == "market_on_close"


def test_partial_fills_accumulate(srv):
    b = broker(srv)
    srv.venue.partial_fraction = 0.5
    o = b.submit(buy(qty="8", client_order_id="part-1"))
    assert (o.status, o.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 4)
    assert [x.client_order_id for x in b.open_orders()] == ["part-1"]
    srv.venue.partial_fraction = None
    srv.set_price("AAPL", 191.0)
    o = b.get_order("part-1")
    assert (o.status, o.filled_qty, o.avg_fill_price) == (OrderStatus.FILLED, 8, Decimal("190.5"))
    fills = b.fills()
    assert [(f.qty, f.price) for f in fills] == [(4, Decimal("190.0")), (4, Decimal("191.0"))]
    assert len({f.fill_id for f in fills}) == 2
    acts = srv._activities({"direction": "asc"})[1]
    assert [(a["cum_qty"], a["leaves_qty"], a["type"]) for a in acts] == [("4.0", "4.0", "partial_fill"), ("8.0", "0.0", "fill")]


def test_fills_follow_every_page(srv):
    b = broker(srv)
    for i in range(5): b.submit(buy(qty="1", client_order_id=f"pg-{i}"))
    fills = b.fills(page_size=2)
    assert [f.client_order_id for f in fills] == [f"pg-{i}" for i in range(5)]
    pages = [q for m, p, q, _ in srv.log if p == "/v2/account/activities/FILL"]
    assert len(pages) == 3 and "page_token" not in pages[0] and pages[1]["page_token"] != pages[2]["page_token"]


# -- refusals --------------------------------------------------------------------------------------------

def test_duplicate_client_order_id_is_typed_and_the_venue_keeps_one_order(srv):
    b = broker(srv)
    b.submit(buy(qty="1", client_order_id="dup-1"))
    with pytest.raises(DuplicateClientOrderIdError, match="must be unique"):
        b.submit(buy(qty="1", client_order_id="dup-1"))
    assert list(srv.venue.orders) == ["dup-1"] and b.positions() == {"AAPL": 1}


def test_rejections_carry_the_venue_message(srv):
    b = broker(srv)
    with pytest.raises(OrderRejectedError, match="insufficient buying power"):
        b.submit(buy(qty="1000"))
    with pytest.raises(OrderRejectedError, match='asset "NOPE" not found'):
        b.submit(buy("NOPE", "1"))
    with pytest.raises(OrderRejectedError, match="short selling"):
        b.submit(Order(symbol="AAPL", side="sell", qty=1))
    srv.venue.reject_next.append("halted for news")
    with pytest.raises(OrderRejectedError, match="halted for news"):
        b.submit(buy(qty="1"))
    assert srv.venue.orders == {}
    with pytest.raises(BrokerError) as e:
        broker(srv, secret="wrong-secret").cash()
    assert "401" in str(e.value) and not isinstance(e.value, VenueUnavailableError)


# -- no blind resubmits ------------------------------------------------------------------------------------

def test_429_on_submit_is_unavailable_with_retry_after_and_nothing_is_created(srv):
    b = broker(srv)
    srv.fault("/v2/orders", 429, '{"code": 42910000, "message": "rate limit exceeded"}', headers={"Retry-After": "2.5"}, method="POST")
    with pytest.raises(VenueUnavailableError) as e:
        b.submit(buy(client_order_id="rl-1"))
    assert e.value.retry_after == 2.5
    assert len(posts(srv)) == 1 and b.get_order("rl-1") is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_submit_is_uncertain_and_sent_once(srv, status):
    b = broker(srv)
    srv.fault("/v2/orders", status, "<html>bad gateway</html>", method="POST")  # refused before acting
    with pytest.raises(SubmitUncertainError):
        b.submit(buy(client_order_id="x-1"))
    assert len(posts(srv)) == 1  # alpaca-py alone would resend a 504 three times
    assert b.get_order("x-1") is None  # the venue is the oracle: it never saw it
    srv.fault("/v2/orders", status, after=True, method="POST")  # acted, then failed to answer
    with pytest.raises(SubmitUncertainError):
        b.submit(buy(client_order_id="x-2"))
    assert len(posts(srv)) == 2
    assert b.get_order("x-2").status is OrderStatus.FILLED and list(srv.venue.orders) == ["x-2"]


def test_plain_alpaca_py_would_resend_a_504_submit(srv):
    "The premise: the SDK's default client re-POSTs after 504 (a possible double order); the broker's does not."
    from alpaca.trading.client import TradingClient
    from alpaca.trading.requests import MarketOrderRequest
    c = TradingClient(KEY, SECRET, url_override=srv.url)
    c._retry_wait = 0
    srv.fault("/v2/orders", 504, after=True, times=3, method="POST")
    from alpaca.common.exceptions import APIError
    with pytest.raises(APIError, match="must be unique"):  # the first POST landed; the resends meet the client id
        c.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day", client_order_id="sdk-1"))
    assert len(posts(srv)) == 4 and list(srv.venue.orders) == ["sdk-1"]


def test_accept_then_time_out_is_uncertain_and_the_order_is_found_by_client_id(srv):
    b = broker(srv, timeout=0.5)
    srv.fault("/v2/orders", 200, after=True, delay=1.5, method="POST")
    with pytest.raises(SubmitUncertainError, match="in time"):
        b.submit(buy(client_order_id="slow-1"))
    assert len(posts(srv)) == 1
    o = b.get_order("slow-1")
    assert o.status is OrderStatus.FILLED and list(srv.venue.orders) == ["slow-1"]


def test_malformed_answer_to_a_submit_is_uncertain(srv):
    b = broker(srv)
    srv.fault("/v2/orders", 200, "{not json", after=True, method="POST")
    with pytest.raises(SubmitUncertainError):
        b.submit(buy(client_order_id="mal-1"))
    srv.fault("/v2/orders", 200, '{"id": "x", "status": "new"}', after=True, method="POST")  # JSON, but not an order
    with pytest.raises(SubmitUncertainError, match="look the order up"):
        b.submit(buy(client_order_id="mal-2"))
    assert len(posts(srv)) == 2 and list(srv.venue.orders) == ["mal-1", "mal-2"]


def test_connection_refused_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    b = AlpacaBroker(settings(), url_override=f"http://127.0.0.1:{port}", timeout=1.0, sleep=lambda s: None)
    with pytest.raises(VenueUnavailableError, match="refused"):
        b.submit(buy())


# -- reads: bounded retries, timeouts, hostile bodies ---------------------------------------------------------

def test_reads_retry_bounded_and_honour_retry_after(srv):
    waits = []
    b = broker(srv, timeout=0.3, read_retries=2, backoff=0.01, sleep=waits.append)
    srv.fault("/v2/account", 200, delay=0.8, times=1)  # one read times out
    assert b.cash() == 100_000 and len(waits) == 1 and 0 <= waits[0] <= 0.01  # backoff with full jitter
    srv.fault("/v2/positions", 429, '{"message": "slow down"}', headers={"Retry-After": "0.25"})
    assert b.positions() == {} and waits[-1] == 0.25
    srv.fault("/v2/account", 503, times=3)
    n = len(srv.log)
    with pytest.raises(VenueUnavailableError, match="503"):
        b.cash()
    assert len(srv.log) - n == 3  # 1 + read_retries, then give up


def test_hostile_order_bodies_are_typed_errors(srv):
    b = broker(srv, read_retries=0)
    b.submit(buy(qty="1", client_order_id="h-1"))
    good = srv.order_json("h-1")
    import json
    for body, match in [("{not json", "malformed"), (json.dumps({**good, "status": "teleported"}), "unknown status"),
                        (json.dumps({**good, "qty": "-3"}), "malformed order"), (json.dumps({**good, "filled_qty": "lots"}), "not a number")]:
        srv.fault("/v2/orders:by_client_order_id", 200, body)
        with pytest.raises(BrokerError, match=match):
            b.get_order("h-1")
    srv.fault("/v2/account/activities/FILL", 200, json.dumps([{"id": "a", "qty": "1"}]))
    with pytest.raises(BrokerError, match="malformed fill"):
        b.fills()
    srv.fault("/v2/account", 200, '{"cash": "NaN"}')
    with pytest.raises(BrokerError, match="malformed account"):
        b.cash()


# -- budget and secrets -------------------------------------------------------------------------------------

def test_every_request_spends_the_budget(srv):
    now, slept = [0.0], []
    def sleep(s): slept.append(s); now[0] += s
    budget = RequestBudget(per_minute=120, burst=2, clock=lambda: now[0], sleep=sleep)  # 2 a second
    b = broker(srv, budget=budget)
    b.submit(buy(qty="1"))
    for _ in range(5): b.cash()
    assert len(srv.log) == 6 and len(slept) == 4 and budget.waited == pytest.approx(2.0)


def test_secrets_never_reach_logs_or_errors(srv, caplog):
    s = settings()
    install_redaction(s)
    log = logging.getLogger("trading.test")
    errors = []
    b = broker(srv, timeout=0.3, read_retries=0)
    srv.fault("/v2/orders", 403, f'{{"code": 40310000, "message": "key {KEY} with secret {SECRET} is not allowed"}}', method="POST")
    srv.fault("/v2/account", 200, delay=0.8)
    srv.fault("/v2/positions", 500, f"<html>{SECRET}</html>")
    for call in (lambda: b.submit(buy()), b.cash, b.positions, lambda: broker(srv, secret=WRONG).cash()):
        with pytest.raises(BrokerError) as e:
            call()
        errors.append(e.value)
        log.error("broker call failed: %s", e.value)
        log.exception("with traceback", exc_info=e.value)
    text = caplog.text + " ".join(map(str, errors)) + " ".join(map(repr, errors)) + repr(b)
    for secret in (SECRET, KEY, WRONG):
        assert secret not in text, text[max(0, text.find(secret) - 300): text.find(secret) + 50]
    assert MASK in str(errors[0]) and "not allowed" in str(errors[0])


# -- trade-updates stream -------------------------------------------------------------------------------------

def _wait(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond(): return True
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_stream_dedups_reorders_and_reconnects(srv):
    srv.start_stream()
    b = AlpacaBroker(settings(), url_override=srv.url, stream_url=srv.stream_url, sleep=lambda s: None)
    got, reconnects = [], []
    h = b.stream_updates(lambda ev, o, f: got.append((ev, o, f)), on_reconnect=lambda: reconnects.append(1), reconnect_backoff=0.05)
    try:
        _wait(lambda: srv.connections == 1)
        b.submit(buy(qty="2", client_order_id="s-1"))
        _wait(lambda: len(got) == 2)
        assert [(ev, o.status, f is not None) for ev, o, f in got] == [("new", OrderStatus.ACCEPTED, False), ("fill", OrderStatus.FILLED, True)]
        assert got[1][2].fill_id and got[1][2].client_order_id == "s-1" and got[1][2].qty == 2
        [TradeUpdate(**m["data"]) for m in srv.stream_sent]  # the frames are what alpaca-py parses

        srv.duplicate_next = 2  # new and fill each arrive twice
        b.submit(buy(qty="1", client_order_id="s-2"))
        _wait(lambda: len(srv.stream_sent) == 6)
        time.sleep(0.2)
        assert [ev for ev, o, f in got[2:]] == ["new", "fill"]

        srv.hold_next = 1  # "new" arrives after "fill": the stale view is not passed on
        b.submit(buy(qty="1", client_order_id="s-3"))
        _wait(lambda: len(srv.stream_sent) == 8)
        time.sleep(0.2)
        assert [(ev, o.status) for ev, o, f in got[4:]] == [("fill", OrderStatus.FILLED)]

        srv.drop_next = 2  # lost events: the REST view is the truth
        b.submit(buy(qty="1", client_order_id="s-4"))
        assert len(got) == 5 and b.get_order("s-4").status is OrderStatus.FILLED

        srv.disconnect()
        _wait(lambda: srv.connections == 2 and reconnects == [1])
        b.submit(buy(qty="1", client_order_id="s-5"))
        _wait(lambda: len(got) == 7)
        assert [(ev, o.client_order_id) for ev, o, f in got[5:]] == [("new", "s-5"), ("fill", "s-5")]
        fills = [f for ev, o, f in got if f is not None]
        assert len({f.fill_id for f in fills}) == len(fills) == 4  # s-1, s-2, s-3, s-5 (s-4 was dropped)
    finally:
        h.stop()
        b.close()
    assert not h._thread.is_alive()

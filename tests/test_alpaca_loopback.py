"""alpaca-py, unmodified, against a loopback server speaking Alpaca's market-data wire format (no internet)."""
import logging

import pandas as pd
import pytest

from fakes.alpaca_server import AlpacaServer, make_bars
from trading.core.errors import SourceUnavailableError, UnknownSymbolError
from trading.core.settings import MASK, Settings
from trading.data.alpaca import AlpacaSource
from trading.data.calendars import expected_timestamps

KEY, SECRET = "PKLOOPBACK42", "loopback-secret-value-99"
SESSIONS = expected_timestamps("XNYS", "2024-02-01", "2024-02-29")  # 20 sessions, Presidents' Day missing
STAMPS = [s + pd.Timedelta("5h") for s in SESSIONS]  # Alpaca: daily bars start at midnight New York (EST)
CRYPTO_DAYS = pd.date_range("2024-02-01", "2024-02-10", tz="UTC")
SERVED = {"AAPL": make_bars(STAMPS, seed=1, price=185.0), "MSFT": make_bars(STAMPS, seed=2, price=400.0)}
CRYPTO = {"BTC/USD": make_bars([d + pd.Timedelta("6h") for d in CRYPTO_DAYS], seed=3, price=43000.0)}  # midnight Chicago


@pytest.fixture(scope="module")
def srv():
    s = AlpacaServer(SERVED, CRYPTO, splits={"AAPL": ("2024-02-15T00:00:00Z", 4.0)}, page_size=3, keys=(KEY, SECRET)).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean(srv):
    srv.reset()


def settings(**kw):
    return Settings(_env_file=None, APCA_API_KEY_ID=KEY, APCA_API_SECRET_KEY=SECRET, **kw)


def source(srv, symbols=("AAPL", "MSFT"), **kw):
    kw.setdefault("backoff", 0.01)
    return AlpacaSource(list(symbols), settings=kw.pop("settings", settings()), url_override=srv.url, **kw)


def test_pages_are_followed_and_bars_match_the_wire(srv):
    bars = source(srv, adjustment="raw").bars(start="2024-02-01", end="2024-02-29")
    pages = srv.hits("/v2/stocks/bars")
    assert len(pages) == -(-2 * len(SESSIONS) // 3)  # 40 bars, 3 per page
    assert "page_token" not in pages[0]
    assert all(p.get("page_token") for p in pages[1:])  # every later page asked with the token of the previous answer
    for sym, served in SERVED.items():
        got = bars[bars["symbol"] == sym]
        assert got["ts_event"].tolist() == list(SESSIONS)
        assert got["close"].tolist() == [b["c"] for b in served]
        assert got["volume"].tolist() == [b["v"] for b in served]


def test_adjusted_and_raw_bars_differ_by_the_split_ratio(srv):
    raw = source(srv, ["AAPL"], adjustment="raw").bars(start="2024-02-01", end="2024-02-29")
    adj = source(srv, ["AAPL"], adjustment="all").bars(start="2024-02-01", end="2024-02-29")
    assert {q["adjustment"] for q in srv.hits("/v2/stocks/bars")} == {"raw", "all"}
    before = (raw["ts_event"] < pd.Timestamp("2024-02-15", tz="UTC")).to_numpy()
    assert before.any() and not before.all()
    pd.testing.assert_series_equal(adj["close"][before] * 4, raw["close"][before], check_names=False)
    pd.testing.assert_series_equal(adj["close"][~before], raw["close"][~before])


def test_feed_comes_from_settings_or_argument(srv):
    source(srv, ["AAPL"]).bars(start="2024-02-01", end="2024-02-02")
    source(srv, ["AAPL"], feed="sip").bars(start="2024-02-01", end="2024-02-02")
    source(srv, ["AAPL"], settings=settings(alpaca_data_feed="sip")).bars(start="2024-02-01", end="2024-02-02")
    assert [q["feed"] for q in srv.hits("/v2/stocks/bars")] == ["iex", "sip", "sip"]


def test_crypto_bars_use_the_crypto_endpoint_and_the_247_calendar(srv):
    src = AlpacaSource(["BTC/USD"], asset_class="crypto", settings=Settings(_env_file=None), url_override=srv.url)
    bars = src.bars(start="2024-02-01", end="2024-02-10")
    assert srv.hits("/v1beta3/crypto/us/bars")[0]["symbols"] == "BTC/USD"
    assert bars["ts_event"].tolist() == list(CRYPTO_DAYS)
    assert bars["close"].tolist() == [b["c"] for b in CRYPTO["BTC/USD"]]
    assert src.calendar_of("BTC/USD") == "24/7"


def test_latest_quotes_and_trades(srv):
    src = source(srv)
    q, t = src.latest_quotes(), src.latest_trades(["MSFT"])
    assert q["symbol"].tolist() == ["AAPL", "MSFT"] and (q["ask_price"] > q["bid_price"]).all()
    assert t["price"].tolist() == [SERVED["MSFT"][-1]["c"]]
    c = AlpacaSource(["BTC/USD"], asset_class="crypto", settings=Settings(_env_file=None), url_override=srv.url).latest_quotes()
    assert c["symbol"].tolist() == ["BTC/USD"]


def test_rate_limit_is_retried_then_succeeds(srv):
    srv.fault("/v2/stocks/bars", status=429, body='{"message": "too many requests."}', times=2)
    bars = source(srv, ["AAPL"]).bars(start="2024-02-01", end="2024-02-09")
    assert len(bars) == 7
    assert len(srv.hits("/v2/stocks/bars")) == 2 + 3  # two refusals, then the three pages


@pytest.mark.parametrize("status", [500, 502, 503])
def test_persistent_server_errors_end_in_a_typed_error(srv, status):
    srv.fault("/v2/stocks/bars", status=status, times=99)
    with pytest.raises(SourceUnavailableError, match=f"HTTP {status}"):
        source(srv, ["AAPL"], max_retries=2).bars(start="2024-02-01", end="2024-02-09")
    assert len(srv.hits("/v2/stocks/bars")) == 3  # first try + 2 retries


def test_one_server_error_is_retried(srv):
    srv.fault("/v2/stocks/bars", status=503)
    assert len(source(srv, ["AAPL"]).bars(start="2024-02-01", end="2024-02-09")) == 7


def test_malformed_json_is_a_typed_error(srv):
    srv.fault("/v2/stocks/bars", status=200, body='{"bars": {"AAPL": [{"t": ')
    with pytest.raises(SourceUnavailableError, match="malformed"):
        source(srv, ["AAPL"]).bars(start="2024-02-01", end="2024-02-09")


def test_empty_range_gives_no_bars(srv):
    bars = source(srv).bars(start="2023-01-01", end="2023-01-31")
    assert len(bars) == 0 and list(bars.columns)[:2] == ["ts_event", "symbol"]


@pytest.mark.timeout(20)
def test_a_server_that_does_not_answer_times_out(srv):
    srv.fault("/v2/stocks/bars", status=200, body='{"bars": {}, "next_page_token": null}', delay=3.0, times=2)
    with pytest.raises(SourceUnavailableError, match="did not answer within 0.5 s"):
        source(srv, ["AAPL"], timeout=0.5, max_retries=1).bars(start="2024-02-01", end="2024-02-09")
    assert len(srv.hits("/v2/stocks/bars")) == 2  # the read timed out, was retried once, timed out again


@pytest.mark.timeout(20)
def test_one_read_timeout_is_retried(srv):
    srv.fault("/v2/stocks/bars", status=200, body='{"bars": {}, "next_page_token": null}', delay=3.0)
    assert len(source(srv, ["AAPL"], timeout=0.5).bars(start="2024-02-01", end="2024-02-09")) == 7


@pytest.mark.timeout(20)
def test_nothing_listening_is_a_typed_error():
    s = AlpacaServer().start()
    url = s.url
    s.stop()
    with pytest.raises(SourceUnavailableError, match="could not reach"):
        AlpacaSource(["AAPL"], settings=settings(), url_override=url, max_retries=1, backoff=0.01).bars(start="2024-02-01")


def test_unknown_symbol_is_a_typed_error(srv):
    with pytest.raises(UnknownSymbolError, match="ZZZZ"):
        source(srv, ["AAPL", "ZZZZ"]).bars(start="2024-02-01", end="2024-02-09")


def test_keys_never_appear_in_logs_errors_or_reprs(srv, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = Settings(_env_file=None, APCA_API_KEY_ID="PKWRONGKEY77", APCA_API_SECRET_KEY="wrong-secret-88")
    with pytest.raises(SourceUnavailableError, match="credentials") as refused:
        source(srv, ["AAPL"], settings=wrong).bars(start="2024-02-01", end="2024-02-09")
    # a server that echoes the key back in its error body: the message is redacted
    srv.fault("/v2/stocks/bars", status=403, body=f'{{"message": "key {KEY} with secret {SECRET} is not entitled to sip"}}')
    with pytest.raises(SourceUnavailableError) as echoed:
        src = source(srv, ["AAPL"], feed="sip")
        src.bars(start="2024-02-01", end="2024-02-09")
    assert MASK in str(echoed.value)
    source(srv, ["AAPL"]).bars(start="2024-02-01", end="2024-02-09")  # a successful run, logged at DEBUG
    assert caplog.text  # urllib3 did log the requests
    for text in (str(refused.value), str(echoed.value), caplog.text, repr(src), repr(settings())):
        for secret in (KEY, SECRET, "PKWRONGKEY77", "wrong-secret-88"):
            assert secret not in text
    assert src.request() == {"asset_class": "stock", "feed": "sip", "adjustment": "all", "paper": True}


def test_stock_data_without_keys_is_refused_before_any_request(srv):
    with pytest.raises(Exception, match="TRADING_ALPACA_API_KEY"):
        AlpacaSource(["AAPL"], settings=Settings(_env_file=None), url_override=srv.url).bars(start="2024-02-01")
    assert srv.requests == []


def test_intraday_stock_bars_skip_only_the_calendar_check(srv):
    hours = pd.date_range("2024-02-01 09:00", periods=12, freq="1h", tz="UTC")  # pre-market to after-hours
    s = AlpacaServer({"AAPL": make_bars(hours, seed=5)}).start()
    try:
        bars = AlpacaSource(["AAPL"], settings=settings(), url_override=s.url).bars(start=hours[0], end=hours[-1], timeframe="1h")
        assert s.hits("/v2/stocks/bars")[0]["timeframe"] == "1Hour"
        assert bars["ts_event"].tolist() == list(hours)
    finally:
        s.stop()


@pytest.mark.parametrize("field,value", [("max_retries", -1), ("max_retries", 1e9), ("max_retries", "3"), ("max_retries", True),
                                         ("max_retries", float("nan")), ("timeout", 0), ("timeout", float("inf")), ("backoff", -1.0),
                                         ("max_retry_after", float("inf")), ("total_timeout", -5), ("max_pages", 0)])
def test_bad_resilience_settings_are_refused_at_construction(field, value):
    "`--max-retries -1` was a NameError and `1e9` a loop without end: now a typed error naming the field, before any request."
    from trading.core.errors import InputValidationError
    with pytest.raises(InputValidationError, match=field):
        AlpacaSource(["AAPL"], settings=settings(), url_override="http://127.0.0.1:9", **{field: value})

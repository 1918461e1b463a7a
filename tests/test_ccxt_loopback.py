"""ccxt, unmodified, against a loopback server speaking Binance's and Coinbase's public REST formats (no internet)."""
import logging

import pandas as pd
import pytest

from fakes.exchange_server import ExchangeServer, make_candles
from trading.core.errors import InputValidationError, SourceUnavailableError, UnknownSymbolError
from trading.core.settings import MASK, Settings
from trading.data.exchanges import CcxtSource, ccxt_timeframe, normalize_symbol

T0 = int(pd.Timestamp("2024-01-01", tz="UTC").value // 1_000_000)
DAY = 86_400_000
CANDLES = {"BTC/USDT": make_candles(T0, 40, seed=1), "ETH/USDT": make_candles(T0, 40, seed=2, price=2300.0),
           "BTC/USD": make_candles(T0, 40, seed=3)}
FUNDING = {"BTC/USDT": [(T0 + i * 8 * 3_600_000, round(1e-4 * ((i % 7) - 2), 8)) for i in range(45)]}
EXCHANGES = [("binance", "BTC/USDT", "/api/v3/klines"), ("coinbase", "BTC/USD", "/candles")]


@pytest.fixture(scope="module")
def srv():
    s = ExchangeServer(CANDLES, funding=FUNDING, page_size=15).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean(srv):
    srv.reset()


def source(srv, exchange, symbols, **kw):
    kw.setdefault("backoff", 0.01)
    return CcxtSource(exchange, symbols, settings=kw.pop("settings", Settings(_env_file=None)), base_url=srv.url, **kw)


def closes(symbol, first_day, last_day):
    return [c[4] for c in CANDLES[symbol] if T0 + first_day * DAY <= c[0] <= T0 + last_day * DAY]


@pytest.mark.parametrize("exchange,symbol,path", EXCHANGES)
def test_since_pagination_reaches_the_end_date(srv, exchange, symbol, path):
    src = source(srv, exchange, [symbol])
    bars = src.bars(start="2024-01-01", end="2024-02-09")
    assert not src.exchange.enableRateLimit and src.limits.account.acquired > 0  # our budget paces the calls, not ccxt's limiter
    assert len(bars) == 40 and bars["close"].tolist() == closes(symbol, 0, 39)  # oracle: the served candles
    assert bars["ts_event"].tolist() == list(pd.date_range("2024-01-01", periods=40, tz="UTC"))
    assert len(srv.hits(path)) == 3  # 15 + 15 + 10


def test_binance_pages_move_since_past_the_last_candle(srv):
    source(srv, "binance", ["ETH/USDT"]).bars(start="2024-01-03", end="2024-02-05")
    q = srv.hits("/api/v3/klines")
    assert [int(x["startTime"]) for x in q] == [T0 + 2 * DAY, T0 + 17 * DAY, T0 + 32 * DAY]
    assert {x["symbol"] for x in q} == {"ETHUSDT"} and {x["interval"] for x in q} == {"1d"}


def test_symbols_map_to_each_exchanges_ids(srv):
    assert normalize_symbol("btc-usd") == normalize_symbol("BTC_USD") == "BTC/USD"
    with pytest.raises(InputValidationError):
        normalize_symbol("BTCUSD")
    bars = source(srv, "coinbase", ["btc-usd"]).bars(start="2024-01-02", end="2024-01-04")
    assert bars["symbol"].unique().tolist() == ["BTC/USD"]
    assert srv.requests[-1][0] == "/api/v3/brokerage/market/products/BTC-USD/candles"


def test_several_symbols_and_a_subset(srv):
    src = source(srv, "binance", ["BTC/USDT", "ETH/USDT"])
    both = src.bars(start="2024-01-01", end="2024-01-10")
    assert both.groupby("symbol").size().to_dict() == {"BTC/USDT": 10, "ETH/USDT": 10}
    assert src.bars("ETH/USDT", start="2024-01-01", end="2024-01-10")["close"].tolist() == closes("ETH/USDT", 0, 9)


def test_hourly_candles_and_unsupported_timeframes(srv):
    assert ccxt_timeframe("1h") == ("1h", 3_600_000) and ccxt_timeframe("15min") == ("15m", 900_000)
    hourly = {"BTC/USDT": make_candles(T0, 30, step_ms=3_600_000, seed=9)}
    with ExchangeServer(hourly) as s:
        bars = CcxtSource("binance", ["BTC/USDT"], settings=Settings(_env_file=None), base_url=s.url).bars(
            start="2024-01-01", end="2024-01-01 23:00", timeframe="1h")
        assert len(bars) == 24 and s.hits("/api/v3/klines")[0]["interval"] == "1h"
    with pytest.raises(InputValidationError, match="timeframe"):
        source(srv, "binance", ["BTC/USDT"]).bars(start="2024-01-01", timeframe="7s")


def test_funding_rate_history_is_paginated(srv):
    fr = source(srv, "binance", ["BTC/USDT"]).funding_rates("BTC/USDT", start="2024-01-01", end="2024-01-14")
    expected = [(t, r) for t, r in FUNDING["BTC/USDT"] if t <= T0 + 13 * DAY]
    assert len(fr) == len(expected) == 40
    assert fr["funding_rate"].tolist() == [r for _, r in expected]
    assert fr["symbol"].unique().tolist() == ["BTC/USDT:USDT"]
    assert len(srv.hits("/fapi/v1/fundingRate")) >= 3
    with pytest.raises(SourceUnavailableError, match="no funding-rate history"):
        source(srv, "coinbase", ["BTC/USD"]).funding_rates("BTC/USD", start="2024-01-01")
    with pytest.raises(UnknownSymbolError):
        source(srv, "binance", ["ETH/USDT"]).funding_rates("ETH/USDT", start="2024-01-01")


@pytest.mark.parametrize("exchange,symbol,path", EXCHANGES)
def test_rate_limit_then_success(srv, exchange, symbol, path):
    srv.fault(path, status=429, body='{"code": -1003, "msg": "Too many requests."}', times=2)
    bars = source(srv, exchange, [symbol]).bars(start="2024-01-01", end="2024-01-10")
    assert bars["close"].tolist() == closes(symbol, 0, 9)
    assert len(srv.hits(path)) == 3


@pytest.mark.parametrize("exchange,symbol,path", EXCHANGES)
def test_persistent_5xx_is_a_typed_error(srv, exchange, symbol, path):
    srv.fault(path, status=503, body="Service Unavailable", times=99)
    with pytest.raises(SourceUnavailableError, match=exchange):
        source(srv, exchange, [symbol], max_retries=2).bars(start="2024-01-01", end="2024-01-10")
    assert len(srv.hits(path)) == 3


def test_persistent_rate_limit_is_a_typed_error(srv):
    srv.fault("/api/v3/klines", status=429, body='{"code": -1003, "msg": "Too many requests."}', times=99)
    with pytest.raises(SourceUnavailableError, match="rate-limiting"):
        source(srv, "binance", ["BTC/USDT"], max_retries=2).bars(start="2024-01-01", end="2024-01-10")


@pytest.mark.parametrize("exchange,symbol,path", EXCHANGES)
def test_malformed_json_is_a_typed_error(srv, exchange, symbol, path):
    srv.fault(path, status=200, body='[[1704067200000, "4')
    with pytest.raises(SourceUnavailableError, match="malformed"):
        source(srv, exchange, [symbol]).bars(start="2024-01-01", end="2024-01-10")


def test_malformed_markets_are_a_typed_error(srv):
    srv.fault("/api/v3/exchangeInfo", status=200, body="<html>maintenance</html>")
    with pytest.raises(SourceUnavailableError, match="not JSON"):
        source(srv, "binance", ["BTC/USDT"]).bars(start="2024-01-01", end="2024-01-10")


@pytest.mark.parametrize("exchange,symbol,path", EXCHANGES)
def test_empty_range_gives_no_bars(srv, exchange, symbol, path):
    assert len(source(srv, exchange, [symbol]).bars(start="2023-06-01", end="2023-06-30")) == 0


@pytest.mark.timeout(20)
@pytest.mark.parametrize("exchange,symbol,path", EXCHANGES)
def test_timeout_is_a_typed_error(srv, exchange, symbol, path):
    srv.fault(path, status=200, body="[]", delay=3.0, times=2)
    with pytest.raises(SourceUnavailableError, match="did not answer within 0.5 s"):
        source(srv, exchange, [symbol], timeout=0.5, max_retries=1).bars(start="2024-01-01", end="2024-01-10")
    assert len(srv.hits(path)) == 2  # a read timeout is retried (once here), then typed


def test_unknown_symbols_are_typed_errors(srv):
    with pytest.raises(UnknownSymbolError, match="DOGE/EUR"):
        source(srv, "binance", ["DOGE/EUR"]).bars(start="2024-01-01")
    srv.fault("/api/v3/klines", status=400, body='{"code": -1121, "msg": "Invalid symbol."}')
    with pytest.raises(UnknownSymbolError, match="BTC/USDT"):
        source(srv, "binance", ["BTC/USDT"]).bars(start="2024-01-01", end="2024-01-10")
    with pytest.raises(InputValidationError, match="not a ccxt exchange"):
        CcxtSource("nosuchexchange", ["BTC/USD"])


def test_api_keys_never_appear_in_errors_or_logs(srv, caplog):
    caplog.set_level(logging.DEBUG)
    s = Settings(_env_file=None, ccxt_api_key="ccxtkey-1234567", ccxt_secret="ccxtsecret-7654321")
    srv.fault("/api/v3/klines", status=401, body='{"code": -2015, "msg": "Invalid API-key ccxtkey-1234567, IP, or permissions for action."}')
    src = source(srv, "binance", ["BTC/USDT"], settings=s)
    with pytest.raises(SourceUnavailableError) as e:
        src.bars(start="2024-01-01", end="2024-01-10")
    assert MASK in str(e.value)
    for text in (str(e.value), caplog.text, repr(src)):
        assert "ccxtkey-1234567" not in text and "ccxtsecret-7654321" not in text

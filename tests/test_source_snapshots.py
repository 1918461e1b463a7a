"""`trading-data snapshot --source alpaca|ccxt|csv` as a user runs it (a real process) writes the bundled layout.

The online sources are pointed at loopback servers with `--base-url`; the SDKs inside the process are the real ones.
"""
import json

import pandas as pd
import pytest

from conftest import BIN, run
from fakes.alpaca_server import AlpacaServer, make_bars
from fakes.exchange_server import ExchangeServer, make_candles
from trading.data.calendars import expected_timestamps
from trading.data.snapshot import load_snapshot

SESSIONS = expected_timestamps("XNYS", "2024-03-01", "2024-03-28")
SERVED = {"AAPL": make_bars([s + pd.Timedelta("5h") for s in SESSIONS], seed=1, price=180.0),
          "MSFT": make_bars([s + pd.Timedelta("5h") for s in SESSIONS], seed=2, price=410.0)}
T0 = int(pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000)
CANDLES = {"BTC/USDT": make_candles(T0, 31, seed=3), "BTC/USD": make_candles(T0, 31, seed=4)}


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _check_layout(out, dataset, small_snapshot):
    "Same layout and manifest entry fields as the bundled snapshot; readable and valid through load_snapshot."
    assert sorted(_tree(out)) == ["bars/" + dataset + ".parquet", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    bundled = json.loads((small_snapshot / "manifest.json").read_text())
    assert set(bundled) <= set(manifest) and manifest["macro"] is None
    assert set(bundled["datasets"]["sp500"]) <= set(manifest["datasets"][dataset])
    assert "verified" in run(BIN / "trading-data", "verify", "--dir", out).stdout
    return manifest, load_snapshot(out).bars(dataset)


@pytest.fixture(scope="module")
def alpaca():
    s = AlpacaServer(SERVED, page_size=10, keys=("PKSNAP1", "snap-secret-2")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def exchange():
    s = ExchangeServer(CANDLES, page_size=12).start()
    yield s
    s.stop()


def test_alpaca_snapshot(alpaca, small_snapshot, tmp_path, monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", "PKSNAP1")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "snap-secret-2")
    args = ["snapshot", "--source", "alpaca", "--symbols", "AAPL,MSFT", "--start", "2024-03-01", "--end", "2024-03-28",
            "--adjustment", "raw", "--base-url", alpaca.url]
    res = run(BIN / "trading-data", *args, "--out", tmp_path / "a")
    assert "snap-secret-2" not in res.stdout + res.stderr
    manifest, bars = _check_layout(tmp_path / "a", "alpaca_stock", small_snapshot)
    assert manifest["request"] == {"source": "alpaca", "symbols": ["AAPL", "MSFT"], "start": "2024-03-01T00:00:00+00:00",
                                   "end": "2024-03-28T00:00:00+00:00", "timeframe": "1D", "asset_class": "stock",
                                   "feed": "iex", "adjustment": "raw", "paper": True}
    assert manifest["datasets"]["alpaca_stock"]["calendar"] == "XNYS"
    assert "snap-secret-2" not in (tmp_path / "a" / "manifest.json").read_text()
    for sym, served in SERVED.items():
        assert bars.loc[bars["symbol"] == sym, "close"].tolist() == [b["c"] for b in served]
    run(BIN / "trading-data", *args, "--out", tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")  # same answers, same bytes
    # a failing source leaves the previous snapshot untouched
    alpaca.fault("/v2/stocks/bars", status=503, times=99)
    try:
        res = run(BIN / "trading-data", *args, "--out", tmp_path / "a", "--timeout", "2", "--max-retries", "1", check=False)
    finally:
        alpaca._faults.clear()
    assert res.returncode == 2 and "HTTP 503" in res.stderr and res.stderr.count("\n") == 1
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


@pytest.mark.parametrize("exchange_id,symbol", [("binance", "BTC/USDT"), ("coinbase", "BTC/USD")])
def test_ccxt_snapshot(exchange, small_snapshot, tmp_path, exchange_id, symbol):
    run(BIN / "trading-data", "snapshot", "--source", "ccxt", "--exchange", exchange_id, "--symbols", symbol,
        "--start", "2024-03-01", "--end", "2024-03-31", "--base-url", exchange.url, "--out", tmp_path / "d")
    manifest, bars = _check_layout(tmp_path / "d", f"ccxt_{exchange_id}", small_snapshot)
    assert manifest["datasets"][f"ccxt_{exchange_id}"]["calendar"] == "24/7"
    assert manifest["request"]["exchange"] == exchange_id and manifest["request"]["symbols"] == [symbol]
    assert bars["close"].tolist() == [c[4] for c in CANDLES[symbol]]


def test_csv_and_parquet_snapshot(small_snapshot, tmp_path):
    bundled = load_snapshot(small_snapshot).bars("sp500")
    part = bundled.iloc[-250:]
    first, second = part.iloc[:100], part.iloc[100:]
    csv, parquet = tmp_path / "spx_a.csv", tmp_path / "spx_b.parquet"
    first.drop(columns="source").assign(ts_event=first["ts_event"].dt.strftime("%Y-%m-%d")).to_csv(csv, index=False)
    second.drop(columns="source").to_parquet(parquet)
    run(BIN / "trading-data", "snapshot", "--source", "csv", "--files", f"{csv},{parquet}", "--symbols", "SPX", "--out", tmp_path / "d")
    manifest, bars = _check_layout(tmp_path / "d", "csv", small_snapshot)
    assert sorted(manifest["request"]["files"]) == ["spx_a.csv", "spx_b.parquet"]
    pd.testing.assert_frame_equal(bars.drop(columns="source"), part.drop(columns="source").reset_index(drop=True), check_exact=True)

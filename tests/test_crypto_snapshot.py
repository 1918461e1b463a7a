"""`trading-data snapshot --source ccxt --funding` as a user runs it (a real process, ccxt unmodified) against the loopback
Binance: bars and each pair's perpetual funding-rate history land in the snapshot, hashed and verified; the venue's
markets map spot pairs to their perpetuals; bad requests fail typed with nothing written."""
import json

import pandas as pd
import pytest

from conftest import BIN, run
from fakes.exchange_server import ExchangeServer, make_candles
from trading.core.settings import Settings
from trading.crypto.data import instrument_id, perpetual_of, spot_perp_pairs
from trading.data.exchanges import CcxtSource
from trading.data.snapshot import load_snapshot

T0 = int(pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000)
H8 = 8 * 3_600_000
CANDLES = {"BTC/USDT": make_candles(T0, 31, seed=3), "ETH/USDT": make_candles(T0, 31, seed=4, price=3000.0)}
FUNDING = {"BTC/USDT": [(T0 + i * H8, round(1e-4 * ((i % 5) - 1), 8)) for i in range(93)]}  # ETH/USDT: spot only


@pytest.fixture(scope="module")
def exchange():
    s = ExchangeServer(CANDLES, funding=FUNDING, page_size=40).start()
    yield s
    s.stop()


def snapshot(exchange, out, *extra, symbols="BTC/USDT", check=True):
    return run(BIN / "trading-data", "snapshot", "--source", "ccxt", "--exchange", "binance", "--symbols", symbols,
               "--start", "2024-03-01", "--end", "2024-03-31", "--base-url", exchange.url, "--out", out, *extra, check=check)


def test_funding_rates_are_written_hashed_and_read_back(exchange, tmp_path):
    res = snapshot(exchange, tmp_path / "d", "--funding")
    assert "31 bars, 91 funding rates" in res.stdout  # 2024-03-01 00:00 .. 2024-03-31 00:00 every 8 hours
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    entry = manifest["funding"]["ccxt_binance"]
    assert entry["file"] == "funding/ccxt_binance.parquet" and entry["symbols"] == ["BTC/USDT:USDT"] and manifest["request"]["funding"]
    snap = load_snapshot(tmp_path / "d")
    rates = snap.funding("ccxt_binance")
    served = [(t, r) for t, r in FUNDING["BTC/USDT"] if t <= int(pd.Timestamp("2024-03-31", tz="UTC").value // 1_000_000)]
    assert rates["funding_rate"].tolist() == [r for _, r in served]  # the oracle: what the venue served
    assert rates["ts_event"].tolist() == [pd.Timestamp(t, unit="ms", tz="UTC") for t, _ in served]
    assert snap.bars("ccxt_binance")["close"].tolist() == [c[4] for c in CANDLES["BTC/USDT"]]
    # the funding file is under the manifest's hash like every other file
    f = tmp_path / "d" / entry["file"]
    f.write_bytes(f.read_bytes()[:-8] + b"\0" * 8)
    bad = run(BIN / "trading-data", "verify", "--dir", tmp_path / "d", check=False)
    assert bad.returncode == 2 and "snapshot_hash_mismatch" in bad.stderr and "funding/ccxt_binance.parquet" in bad.stderr


def test_a_pair_without_a_perpetual_fails_typed_and_writes_nothing(exchange, tmp_path):
    snapshot(exchange, tmp_path / "d")  # without the flag the layout is the usual one
    assert "funding" not in json.loads((tmp_path / "d" / "manifest.json").read_text()) and not (tmp_path / "d" / "funding").exists()
    before = (tmp_path / "d" / "manifest.json").read_bytes()
    res = snapshot(exchange, tmp_path / "d", "--funding", symbols="BTC/USDT,ETH/USDT", check=False)
    assert res.returncode == 2 and "ETH/USDT" in res.stderr and "perpetual" in res.stderr
    assert (tmp_path / "d" / "manifest.json").read_bytes() == before  # the previous snapshot is untouched
    res = run(BIN / "trading-data", "snapshot", "--source", "csv", "--files", str(tmp_path / "x.csv"), "--funding",
              "--out", tmp_path / "e", check=False)
    assert res.returncode == 2 and "--source ccxt" in res.stderr and not (tmp_path / "e").exists()


def test_venue_markets_map_spot_to_perpetual_and_symbols_to_one_id(exchange):
    markets = CcxtSource("binance", settings=Settings(_env_file=None), base_url=exchange.url).exchange.markets
    pairs = spot_perp_pairs(markets)
    assert pairs.to_dict("records") == [dict(instrument="BTC/USDT", spot="BTC/USDT", perp="BTC/USDT:USDT",
                                             venue_spot_id="BTCUSDT", venue_perp_id="BTCUSDT")]
    for m in markets.values():  # the venue's ids and ccxt's unified symbols name one instrument
        assert instrument_id(m["symbol"]) == m["symbol"] and instrument_id(m["id"]) == f"{m['base']}/{m['quote']}"
    assert perpetual_of("BTCUSDT") in markets

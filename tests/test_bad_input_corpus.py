"""Every file of tests/corpus/ must be refused by the snapshot writer with a typed error that names what was wrong,
and nothing may be written to the target data directory.

CSV/Parquet files go through `write_snapshot(source="csv")` (what `trading-data snapshot --source csv` runs);
JSON files are served by the loopback Alpaca / Binance server as the bars page and go through
`write_snapshot(source="alpaca"|"ccxt")`, i.e. through the real alpaca-py and ccxt.
"""
import shutil
from pathlib import Path

import pytest

from conftest import BIN, run
from fakes.alpaca_server import AlpacaServer, make_bars
from fakes.exchange_server import ExchangeServer
from trading.core.errors import DataValidationError, SourceUnavailableError, UnknownSymbolError
from trading.data.snapshot import write_snapshot

CORPUS = Path(__file__).parent / "corpus"
DVE, SUE, USE = DataValidationError, SourceUnavailableError, UnknownSymbolError

# file, expected error, rule id (DataValidationError only), text the message must contain
CASES = [
    ("nan_close.csv", DVE, "nan_price", "2024-01-04"),
    ("empty_close_cell.csv", DVE, "nan_price", "2024-01-03"),
    ("zero_price.csv", DVE, "non_positive_price", "2024-01-05"),
    ("negative_close.csv", DVE, "non_positive_price", "2024-01-04"),
    ("high_below_low.csv", DVE, "high_below_low", "2024-01-03"),
    ("close_above_high.csv", DVE, "close_outside_range", "2024-01-08"),
    ("open_below_low.csv", DVE, "open_outside_range", "2024-01-02"),
    ("negative_volume.csv", DVE, "negative_volume", "2024-01-04"),
    ("infinite_volume.csv", DVE, "non_finite", "row="),
    ("partial_ohlc.csv", DVE, "nan_price", "2024-01-05"),
    ("duplicate_rows.csv", DVE, "duplicate_timestamp", "2024-01-03"),
    ("unsorted_rows.csv", DVE, "unsorted_timestamp", "SPY"),
    ("mixed_timezones.csv", DVE, "mixed_timezones", "2024-01-02T00:00:00Z"),
    ("unknown_symbol.csv", USE, None, "XYZQ"),
    ("missing_symbol.csv", DVE, "missing_symbol", "no symbol"),
    ("empty.csv", DVE, "empty_file", "empty.csv"),
    ("header_only.csv", DVE, "empty_file", "no rows"),
    ("missing_close_column.csv", DVE, "missing_columns", "'close'"),
    ("renamed_price_column.csv", DVE, "missing_columns", "'close'"),
    ("extra_column.csv", DVE, "unexpected_columns", "adj_close"),
    ("duplicate_column.csv", DVE, "duplicate_columns", "'close'"),
    ("text_in_close.csv", DVE, "wrong_dtype", "n.a.x"),
    ("bad_timestamp.csv", DVE, "unparseable_timestamp", "2024-13-45"),
    ("missing_timestamp.csv", DVE, "missing_timestamp", "row 3"),
    ("gap_beyond_calendar.csv", DVE, "gap_beyond_calendar", "2024-01-03"),
    ("weekend_bar.csv", DVE, "off_calendar", "2024-01-06"),
    ("mixed_bar_kinds.csv", DVE, "mixed_bar_kinds", "2024-01-04"),
    ("ragged_rows.csv", DVE, "unreadable_file", "ragged_rows.csv"),
    ("binary_garbage.csv", DVE, None, "binary_garbage.csv"),
    ("string_prices.parquet", DVE, "wrong_dtype", "numbers are required"),
    ("integer_timestamps.parquet", DVE, "wrong_dtype", "ts_event"),
    ("nan_close.parquet", DVE, "nan_price", "2024-01-03"),
    ("missing_columns.parquet", DVE, "missing_columns", "'symbol'"),
    ("duplicate_timestamps.parquet", DVE, "duplicate_timestamp", "2024-01-05"),
    ("boolean_volume.parquet", DVE, "wrong_dtype", "volume"),
    ("corrupt.parquet", DVE, "unreadable_file", "corrupt.parquet"),
    ("overflow_close.csv", DVE, "non_finite", "row=4"),
    ("huge_price.csv", DVE, "price_out_of_bounds", "2024-01-04"),
    ("huge_volume.csv", DVE, "volume_out_of_bounds", "2024-01-03"),
    ("price_jump.csv", DVE, "price_jump", "row=4"),
    ("future_timestamp.csv", DVE, "future_timestamp", "row=5"),
    ("mixed_utc_offsets.csv", DVE, "mixed_utc_offsets", "row=3"),
    ("unparseable_among_offsets.csv", DVE, "unparseable_timestamp", "tomorrow"),
    ("path_symbol.csv", DVE, "bad_symbol", "row=2"),
    ("sql_symbol.csv", DVE, "bad_symbol", "row=3"),
    ("long_symbol.csv", DVE, "bad_symbol", "20000 characters"),
    ("control_char_symbol.csv", DVE, "bad_symbol", "control characters"),
    ("numbers_as_text.parquet", DVE, "wrong_dtype", "numbers are required"),
    ("infinite_close.parquet", DVE, "non_finite", "row=3"),
    ("alpaca_null_close.json", DVE, "nan_price", "2024-01-04"),
    ("alpaca_high_below_low.json", DVE, "high_below_low", "2024-01-03"),
    ("alpaca_unknown_symbol.json", USE, None, "ZZZQ"),
    ("alpaca_missing_fields.json", SUE, None, "t/o/h/l/c/v"),
    ("alpaca_wrong_key.json", SUE, None, "malformed"),
    ("alpaca_quotes_not_bars.json", SUE, None, "t/o/h/l/c/v"),
    ("alpaca_empty_range.json", DVE, "empty", "no bars"),
    ("alpaca_malformed.json", SUE, None, "malformed"),
    ("binance_negative_volume.json", DVE, "negative_volume", "2024-01-02"),
    ("binance_zero_price.json", DVE, "non_positive_price", "2024-01-03"),
    ("binance_close_above_high.json", DVE, "close_outside_range", "2024-01-01"),
    ("binance_gap.json", DVE, "gap_beyond_calendar", "2024-01-03"),
    ("binance_object_not_list.json", SUE, None, "binance"),
    ("binance_invalid_symbol.json", USE, None, "BTC/USDT"),
    ("binance_malformed.json", SUE, None, "binance"),
]


def test_corpus_is_complete():
    files = {p.name for p in CORPUS.iterdir() if p.suffix in (".csv", ".parquet", ".json")}
    assert files == {c[0] for c in CASES}, files ^ {c[0] for c in CASES}
    assert len(CASES) >= 30


@pytest.fixture(scope="module")
def servers():
    days = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]
    import pandas as pd
    alpaca = AlpacaServer({"SPY": make_bars([pd.Timestamp(d + "T05:00Z") for d in days])}).start()
    exchange = ExchangeServer({"BTC/USDT": []}).start()
    yield alpaca, exchange
    alpaca.stop()
    exchange.stop()


@pytest.fixture(scope="module")
def previous_snapshot(tmp_path_factory):
    "A good snapshot that every refused write must leave untouched."
    d = tmp_path_factory.mktemp("prev")
    good = d / "good.csv"
    good.write_text("ts_event,symbol,close\n2024-01-02,SPY,471\n2024-01-03,SPY,472\n")
    write_snapshot(d / "data", source="csv", files=[str(good)])
    return d / "data"


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _write(case, servers, out):
    alpaca, exchange = servers
    path = CORPUS / case
    if case.endswith((".csv", ".parquet")):
        symbols = ["SPY"] if case == "unknown_symbol.csv" else None
        return write_snapshot(out, source="csv", files=[str(path)], symbols=symbols)
    body = path.read_bytes()
    if case.startswith("alpaca_"):
        alpaca.fault("/v2/stocks/bars", status=200, body=body)
        return write_snapshot(out, source="alpaca", symbols=["SPY"], start="2024-01-02", end="2024-01-08", base_url=alpaca.url, timeout=5)
    status = 400 if "invalid_symbol" in case else 200
    exchange.fault("/api/v3/klines", status=status, body=body)
    return write_snapshot(out, source="ccxt", exchange="binance", symbols=["BTC/USDT"], start="2024-01-01", end="2024-01-05",
                          base_url=exchange.url, timeout=5)


@pytest.mark.parametrize("case,error,rule,contains", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_nothing_is_written(case, error, rule, contains, servers, previous_snapshot, tmp_path, monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", "PKCORPUS")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "corpus-secret")
    target = tmp_path / "data"
    shutil.copytree(previous_snapshot, target)
    before = _tree(target)
    try:
        with pytest.raises(error) as info:
            _write(case, servers, target)
    finally:
        for server in servers:
            server._faults.clear()
    msg = str(info.value)
    if rule is not None:
        assert info.value.rule == rule, msg
        assert f"[{rule}]" in msg
    assert contains in msg, msg
    assert "corpus-secret" not in msg and len(msg) < 1000  # a 20,000-character symbol is quoted, not copied
    assert _tree(target) == before  # the previous snapshot is intact, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary directory left beside it


def test_cli_refuses_a_bad_file_with_one_line_and_exit_2(tmp_path):
    res = run(BIN / "trading-data", "snapshot", "--source", "csv", "--files", CORPUS / "high_below_low.csv", "--out", tmp_path / "data", check=False)
    assert res.returncode == 2 and "[high_below_low]" in res.stderr and res.stderr.count("\n") == 1, res
    assert list(tmp_path.iterdir()) == []

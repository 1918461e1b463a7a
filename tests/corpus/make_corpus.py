"""Regenerate the bad-input corpus: `python tests/corpus/make_corpus.py` (files are committed; this documents them).

Every file here must be refused. CSV/Parquet files go through `trading-data snapshot --source csv`; JSON files are
answered by the loopback Alpaca or Binance server in place of a real bars page. The expected error of each file is
listed in tests/test_bad_input_corpus.py.
"""
import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
HEAD = "ts_event,symbol,open,high,low,close,volume\n"
DAYS = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]  # XNYS sessions


def rows(*overrides, symbol="SPY"):
    "Five valid daily SPY bars as CSV lines; `overrides` are (row index, column, text) edits."
    base = [dict(ts_event=d, symbol=symbol, open=f"{470 + i}", high=f"{472 + i}", low=f"{468 + i}", close=f"{471 + i}", volume=f"{1000000 + i}")
            for i, d in enumerate(DAYS)]
    for i, col, val in overrides: base[i][col] = val
    return "".join(",".join(r.values()) + "\n" for r in base)


CSV = {
    "nan_close.csv": HEAD + rows((2, "close", "NaN")),
    "empty_close_cell.csv": HEAD + rows((1, "close", "")),
    "zero_price.csv": HEAD + rows((3, "low", "0")),
    "negative_close.csv": HEAD + rows((2, "close", "-471")),
    "high_below_low.csv": HEAD + rows((1, "high", "460")),
    "close_above_high.csv": HEAD + rows((4, "close", "500")),
    "open_below_low.csv": HEAD + rows((0, "open", "400")),
    "negative_volume.csv": HEAD + rows((2, "volume", "-5")),
    "infinite_volume.csv": HEAD + rows((2, "volume", "inf")),
    "partial_ohlc.csv": HEAD + rows((3, "open", "")),
    "duplicate_rows.csv": HEAD + "".join(l * (2 if i == 1 else 1) for i, l in enumerate(rows().splitlines(keepends=True))),
    "unsorted_rows.csv": HEAD + "".join(reversed(rows().splitlines(keepends=True))),
    "mixed_timezones.csv": HEAD + rows((0, "ts_event", "2024-01-02T00:00:00Z")),
    "unknown_symbol.csv": HEAD + rows() + rows(symbol="XYZQ"),
    "missing_symbol.csv": HEAD + rows((2, "symbol", "")),
    "empty.csv": "",
    "header_only.csv": HEAD,
    "missing_close_column.csv": HEAD.replace(",close", "") + "".join(",".join(l.split(",")[:5] + l.split(",")[6:]) for l in rows().splitlines(keepends=True)),
    "renamed_price_column.csv": HEAD.replace("close", "price") + rows(),
    "extra_column.csv": HEAD.replace("volume", "volume,adj_close") + "".join(l.rstrip("\n") + ",1\n" for l in rows().splitlines(keepends=True)),
    "duplicate_column.csv": HEAD.replace("volume", "close") + rows(),
    "text_in_close.csv": HEAD + rows((2, "close", "n.a.x")),
    "bad_timestamp.csv": HEAD + rows((2, "ts_event", "2024-13-45")),
    "missing_timestamp.csv": HEAD + rows((2, "ts_event", "")),
    "gap_beyond_calendar.csv": HEAD + "".join(l for i, l in enumerate(rows().splitlines(keepends=True)) if i not in (1, 2)),
    "weekend_bar.csv": HEAD + rows((4, "ts_event", "2024-01-06")),
    "mixed_bar_kinds.csv": HEAD + rows((2, "open", ""), (2, "high", ""), (2, "low", ""), (2, "volume", "")),
    "ragged_rows.csv": HEAD + rows() + "2024-01-09,SPY,471,473,469,472,1000,999,12\n",
    "binary_garbage.csv": "\x00\x01\x02PK\x03\x04" + "\xff" * 20,
    # issue 13: classes that used to get in
    "overflow_close.csv": HEAD + rows((3, "close", "1e400")),
    "huge_price.csv": HEAD + rows(*[(2, c, "1e300") for c in ("open", "high", "low", "close")]),
    "huge_volume.csv": HEAD + rows((1, "volume", "1e15")),
    "price_jump.csv": HEAD + rows(*[(i, c, f"{(470 + i + d) * 100}") for i in (3, 4) for c, d in (("open", 0), ("high", 2), ("low", -2), ("close", 1))]),  # cents
    "future_timestamp.csv": HEAD + rows((4, "ts_event", "2099-01-02")),
    "mixed_utc_offsets.csv": HEAD + rows(*[(i, "ts_event", f"{d}T00:00:00{'+05:00' if i == 2 else '-05:00'}") for i, d in enumerate(DAYS)]),
    "unparseable_among_offsets.csv": HEAD + rows(*[(i, "ts_event", "tomorrow" if i == 3 else f"{d}T00:00:00Z") for i, d in enumerate(DAYS)]),
    "path_symbol.csv": HEAD + rows((1, "symbol", "../../etc/passwd")),
    "sql_symbol.csv": HEAD + rows((2, "symbol", "x'; DROP TABLE bars;--")),
    "long_symbol.csv": HEAD + rows((3, "symbol", "A" * 20_000)),
    "control_char_symbol.csv": HEAD + rows((1, "symbol", "SP\x07Y")),
}


def parquet_frames():
    good = pd.read_csv(pd.io.common.StringIO(HEAD + rows()))
    good["ts_event"] = pd.to_datetime(good["ts_event"]).dt.tz_localize("America/New_York")
    return {
        "string_prices.parquet": good.assign(close=["471", "472", "abc", "474", "475"]),
        "integer_timestamps.parquet": good.assign(ts_event=good["ts_event"].astype("int64")),
        "nan_close.parquet": good.assign(close=[471.0, float("nan"), 473.0, 474.0, 475.0]),
        "missing_columns.parquet": good.drop(columns=["symbol"]),
        "duplicate_timestamps.parquet": pd.concat([good.iloc[:4], good.iloc[3:]]).reset_index(drop=True),
        "boolean_volume.parquet": good.assign(volume=[True, False, True, True, False]),
        "numbers_as_text.parquet": good.assign(close=["471", "472", "473", "474", "475"]),  # typed file: text is refused, not coerced
        "infinite_close.parquet": good.assign(close=[471.0, 472.0, float("inf"), 474.0, 475.0]),
    }


def alpaca_bar(t, o=470.0, h=472.0, l=468.0, c=471.0, v=1e6):
    return dict(t=t, o=o, h=h, l=l, c=c, v=v, n=1000, vw=470.5)


STAMPS = [f"{d}T05:00:00Z" for d in DAYS]
JSON = {
    "alpaca_null_close.json": {"bars": {"SPY": [alpaca_bar(t, c=None if i == 2 else 471.0) for i, t in enumerate(STAMPS)]}, "next_page_token": None},
    "alpaca_high_below_low.json": {"bars": {"SPY": [alpaca_bar(t, h=460.0 if i == 1 else 472.0) for i, t in enumerate(STAMPS)]}, "next_page_token": None},
    "alpaca_unknown_symbol.json": {"bars": {"SPY": [alpaca_bar(t) for t in STAMPS], "ZZZQ": [alpaca_bar(STAMPS[0])]}, "next_page_token": None},
    "alpaca_missing_fields.json": {"bars": {"SPY": [{k: v for k, v in alpaca_bar(t).items() if k != "c"} for t in STAMPS]}, "next_page_token": None},
    "alpaca_wrong_key.json": {"data": {"SPY": []}, "next_page_token": None},
    "alpaca_quotes_not_bars.json": {"quotes": {"SPY": [{"t": STAMPS[0], "ap": 471.1, "as": 1, "bp": 470.9, "bs": 2}]}, "next_page_token": None},
    "alpaca_empty_range.json": {"bars": {}, "next_page_token": None},
    "binance_negative_volume.json": [[1704067200000 + i * 86400000, "40000", "40500", "39500", "40100", "-1" if i == 1 else "10", 0, "0", 1, "0", "0", "0"] for i in range(3)],
    "binance_zero_price.json": [[1704067200000 + i * 86400000, "40000", "40500", "0" if i == 2 else "39500", "40100", "10", 0, "0", 1, "0", "0", "0"] for i in range(3)],
    "binance_close_above_high.json": [[1704067200000 + i * 86400000, "40000", "40500", "39500", "41000" if i == 0 else "40100", "10", 0, "0", 1, "0", "0", "0"] for i in range(3)],
    "binance_gap.json": [[1704067200000 + i * 86400000, "40000", "40500", "39500", "40100", "10", 0, "0", 1, "0", "0", "0"] for i in (0, 1, 4)],
    "binance_object_not_list.json": {"klines": "not here"},
    "binance_invalid_symbol.json": {"code": -1121, "msg": "Invalid symbol."},
}
RAW = {
    "alpaca_malformed.json": '{"bars": {"SPY": [{"t": "2024-01-02T05:00:00Z", "o": 470, ',
    "binance_malformed.json": '[[1704067200000, "40000", "40500"',
}

if __name__ == "__main__":
    for name, text in CSV.items(): (HERE / name).write_text(text, encoding="utf-8", errors="surrogateescape")
    for name, df in parquet_frames().items(): df.to_parquet(HERE / name)
    (HERE / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 8)
    for name, body in JSON.items(): (HERE / name).write_text(json.dumps(body, indent=1) + "\n")
    for name, text in RAW.items(): (HERE / name).write_text(text)
    print(len(list(HERE.glob("*.*"))) - 1, "corpus files")

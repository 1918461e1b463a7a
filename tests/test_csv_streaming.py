"""The streaming CSV importer: pieces cut anywhere give the frame the pandas text path gives, the file is never held
whole, the hash is of the bytes parsed, broken gzip falls back to the named error; and the faster bar validation
(shared symbol codes, no sort when rows are in order) flags exactly the rows a plain per-row reference flags."""
import gzip
import hashlib
from pathlib import Path

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

import trading.data.files as files
from trading.core.errors import DataValidationError
from trading.data.bars import sort_bars, validate_bars
from trading.data.files import FileSource, read_bar_file

MISSING = ["", "na", "NaN", "NULL", "n/a", "None"]


def _csv(rng, n_sym=4, n_bars=30, crlf=False, bom=False, blank_tail=False, missing=True) -> bytes:
    days = xcals.get_calendar("XNYS", start="2023-01-01").sessions[:n_bars]  # trading days: the sources check the calendar
    lines = ["ts_event,symbol,open,high,low,close,volume"]
    for s in [f"S{i}" for i in range(n_sym)]:
        full = rng.random() < 0.5 or not missing
        for d in days:
            c = float(np.round(rng.uniform(10, 11), 4))
            o, h, l = (f"{c:.4f}", f"{c * 1.01:.4f}", f"{c * 0.99:.4f}") if full else (rng.choice(MISSING),) * 3
            v = rng.choice([str(int(rng.integers(0, 10**6))), f"{rng.uniform(0, 1e5):.3e}"] + (MISSING if missing else []))
            lines.append(f"{d:%Y-%m-%d},{s},{o},{h},{l},{c},{v}")
    text = ("\r\n" if crlf else "\n").join(lines) + ("\n\n" if blank_tail else "\n")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def _slow_read(path, monkeypatch, **kw):
    with monkeypatch.context() as m:
        m.setattr(files, "_read_csv_arrow", lambda data, gz: None)
        m.setattr(files, "_plain_dates", lambda s: None)
        return read_bar_file(path, **kw)


@pytest.mark.parametrize("seed", range(4))
def test_pieces_cut_anywhere_give_the_pandas_frame(tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    data = _csv(rng, crlf=seed % 2 == 1, bom=seed == 2, blank_tail=seed == 3)
    for gz in (False, True):
        p = tmp_path / ("b.csv.gz" if gz else "b.csv")
        p.write_bytes(gzip.compress(data) if gz else data)
        slow = _slow_read(p, monkeypatch)
        for piece in (64, 97, 1000, 1 << 20):  # lines cross piece ends at every position
            monkeypatch.setattr(files, "_CHUNK", piece)
            calls = []
            real = files._GrowingColumns.append
            monkeypatch.setattr(files._GrowingColumns, "append", lambda self, t: calls.append(t.num_rows) or real(self, t))
            fast = read_bar_file(p)
            monkeypatch.setattr(files._GrowingColumns, "append", real)
            assert sum(calls) == len(slow), "the fast path must have taken the file"
            if piece == 64 and not gz: assert len(calls) > 10  # really in pieces
            pd.testing.assert_frame_equal(fast, slow)
            assert fast.attrs["sha256"] == slow.attrs["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_the_file_is_streamed_never_read_whole(tmp_path, monkeypatch):
    p = tmp_path / "b.csv"
    p.write_bytes(_csv(np.random.default_rng(7), missing=False))
    monkeypatch.setattr(files, "_CHUNK", 256)
    monkeypatch.setattr(files, "read_file_bytes", lambda *a, **k: pytest.fail("the whole file was read into memory"))
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the whole file was read into memory"))
    src = FileSource(p)
    bars = src.bars()
    assert len(bars) == 4 * 30 and src.file_hashes[str(p)] == hashlib.sha256(open(p, "rb").read()).hexdigest()


@pytest.mark.parametrize("damage", ["truncated", "trailing"])
def test_broken_gzip_falls_back_to_the_named_error(tmp_path, damage):
    good = gzip.compress(_csv(np.random.default_rng(1)))
    p = tmp_path / "b.csv.gz"
    p.write_bytes(good[:len(good) // 2] if damage == "truncated" else good + b"not gzip at all")
    assert files._read_csv_arrow(p.read_bytes(), True) is None
    with pytest.raises(DataValidationError) as e:
        read_bar_file(p)
    assert e.value.rule == "unreadable_file"


@pytest.mark.parametrize("later", ["2023-01-05T10:00:00", "", "nan", "2023-02-30"])
def test_a_date_column_that_changes_form_later_takes_the_text_path(tmp_path, monkeypatch, later):
    monkeypatch.setattr(files, "_CHUNK", 64)  # the odd value sits pieces after the first row, which chose the date type
    rows = [f"2023-01-{d:02d},AAA,{10 + d}" for d in range(2, 12)] + [f"{later},AAA,30"]
    p = tmp_path / "b.csv"
    p.write_text("ts_event,symbol,close\n" + "\n".join(rows) + "\n")
    try: fast = read_bar_file(p, daily=True)
    except DataValidationError as e: fast = (e.rule, e.row)
    try: slow = _slow_read(p, monkeypatch, daily=True)
    except DataValidationError as e: slow = (e.rule, e.row)
    if isinstance(slow, tuple): assert fast == slow and slow[1] == 11
    else: pd.testing.assert_frame_equal(fast, slow)


def test_returned_bars_can_be_edited_without_touching_the_source(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(_csv(np.random.default_rng(3), missing=False))
    src = FileSource(p)
    first = src.bars()
    kept = first.copy(deep=True)
    first.loc[0, "close"] = -1.0  # shares memory with the source's cache until written: copy-on-write must copy here
    first["open"] *= 2
    pd.testing.assert_frame_equal(src.bars(), kept)


# --- validation against a plain per-row reference ---------------------------------------------------------------

def _frame(rng, n_sym=5, n=60, interleave=True):
    "Bars of several symbols, rows interleaved at random (codes not contiguous), each symbol's timestamps increasing."
    syms = np.array([f"S{i}" for i in range(n_sym)])
    sym = rng.choice(syms, n) if interleave else np.sort(rng.choice(syms, n))
    ts = np.empty(n, "M8[ns]")
    for s in syms:
        rows = np.flatnonzero(sym == s)
        ts[rows] = pd.bdate_range("2024-01-01", periods=len(rows)).to_numpy()
    close = rng.uniform(10, 11, n)
    return pd.DataFrame({"ts_event": pd.DatetimeIndex(ts).tz_localize("UTC"), "symbol": pd.array(sym, dtype="string"),
                         "open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1.0,
                         "source": pd.array(["t"] * n, dtype="string")})


def _reference(df, max_jump=10.0):
    "The first broken ordering, kind or jump rule, row by row in file order: (rule, symbol, ts_event) or None."
    full = ~df[["open", "high", "low"]].isna().any(axis=1).to_numpy()
    kinds = {}
    for s, f in zip(df["symbol"], full): kinds.setdefault(s, set()).add(bool(f))
    mixed = [s for s in kinds if len(kinds[s]) == 2]
    if mixed:
        i = next(i for i, (s, f) in enumerate(zip(df["symbol"], full)) if s == mixed[0] and not f)
        return "mixed_bar_kinds", df["symbol"].iloc[i], df["ts_event"].iloc[i]
    last, found = {}, {}
    for i, (s, t, c) in enumerate(zip(df["symbol"], df["ts_event"], df["close"])):
        if s in last:
            pt, pc = last[s]
            if t == pt: found.setdefault("duplicate_timestamp", i)
            if t < pt: found.setdefault("unsorted_timestamp", i)
            if abs(np.log(c / pc)) > np.log(max_jump): found.setdefault("price_jump", i)
        last[s] = (t, c)
    for rule in ("duplicate_timestamp", "unsorted_timestamp", "price_jump"):
        if rule in found:
            return rule, df["symbol"].iloc[found[rule]], df["ts_event"].iloc[found[rule]]
    return None


@pytest.mark.parametrize("seed", range(40))
def test_validation_flags_the_rows_a_per_row_reference_flags(seed):
    rng = np.random.default_rng(seed)
    df = _frame(rng, interleave=seed % 4 != 0)
    n = len(df)
    fault = seed % 5
    i, j = rng.integers(0, n, 2)
    if fault == 1: df.loc[i, "ts_event"] = df.loc[df.index[df.symbol == df.symbol[i]][0], "ts_event"]  # a repeated timestamp (or none)
    elif fault == 2: df.loc[[i, j], "ts_event"] = df.loc[[j, i], "ts_event"].to_numpy()  # two rows swapped in time
    elif fault == 3: df.loc[i, ["open", "high", "low", "close"]] *= 20  # a jump up (and one down after it)
    elif fault == 4: df.loc[i, ["open", "high", "low"]] = np.nan  # one close-only bar in a full symbol
    want = _reference(df)
    try:
        validate_bars(df, source="t")
        got = None
    except DataValidationError as e:
        got = (e.rule, e.symbol, e.ts_event)
    if got is not None and got[0] not in ("duplicate_timestamp", "unsorted_timestamp", "price_jump", "mixed_bar_kinds"):
        pytest.fail(f"unexpected rule {got}")
    assert got == want, (seed, got, want)


@pytest.mark.parametrize("seed", range(10))
def test_sort_bars_is_pandas_sort_and_copies_nothing_when_in_order(seed):
    rng = np.random.default_rng(seed)
    df = _frame(rng, interleave=seed % 2 == 0)
    if seed % 3 == 0: df.loc[rng.integers(0, len(df)), "ts_event"] = df["ts_event"].iloc[0]  # ties: the sort must be stable
    want = df.sort_values(["symbol", "ts_event"], kind="stable").reset_index(drop=True)
    got = sort_bars(df)
    pd.testing.assert_frame_equal(got, want)
    again = sort_bars(got)
    pd.testing.assert_frame_equal(again, want)
    assert np.shares_memory(again["close"].to_numpy(), got["close"].to_numpy())  # in order already: no copy


@pytest.mark.parametrize("gz", [False, True])
def test_a_line_no_bar_file_has_is_refused_in_bounded_memory(tmp_path, monkeypatch, gz):
    "A gzip bomb (or any file) with a line of megabytes is refused by the streaming reader itself, never handed whole to pandas."
    body = b"ts_event,symbol,close\n2024-01-02,AAA," + b"9" * (3 << 20) + b"\n"
    p = tmp_path / ("b.csv.gz" if gz else "b.csv")
    p.write_bytes(gzip.compress(body) if gz else body)
    monkeypatch.setattr(files.pd, "read_csv", lambda *a, **k: pytest.fail("the text path was given the file"))
    with pytest.raises(DataValidationError) as e:
        read_bar_file(p)
    assert e.value.rule == "unreadable_file" and "longer than" in str(e.value)

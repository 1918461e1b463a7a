"""Bulk ingest of bars on both engines: conflicts refused whole, duplicates named, both merge paths equal.

A batch is staged, then merged one of two ways (see nbs/store/03_bars.ipynb): with no join when nothing is stored in the
batch's time range (the range probe finds nothing), else after one counting join with the stored bars. These tests drive both.
"""
import numpy as np
import pandas as pd
import pytest

from store_race import bars_of
from test_store import _count, db, kind, new_db  # noqa: F401  (fixtures)
from trading.core.errors import DataValidationError
from trading.store.bars import IngestResult, ingest_bars, ingest_bars_conn, read_bars, upsert_instruments
from trading.store.engine import StoreIntegrityError, write


def _register(eng, *symbols):
    with write(eng) as c:
        upsert_instruments(c, list(symbols), "24/7")


def test_conflicting_reingest_is_refused_whole(db, kind):
    "A batch with one changed bar is refused naming it; nothing of the transaction lands, not even a fresh symbol written before it."
    _register(db, "BASE", "FRESH")
    base = bars_of("BASE", 1, 40)
    assert ingest_bars(db, base, "24/7") == IngestResult(40, 40)
    batch = pd.concat([base.iloc[20:], bars_of("BASE", 1, 60).iloc[40:]], ignore_index=True)  # 20 stored + 20 new bars
    batch.loc[10, "close"] += 0.25  # the stored bar of day 30 now differs
    for mode in ("error", None):
        with pytest.raises(DataValidationError) as e:
            if mode: ingest_bars(db, batch, "24/7")
            else:  # the same conflict after another ingest in the same transaction (no stored bars in range: no join) wrote its rows
                with write(db) as c:
                    assert ingest_bars_conn(c, bars_of("FRESH", 2, 30)).inserted == 30
                    ingest_bars_conn(c, batch)
        assert e.value.rule == "bar_conflict" and e.value.symbol == "BASE" and e.value.count == 1
        assert e.value.ts_event == batch.loc[10, "ts_event"]
        assert _count(db, "bars") == 40
        pd.testing.assert_frame_equal(read_bars(db, ["BASE", "FRESH"]), base)
    assert ingest_bars(db, batch, "24/7", on_conflict="ignore") == IngestResult(40, 20, 0, 19, 1)
    assert read_bars(db, "BASE")["close"].iloc[30] == base["close"].iloc[30]  # kept as stored
    assert ingest_bars(db, batch, "24/7", on_conflict="update") == IngestResult(40, 0, 1, 39, 0)
    pd.testing.assert_frame_equal(read_bars(db, "BASE").iloc[20:].reset_index(drop=True), batch)


def test_duplicate_keys_are_named_even_without_validation(db, kind):
    "Two bars with one key in a batch: refused typed (before, one of them was dropped silently on both engines)."
    _register(db, "DUP")
    df = bars_of("DUP", 1, 10)
    dup = pd.concat([df.iloc[:8], df.iloc[[7]].assign(volume=5.0), df.iloc[8:]], ignore_index=True)  # same key, other volume
    for validate in (False, True):
        with pytest.raises(DataValidationError) as e:
            ingest_bars(db, dup, "24/7", validate=validate)
        assert e.value.rule == "duplicate_timestamp" and e.value.symbol == "DUP"
        assert e.value.ts_event == df["ts_event"].iloc[7]
    assert _count(db, "bars") == 0


def test_both_write_paths_store_the_same_bars(db, kind):
    "Shuffled rows, missing open/volume, two symbols, interleaved days: fresh (no join) and overlapping (joined) batches store equal bars."
    _register(db, "AAA", "BBB")
    rng = np.random.default_rng(7)
    both = pd.concat([bars_of("AAA", 3, 30), bars_of("BBB", 4, 30)], ignore_index=True)
    both.loc[[2, 33], "open"] = np.nan
    both.loc[[5, 40], "volume"] = np.nan
    even, odd = both.iloc[0::2], both.iloc[1::2]  # odd days fall inside the even days' range but share no key
    shuffled = lambda d: d.sample(frac=1, random_state=rng.integers(1 << 30)).reset_index(drop=True)
    assert ingest_bars(db, shuffled(even), "24/7", validate=False) == IngestResult(30, 30)
    assert ingest_bars(db, shuffled(odd), "24/7", validate=False) == IngestResult(30, 30)
    assert ingest_bars(db, shuffled(both), "24/7", validate=False) == IngestResult(60, 0, 0, 60)
    stored = read_bars(db, ["AAA", "BBB"])
    pd.testing.assert_frame_equal(stored, both)
    assert stored["open"].isna().sum() == 2 and stored["volume"].isna().sum() == 2


def test_bad_row_after_a_clean_copy_leaves_nothing(db, kind):
    "A constraint the plain INSERT breaks rolls the whole batch back, typed (the database's own rules, validation skipped)."
    _register(db, "CHK")
    bad = bars_of("CHK", 1, 50)
    bad.loc[49, ["high", "low"]] = [1.0, 2.0]
    with pytest.raises(StoreIntegrityError) as e:
        ingest_bars(db, bad, "24/7", validate=False)
    assert e.value.rule == "check_violation" and "high_not_below_low" in str(e.value)
    with pytest.raises(StoreIntegrityError) as e:
        with write(db) as c:
            ingest_bars_conn(c, bars_of("UNREGISTERED", 1, 5))
    assert e.value.rule == "foreign_key_violation"
    assert _count(db, "bars") == 0


def _race_overlapping(eng, symbol: str, mode: str) -> dict:
    "Writers 1 (days 0-39) and 2 (days 20-59, other values on days 20-39) ingest `symbol` at once; returns writer -> outcome."
    import threading
    batches = {1: bars_of(symbol, 1, 60).iloc[:40].reset_index(drop=True), 2: bars_of(symbol, 2, 60).iloc[20:].reset_index(drop=True)}
    barrier, out = threading.Barrier(2), {}

    def run(w):
        barrier.wait(timeout=30)
        try: out[w] = ingest_bars(eng, batches[w], "24/7", on_conflict=mode, validate=False)
        except DataValidationError as e: out[w] = (e.rule, e.count)
        except Exception as e:  # noqa: BLE001 - an untyped error or a lost lock race is what this test looks for
            out[w] = f"{type(e).__name__}: {e}"[:300]

    threads = [threading.Thread(target=run, args=(w,)) for w in batches]
    for th in threads: th.start()
    for th in threads: th.join(timeout=120)
    return out


def test_concurrent_overlapping_ingests_end_consistent(db, kind):
    """Two ingests of overlapping ranges race: one runs first (its range was empty: no join), the other sees its bars.

    Each mode ends as if they had run one after the other, and every report matches what is stored: in error mode the
    second is refused whole (its 20 new days absent); ignore keeps the first's overlap; update leaves the second's."""
    symbols = [f"OVL{m}{t}" for m in "EIU" for t in range(3)]
    _register(db, *symbols)
    for symbol in symbols:
        mode = dict(E="error", I="ignore", U="update")[symbol[3]]
        out = _race_overlapping(db, symbol, mode)
        firsts = [w for w, r in out.items() if r == IngestResult(40, 40)]
        assert len(firsts) == 1, (mode, out)
        first = firsts[0]
        second = 3 - first
        want = {"error": ("bar_conflict", 20), "ignore": IngestResult(40, 20, 0, 0, 20), "update": IngestResult(40, 20, 20, 0, 0)}[mode]
        assert out[second] == want, (mode, out)
        stored = read_bars(db, symbol)
        days = (stored["ts_event"] - pd.Timestamp("2024-01-01", tz="UTC")).dt.days.to_numpy()
        writer = stored["source"].str.removeprefix("writer-").astype(int).to_numpy()
        span = {1: range(0, 40), 2: range(20, 60)}
        expect_days = list(span[first]) if mode == "error" else list(range(60))
        assert days.tolist() == expect_days, (mode, first)
        overlap_owner = second if mode == "update" else first
        expect_writer = [overlap_owner if 20 <= d < 40 else (1 if d < 20 else 2) for d in expect_days]
        assert writer.tolist() == expect_writer, (mode, first)
        np.testing.assert_array_equal(stored["close"].to_numpy(), [100 + w / 2 + d / 100 for w, d in zip(writer, days)])


def test_timestamps_round_trip_to_the_microsecond(db, kind):
    "Staged as integer microseconds (PostgreSQL), stored as timestamptz: exact before 1970, at odd microseconds, far ahead."
    _register(db, "TSX")
    ts = pd.to_datetime(["1900-01-01 00:00:00.000001", "1969-12-31 23:59:59.999999", "1970-01-01 00:00:00.000000", "2024-02-29 13:45:12.345678",
                         "2200-12-31 23:59:59.999999"], utc=True).as_unit("ns")
    df = bars_of("TSX", 1, len(ts)).assign(ts_event=ts)
    assert ingest_bars(db, df, "24/7", validate=False) == IngestResult(5, 5)
    pd.testing.assert_frame_equal(read_bars(db, "TSX"), df)
    changed = df.copy()
    changed.loc[[1, 3], "close"] += 0.125  # the merge path: the conflict is found at exactly these microseconds
    with pytest.raises(DataValidationError) as e:
        ingest_bars(db, changed, "24/7", validate=False)
    assert e.value.ts_event == ts[1] and e.value.count == 2
    assert ingest_bars(db, changed, "24/7", on_conflict="update", validate=False) == IngestResult(5, 0, 2, 3)
    pd.testing.assert_frame_equal(read_bars(db, "TSX"), changed)

"""Hostile input, generated rather than read from a fixed corpus: every mutation of a good file must be
refused by the file importer with a typed error naming the file, the row, the symbol and the rule, and
the store's own ingest must refuse the same symbols on SQLite and PostgreSQL alike.
"""
import os
import uuid

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from trading.core.errors import DataValidationError, UnknownSymbolError
from trading.data.bars import to_bar_schema
from trading.data.files import FileSource
from trading.data.snapshot import write_snapshot

DAYS = pd.bdate_range("2024-01-02", periods=11).drop(pd.Timestamp("2024-01-15"))  # XNYS sessions (MLK day closed)
HEADER = ["ts_event", "symbol", "open", "high", "low", "close", "volume"]


def good_rows():
    rows = []
    for s, base in (("AAPL", 185.0), ("MSFT", 370.0)):
        for i, d in enumerate(DAYS):
            c = base + i
            rows.append([d.strftime("%Y-%m-%d"), s, f"{c - 0.5}", f"{c + 1}", f"{c - 1}", f"{c}", f"{1_000_000 + i}"])
    return rows


def write_csv(path, rows):
    path.write_text(",".join(HEADER) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")


# mutation -> (column it touches, values it writes, rule(s) it must be refused with)
NUMERIC_POISON = {"inf": "non_finite", "-inf": "non_finite", "Infinity": "non_finite", "1e400": "non_finite",
                  "1e300": "price_out_of_bounds", "abc": "wrong_dtype", '"1,5"': "wrong_dtype", "0x1A": "wrong_dtype", "True": "wrong_dtype"}
SYMBOL_POISON = ["A" * 100_000, "../../etc/passwd", "x'; DROP TABLE bars;--", "AA\x01PL", "aapl", "BTC/USD/X", "A..B", "C:\\\\evil"]
TIME_POISON = {"2099-01-02": "future_timestamp", "yesterday": "unparseable_timestamp", "2024-02-30": "unparseable_timestamp",
               "2024-01-05T00:00:00+09:00": "mixed_timezones"}


def cases(seed=20261202, n=36):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        row = int(rng.integers(1, 19))  # never the first row of a symbol: a later row must be found and named
        kind = k % 3
        if kind == 0:
            value = list(NUMERIC_POISON)[int(rng.integers(len(NUMERIC_POISON)))]
            col = ["open", "high", "low", "close", "volume"][int(rng.integers(5))]
            rule = NUMERIC_POISON[value]
            if value == "1e300" and col == "volume": rule = "volume_out_of_bounds"
            out.append((f"{col}={value}@{row}", HEADER.index(col), value, row, {rule} | ({"high_below_low", "open_outside_range", "close_outside_range"} if rule == "price_out_of_bounds" else set())))
        elif kind == 1:
            value = SYMBOL_POISON[int(rng.integers(len(SYMBOL_POISON)))]
            out.append((f"symbol#{k}@{row}", 1, value, row, {"bad_symbol"}))
        else:
            value = list(TIME_POISON)[int(rng.integers(len(TIME_POISON)))]
            out.append((f"ts={value}@{row}", 0, value, row, {TIME_POISON[value], "unsorted_timestamp", "price_jump"}))
    return out


@pytest.mark.parametrize("name,col,value,row,rules", cases(), ids=[c[0][:40] for c in cases()])
def test_mutated_file_is_refused_with_file_row_symbol_and_rule(name, col, value, row, rules, tmp_path):
    rows = good_rows()
    rows[row][col] = value
    f = tmp_path / "export.csv"
    write_csv(f, rows)
    with pytest.raises(DataValidationError) as info:
        write_snapshot(tmp_path / "data", source="csv", files=[str(f)], calendar="XNYS")
    e, msg = info.value, str(info.value)
    assert e.rule in rules, msg
    assert f"source={f}" in msg and f"row={row + 1}" in msg, msg  # the file and the 1-based data row
    assert e.symbol is not None and len(msg) < 600, msg
    assert "Traceback" not in msg and "pydantic" not in msg.lower()
    assert not (tmp_path / "data").exists()


def test_jump_policy_is_the_users_and_never_silent(tmp_path):
    rows = good_rows()
    for r in rows[13:20]:  # MSFT quoted in cents from row 14 on: a unit slip
        r[2:6] = [f"{float(x) * 100}" for x in r[2:6]]
    f = tmp_path / "cents.csv"
    write_csv(f, rows)
    with pytest.raises(DataValidationError) as info:
        FileSource(f).bars()
    assert info.value.rule == "price_jump" and info.value.row == 14 and "MSFT" in str(info.value)


# --- the store's ingest runs the same symbol rule on both engines --------------------------------------------

PG_URL = os.environ.get("TRADING_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    from trading.store.engine import make_engine
    from trading.store.migrate import upgrade
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path}/h.sqlite")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    if not PG_URL:
        if os.environ.get("TRADING_TEST_SKIP_PG") == "1": pytest.skip("PostgreSQL skipped explicitly")
        pytest.fail("TRADING_TEST_PG_URL is not set")
    admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"trading_h_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c: c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng = make_engine(make_url(PG_URL).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False))
    try:
        upgrade(eng)
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as c: c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.mark.parametrize("symbol", ["A" * 100_000, "x'; DROP TABLE bars;--", "SP\x00Y", "../../x", "spy"], ids=["100k", "sql", "nul", "path", "lower"])
def test_store_ingest_refuses_hostile_symbols_on_both_engines(engine, symbol):
    from trading.store.bars import ingest_bars, read_bars
    bars = to_bar_schema(pd.DataFrame(dict(ts_event=pd.to_datetime(["2024-01-02", "2024-01-03"], utc=True), symbol=[symbol] * 2,
                                           open=[1.0, 1.0], high=[2.0, 2.0], low=[0.5, 0.5], close=[1.5, 1.5], volume=[10.0, 10.0], source="t")))
    with pytest.raises(DataValidationError) as info:
        ingest_bars(engine, bars, calendar="XNYS")
    assert info.value.rule == "bad_symbol" and len(str(info.value)) < 400
    assert len(read_bars(engine)) == 0


def test_identical_bars_from_a_renamed_file_are_not_a_conflict(engine, tmp_path):
    from trading.store.bars import ingest_bars, read_bars
    a, b = tmp_path / "export_2024.csv", tmp_path / "copy of export.csv"
    write_csv(a, good_rows())
    b.write_bytes(a.read_bytes())
    first = ingest_bars(engine, FileSource(a).bars(), calendar="XNYS")
    again = ingest_bars(engine, FileSource(b).bars(), calendar="XNYS")  # on_conflict="error": must not raise
    assert first.inserted == 20 and again.inserted == 0 and len(read_bars(engine)) == 20

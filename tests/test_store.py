"""The storage layer on both engines: SQLite (a file) and a real PostgreSQL 15 (TRADING_TEST_PG_URL).

PostgreSQL is not optional: without TRADING_TEST_PG_URL these tests FAIL, unless TRADING_TEST_SKIP_PG=1
says explicitly to skip them (e.g. on a laptop without a server). `make services` starts the server.
"""
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from conftest import BIN, ROOT, run
from trading.core.orders import Fill, Order, Position
from trading.data.snapshot import load_snapshot
from trading.store.backup import table_rows
from trading.store.bars import IngestResult, ingest_bars, ingest_bars_conn, ingest_snapshot, read_bars
from trading.store.engine import StoreIntegrityError, describe, make_engine, read, write
from trading.store.migrate import DestructiveMigrationError, current_revision, downgrade, revisions, schema_diff, upgrade
from trading.store.records import (append_event, load_fills, load_positions, record_equity, record_fill, record_order,
                                   save_position, start_run, update_order)
from trading.store.schema import fills, metadata, news, news_symbols, sentiment

PG_URL = os.environ.get("TRADING_TEST_PG_URL")
SKIP_PG = os.environ.get("TRADING_TEST_SKIP_PG") == "1"
D = Decimal
T0 = dt.datetime(2024, 1, 2, 15, tzinfo=dt.timezone.utc)
# the installed `trading-db` entry point when present, else the same main() through `python -m`
TRADING_DB = [BIN / "trading-db"] if (BIN / "trading-db").exists() else [sys.executable, "-m", "trading.store.cli"]


def _pg_admin():
    if not PG_URL:
        if SKIP_PG:
            pytest.skip("PostgreSQL skipped explicitly (TRADING_TEST_SKIP_PG=1)")
        pytest.fail("TRADING_TEST_PG_URL is not set: run `make services` (tools/services.sh) and export the URL it prints, "
                    "or set TRADING_TEST_SKIP_PG=1 to skip the PostgreSQL half of the storage suite on purpose")
    return create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")


@pytest.fixture
def new_db(tmp_path):
    "A factory of empty databases of one engine kind: new_db() -> URL; dropped afterwards."
    made, admin = [], None

    def factory(kind):
        nonlocal admin
        if kind == "sqlite":
            return f"sqlite:///{tmp_path}/db{len(made)}-{uuid.uuid4().hex[:6]}.sqlite"
        admin = admin or _pg_admin()
        name = f"trading_t_{uuid.uuid4().hex[:12]}"
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return make_url(PG_URL).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)

    yield factory
    if admin is not None:
        with admin.connect() as c:
            for name in made:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request):
    return request.param


@pytest.fixture
def db(kind, new_db):
    "An engine on a fresh, migrated database of each kind."
    eng = make_engine(new_db(kind))
    upgrade(eng)
    yield eng
    eng.dispose()


def _count(eng, table):
    with read(eng) as c:
        return c.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def test_engine_is_what_it_says(db, kind):
    d = describe(db)
    assert d["dialect"] == kind
    if kind == "sqlite":
        assert d["journal_mode"] == "wal" and d["foreign_keys"]
    else:
        assert d["version"].startswith("15.")
        with read(db) as c:
            if d["timescaledb"]:  # not the case on Debian's PostgreSQL 15 used here: this branch is unexercised
                hyper = set(c.exec_driver_sql("SELECT hypertable_name FROM timescaledb_information.hypertables").scalars())
                assert hyper == {"bars", "equity"}
            else:
                assert c.exec_driver_sql("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").scalar() == 0


def test_migrations_from_empty_and_from_previous_revision(kind, new_db):
    eng = make_engine(new_db(kind))
    assert current_revision(eng) is None
    assert upgrade(eng) == revisions()[-1] == "0005"
    assert schema_diff(eng) == []  # migrations and schema.metadata describe the same database
    assert set(metadata.tables) <= set(inspect(eng).get_table_names())

    prev = make_engine(new_db(kind))
    assert upgrade(prev, "0001") == "0001"
    assert "news" not in inspect(prev).get_table_names()
    with write(prev) as c:
        run_id = start_run(c, "backtest", "pre-upgrade", dict(x=1), code="test")
        record_order(c, Order(symbol="AAA", side="buy", qty=D("0.3"), ts_created=T0, client_order_id="keep-me"), run_id)
    assert upgrade(prev, "0002") == "0002"
    with write(prev) as c:  # a fill journalled before 0003 (its table has no fee asset yet)
        record_fill(c, Fill(client_order_id="keep-me", symbol="AAA", side="buy", qty=D("0.3"), price=D("10.01"), fee=D("0.003"), ts_event=T0), "F-old")
    assert "fee_asset" not in {col["name"] for col in inspect(prev).get_columns("fills")}
    assert upgrade(prev, "0003") == "0003"  # from the previous revision
    with write(prev) as c:
        c.execute(fills.insert().values(fill_id="F-new", order_id=1, symbol="AAA", side="buy", qty=D("0.1"), price=D("10.01"), fee=D("0.001001"),
                                        multiplier=D(1), ts_event=T0, fee_asset="AAA", fee_qty=D("0.0001")))
    with read(prev) as c:
        rows = c.execute(fills.select().order_by(fills.c.id)).all()
        assert [(r.fill_id, r.fee, r.fee_asset, r.fee_qty) for r in rows] == [("F-old", D("0.003"), None, None), ("F-new", D("0.001001"), "AAA", D("0.0001"))]
    with pytest.raises(DestructiveMigrationError) as e:  # dropping columns of a table that holds rows needs a yes
        downgrade(prev, "0002")
    assert e.value.lost == {"fills.fee_asset": 2, "fills.fee_qty": 2} and current_revision(prev) == "0003"
    with read(prev) as c:  # rolled back whole: the data is still there (raw SQL: the head schema has 0004's columns too)
        a, q = c.exec_driver_sql("SELECT fee_asset, fee_qty FROM fills WHERE fill_id = 'F-new'").one()
        assert (a, D(q)) == ("AAA", D("0.0001"))
    assert downgrade(prev, "0002", drop_data=True) == "0002"
    assert not {"fee_asset", "fee_qty"} & {col["name"] for col in inspect(prev).get_columns("fills")} and _count(prev, "fills") == 2
    with read(prev) as c:
        assert c.execute(text("SELECT qty FROM orders WHERE client_order_id = 'keep-me'")).scalar() in ("0.3", D("0.3"))
    with write(prev) as c:
        nid = c.execute(news.insert().values(ts_event=T0, symbol="AAA", source="t", headline="h", content_hash="x")).inserted_primary_key[0]
        c.execute(sentiment.insert().values(news_id=nid, model="lexicon", score=0.5, ts_scored=T0))
    with pytest.raises(StoreIntegrityError) as e:
        with write(prev) as c:
            c.execute(sentiment.insert().values(news_id=nid, model="other", score=1.5, ts_scored=T0))
    assert e.value.rule == "check_violation"
    with pytest.raises(DestructiveMigrationError, match=r"news \(1 rows\), sentiment \(1 rows\)"):
        downgrade(prev, "0001")
    assert downgrade(prev, "0001", drop_data=True) == "0001" and "news" not in inspect(prev).get_table_names()
    assert _count(prev, "orders") == 1 and _count(prev, "fills") == 2
    assert upgrade(prev) == revisions()[-1] and schema_diff(prev) == []  # and on to head from 0001, keeping the rows
    assert _count(prev, "orders") == 1 and _count(prev, "fills") == 2
    for e_ in (eng, prev):
        e_.dispose()


def test_ingest_is_idempotent_atomic_and_typed(db, kind, small_snapshot):
    snap = load_snapshot(small_snapshot)
    first = ingest_snapshot(db, small_snapshot)
    assert {k: v.inserted for k, v in first.items()} == {k: snap.manifest["datasets"][k]["rows"] for k in snap.datasets}
    pd.testing.assert_frame_equal(read_bars(db, "SPX"), snap.bars("sp500"))  # exact, float for float
    rows = table_rows(db)
    again = ingest_snapshot(db, small_snapshot)
    assert all(v.inserted == v.updated == 0 and v.unchanged == v.rows for v in again.values())
    after = table_rows(db)
    assert after["bars"] == rows["bars"] and after["instruments"] == rows["instruments"]

    n_bars, n_inst = _count(db, "bars"), _count(db, "instruments")
    fresh = snap.bars("vix").assign(symbol="NEWSYM")
    bad = fresh.copy()
    bad.loc[len(bad) - 1, ["high", "low"]] = [10.0, 20.0]  # last row of the batch breaks high >= low
    with pytest.raises(StoreIntegrityError) as e:
        ingest_bars(db, bad, "XNYS", validate=False)
    assert e.value.rule == "check_violation" and "high_not_below_low" in str(e.value)
    assert (_count(db, "bars"), _count(db, "instruments")) == (n_bars, n_inst)  # nothing of the batch, not even its instrument
    with pytest.raises(StoreIntegrityError) as e:
        with write(db) as c:
            ingest_bars_conn(c, fresh.assign(symbol="UNREG"))  # a well-formed symbol no instrument row names
    assert e.value.rule == "foreign_key_violation"
    changed = snap.bars("vix")
    changed.loc[3, "close"] += 0.5
    with pytest.raises(Exception, match="bar_conflict"):
        ingest_bars(db, changed, "XNYS")
    assert ingest_bars(db, changed, "XNYS", on_conflict="update") == IngestResult(len(changed), 0, 1, len(changed) - 1)
    assert _count(db, "bars") == n_bars


def test_orders_fills_positions_exact_and_guarded(db):
    with write(db) as c:
        run_id = start_run(c, "bot", "t", dict(a=1), code="test")
        o = Order(symbol="BTC/USD", side="buy", qty=D("0.3"), ts_created=T0)
        record_order(c, o, run_id)
    pos = Position(symbol="BTC/USD")
    for i, q in enumerate(["0.1", "0.2"]):
        f = Fill(client_order_id=o.client_order_id, symbol="BTC/USD", side="buy", qty=D(q), price=D("43000.01"), fee=D("0.005"),
                 ts_event=T0 + dt.timedelta(seconds=i + 1))
        pos = pos.apply(f)
        with write(db) as c:
            record_fill(c, f, f"E{i}")
            update_order(c, o.client_order_id, "filled" if i else "partially_filled", f.ts_event, filled_qty=pos.signed_qty)
            save_position(c, run_id, pos, f.ts_event)
            record_equity(c, run_id, f.ts_event, D("100000.005") - f.fee, D("1E+5"))
    with read(db) as c:
        fills_back = load_fills(c)
        assert sum(f.qty for f in fills_back) == D("0.3") and sum(f.fee for f in fills_back) == D("0.010")
        assert load_positions(c, run_id)["BTC/USD"] == pos
    with pytest.raises(StoreIntegrityError) as e:
        with write(db) as c:
            record_fill(c, fills_back[0], "E0")
    assert e.value.rule == "unique_violation" and "fill_id" in str(e.value)
    with write(db) as c:
        append_event(c, "note", "test", dict(a=1))
    with pytest.raises(StoreIntegrityError) as e:
        with write(db) as c:
            c.execute(text("DELETE FROM events"))
    assert e.value.rule == "append_only"
    with pytest.raises(StoreIntegrityError):
        with write(db) as c:
            c.execute(text("UPDATE events SET kind = 'x'"))
    assert _count(db, "events") == 1


def _populate(eng, snapshot):
    ingest_snapshot(eng, snapshot, ["vix"])
    with write(eng) as c:
        run_id = start_run(c, "backtest", "bk", dict(lookback=20, names=["a", "b"]), code="test", data_hash="f" * 64)
        o = Order(symbol="VIX", side="sell", qty=D("2.50"), order_type="limit", limit_price=D("19.95"), ts_created=T0)
        record_order(c, o, run_id)
        update_order(c, o.client_order_id, "filled", T0, filled_qty=D("2.50"), broker_order_id="B1")
        f = Fill(client_order_id=o.client_order_id, symbol="VIX", side="sell", qty=D("2.50"), price=D("19.95"), ts_event=T0)
        record_fill(c, f, "X1")
        c.execute(fills.update().where(fills.c.fill_id == "X1").values(fee_asset="BNB", fee_qty=D("0.00012345")))  # paid in BNB
        save_position(c, run_id, Position(symbol="VIX").apply(f), T0)
        record_equity(c, run_id, T0, D("1000.123456789012345678"), D("1049.875"))
        append_event(c, "note", "test", dict(unicode="é€", nested=dict(x=[1, 2])), run_id=run_id)
        nid = c.execute(news.insert().values(ts_event=T0, symbol="VIX", source="t", headline="Vol spikes", content_hash="h1")).inserted_primary_key[0]
        c.execute(sentiment.insert().values(news_id=nid, model="lexicon", score=-0.25, ts_scored=T0))
        c.execute(news_symbols.insert().values(news_id=nid, symbol="VIX"))


def test_backup_restore_round_trip_every_table(db, kind, new_db, small_snapshot, tmp_path):
    _populate(db, small_snapshot)
    before = table_rows(db)
    assert all(len(before[t]) > 0 for t in metadata.tables) and before["alembic_version"] == [("0005",)]
    url = db.url.render_as_string(hide_password=False)
    archive = tmp_path / "backup.dump"
    run(*TRADING_DB, "--url", url, "backup", archive)
    # into a fresh empty database
    target = new_db(kind)
    out = run(*TRADING_DB, "--url", target, "restore", archive).stdout
    assert "restored" in out and (kind == "sqlite" or "****" in out or "@" not in out)
    assert table_rows(make_engine(target)) == before
    # over the same database after it changed
    with write(db) as c:
        append_event(c, "after-backup", "test", {})
        c.execute(text("DELETE FROM sentiment"))
    db.dispose()
    run(*TRADING_DB, "--url", url, "restore", archive)
    assert table_rows(db) == before


def test_bot_writes_while_dashboard_reads(db, kind, tmp_path):
    "Two real processes: a writer committing bot steps and a reader polling; no errors, no torn reads, progress seen."
    url = db.url.render_as_string(hide_password=False)
    n = 300
    worker = ROOT / "tests" / "store_worker.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rd = subprocess.Popen([sys.executable, worker, "reader", url, str(n), tmp_path / "r.json"], env=env)
    wr = subprocess.Popen([sys.executable, worker, "writer", url, str(n), tmp_path / "w.json"], env=env)
    assert wr.wait(timeout=120) == 0 and rd.wait(timeout=120) == 0
    w, r = json.loads((tmp_path / "w.json").read_text()), json.loads((tmp_path / "r.json").read_text())
    print(kind, "writer", w, "reader", r)
    assert w["ok"] and r["n_errors"] == 0, r["errors"]
    assert r["torn"] == 0  # every snapshot showed whole bot steps only
    assert r["final"] == n and r["distinct_counts"] >= 3  # it read *while* the writer wrote, not after it finished
    # whenever a reader held a snapshot open, the writer still committed (seen from another connection): no blocking
    assert r["long_snapshots"] >= 1 and r["writes_during_long"] == r["long_snapshots"]
    assert _count(db, "orders") == n and _count(db, "order_status_history") == 2 * n
    if kind == "sqlite":
        with read(db) as c:
            assert c.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_cli_masks_passwords_and_fails_cleanly(kind, tmp_path):
    if kind == "sqlite":
        res = run(*TRADING_DB, "--url", f"sqlite:///{tmp_path}/x.db", "restore", tmp_path / "missing", check=False)
        assert res.returncode == 2 and "no such backup file" in res.stderr and res.stderr.count("\n") == 1
        return
    _pg_admin()
    u = make_url(PG_URL).set(password="WRONG-pass-123")
    res = run(*TRADING_DB, "--url", u.render_as_string(hide_password=False), "current", check=False)
    assert res.returncode == 2, res
    assert "WRONG-pass-123" not in res.stdout + res.stderr and "**********" in res.stderr


def _in_write_transaction(kind, url) -> bool:
    "Is another process inside a write transaction on this database right now?"
    if kind == "sqlite":
        import sqlite3
        c = sqlite3.connect(make_url(url).database, timeout=0, isolation_level=None)
        try:
            c.execute("BEGIN IMMEDIATE")
            c.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:  # database is locked: the ingest holds the write lock
            return True
        finally:
            c.close()
    with _pg_admin().connect() as c:
        # a transaction holding an xid has written (instruments first, then bars by COPY or INSERT) and not committed yet
        return bool(c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND backend_xid IS NOT NULL "
                                   "AND pid <> pg_backend_pid()"), dict(d=make_url(url).database)).scalar())


def test_ingest_killed_mid_batch_leaves_nothing(db, kind, small_snapshot):
    "SIGKILL the `trading-db ingest` process while its write transaction is open: no bar, no instrument, no event survives."
    import signal
    import time
    url = db.url.render_as_string(hide_password=False)
    proc = subprocess.Popen([*map(str, TRADING_DB), "--url", url, "ingest", "--dir", str(small_snapshot)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _in_write_transaction(kind, url):
        assert proc.poll() is None and time.monotonic() < deadline, "the ingest finished before it could be caught mid-batch"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (_count(db, "bars"), _count(db, "instruments"), _count(db, "events")) == (0, 0, 0)
    res = ingest_snapshot(db, small_snapshot)  # and the database is fine for the next run
    assert _count(db, "bars") == sum(r.rows for r in res.values()) > 0

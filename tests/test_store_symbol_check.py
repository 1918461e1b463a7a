"""Every bar names a registered instrument, whoever writes: SQLite's foreign key, PostgreSQL's set-based triggers (revision 0005).

On PostgreSQL the per-row foreign key `fk_bars_symbol_instruments` is replaced by statement-level triggers (see
nbs/store/migrations/05_r0005_bars_symbol_check.ipynb). These tests write past our ingest (raw INSERT, COPY, UPDATE,
DELETE, TRUNCATE), race a delete against an insert on two connections, and migrate a database holding bars up and down.
"""
import threading
import time

import pandas as pd
import pytest
import sqlalchemy.exc
from sqlalchemy import inspect, text

from store_race import bars_of
from test_store import _count, db, kind, new_db  # noqa: F401  (fixtures)
from trading.store.bars import ingest_bars, ingest_bars_conn, upsert_instruments
from trading.store.engine import StoreIntegrityError, integrity_error, make_engine, read, write
from trading.store.migrate import downgrade, schema_diff, upgrade
from trading.store.schema import epoch_us

FK = "fk_bars_symbol_instruments"
TRIGGERS = {"bars_symbol_known_insert", "bars_symbol_known_update", "instruments_unreferenced_delete",
            "instruments_unreferenced_update", "instruments_unreferenced_truncate"}
ORPHANS = "SELECT count(*) FROM bars b WHERE NOT EXISTS (SELECT 1 FROM instruments i WHERE i.symbol = b.symbol)"


def _register(eng, *symbols):
    with write(eng) as c:
        upsert_instruments(c, list(symbols), "24/7")


def _insert_bar(c, *symbols: str, day: int = 0):
    "One bar per symbol, in one raw INSERT statement, as any client could write it."
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=day)
    values = ", ".join(f"(:s{i}, '1D', :t, 1.0, 'raw')" for i in range(len(symbols)))
    c.execute(text(f"INSERT INTO bars (symbol, timeframe, ts_event, close, source) VALUES {values}"),
              dict(t=epoch_us(ts) if c.dialect.name == "sqlite" else ts.to_pydatetime(), **{f"s{i}": s for i, s in enumerate(symbols)}))


def _refused(eng, work) -> StoreIntegrityError:
    with pytest.raises(StoreIntegrityError) as e:
        with write(eng) as c: work(c)
    assert e.value.rule == "foreign_key_violation", e.value
    return e.value


def _triggers(eng) -> set:
    with read(eng) as c:
        return set(c.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").scalars())


def test_a_bar_of_an_unknown_symbol_is_refused_for_every_writer(db, kind):
    _register(db, "KNOWN")
    e = _refused(db, lambda c: _insert_bar(c, "NOPE"))
    _refused(db, lambda c: _insert_bar(c, "KNOWN", "NOPE2"))  # one statement, a good row and a bad one: neither lands
    e2 = _refused(db, lambda c: ingest_bars_conn(c, pd.concat([bars_of(s, 1, 3) for s in ("U1", "U2", "U3", "U4", "U5", "U6", "U7")])))
    assert _count(db, "bars") == 0
    with write(db) as c: _insert_bar(c, "KNOWN")
    _refused(db, lambda c: c.execute(text("UPDATE bars SET symbol = 'NOPE' WHERE symbol = 'KNOWN'")))
    _register(db, "OTHER")
    with write(db) as c:  # to a known symbol, and an UPDATE of the values only: both fine
        c.execute(text("UPDATE bars SET symbol = 'OTHER' WHERE symbol = 'KNOWN'"))
        c.execute(text("UPDATE bars SET close = 2.0"))
    if kind == "sqlite": return  # SQLite's own foreign key (PRAGMA foreign_keys=ON): it names no symbol
    assert (e.constraint, e.table) == (FK, "bars") and "NOPE" in str(e)
    assert "U1, U2, U3, U4, U5 and 2 more" in str(e2)  # the symbols named, sorted, the list bounded
    copy = b"NOPE,1D,2024-01-02T00:00:00Z,,,,1.0,,raw\n"
    def raw_copy(c):
        with c.connection.driver_connection.cursor() as cur:
            with cur.copy("COPY bars (symbol, timeframe, ts_event, open, high, low, close, volume, source) FROM STDIN (FORMAT csv)") as cp:
                cp.write(copy)
    assert "NOPE" in str(_refused(db, raw_copy))
    with write(db) as c:
        ingest_bars_conn(c, bars_of("KNOWN", 1, 3))
        c.execute(text("INSERT INTO bars SELECT * FROM bars WHERE false"))  # an empty statement: nothing to check, no error
    assert _count(db, "bars") == 4
    with read(db) as c: assert c.exec_driver_sql(ORPHANS).scalar() == 0


def test_an_instrument_that_bars_name_cannot_be_removed(db, kind):
    _register(db, "USED", "FREE", "SPARE")
    assert ingest_bars(db, bars_of("USED", 1, 5), "24/7").inserted == 5
    e = _refused(db, lambda c: c.execute(text("DELETE FROM instruments WHERE symbol IN ('USED', 'FREE')")))
    _refused(db, lambda c: c.execute(text("UPDATE instruments SET symbol = 'RENAMED' WHERE symbol = 'USED'")))
    with write(db) as c:
        c.execute(text("UPDATE instruments SET currency = 'EUR' WHERE symbol = 'USED'"))  # not its key: fine
        assert c.execute(text("DELETE FROM instruments WHERE symbol = 'FREE'")).rowcount == 1  # nothing names it
    assert _count(db, "instruments") == 2 and _count(db, "bars") == 5
    if kind == "sqlite": return
    assert "USED" in str(e) and "FREE" not in str(e) and e.table == "instruments"
    _refused(db, lambda c: c.exec_driver_sql("TRUNCATE instruments"))
    rr = db.execution_options(isolation_level="REPEATABLE READ")
    with pytest.raises(sqlalchemy.exc.DBAPIError) as e:  # an older snapshot could miss bars committed since: refused
        with rr.connect() as c, c.begin(): c.execute(text("DELETE FROM instruments WHERE symbol = 'SPARE'"))
    assert e.value.orig.sqlstate == "55000" and "READ COMMITTED" in str(e.value)
    with write(db) as c:
        c.execute(text("DELETE FROM bars"))
        c.execute(text("DELETE FROM instruments WHERE symbol = 'USED'"))
    assert _count(db, "instruments") == 1


def _blocked(eng, pid: int, worker: threading.Thread) -> bool:
    "Wait until backend `pid` waits for another's lock (True), or the worker finished without waiting (False)."
    watch = eng.execution_options(isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 30
    with watch.connect() as c:
        while worker.is_alive() and time.monotonic() < deadline:
            if c.exec_driver_sql(f"SELECT cardinality(pg_blocking_pids({int(pid)})) > 0").scalar(): return True
            time.sleep(0.01)  # polling the lock manager, not sleeping in place of a sync
    return False


def _in_thread(eng, work) -> tuple[threading.Thread, dict]:
    "Run `work(conn)` in a write transaction on another thread; returns once its connection is open (out['pid'])."
    out, ready = {}, threading.Event()
    def run():
        try:
            with write(eng) as c:
                out["pid"] = c.connection.driver_connection.info.backend_pid
                ready.set()
                work(c)
            out["outcome"] = "ok"
        except StoreIntegrityError as e: out["outcome"] = e.rule
        except Exception as e: out["outcome"] = f"untyped {type(e).__name__}: {e}"  # noqa: BLE001
        finally: ready.set()
    t = threading.Thread(target=run)
    t.start()
    assert ready.wait(30)
    return t, out


@pytest.mark.parametrize("first", ["insert", "delete", "delete-then-update"])
def test_a_delete_racing_an_insert_leaves_no_orphan(kind, new_db, first):
    "Two connections, in a fixed order: the first holds its uncommitted write, the second must wait for it, then be refused."
    if kind == "sqlite": pytest.skip("SQLite has one writer at a time (BEGIN IMMEDIATE): no interleaving to race")
    eng = make_engine(new_db(kind))
    upgrade(eng)
    _register(eng, "RACE", "SPARE")
    with write(eng) as c: _insert_bar(c, "SPARE")
    holder = eng.connect()
    tx = holder.begin()
    try:
        if first == "insert":  # bars of RACE not yet committed; a DELETE of RACE comes in
            _insert_bar(holder, "RACE")
            worker, out = _in_thread(eng, lambda c: c.execute(text("DELETE FROM instruments WHERE symbol = 'RACE'")))
        else:  # the DELETE of RACE not yet committed; bars of RACE come in (a new one, or a stored one re-labelled)
            holder.execute(text("DELETE FROM instruments WHERE symbol = 'RACE'"))
            relabel = lambda c: c.execute(text("UPDATE bars SET symbol = 'RACE' WHERE symbol = 'SPARE'"))
            worker, out = _in_thread(eng, relabel if first == "delete-then-update" else lambda c: _insert_bar(c, "RACE"))
        waited = _blocked(eng, out["pid"], worker)
        tx.commit()
    finally:
        holder.close()
    worker.join(30)
    with read(eng) as c:
        assert c.exec_driver_sql(ORPHANS).scalar() == 0
    assert out["outcome"] == "foreign_key_violation" and waited, out
    assert (_count(eng, "bars"), _count(eng, "instruments")) == ((2, 2) if first == "insert" else (1, 1))
    eng.dispose()


def test_upgrade_from_0004_keeps_bars_and_installs_the_check_and_downgrade_restores_the_key(kind, new_db):
    eng = make_engine(new_db(kind))
    assert upgrade(eng, "0004") == "0004"
    _register(eng, "KEEP")
    assert ingest_bars(eng, bars_of("KEEP", 1, 20), "24/7").inserted == 20
    fks = lambda: [fk["name"] for fk in inspect(eng).get_foreign_keys("bars")]
    assert fks() == [FK]
    assert upgrade(eng) == "0005"
    assert _count(eng, "bars") == 20 and schema_diff(eng) == []
    _refused(eng, lambda c: _insert_bar(c, "NOPE"))
    if kind == "postgresql":
        assert fks() == [] and TRIGGERS <= _triggers(eng)
        with write(eng) as c: c.execute(text("DROP TRIGGER bars_symbol_known_insert ON bars"))
        assert [d[0] for d in schema_diff(eng)] == ["add_fk"]  # no trigger, no key: the drift is reported
        with write(eng) as c: c.execute(text("CREATE TRIGGER bars_symbol_known_insert AFTER INSERT ON bars REFERENCING NEW TABLE AS new_rows "
                                             "FOR EACH STATEMENT EXECUTE FUNCTION bars_symbol_known()"))
    else:
        assert fks() == [FK]  # SQLite: unchanged
    assert downgrade(eng, "0004") == "0004"
    assert fks() == [FK] and _count(eng, "bars") == 20
    if kind == "postgresql": assert not TRIGGERS & _triggers(eng)
    assert _refused(eng, lambda c: _insert_bar(c, "NOPE")).constraint in (FK, None)  # SQLite names no constraint
    assert upgrade(eng) == "0005" and _count(eng, "bars") == 20
    eng.dispose()

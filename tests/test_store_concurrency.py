"""The store under concurrency, lock contention, load and schema drift, on SQLite and a real PostgreSQL (TRADING_TEST_PG_URL).

Small sizes here; `tests/soak_store.py` (make soak) runs the same harnesses at full size.
"""
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from conftest import ROOT
from store_race import bars_of, run_race
from test_store import TRADING_DB, _count, kind, new_db  # noqa: F401  (fixtures)
from trading.core.errors import DataValidationError
from trading.store.backup import RestoreRefusedError, backup, restore, table_rows
from trading.store.bars import ingest_bars, read_bars
from trading.store.engine import SchemaVersionError, StoreBusyError, make_engine, read, write
from trading.store.migrate import current_revision, head_revision, upgrade
from trading.store.records import append_event

WORKER = ROOT / "tests" / "store_worker.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _cli(*args) -> tuple[int, str, str]:
    "trading-db in this process (its subprocess form is covered in test_store.py): (status, stdout, stderr)."
    import contextlib
    import io
    from trading.store.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def _url(eng) -> str:
    return eng.url.render_as_string(hide_password=False)


@pytest.fixture
def migrated(kind, new_db):
    eng = make_engine(new_db(kind))
    upgrade(eng)
    yield eng
    eng.dispose()


def test_concurrent_ingests_of_the_same_keys_lose_nothing(migrated, kind):
    "Writer processes race over the same bars in every on_conflict mode: each wins or gets a typed conflict; no lost write."
    writers, trials = 2, (2 if kind == "sqlite" else 4)
    res = run_race(_url(migrated), writers=writers, trials=trials)
    print(kind, {k: v for k, v in res.items() if k != "failures"})
    assert res["failures"] == [], res["failures"][:10]
    # error mode: on fresh keys all but one writer conflict, on seeded keys every writer does
    assert res["conflicts"] + res["busy"] == trials * ((writers - 1) + writers) and res["busy"] == 0


def _holder(kind, eng):
    "Another session holding the write lock / an exclusive lock on `bars`; returns a release function."
    if kind == "sqlite":
        h = sqlite3.connect(make_url(_url(eng)).database, isolation_level=None, check_same_thread=False)
        h.execute("BEGIN IMMEDIATE")
        return lambda: (h.execute("ROLLBACK"), h.close())
    other = make_engine(_url(eng))
    c = other.connect()
    tx = c.begin()
    c.exec_driver_sql("LOCK TABLE bars IN ACCESS EXCLUSIVE MODE")
    return lambda: (tx.rollback(), c.close(), other.dispose())


def test_lock_waits_are_bounded_typed_and_retried(migrated, kind):
    url = _url(migrated)
    impatient = make_engine(url, lock_timeout=0.2)
    df = bars_of("LOCKED", 1)
    release = _holder(kind, migrated)
    try:
        with pytest.raises(StoreBusyError) as e:
            ingest_bars(impatient, df, "24/7", attempts=2)
        assert e.value.rule == ("database_locked" if kind == "sqlite" else "lock_not_available") and e.value.attempts == 2
        assert "after 2 attempts" in str(e.value)
        with pytest.raises(StoreBusyError):  # a plain write() (no retry) is typed too
            with write(impatient) as c:
                append_event(c, "x", "test", {}) if kind == "sqlite" else c.exec_driver_sql("SELECT count(*) FROM bars")
    finally:
        release()
    # the lock goes away while the retries run: the ingest gets through
    release = _holder(kind, migrated)
    t = threading.Timer(0.6, release)
    t.start()
    try:
        assert ingest_bars(impatient, df, "24/7", attempts=10).inserted == len(df)
    finally:
        t.join()
    assert len(read_bars(migrated, "LOCKED")) == len(df)
    impatient.dispose()


def test_deadlock_victim_gets_a_typed_error(migrated, kind):
    if kind == "sqlite":
        pytest.skip("SQLite has one write lock (BEGIN IMMEDIATE): writers queue, they cannot deadlock")
    from trading.store.bars import upsert_instruments
    with write(migrated) as c:
        upsert_instruments(c, ["DLA", "DLB"], "24/7")
    barrier, outcome = threading.Barrier(2), {}

    def tx(name, first, second):
        try:
            with write(migrated) as c:
                c.execute(text("UPDATE instruments SET currency = :n WHERE symbol = :s"), dict(n=name, s=first))
                barrier.wait(timeout=10)
                c.execute(text("UPDATE instruments SET currency = :n WHERE symbol = :s"), dict(n=name, s=second))
            outcome[name] = "ok"
        except StoreBusyError as e:
            outcome[name] = e.rule
        except Exception as e:  # noqa: BLE001 - an untyped error is what this test looks for
            outcome[name] = f"untyped {type(e).__name__}: {e}"

    threads = [threading.Thread(target=tx, args=("AAA", "DLA", "DLB")), threading.Thread(target=tx, args=("BBB", "DLB", "DLA"))]
    for th in threads: th.start()
    for th in threads: th.join(timeout=60)
    assert sorted(outcome.values()) == ["deadlock", "ok"], outcome


def _start_busy_writer(url, tmp_path, name="busy"):
    out = tmp_path / f"{name}.json"
    proc = subprocess.Popen([sys.executable, WORKER, "busy", url, "120", out], env=ENV)
    deadline = time.monotonic() + 60
    while not (tmp_path / f"{name}.json.started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the busy writer did not start committing"
        time.sleep(0.05)
    return proc, out


def _stop(proc, out) -> dict:
    (out.parent / (out.name + ".stop")).touch()
    assert proc.wait(timeout=60) == 0
    return json.loads(out.read_text())


def test_backup_completes_under_a_busy_writer(migrated, kind, new_db, tmp_path):
    "A writer commits back to back; the backup finishes, passes integrity_check, and holds every commit acknowledged before it began."
    url = _url(migrated)
    if kind == "sqlite":  # > 16 MiB: the old page-stepped backup needed several steps, and restarted on every commit
        with write(migrated) as c:
            c.exec_driver_sql("CREATE TABLE ballast (b BLOB)")
            c.exec_driver_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) "
                              "INSERT INTO ballast SELECT randomblob(4000) FROM n")
    proc, out = _start_busy_writer(url, tmp_path)
    try:
        with read(migrated) as c:
            acked = c.exec_driver_sql("SELECT max(id) FROM events").scalar()  # committed, hence acknowledged to the writer
        done = {}
        th = threading.Thread(target=lambda: done.update(path=backup(migrated, tmp_path / "b.db")), daemon=True)
        th.start()
        th.join(timeout=120)
        assert "path" in done, "the backup did not finish while the writer kept committing"
        with read(migrated) as c:
            during = c.exec_driver_sql("SELECT max(id) FROM events").scalar() - acked
    finally:
        stats = _stop(proc, out)
    print(kind, "writer", stats, "commits while the backup ran:", during)
    assert during > 0  # the writer was not stopped by the backup
    if kind == "sqlite":
        copy = sqlite3.connect(tmp_path / "b.db")
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in copy.execute("SELECT id FROM events ORDER BY id")]
        copy.close()
    else:
        target = make_engine(new_db("postgresql"))
        restore(tmp_path / "b.db", target)
        with read(target) as c:
            ids = c.exec_driver_sql("SELECT id FROM events ORDER BY id").scalars().all()
        target.dispose()
    assert ids[:acked] == list(range(1, acked + 1))  # every acknowledged commit, none missing


def test_restore_refuses_while_a_writer_is_connected(migrated, kind, tmp_path):
    url = _url(migrated)
    with write(migrated) as c:
        append_event(c, "before_backup", "test", {})
    backup(migrated, tmp_path / "b.db")
    saved = table_rows(migrated)
    proc, out = _start_busy_writer(url, tmp_path)
    try:
        with pytest.raises(RestoreRefusedError) as e:
            restore(tmp_path / "b.db", migrated)
        assert "events" in e.value.changes and e.value.changes["events"]["live_rows"] > 1
        assert "other connection" in str(e.value) and "events: live" in str(e.value)
        assert _count(migrated, "events") > 1  # nothing was replaced
    finally:
        stats = _stop(proc, out)
    migrated.dispose()
    changed = restore(tmp_path / "b.db", migrated)  # nobody else connected now
    assert changed["events"]["live_rows"] == stats["commits"] + 1
    assert table_rows(migrated) == saved
    # --force: restores over a connected session, and the CLI refuses without it
    other = make_engine(url)
    with write(other) as c:
        append_event(c, "after_restore", "test", {})
    code, _, err = _cli("--url", url, "restore", tmp_path / "b.db")
    assert code == 2 and "restore refused" in err and "--force" in err, err
    code, out, err = _cli("--url", url, "restore", tmp_path / "b.db", "--force")
    assert code == 0 and "events: replaced live 2 rows" in out, (out, err)
    other.dispose()
    assert table_rows(migrated) == saved


def test_concurrent_upgrades_all_succeed(kind, new_db):
    url = new_db(kind)
    procs = [subprocess.Popen([*map(str, TRADING_DB), "--url", url, "upgrade"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 and f"at revision {head_revision()}" in o for code, o, _ in results), results
    assert current_revision(make_engine(url)) == head_revision()


def test_unknown_revision_and_destructive_downgrade_are_guarded(migrated, kind):
    url = _url(migrated)
    assert ingest_bars(migrated, bars_of("KEEP", 1), "24/7").inserted > 0
    # a newer package's revision: upgrade, writes and downgrade stop with a typed one-line error
    with write(migrated, check_revision=False) as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    code, _, err = _cli("--url", url, "upgrade")
    assert code == 2 and "'0099'" in err and f"'{head_revision()}'" in err and err.count("\n") == 1, err
    fresh = make_engine(url)  # a new engine reads the revision before its first write
    with pytest.raises(SchemaVersionError) as e:
        ingest_bars(fresh, bars_of("NEWER", 1), "24/7")
    assert (e.value.found, e.value.expected) == ("0099", head_revision())
    assert len(read_bars(migrated, "NEWER")) == 0 and _count(migrated, "instruments") == 1
    fresh.dispose()
    with write(migrated, check_revision=False) as c:
        c.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{head_revision()}'")
    # a downgrade to base needs --yes, and says what it would drop
    code, _, err = _cli("--url", url, "downgrade", "--revision", "base")
    assert code == 2 and "bars (40 rows)" in err and "--yes" in err, err
    assert len(read_bars(migrated, "KEEP")) == 40
    code, out, err = _cli("--url", url, "downgrade", "--revision", "base", "--yes")
    assert code == 0 and "at revision None" in out, err
    migrated.dispose()


def test_bad_symbols_are_refused_alike_and_typed(migrated, kind):
    "A 100,000-character symbol, or one the instrument parser rejects: a DataValidationError on both engines, nothing stored."
    for symbol in ["S" * 100_000, "A;DROP", "../etc"]:
        for validate in (True, False):
            with pytest.raises(DataValidationError) as e:
                ingest_bars(migrated, bars_of(symbol, 1), "24/7", validate=validate)
            assert "pydantic" not in type(e.value).__module__ and len(str(e.value)) < 1000, str(e.value)[:300]
    assert _count(migrated, "bars") == _count(migrated, "instruments") == 0


def test_durable_engines_sync_every_commit(tmp_path):
    "The order journal's engines (durable=True) run synchronous=FULL; bulk ingest engines NORMAL (WAL: crash-safe, power-cut may lose the last commits)."
    for durable, expected in ((True, 2), (False, 1)):
        eng = make_engine(f"sqlite:///{tmp_path}/d{durable}.db", durable=durable)
        with read(eng) as c:
            assert c.exec_driver_sql("PRAGMA synchronous").scalar() == expected
        eng.dispose()

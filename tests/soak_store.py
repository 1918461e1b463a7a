"""Store soak: concurrent writers on the same keys, backups under a busy writer, and SIGKILLs of an ingest, at full size.

    python tests/soak_store.py [--engines sqlite,postgresql] [--writers 4] [--trials 50] [--backups 5] [--ballast-mib 150] [--kills 40]

PostgreSQL runs when TRADING_TEST_PG_URL is set (a role that may CREATE DATABASE). Prints one JSON line per part
and exits 1 if any part found a lost write, an unfinished or incomplete backup, or a partial ingest.
`make test` runs the same harnesses at small size (tests/test_store_concurrency.py, tests/test_store.py).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class Databases:
    "Fresh databases of each engine kind, dropped at the end."
    def __init__(self, work: Path):
        self.work, self.made, self.admin = work, [], None

    def new(self, kind: str) -> str:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        if kind == "sqlite": return f"sqlite:///{self.work}/db-{uuid.uuid4().hex[:8]}.sqlite"
        pg = os.environ["TRADING_TEST_PG_URL"]
        self.admin = self.admin or create_engine(make_url(pg).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        name = f"trading_soak_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as c: c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return make_url(pg).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)

    def close(self):
        if self.admin is None: return
        with self.admin.connect() as c:
            for name in self.made: c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()


def race(dbs: Databases, kind: str, writers: int, trials: int) -> dict:
    from store_race import run_race
    from trading.store.engine import make_engine
    from trading.store.migrate import upgrade
    url = dbs.new(kind)
    upgrade(make_engine(url))
    res = run_race(url, writers=writers, trials=trials)
    return dict(part="concurrent_writers", kind=kind, ok=not res["failures"], **{k: v for k, v in res.items() if k != "failures"},
                failures=res["failures"][:10])


def backups_under_load(dbs: Databases, kind: str, n: int, ballast_mib: int, work: Path) -> dict:
    "n backups while a writer commits back to back; each must finish, pass integrity_check, and hold every acknowledged commit."
    from trading.store.backup import backup, restore
    from trading.store.engine import make_engine, read, write
    from trading.store.migrate import upgrade
    url = dbs.new(kind)
    eng = make_engine(url)
    upgrade(eng)
    if kind == "sqlite":
        rows = ballast_mib * 256  # 4 KiB each
        with write(eng) as c:
            c.exec_driver_sql("CREATE TABLE ballast (b BLOB)")
            c.exec_driver_sql(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
                              "INSERT INTO ballast SELECT randomblob(4000) FROM n")
    out = work / f"busy-{uuid.uuid4().hex[:6]}.json"
    proc = subprocess.Popen([sys.executable, HERE / "store_worker.py", "busy", url, "3600", out], env=ENV)
    while not Path(str(out) + ".started").exists():
        if proc.poll() is not None: raise RuntimeError("the busy writer died")
        time.sleep(0.05)
    results, failures = [], []
    try:
        for i in range(n):
            with read(eng) as c: acked = c.exec_driver_sql("SELECT max(id) FROM events").scalar()
            dest, done = work / f"b{i}-{kind}.db", {}
            t0 = time.perf_counter()
            th = threading.Thread(target=lambda: done.update(p=backup(eng, dest)), daemon=True)
            th.start()
            th.join(timeout=600)
            seconds = time.perf_counter() - t0
            if "p" not in done: failures.append(f"backup {i} did not finish in 600 s"); break
            if kind == "sqlite":
                copy = sqlite3.connect(dest)
                check = copy.execute("PRAGMA integrity_check").fetchone()[0]
                ids = [r[0] for r in copy.execute("SELECT id FROM events ORDER BY id")]
                copy.close()
            else:
                target = make_engine(dbs.new("postgresql"))
                restore(dest, target)
                with read(target) as c: ids = c.exec_driver_sql("SELECT id FROM events ORDER BY id").scalars().all()
                target.dispose()
                check = "ok"
            if check != "ok": failures.append(f"backup {i}: integrity_check {check}")
            if ids[:acked] != list(range(1, acked + 1)): failures.append(f"backup {i}: acknowledged commits missing")
            results.append(dict(seconds=round(seconds, 2), size_mib=round(dest.stat().st_size / 2**20, 1), acked=acked, in_copy=len(ids)))
            dest.unlink()
    finally:
        Path(str(out) + ".stop").touch()
        proc.wait(timeout=120)
    stats = json.loads(out.read_text()) if out.exists() else {}
    eng.dispose()
    return dict(part="backup_under_load", kind=kind, ok=not failures, backups=results, writer_commits=stats.get("commits"), failures=failures)


def _counts(url: str) -> tuple[int, int, int]:
    from trading.store.engine import make_engine, read
    eng = make_engine(url)
    try:
        with read(eng) as c:
            return tuple(c.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in ("bars", "instruments", "events"))
    finally:
        eng.dispose()


def kills(dbs: Databases, kind: str, n: int, snapshot: Path) -> dict:
    "SIGKILL `trading-db ingest` at random moments: afterwards the database holds all of the ingest or none of it, and takes it again."
    from trading.store.engine import make_engine
    from trading.store.migrate import upgrade
    cli = [sys.executable, "-m", "trading.store.cli"]
    outcomes, failures, full = {"none": 0, "all": 0}, [], None
    for i in range(n):
        url = dbs.new(kind)
        upgrade(make_engine(url))
        proc = subprocess.Popen([*cli, "--url", url, "ingest", "--dir", str(snapshot)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(0.3, 8.0))  # import, validation, staging, insert, commit: anywhere
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        got = _counts(url)
        if got == (0, 0, 0): outcomes["none"] += 1
        elif full is None or got == full: outcomes["all"] += 1; full = got
        else: failures.append(f"kill {i}: partial ingest {got} (full is {full})")
        if kind == "sqlite":
            c = sqlite3.connect(url.removeprefix("sqlite:///"))
            check = c.execute("PRAGMA integrity_check").fetchone()[0]
            c.close()
            if check != "ok": failures.append(f"kill {i}: integrity_check {check}")
        if got == (0, 0, 0) and subprocess.run([*cli, "--url", url, "ingest", "--dir", str(snapshot)], env=ENV, capture_output=True).returncode != 0:
            failures.append(f"kill {i}: the next ingest failed")
        if kind == "sqlite": Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    return dict(part="ingest_kills", kind=kind, ok=not failures, kills=n, **outcomes, failures=failures[:10])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--trials", type=int, default=50, help="trials per (on_conflict mode, fresh/seeded keys)")
    p.add_argument("--backups", type=int, default=5)
    p.add_argument("--ballast-mib", type=int, default=150, help="SQLite database size for the backups")
    p.add_argument("--kills", type=int, default=40)
    a = p.parse_args(argv)
    kinds = [k for k in a.engines.split(",") if k != "postgresql" or os.environ.get("TRADING_TEST_PG_URL")]
    if len(kinds) < len(a.engines.split(",")): print("TRADING_TEST_PG_URL is not set: PostgreSQL skipped", file=sys.stderr)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        snapshot = work / "data"
        subprocess.run([sys.executable, "-c", "import sys; from trading.data.snapshot import main; sys.exit(main())", "snapshot", "--datasets", "sp500,vix", "--out", snapshot], env=ENV, check=True,
                       stdout=subprocess.DEVNULL)
        dbs = Databases(work)
        try:
            for kind in kinds:
                for res in (race(dbs, kind, a.writers, a.trials), backups_under_load(dbs, kind, a.backups, a.ballast_mib, work),
                            kills(dbs, kind, a.kills, snapshot)):
                    print(json.dumps(res), flush=True)
                    ok &= res["ok"]
        finally:
            dbs.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

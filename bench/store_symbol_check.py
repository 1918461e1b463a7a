"""Benchmark (not a test): what the bars -> instruments check costs PostgreSQL, per-row foreign key (revision 0004)
against revision 0005's statement-level trigger.

    python bench/store_symbol_check.py [--dir data] [--pg-url URL] [--runs 5]

Per run and revision: a fresh database migrated to that revision, the snapshot's instruments registered, its bars
COPYed into a temporary table, then `EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO bars SELECT * FROM` it. Printed:
the statement's execution time, the time in its triggers (and their calls), and the backend's CPU for the
statement (from /proc). Revisions alternate run by run; median [min, max] of --runs.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_ingest as si  # noqa: E402  (its fresh databases, CSV and /proc reader)
from trading.store.engine import make_engine, write  # noqa: E402
from trading.store.migrate import upgrade  # noqa: E402


def one(pg_url, rev, job, csv) -> tuple:
    url, drop = si.fresh_db("postgresql", pg_url, tempfile.gettempdir())
    try:
        eng = make_engine(url)
        upgrade(eng, rev)
        si.register(eng, job)
        with write(eng, check_revision=False) as c:
            c.exec_driver_sql("CREATE TEMP TABLE staged (LIKE bars)")
            with c.connection.driver_connection.cursor() as cur:
                with cur.copy(f"COPY staged ({', '.join(si.COLS)}) FROM STDIN (FORMAT csv)") as cp: cp.write(csv)
            c.exec_driver_sql("ANALYZE staged")
            b0 = si.backend_cpu(c)
            plan = c.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO bars SELECT * FROM staged").scalar()[0]
            cpu = si.backend_cpu(c) - b0
        eng.dispose()
        trig = plan.get("Triggers", [])
        return plan["Execution Time"], sum(t["Time"] for t in trig), sum(t["Calls"] for t in trig), cpu
    finally:
        drop()


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--dir", default="data")
    p.add_argument("--pg-url", default=os.environ.get("TRADING_TEST_PG_URL"))
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args(argv)
    if not a.pg_url: sys.exit("needs PostgreSQL: --pg-url or TRADING_TEST_PG_URL")
    job = si.job_of(a.dir)
    csv = si.arrow_csv(job)
    res = {"0004": [], "0005": []}
    for r in range(a.runs):
        for rev in (["0004", "0005"] if r % 2 == 0 else ["0005", "0004"]):
            res[rev].append(one(a.pg_url, rev, job, csv))
    print(f"{len(job['all_bars']):,} bars; INSERT ... SELECT from a staged table; median [min, max] of {a.runs}")
    for rev, label in (("0004", "foreign key (per row)"), ("0005", "trigger (per statement)")):
        ex, tt, calls, cpu = zip(*res[rev])
        print(f"  {rev} {label:24s} statement {si.stats(ex)} ms   triggers {si.stats(tt)} ms ({calls[0]:,} calls)   backend CPU {si.stats(cpu)} s")


if __name__ == "__main__":
    main()

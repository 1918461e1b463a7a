"""Benchmark (not a test): bulk ingest of the data/ snapshot into `bars`, ours vs pandas.DataFrame.to_sql.

    python bench/store_ingest.py [--dir data] [--pg-url URL] [--repeat 3]

For each engine (a SQLite file; PostgreSQL when --pg-url or TRADING_TEST_PG_URL is given) it times, on
a fresh migrated database each time, with the bars already read into memory:
  ours      trading.store.bars.ingest_bars_conn for every dataset in one transaction (engine fast path:
            executemany into a staging table on SQLite, COPY on PostgreSQL; then INSERT .. ON CONFLICT
            into the keyed, constrained `bars` table, with the conflict check)
  to_sql    pandas.DataFrame.to_sql(if_exists="append", index=False) of the same rows, pandas' default
            method, into a table pandas creates (no key, no constraints: the cheapest destination)
  recipe    PostgreSQL only: pandas' documented COPY recipe (`to_sql(method=psql_insert_copy)`, the io.sql docs' callable:
            csv.writer into a StringIO, then COPY .. FROM STDIN WITH CSV; psycopg 3's `cursor.copy` in place of
            psycopg2's `copy_expert`) into a table pandas creates (no key, no constraints, no conflict check)
  again     ours a second time on the same database (idempotent re-ingest: nothing changes)
and prints rows/s (best of --repeat), the ratio ours / to_sql and, on PostgreSQL, ours / the COPY recipe.
"""
import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from trading.data.snapshot import load_snapshot
from trading.store.bars import ingest_bars_conn, upsert_instruments
from trading.store.engine import make_engine, write
from trading.store.migrate import upgrade


def fresh_db(kind, pg_url, tmp):
    if kind == "sqlite":
        return f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:8]}.sqlite", lambda: None
    admin = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"trading_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c: c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    def drop():
        with admin.connect() as c: c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    return make_url(pg_url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False), drop


def ours(eng, frames, meta):
    t = time.perf_counter()
    with write(eng) as conn:
        for name, df in frames.items():
            upsert_instruments(conn, meta[name]["symbols"], meta[name]["calendar"])
            ingest_bars_conn(conn, df, "1D", validate=False)  # the frames were validated when read from the snapshot
    return time.perf_counter() - t


def to_sql(eng, all_bars):
    t = time.perf_counter()
    all_bars.to_sql("bars_to_sql", eng, if_exists="append", index=False)
    return time.perf_counter() - t


def psql_insert_copy(table, conn, keys, data_iter):
    "pandas' documented COPY recipe (io.rst, 'Insertion method'), with psycopg 3's copy API."
    import csv
    from io import StringIO
    dbapi_conn = conn.connection
    with dbapi_conn.cursor() as cur:
        s_buf = StringIO()
        csv.writer(s_buf).writerows(data_iter)
        s_buf.seek(0)
        columns = ", ".join(f'"{k}"' for k in keys)
        table_name = f"{table.schema}.{table.name}" if table.schema else table.name
        with cur.copy(f"COPY {table_name} ({columns}) FROM STDIN WITH CSV") as cp:
            cp.write(s_buf.getvalue())


def recipe(eng, all_bars):
    t = time.perf_counter()
    all_bars.to_sql("bars_recipe", eng, if_exists="append", index=False, method=psql_insert_copy)
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="data")
    p.add_argument("--pg-url", default=os.environ.get("TRADING_TEST_PG_URL"))
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    snap = load_snapshot(a.dir)
    frames = {n: snap.bars(n) for n in snap.datasets}
    meta = snap.manifest["datasets"]
    all_bars = pd.concat(frames.values(), ignore_index=True)
    n = len(all_bars)
    kinds = ["sqlite"] + (["postgresql"] if a.pg_url else [])
    if not a.pg_url: print("no --pg-url / TRADING_TEST_PG_URL: PostgreSQL skipped", file=sys.stderr)
    print(f"{n} bars, {all_bars['symbol'].nunique()} symbols, {len(frames)} datasets; best of {a.repeat}")
    print(f"{'engine':11s} {'ours rows/s':>12s} {'to_sql rows/s':>14s} {'ratio':>6s} {'re-ingest rows/s':>17s}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            best = dict(ours=1e9, to_sql=1e9, again=1e9, recipe=1e9)
            for _ in range(a.repeat):
                url, drop = fresh_db(kind, a.pg_url, tmp)
                try:
                    eng = make_engine(url)
                    upgrade(eng)
                    best["ours"] = min(best["ours"], ours(eng, frames, meta))
                    best["again"] = min(best["again"], ours(eng, frames, meta))
                    best["to_sql"] = min(best["to_sql"], to_sql(eng, all_bars))
                    if kind == "postgresql": best["recipe"] = min(best["recipe"], recipe(eng, all_bars))
                    eng.dispose()
                finally:
                    drop()
            r = {k: n / v for k, v in best.items()}
            print(f"{kind:11s} {r['ours']:12,.0f} {r['to_sql']:14,.0f} {r['ours'] / r['to_sql']:6.2f} {r['again']:17,.0f}")
            if kind == "postgresql":
                ratio = r["ours"] / r["recipe"]
                print(f"  pandas COPY recipe {r['recipe']:,.0f} rows/s into a keyless table; ours (keyed, constrained, conflict-checked upsert) = "
                      f"{ratio:.2f}x the recipe -> {'HOLDS' if ratio >= 0.8 else 'FAILS'} (goal: near the recipe, >= 0.8x)")


if __name__ == "__main__":
    main()

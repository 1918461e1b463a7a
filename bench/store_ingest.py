"""Benchmark (not a test): bulk ingest of the data/ snapshot into `bars`, ours against pandas' COPY recipe and to_sql.

    python bench/store_ingest.py [--dir data] [--pg-url URL] [--runs 5] [--cold-runs 3] [--pg-to-sql]

Every run starts from fresh databases (PostgreSQL: CREATE DATABASE + migrations; SQLite: a new file), with the bars
already read into memory, and the methods' order rotates from run to run (a shared machine drifts). Timed:
  ours         trading.store.bars.ingest_bars_conn for every dataset in one transaction (+ upsert_instruments): the
               keyed, constrained `bars` table, with the conflict check (PostgreSQL: COPY into a staging table, a range
               probe, one join only when stored bars overlap, then a plain INSERT .. SELECT of the new rows)
  before       the same through trading/store/bars.py as of BEFORE_COMMIT (staging + conflict join + INSERT .. ON CONFLICT)
  again        ours a second time on the same database (an identical re-ingest: the conflict check, nothing written)
  recipe       PostgreSQL: pandas' documented COPY recipe (io.sql docs' `psql_insert_copy`: csv.writer into a StringIO,
               then COPY .. FROM STDIN WITH CSV; psycopg 3's `cursor.copy` for psycopg2's `copy_expert`), two ways:
                 bare  into a table pandas creates (no key, no constraint: the issue's number)
                 ours  into our `bars` table (same key, instrument check and CHECKs as ours; its instruments registered
                       before the timer; the frame gets a `timeframe` column before the timer): the fair comparison
  floor        PostgreSQL: Arrow's CSV of the rows (rendered before the timer) COPYed straight into `bars`: no Python in
               the timer, no conflict check. What any client writing into this table pays the server: the key, the
               CHECKs and the instrument check (revision 0005: one set-based trigger per statement; before it the
               foreign key's per-row trigger was most of it, see nbs/store/03_bars.ipynb).
  to_sql       pandas' default `to_sql(if_exists="append", index=False)` into a table pandas creates (PostgreSQL: with --pg-to-sql)
Each method's rows are checked equal to ours (count + an md5 over every row's text, floats in shortest exact form).

Times: wall, and CPU = this process + the PostgreSQL backend serving the connection (from /proc; background writer,
WAL writer and checkpoints are not counted, for any method). Warm: median [min, max] of --runs in this process.
Cold: --cold-runs fresh processes per method, the first call timed inside the process (imports, connection and
pyarrow/csv set-up included in the process wall, printed too). The goal (issue 15): ours >= 0.8x the recipe,
printed against both recipe targets, on wall and on CPU.
"""
import argparse
import json
import os
import statistics
import subprocess
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

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "d4b95c2"  # trading/store/bars.py before issue 15's change, timed in the same run
COLS = ["symbol", "timeframe", "ts_event", "open", "high", "low", "close", "volume", "source"]
TICK = os.sysconf("SC_CLK_TCK")


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


def before_module():
    "trading/store/bars.py as of BEFORE_COMMIT, imported beside today's package (same relative imports)."
    import importlib.util
    src = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:trading/store/bars.py"], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    path = Path(tempfile.mkdtemp()) / "bars_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("trading.store.bars_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def backend_cpu(conn) -> float:
    "CPU seconds (user + system) so far of the PostgreSQL backend serving `conn`; 0 on SQLite."
    if conn.dialect.name == "sqlite": return 0.0
    pid = conn.connection.driver_connection.info.backend_pid  # no query: pandas begins its own transaction on `conn`
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


class Timer:
    "Wall and CPU (this process + the connection's backend) of the `with` body."
    def __init__(self, conn): self.conn = conn
    def __enter__(self):
        self.b0, self.c0, self.w0 = backend_cpu(self.conn), time.process_time(), time.perf_counter()
        return self
    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0 + backend_cpu(self.conn) - self.b0


def ours(eng, job, ingest=ingest_bars_conn, upsert=upsert_instruments):
    with write(eng) as conn, Timer(conn) as t:  # the commit is inside the timer for every method
        for name, df in job["frames"].items():
            upsert(conn, job["meta"][name]["symbols"], job["meta"][name]["calendar"])
            ingest(conn, df, "1D", validate=False)  # the frames were validated when read from the snapshot
    return t


def register(eng, job):
    with write(eng) as conn:
        for name in job["frames"]: upsert_instruments(conn, job["meta"][name]["symbols"], job["meta"][name]["calendar"])


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


def pandas_write(eng, frame, table, method=None):
    with eng.connect() as conn:
        with Timer(conn) as t:
            with conn.begin(): frame.to_sql(table, conn, if_exists="append", index=False, method=method)
    return t


def floor(eng, csv: bytes):
    with write(eng) as conn, Timer(conn) as t:
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy(f"COPY bars ({', '.join(COLS)}) FROM STDIN (FORMAT csv)") as cp: cp.write(csv)
    return t


def fingerprint(eng, table: str, check: bool = True) -> tuple | None:
    "(rows, md5 of every row's text in key order); PostgreSQL prints floats in shortest exact form (>= 12), timestamps as epoch microseconds."
    if not check: return None
    tf = "timeframe" if table == "bars" else "'1D'"
    with eng.connect() as c:
        if eng.dialect.name == "sqlite":  # ts_event is integer microseconds in `bars`, text in pandas' tables: compare as pandas reads them
            import hashlib
            df = pd.read_sql(f"SELECT symbol, {tf} AS timeframe, ts_event, open, high, low, close, volume, source FROM {table}", c)
            ts = df["ts_event"]
            us = ts.astype("int64") if pd.api.types.is_integer_dtype(ts) else pd.to_datetime(ts, utc=True).dt.as_unit("us").astype("int64")
            df = df.assign(ts_event=us).sort_values(["symbol", "ts_event"], ignore_index=True)
            return len(df), hashlib.md5(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()).hexdigest()
        row = f"ROW(symbol, {tf}, extract(epoch FROM ts_event) * 1000000, open, high, low, close, volume, source)::text"
        return tuple(c.exec_driver_sql(f"SELECT count(*), md5(string_agg({row}, E'\\n' ORDER BY symbol, ts_event)) FROM {table}").one())


def job_of(data_dir: str) -> dict:
    snap = load_snapshot(data_dir)
    frames = {n: snap.bars(n) for n in snap.datasets}
    all_bars = pd.concat(frames.values(), ignore_index=True)
    return dict(frames=frames, meta=snap.manifest["datasets"], all_bars=all_bars, keyed=all_bars.assign(timeframe="1D"))


def arrow_csv(job) -> bytes:
    "The rows as CSV for COPY straight into `bars` (ISO timestamps, shortest round-trip floats), rendered by Arrow before the timer."
    import pyarrow as pa, pyarrow.csv as pacsv
    df = job["all_bars"]
    table = pa.table(dict(symbol=pa.array(df["symbol"]), timeframe=pa.array(["1D"] * len(df), pa.string()),
                          ts_event=pa.array(df["ts_event"].dt.as_unit("us")),
                          **{c: pa.array(df[c].to_numpy(dtype="float64"), pa.float64(), from_pandas=True) for c in COLS[3:-1]},
                          source=pa.array(df["source"])))
    buf = pa.BufferOutputStream()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
    return buf.getvalue().to_pybytes()


def run_method(method, kind, pg_url, tmp, job, before=None, csv=None, check=True) -> dict:
    "One timed run of `method` on a fresh database; returns {name: (wall, cpu, fingerprint or None)}."
    url, drop = fresh_db(kind, pg_url, tmp)
    out = {}
    try:
        eng = make_engine(url)
        upgrade(eng)
        if method == "ours":
            t = ours(eng, job); out["ours"] = (t.wall, t.cpu, fingerprint(eng, "bars", check))
            t = ours(eng, job); out["again"] = (t.wall, t.cpu, fingerprint(eng, "bars", check))
        elif method == "before":
            t = ours(eng, job, before.ingest_bars_conn, before.upsert_instruments); out["before"] = (t.wall, t.cpu, fingerprint(eng, "bars", check))
        elif method == "recipe_ours":
            register(eng, job)
            t = pandas_write(eng, job["keyed"], "bars", psql_insert_copy); out["recipe_ours"] = (t.wall, t.cpu, fingerprint(eng, "bars", check))
        elif method == "recipe_bare":
            t = pandas_write(eng, job["all_bars"], "bars_recipe", psql_insert_copy); out["recipe_bare"] = (t.wall, t.cpu, fingerprint(eng, "bars_recipe", check))
        elif method == "floor":
            register(eng, job)
            t = floor(eng, csv); out["floor"] = (t.wall, t.cpu, fingerprint(eng, "bars", check))
        elif method == "to_sql":
            t = pandas_write(eng, job["all_bars"], "bars_to_sql"); out["to_sql"] = (t.wall, t.cpu, fingerprint(eng, "bars_to_sql", check))
        eng.dispose()
    finally:
        drop()
    return out


def cold_child(method, kind, pg_url, data_dir):
    "A fresh process: read the snapshot (untimed), then one timed call; prints JSON."
    t0 = time.perf_counter()
    job = job_of(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        res = run_method(method, kind, pg_url, tmp, job, csv=arrow_csv(job) if method == "floor" else None)
    print(json.dumps({k: [w, c] for k, (w, c, _) in res.items()} | {"process_wall": time.perf_counter() - t0}))


def stats(xs) -> str:
    return f"{statistics.median(xs):6.3f} [{min(xs):.3f}, {max(xs):.3f}]"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="data")
    p.add_argument("--pg-url", default=os.environ.get("TRADING_TEST_PG_URL"))
    p.add_argument("--runs", type=int, default=5, help="warm runs per method (the protocol's minimum is 5)")
    p.add_argument("--cold-runs", type=int, default=3, help="fresh processes per method for the cold numbers (5: the full protocol)")
    p.add_argument("--pg-to-sql", action="store_true", help="time pandas' default to_sql on PostgreSQL too (5-10 s a run; SQLite always has it)")
    p.add_argument("--cold-child", nargs=2, metavar=("METHOD", "KIND"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.cold_child: return cold_child(*a.cold_child, a.pg_url, a.dir)
    job = job_of(a.dir)
    n = len(job["all_bars"])
    kinds = ["sqlite"] + (["postgresql"] if a.pg_url else [])
    if not a.pg_url: print("no --pg-url / TRADING_TEST_PG_URL: PostgreSQL skipped", file=sys.stderr)
    print(f"{n} bars, {job['all_bars']['symbol'].nunique()} symbols, {len(job['frames'])} datasets; {a.runs} warm runs, {a.cold_runs} cold; "
          f"seconds median [min, max]; CPU = this process + its PostgreSQL backend")
    before, csv, report = before_module(), arrow_csv(job), {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            methods = ["ours", "before"] + (["recipe_bare", "recipe_ours", "floor"] if kind == "postgresql" else []) + (["to_sql"] if kind == "sqlite" or a.pg_to_sql else [])
            runs = {}
            for r in range(a.runs):
                for m in methods[r % len(methods):] + methods[:r % len(methods)]:  # rotate the order
                    for k, v in run_method(m, kind, a.pg_url, tmp, job, before, csv, check=kind == "postgresql" or r == 0).items():
                        runs.setdefault(k, []).append(v)
            prints = {k: {x[2] for x in v if x[2] is not None} for k, v in runs.items()}
            ref = prints["ours"]
            print(f"\n{kind}: {'method':12s} {'wall s':>24s} {'CPU s':>24s} {'rows/s (wall)':>14s}  rows equal to ours")
            for k, v in runs.items():
                w, c = [x[0] for x in v], [x[1] for x in v]
                print(f"{'':{len(kind) + 2}s}{k:12s} {stats(w):>24s} {stats(c):>24s} {n / statistics.median(w):14,.0f}  "
                      f"{'yes' if prints[k] == ref and len(ref) == 1 else 'NO: ' + str(prints[k])}")
            med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in runs.items()}
            cold = {}
            if kind == "postgresql" and a.cold_runs:
                for _ in range(a.cold_runs):
                    for m in ("ours", "recipe_bare", "recipe_ours"):
                        res = subprocess.run([sys.executable, __file__, "--dir", a.dir, "--pg-url", a.pg_url, "--cold-child", m, kind],
                                             check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                        got = json.loads(res.stdout.strip().splitlines()[-1])
                        for k, v in got.items():
                            if k != "process_wall": cold.setdefault(k, []).append((*v, got["process_wall"]))
                print(f"  cold ({a.cold_runs} fresh processes each): first call wall / CPU, and the process's wall")
                for k, v in cold.items():
                    print(f"    {k:12s} {stats([x[0] for x in v])} / {stats([x[1] for x in v])}   process {stats([x[2] for x in v])}")
            report[kind] = dict(warm={k: [x[:2] for x in v] for k, v in runs.items()}, cold=cold)
            if kind == "sqlite":
                print(f"  ours / to_sql: {med['to_sql'][0] / med['ours'][0]:.2f}x (wall)" if "to_sql" in med else "")
                continue
            print("\nGOALS (ratios of medians in this run; ratio = recipe time / our time, so > 1 is faster than the recipe)")
            for target, label in (("recipe_ours", "the recipe into our table (same key, instrument check, CHECKs)"),
                                  ("recipe_bare", "the recipe into a keyless table pandas creates")):
                rw, rc = med[target][0] / med["ours"][0], med[target][1] / med["ours"][1]
                print(f"GOAL ours >= 0.8x {label}: wall {rw:.2f}x, CPU {rc:.2f}x -> {'HOLDS' if min(rw, rc) >= 0.8 else 'FAILS'}")
            fw, fc = med["recipe_bare"][0] / med["floor"][0], med["recipe_bare"][1] / med["floor"][1]
            print(f"  bound: the floor (pre-rendered COPY straight into `bars`, no conflict check) is itself {fw:.2f}x (wall) / {fc:.2f}x (CPU) the keyless recipe;"
                  f" ours is {med['floor'][0] / med['ours'][0]:.2f}x the floor (wall)")
            print(f"  ours against before this change: {med['before'][0] / med['ours'][0]:.2f}x faster (wall), "
                  f"{med['before'][1] / med['ours'][1]:.2f}x (CPU); re-ingest {n / med['again'][0]:,.0f} rows/s")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "store_ingest.json").write_text(json.dumps(dict(rows=n, runs=a.runs, cold_runs=a.cold_runs, results=report), indent=1))


if __name__ == "__main__":
    main()

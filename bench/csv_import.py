"""Benchmark (not a test): importing a large CSV of bars — seconds and peak memory against the file's size.

    python bench/csv_import.py [--rows 1000000] [--repeat 3]

Writes a CSV under the column contract (100 symbols x 10,000 XNYS sessions = 1,000,000 rows, 6 decimals), then, each
in a fresh process (so peak RSS is the import's own): `FileSource(path).bars()` — read, parse, validate (contract,
calendar, OHLC, gaps) — the work `trading-data snapshot --source csv` does before writing. Prints seconds (median
[min, max]), peak RSS (the child's own VmHWM) minus the process's RSS before the import, and both against the file size;
the frame returned is part of that peak.
Goals (issue 16): >= 10x faster than before (19 s measured for 1,000,000 rows; timed again here), peak memory < 2x the file size.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE_COMMIT = "c4825cf"  # the importer before this change: loaded from git and timed in the same run


def write_csv(path: Path, rows: int):
    import numpy as np
    import pandas as pd
    import exchange_calendars as xcals
    n_sym = 100
    n_bars = rows // n_sym
    sessions = xcals.get_calendar("XNYS", start="1986-01-01").sessions
    days = sessions[:n_bars]
    rng = np.random.default_rng(0)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_sym)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.002, close.shape))
    high = np.maximum(open_, close) * 1.003
    low = np.minimum(open_, close) * 0.997
    df = pd.DataFrame({"ts_event": np.tile(days.strftime("%Y-%m-%d"), n_sym), "symbol": np.repeat([f"S{i:03d}" for i in range(n_sym)], n_bars),
                       "open": open_.T.ravel(), "high": high.T.ravel(), "low": low.T.ravel(), "close": close.T.ravel(),
                       "volume": rng.integers(1000, 10**6, close.size)})
    df.to_csv(path, index=False, float_format="%.6f")


def before_module():
    "trading/data/files.py as of BEFORE_COMMIT, imported beside today's package (same relative imports)."
    import importlib.util
    src = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:trading/data/files.py"], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    tmp = Path(tempfile.mkdtemp()) / "files_before.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("trading.data.files_before", tmp)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def child(path: str, impl: str):
    "One import in this process; prints JSON with wall and CPU seconds and RSS."
    import time
    def status_kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"): return int(line.split()[1])
    rss_kib = lambda: status_kib("VmRSS")
    import trading.data.sources  # noqa: F401  (imports outside the timer and the memory delta)
    from trading.data.calendars import exchange_calendar
    exchange_calendar("XNYS")  # the calendar's construction (~1 s, cached per process) is not the importer's
    FileSource = before_module().FileSource if impl == "before" else __import__("trading.data.files", fromlist=["FileSource"]).FileSource
    base = rss_kib()
    t, c = time.perf_counter(), time.process_time()
    bars = FileSource(path).bars()
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    # VmHWM: this process image's own peak. Not getrusage's ru_maxrss: Linux carries that across fork and exec, so every
    # child reported the parent's peak from writing the CSV with pandas (~330 MiB), whatever the importer did
    peak = status_kib("VmHWM")
    print(json.dumps(dict(secs=secs, cpu=cpu, rows=len(bars), peak_kib=peak, base_kib=base, frame_mib=bars.memory_usage(deep=True).sum() / 2**20)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--impl", default="after", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child: return child(a.child, a.impl)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bars.csv"
        write_csv(path, a.rows)
        size = path.stat().st_size
        run = lambda impl: json.loads(subprocess.run([sys.executable, __file__, "--child", str(path), "--impl", impl], check=True,
                                                     capture_output=True, text=True, env=os.environ).stdout)
        runs = {impl: [run(impl) for _ in range(a.repeat if impl == "after" else max(1, a.repeat // 2))] for impl in ("before", "after")}
    print(f"CSV import: {runs['after'][0]['rows']:,} rows, file {size / 2**20:.1f} MiB; FileSource(path).bars() in a fresh process each run; "
          f"before = the importer of {BEFORE_COMMIT}, timed in the same run. CPU = process CPU seconds (all threads), wall = elapsed")
    for impl, rs in runs.items():
        secs, cpu = [r["secs"] for r in rs], [r["cpu"] for r in rs]
        mem = [(r["peak_kib"] - r["base_kib"]) * 1024 / size for r in rs]
        print(f"  {impl:6s} wall {statistics.median(secs):6.2f} s [{min(secs):.2f}, {max(secs):.2f}]  CPU {statistics.median(cpu):6.2f} s "
              f"[{min(cpu):.2f}, {max(cpu):.2f}]  peak RSS above the process before the import: median {statistics.median(mem):.2f}x the file size "
              f"[{min(mem):.2f}, {max(mem):.2f}] (max {max(mem) * size / 2**20:.0f} MiB; the frame returned alone is {rs[0]['frame_mib']:.0f} MiB)  ({len(rs)} runs)")
    med = lambda impl, k: statistics.median(r[k] for r in runs[impl])
    speed_wall, speed_cpu = med("before", "secs") / med("after", "secs"), med("before", "cpu") / med("after", "cpu")
    extra = max(r["peak_kib"] - r["base_kib"] for r in runs["after"]) * 1024
    print(f"GOAL >= 10x faster than before: wall {speed_wall:.1f}x, CPU {speed_cpu:.1f}x -> {'HOLDS' if min(speed_wall, speed_cpu) >= 10 else 'FAILS'}")
    print(f"GOAL peak memory < 2x the file size: {extra / size:.2f}x -> {'HOLDS' if extra / size < 2 else 'FAILS'}")


if __name__ == "__main__":
    main()

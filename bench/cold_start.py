"""Benchmark (not a test): seconds from a fresh Python process to its first backtest, cold and warm.

    python bench/cold_start.py [--repeat 3]

Each run is a new interpreter (`python -c`) that imports `trading.backtest.vectorized` and runs `backtest_weights` on
a 20 x 2,000 panel, printing when each step ended. Three states:
  cold      NUMBA_CACHE_DIR pointed at an empty directory: every kernel the first backtest calls is compiled
  warm-disk the same directory, now filled by the cold run: kernels load from numba's on-disk cache
  warm      a second backtest in the same process (everything loaded and compiled)
Python's own bytecode caches (__pycache__) are left as installed in both fresh-process states. Wall seconds are
measured by the parent around the whole child; CPU seconds are the child's user + system time. Also printed: the
ten slowest imports of `python -X importtime` (cumulative, microseconds). Goals (issue 15): cold <= 3 s, warm <= 1 s.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import time, json
t0 = time.perf_counter()
import numpy as np, pandas as pd
t1 = time.perf_counter()
from trading.backtest.vectorized import backtest_weights
t2 = time.perf_counter()
rng = np.random.default_rng(0)
idx = pd.date_range("2015-01-01", periods=2000, freq="D", tz="UTC")
close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (2000, 20)), axis=0)), idx, [f"S{i}" for i in range(20)])
target = pd.DataFrame(np.where(rng.random((2000, 20)) < 0.05, rng.random((2000, 20)) / 20, np.nan), idx, close.columns)
backtest_weights(close, target, fee_rate=0.001)
t3 = time.perf_counter()
backtest_weights(close, target, fee_rate=0.001)
t4 = time.perf_counter()
print(json.dumps(dict(numpy_pandas=t1 - t0, engine_import=t2 - t1, first_backtest=t3 - t2, second_backtest=t4 - t3)))
"""


def run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(wall=wall, cpu=cpu, **json.loads(out.strip().splitlines()[-1]))


def fmt(xs): return f"{statistics.median(xs):6.2f} s [{min(xs):.2f}, {max(xs):.2f}]"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    cold, disk = [], []
    for _ in range(a.repeat):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(run(cache))
            disk.append(run(cache))
    print(f"fresh process -> first backtest (20 x 2,000 panel), median [min, max] of {a.repeat}")
    for name, rs in (("cold (empty numba cache)", cold), ("warm-disk (filled numba cache)", disk)):
        print(f"  {name:31s} wall {fmt([r['wall'] for r in rs])}  CPU {fmt([r['cpu'] for r in rs])}   of which: numpy+pandas import "
              f"{statistics.median(r['numpy_pandas'] for r in rs):.2f} s, engine import {statistics.median(r['engine_import'] for r in rs):.2f} s, "
              f"first backtest {statistics.median(r['first_backtest'] for r in rs):.2f} s")
    warm = [r["second_backtest"] for r in cold + disk]
    print(f"  {'warm (same process, 2nd call)':31s} {fmt(warm)}")
    for label, rs, goal in (("cold fresh process (cleared numba cache)", cold, 3.0), ("warm fresh process (numba's disk cache filled)", disk, 1.0)):
        w, c = statistics.median(r["wall"] for r in rs), statistics.median(r["cpu"] for r in rs)
        # on a shared machine wall time includes waiting for a core; CPU time is the process's own cost
        print(f"GOAL {label} <= {goal:g} s: wall {w:.2f} s -> {'HOLDS' if w <= goal else 'FAILS'}; CPU {c:.2f} s -> {'HOLDS' if c <= goal else 'FAILS'}")
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c", "import trading.backtest.vectorized"], capture_output=True, text=True).stderr
    rows = [l.split("|") for l in imp.splitlines() if l.startswith("import time:") and "cumulative" not in l]
    top = sorted(((int(r[1]), r[2].rstrip()) for r in rows), reverse=True)[:10]
    print("  slowest imports (cumulative us): " + "; ".join(f"{name.strip()} {us:,}" for us, name in top))


if __name__ == "__main__":
    main()

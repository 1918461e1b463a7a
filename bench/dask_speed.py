"""Dask speed: the same research work in one process and on a LocalCluster of 2 worker processes (1 thread each).

Workloads (real data: the 20 bundled S&P 500 stocks, snapshot dataset sp20, 1990-2022):
- walk-forward: SMACrossover, 9-trial grid, rolling 3y/6m folds (one task per trial);
- any-strategy sweep: TimeSeriesMomentum over 12 parameter sets (one task each);
- SMA sweep kernel: 20 symbols x 36 window pairs, split by symbol (4 tasks of 5 symbols);
- Monte Carlo VaR: 2,000,000 Student-t scenarios x 20 assets in 8 seeded blocks.
For each: single-process seconds, Dask seconds (cluster already warm: the start-up is timed separately), speed-up,
whether the numbers are identical, and how the tasks split over the workers (count and busy seconds per worker,
from the scheduler's task stream). Each path runs once to warm up (compilation, worker imports) and once timed; a loaded machine makes single timings noisy, so read the ratios. Prints a table and
writes bench/results/dask_speed.json.

What a 100-node cluster would need (on paper; not measured here):
- Task size. A task should run for well over the ~1 ms per-task scheduler overhead and the cost of shipping its
  inputs: one parameter set over every fold (seconds each) is right; one (trial, fold) pair on a small panel is
  too small. With 100 nodes x k cores, a study needs >= a few x 100k trials (or folds split across tasks by fold
  blocks) to keep every core busy; otherwise it finishes in one task's time and more nodes buy nothing.
- Data locality. Each task reads the whole price panel. `map_tasks` scatters shared inputs once per worker
  (broadcast), which is fine for megabytes; for a universe of thousands of symbols and decades of minutes the panel
  should live in shared storage (Parquet on S3/GCS, partitioned by symbol and year) and each task should read only
  its columns and years, or symbols should be the split so each worker holds its own partition.
- Results. Tasks return summaries (fold scores, per-bar OOS returns of a test window), never full equity panels;
  the reducer (choosing per fold, stitching) is tiny and stays on the client.
- Reproducibility. Seeds are per task (SeedSequence.spawn), so the answer does not depend on the number of nodes
  or the scheduling order; package versions must be identical on every node (one container image), because numba
  and BLAS builds can change the last bits.
- Operations: a scheduler reachable at TRADING_DASK_SCHEDULER_ADDRESS (dask-kubernetes / dask-jobqueue / Coiled
  start one), workers with --nthreads 1 per core for numba/numpy kernels, memory limits sized to one panel plus
  a task's working set, and the dashboard on for watching stragglers.
"""
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t = time.perf_counter(); out = fn(); return out, time.perf_counter() - t


def split_of(ts):
    "Tasks and busy seconds per worker, from a task stream."
    per = defaultdict(lambda: [0, 0.0])
    for t in ts.data:
        busy = sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
        per[t["worker"]][0] += 1; per[t["worker"]][1] += busy
    return {w: {"tasks": n, "busy_s": round(b, 3)} for w, (n, b) in sorted(per.items())}


def same(a, b):
    if isinstance(a, pd.DataFrame): return a.equals(b)
    if hasattr(a, "scores"): return a.scores.equals(b.scores) and a.oos_returns.equals(b.oos_returns)
    return a == b


def main():
    os.environ.pop("TRADING_DASK_SCHEDULER_ADDRESS", None)
    from trading.backtest.sweep import sweep_sma_crossover
    from trading.data.panels import price_panel
    from trading.data.snapshot import load_snapshot
    from trading.research.distributed import dask_client, monte_carlo_var_tasks, sweep_sma_tasks
    from trading.research.walkforward import load_spec, sweep_strategy, walk_forward
    from trading.strategies.base import MarketData

    close = price_panel(load_snapshot(ROOT / "data").bars("sp20"))
    data = MarketData(close)
    r = close.pct_change().dropna()
    mean, cov, w = r.mean().to_numpy(), r.cov().to_numpy(), np.full(close.shape[1], 1 / close.shape[1])
    spec = load_spec({"strategy": "SMACrossover", "grid": {"fast": [10, 20, 50], "slow": [100, 150, 200]}, "fixed": {"allocation": "equal"},
                      "train_bars": 756, "test_bars": 126, "purge_bars": 5, "embargo_bars": 5})
    fast, slow = [5, 10, 15, 20, 30, 40, 50, 60], [50, 100, 150, 200, 250]
    jobs = {
        "walk-forward (9 trials, ~60 folds)": lambda c: walk_forward(spec, data, client=c),
        "any-strategy sweep (TSMOM, 12 sets)": lambda c: sweep_strategy("TimeSeriesMomentum", {"lookback": [21, 63, 126, 189, 252, 378], "threshold": [0.0, 0.05]}, data, start_bar=378, client=c),
        "SMA sweep kernel (20 symbols x 36 pairs)": lambda c: sweep_sma_crossover(close, fast, slow, fee_rate=0.001) if c is None else sweep_sma_tasks(close, fast, slow, symbols_per_task=5, client=c, fee_rate=0.001),
        "Monte Carlo VaR (2M x 20, 8 blocks)": lambda c: monte_carlo_var_tasks(mean, cov, w, n_scenarios=2_000_000, n_tasks=8, dist="student_t", seed=0, client=c),
    }
    from distributed import get_task_stream
    rows = {}
    t = time.perf_counter()
    with dask_client(n_workers=2, threads_per_worker=1) as client:
        start_s = time.perf_counter() - t
        for name, job in jobs.items():
            # one warm-up run per path (numba compiles, worker imports), then one timed run each
            serial_out, _ = timed(lambda: job(None)); _, serial = timed(lambda: job(None))
            dask_out, _ = timed(lambda: job(client))
            with get_task_stream(client) as ts:
                _, dask = timed(lambda: job(client))
            rows[name] = {"single_process_s": round(serial, 3), "dask_2_workers_s": round(dask, 3), "speedup": round(serial / dask, 2),
                          "identical": bool(same(serial_out, dask_out)), "split": split_of(ts)}
            print(f"{name}: {rows[name]}", flush=True)
    table = pd.DataFrame({k: {c: v for c, v in r.items() if c != "split"} for k, r in rows.items()}).T
    print(f"LocalCluster start-up (2 processes x 1 thread): {start_s:.2f} s; cores on this machine: {os.cpu_count()}")
    print(table.to_string())
    for k, r in rows.items(): print(f"  {k}: " + "; ".join(f"{w.rsplit(':', 1)[-1]} {v['tasks']} tasks / {v['busy_s']} s busy" for w, v in r["split"].items()))
    OUT.mkdir(exist_ok=True)
    (OUT / "dask_speed.json").write_text(json.dumps({"cluster_start_s": round(start_s, 3), "cpu_count": os.cpu_count(), "jobs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

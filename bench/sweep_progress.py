"""Benchmark (not a test): what the sweeps' progress bar costs — the same sweep with the bar drawn (to /dev/null) and
without, alternated in one process, median of `--repeat` runs each, as a ratio.

    python bench/sweep_progress.py [--repeat 5]

Goal (issue 16): the bar does not slow a sweep down measurably (it moves once per chunk, never per backtest).
"""
import argparse
import contextlib
import os
import statistics
import sys
import time

import numpy as np
import pandas as pd


def _close(n=2500, k=20, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(50 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, k)), axis=0)),
                        index=pd.date_range("2010-01-01", periods=n, freq="B", tz="UTC"), columns=[f"S{i}" for i in range(k)])


def _timed(fn, repeat):
    "Median seconds of fn(progress) for progress False and True, alternated (drift hits both alike)."
    out = {False: [], True: []}
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        for _ in range(repeat):
            for progress in (False, True):
                t = time.perf_counter()
                fn(progress)
                out[progress].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in out.items()}, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    from trading.backtest.sweep import sweep_sma_crossover, sweep_strategy
    from trading.strategies.base import MarketData
    import trading.backtest.sweep as sweep
    big, close = _close(5000, 50), _close()
    fast, slow = list(range(2, 60, 2)), list(range(20, 250, 5))
    n_pairs = sum(x < y for x in fast for y in slow)
    chunks = -(-n_pairs // max(-(-n_pairs // 20), int(sweep._SMA_CHUNK_CELLS // (big.shape[0] * big.shape[1])), 1))
    data = MarketData(close=close)
    grid = {"fast": [5, 10, 20, 30, 40], "slow": [50, 100, 150, 200]}
    jobs = {f"sweep_sma_crossover ({n_pairs} pairs x {big.shape[1]} symbols, {len(big)} bars; with the bar in {chunks} kernel calls)":
                lambda progress: sweep_sma_crossover(big, fast, slow, fee_rate=0.001, progress=progress),
            f"sweep_strategy sma_crossover ({len(grid['fast']) * len(grid['slow'])} sets x {close.shape[1]} symbols, chunk 1 MiB)":
                lambda progress: sweep_strategy("sma_crossover", data, grid, fee_rate=0.001, chunk_mb=1.0, progress=progress)}
    for name, fn in jobs.items():
        fn(False)  # compile and warm caches outside the timing
        med, runs = _timed(fn, a.repeat)
        print(f"{name}: without bar {med[False]:.3f} s [{min(runs[False]):.3f}, {max(runs[False]):.3f}], "
              f"with bar {med[True]:.3f} s [{min(runs[True]):.3f}, {max(runs[True]):.3f}] -> ratio {med[True] / med[False]:.3f} ({a.repeat} runs each)")


if __name__ == "__main__":
    sys.exit(main())

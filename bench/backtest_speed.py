"""Backtest speed against vectorbt, by the protocol in bench/README.md: medians and ranges of >= 5 runs, warm and cold
(cold = a fresh process) for every library, the same work inside the timer on both sides, results checked equal,
CPU time of all threads (and wall time) reported, every goal printed with its measured ratio and a computed verdict.

Jobs (sizes are flags):
  signals_500     random entry/exit signals, 500 assets x 5,000 bars, 10 bps, one account per asset: signals -> equity curve
  signals_sp20    the same on skfolio's 20 S&P 500 stocks x 8,313 days (real prices)
  sweep_sma       SMACrossover over 16 fast x 29 slow windows x 20 stocks = 9,280 backtests: strategy -> final values
                  (ours: the general `sweep_strategy` over the registry strategy; vectorbt: its MA indicator with
                  param_product, then from_signals over the 9,280-column panel)
  sweep_tsmom     TimeSeriesMomentum over 12 lookbacks x 11 thresholds x 20 stocks = 2,640 independent backtests
                  (ours: `sweep_strategy`; vectorbt: the rule as an IndicatorFactory indicator run with param_product,
                  then from_orders with target percents over the 2,640-column panel)
  sweep_xsmom     CrossSectionalMomentum, portfolio mode: 4 lookbacks x 2 skips x 5 top-k = 40 portfolios of 20 stocks
                  (ours: `sweep_strategy(mode="portfolio")`; vectorbt: from_orders with target percents, group_by the
                  parameters, cash_sharing=True, call_seq="auto"; the same strategy code makes the targets on both sides)
  floor           the streaming floor of the general engine: one numba pass that reads every cell the engine must read
                  (close, target weight) and writes every cell it must write (equity, position), against
                  `backtest_weights` on the same targets in the same process, interleaved (500 x 5,000 and 20 x 8,313);
                  printed for context beside it: the same pass reading the frames as given and returning frames
Usage: python bench/backtest_speed.py [--runs 5] [--assets 500 --bars 5000] [--fast 2:18 --slow 20:165:5]
                                     [--sweep-runs 5 --sweep-cold-runs 5] [--skip-sweep]
Writes bench/results/backtest_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
OUT = Path(__file__).with_name("results")
FEE, CASH = 0.001, 100.0
JOBS = ("signals_500", "signals_sp20", "floor", "sweep_sma", "sweep_tsmom", "sweep_xsmom")
SIZE_FLAGS = ("assets", "bars", "fast", "slow", "tsmom_lookback", "tsmom_threshold", "xs_lookback", "xs_top_k")  # passed to every worker


# ------------------------------------------------------------------ inputs (deterministic, rebuilt in every process)
def random_panel(assets: int, bars: int, seed: int = 0):
    "Random-walk prices and ~1%-dense random entry/exit signals (bars x assets), UTC daily index."
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2000-01-03", periods=bars, freq="D", tz="UTC")
    cols = [f"S{i:04d}" for i in range(assets)]
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (bars, assets)), axis=0)), idx, cols)
    entries = pd.DataFrame(rng.random((bars, assets)) < 0.01, idx, cols)
    exits = pd.DataFrame(rng.random((bars, assets)) < 0.01, idx, cols)
    return close, entries, exits


def sp20_panel(seed: int = 0):
    from skfolio.datasets import load_sp500_dataset
    close = load_sp500_dataset()
    close.index = close.index.tz_localize("UTC")
    rng = np.random.default_rng(seed)
    entries = pd.DataFrame(rng.random(close.shape) < 0.01, close.index, close.columns)
    exits = pd.DataFrame(rng.random(close.shape) < 0.01, close.index, close.columns)
    return close, entries, exits


def parse_list(text: str) -> list[int]: return [int(x) for x in text.split(",")]


def parse_range(text: str) -> list[int]:
    parts = [int(p) for p in text.split(":")]
    return list(range(*parts)) if len(parts) > 1 else parts


# ------------------------------------------------------------------ the jobs, as each library does them best
def make_job(job: str, lib: str, a):
    "A zero-argument callable doing the job's timed work for `lib`, and a function turning its output into an array to compare."
    if job.startswith("signals"):
        close, entries, exits = random_panel(a.assets, a.bars) if job == "signals_500" else sp20_panel()
        if lib == "ours":
            from trading.backtest.vectorized import backtest_signals
            return (lambda: backtest_signals(close, entries, exits, fee_rate=FEE, init_cash=CASH).equity), lambda r: r.to_numpy()
        import vectorbt as vbt
        # vectorbt fills on the bar it is given; ours fills a decision on the next bar: the same trades need its signals one bar later
        ve, vx = entries.shift(1, fill_value=False), exits.shift(1, fill_value=False)
        if lib == "vectorbt_orders":  # less work than ours: order records only, no equity curve (value() is lazy)
            return (lambda: vbt.Portfolio.from_signals(close, ve, vx, fees=FEE, init_cash=CASH, freq="1D")), lambda r: r.value().to_numpy()
        return (lambda: vbt.Portfolio.from_signals(close, ve, vx, fees=FEE, init_cash=CASH, freq="1D").value()), lambda r: r.to_numpy()
    if job == "sweep_sma":
        close = sp20_panel()[0]
        fast, slow = parse_range(a.fast), parse_range(a.slow)
        pairs = [(f, s) for f in fast for s in slow if f < s]
        if lib == "ours":
            from trading.backtest.sweep import sweep_strategy
            from trading.strategies.base import MarketData
            data = MarketData(close=close)
            return (lambda: sweep_strategy("sma_crossover", data, {"fast": fast, "slow": slow}, fee_rate=FEE, init_cash=CASH)["final_value"]), \
                lambda r: r.to_numpy()
        if lib == "ours_fused":  # the SMA-only fused kernel, for reference
            from trading.backtest.sweep import sweep_sma_crossover
            return (lambda: sweep_sma_crossover(close, fast, slow, fee_rate=FEE, init_cash=CASH)["final_value"]), lambda r: r.to_numpy()
        import vectorbt as vbt
        if lib == "vectorbt_same_ma":  # the equality check: vectorbt's portfolio on the signals of *our* moving averages (no tie-break noise)
            from trading.strategies.rules import sma
            def vbt_check():
                mas = {w: sma(close, w) for w in sorted(set(fast) | set(slow))}
                lng = pd.concat([mas[f] > mas[s] for f, s in pairs], axis=1, keys=pairs)
                e, x = lng & ~lng.shift(1, fill_value=False), ~lng & lng.shift(1, fill_value=False)
                e, x = e.shift(1, fill_value=False), x.shift(1, fill_value=False)
                prices = pd.concat([close] * len(pairs), axis=1, keys=pairs)
                return vbt.Portfolio.from_signals(prices, e, x, fees=FEE, init_cash=CASH, freq="1D").final_value()
            return vbt_check, lambda r: r.to_numpy()

        def vbt_sweep():
            windows = sorted(set(fast) | set(slow))
            ma = vbt.MA.run(close, windows, param_product=True).ma  # every window once (vectorbt's indicator factory), columns (window, symbol)
            fa = pd.concat([ma[f] for f, _ in pairs], axis=1, keys=pairs, names=["fast", "slow"])
            sl = pd.concat([ma[s] for _, s in pairs], axis=1, keys=pairs, names=["fast", "slow"])
            lng = fa > sl
            e, x = lng & ~lng.shift(1, fill_value=False), ~lng & lng.shift(1, fill_value=False)
            e, x = e.shift(1, fill_value=False), x.shift(1, fill_value=False)  # decided at t, filled at t+1 (our default)
            prices = pd.concat([close] * len(pairs), axis=1, keys=pairs, names=["fast", "slow"])
            return vbt.Portfolio.from_signals(prices, e, x, fees=FEE, init_cash=CASH, freq="1D").final_value()
        return vbt_sweep, lambda r: r.to_numpy()
    if job == "sweep_tsmom":
        close = sp20_panel()[0]
        lookbacks, thresholds = parse_range(a.tsmom_lookback), [float(x) for x in a.tsmom_threshold.split(",")]
        if lib == "ours":
            from trading.backtest.sweep import sweep_strategy
            from trading.strategies.base import MarketData
            data = MarketData(close=close)
            return (lambda: sweep_strategy("time_series_momentum", data, {"lookback": lookbacks, "threshold": thresholds},
                                           fee_rate=FEE, init_cash=CASH)["final_value"]), lambda r: r.to_numpy()
        import vectorbt as vbt
        from trading.strategies.momentum import period_starts

        def tsmom_rule(close, lookback, threshold):  # TimeSeriesMomentum's rule: long while close[t] / close[t - lookback] - 1 > threshold
            back = np.full_like(close, np.nan); back[lookback:] = close[:-lookback]
            ret = close / back - 1
            return (ret > threshold).astype(np.float64), ret
        TSMOM = vbt.IndicatorFactory(class_name="TSMOM", input_names=["close"], param_names=["lookback", "threshold"],
                                     output_names=["long", "ret"]).from_apply_func(tsmom_rule)
        n_syms = close.shape[1]

        def vbt_sweep():
            ind = TSMOM.run(close, lookback=lookbacks, threshold=thresholds, param_product=True)  # columns (lookback, threshold, symbol)
            starts = pd.Series(period_starts(close.index, "M"), close.index)
            decided = ind.long.where(ind.ret.notna()).where(starts, axis=0) / n_syms  # 1/N long or 0, on month starts once the window is full
            held = decided.ffill()
            size = held.where(held.ne(held.shift(1)) & held.notna()).shift(1)  # a changed target, ordered on the next bar
            prices = pd.concat([close] * (len(lookbacks) * len(thresholds)), axis=1, keys=size.columns.droplevel(-1).unique())
            return vbt.Portfolio.from_orders(prices, size.to_numpy(), size_type="targetpercent", fees=FEE, init_cash=CASH, freq="1D").final_value()
        return vbt_sweep, lambda r: r.to_numpy()
    if job == "sweep_xsmom":
        close = sp20_panel()[0]
        from trading.backtest.sweep import parameter_grid, sweep_strategy
        from trading.strategies.base import MarketData
        from trading.strategies.momentum import CrossSectionalMomentum
        grid = {"lookback": parse_list(a.xs_lookback), "skip": [0, 21], "top_k": parse_list(a.xs_top_k)}
        if lib == "ours":
            data = MarketData(close=close)
            return (lambda: sweep_strategy("cross_sectional_momentum", data, grid, fee_rate=FEE, init_cash=CASH, mode="portfolio")["final_value"]), \
                lambda r: r.to_numpy()
        import vectorbt as vbt

        def vbt_sweep():
            data = MarketData(close=close.copy())  # one block, as sweep_strategy makes it
            sets = parameter_grid(grid)
            sizes = []
            # the same strategy code as ours, its whole-grid path (vectorbt has no cross-sectional ranking indicator of its own)
            targets = CrossSectionalMomentum.target_weights_grid(data, [CrossSectionalMomentum(**p) for p in sets])
            for target in targets:
                w = pd.DataFrame(target, index=close.index, columns=close.columns)
                held = w.ffill()
                rebalance = (w.notna() & w.ne(held.shift(1))).any(axis=1)  # any weight changed: the whole book rebalances (our on_change rule)
                sizes.append(held.where(rebalance, axis=0).shift(1))  # decided at t, ordered on the next bar
            keys = [tuple(p.values()) for p in sets]
            size = pd.concat(sizes, axis=1, keys=keys, names=list(grid))
            prices = pd.concat([close] * len(sets), axis=1, keys=keys, names=list(grid))
            return vbt.Portfolio.from_orders(prices, size, size_type="targetpercent", fees=FEE, init_cash=CASH, group_by=list(grid),
                                             cash_sharing=True, call_seq="auto", freq="1D").final_value()
        return vbt_sweep, lambda r: r.to_numpy()
    raise SystemExit(f"unknown job {job}")


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) / 1024
    return float("nan")


def memory_worker(a):
    "Peak memory of one call in a fresh process: compile/warm up on a tiny version of the job (so no big freed heap is retained), then one full call."
    import copy
    tiny = copy.copy(a); tiny.assets, tiny.bars, tiny.fast, tiny.slow = 3, 300, "2:4", "20:30:5"
    tiny.tsmom_lookback, tiny.tsmom_threshold, tiny.xs_lookback, tiny.xs_top_k = "21", "0.0", "63", "1"
    small_fn, _ = make_job("signals_500" if a.job.startswith("signals") else a.job, a.lib, tiny)
    small_fn()
    fn, _ = make_job(a.job, a.lib, a)
    import gc; gc.collect()
    base = rss_mib()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
    fn()
    print(json.dumps({"peak_mib": peak_mib() - base}))


def numba_setup():
    """numba's one-time, process-wide set-up (its typing and lowering registries; 0.3-1.2 s CPU), before any timer.
    `import vectorbt` does it while importing (outside its timed first call); our import leaves it to the first call. Done
    here for every library, so each cold first call times the same thing: loading or compiling kernels, then the job.
    The fresh-process wall time (imports, data, set-up, first call) is reported beside it."""
    from numba.core.registry import cpu_target
    cpu_target.target_context.refresh()


def worker(a):
    "One fresh process: the first call is the cold sample; then `warm` timed calls."
    if a.memory: return memory_worker(a)
    if a.job == "floor": return floor_worker(a)
    t_start = time.perf_counter()
    fn, as_array = make_job(a.job, a.lib, a)
    numba_setup()
    setup_s = time.perf_counter() - t_start
    t, c = time.perf_counter(), time.process_time(); out = fn(); cold = (time.perf_counter() - t, time.process_time() - c)
    warm = []
    for _ in range(a.warm):
        t, c = time.perf_counter(), time.process_time(); out = fn(); warm.append((time.perf_counter() - t, time.process_time() - c))
    if a.save: np.save(a.save, np.asarray(as_array(out), dtype=float))
    print(json.dumps({"cold_wall": cold[0], "cold_cpu": cold[1], "warm_wall": [w[0] for w in warm], "warm_cpu": [w[1] for w in warm],
                      "setup_s": setup_s, "process_s": time.perf_counter() - t_start}))


def spawn(job: str, lib: str, a, warm: int = 0, memory: bool = False, save: str | None = None) -> dict:
    sizes = [f"--{name.replace('_', '-')}={getattr(a, name)}" for name in SIZE_FLAGS]
    cmd = [sys.executable, __file__, "--worker", "--job", job, "--lib", lib, "--warm", str(warm), "--runs", str(a.runs), *sizes] \
        + (["--memory"] if memory else []) + (["--save", save] if save else [])
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode: raise SystemExit(f"{job}/{lib} failed:\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1]); r.setdefault("fresh_process_s", time.perf_counter() - t)
    return r


def stats(xs: list[float]) -> dict:
    return {"median": float(np.median(xs)), "min": float(np.min(xs)), "max": float(np.max(xs)), "runs": len(xs)}


def measure(job: str, lib: str, a, tmp: Path, cold_runs: int, warm_runs: int) -> dict:
    "Warm runs (after the cold first call) in one fresh process; cold first calls in `cold_runs` fresh processes; peak memory in one more."
    first = spawn(job, lib, a, warm=warm_runs, save=str(tmp / f"{job}-{lib}.npy"))
    first["peak_mib"] = spawn(job, lib, a, memory=True)["peak_mib"] if lib in ("ours", "vectorbt") else float("nan")
    colds = [first] + [spawn(job, lib, a) for _ in range(cold_runs - 1)]
    return {"warm_cpu": stats(first["warm_cpu"]), "warm_wall": stats(first["warm_wall"]),
            "cold_cpu": stats([c["cold_cpu"] for c in colds]), "cold_wall": stats([c["cold_wall"] for c in colds]),
            "fresh_process_wall": stats([c["fresh_process_s"] for c in colds]), "peak_mib": first["peak_mib"]}


# ------------------------------------------------------------------ the streaming floor
# The floor is the least work any engine returning this result must do: read every cell of its inputs once (close and
# target weight, 8 bytes each) and write every cell of the outputs it must return once (equity and position per bar and
# account, 8 bytes each, into fresh arrays as the engine must allocate them), in memory order, with no arithmetic worth
# the name. On this machine that pass is memory-bound; nothing that returns equity and positions can do less. The other
# frames of a result (cash, weights, fees, turnover, trades) are derived from the fills on first read, so they are not
# part of what the engine must write. Both are timed in the same process, interleaved run by run, so load moves both.
def floor_worker(a):
    from numba import njit
    from trading.backtest.vectorized import _rows, backtest_weights, signals_to_target

    @njit(cache=False)
    def stream_floor(close, target, equity, positions):  # read 2 (k, n) arrays, write 2, in memory order
        for j in range(close.shape[0]):
            for i in range(close.shape[1]):
                equity[j, i] = close[j, i]; positions[j, i] = target[j, i]

    out = {}
    for job in ("signals_500", "signals_sp20"):
        close, entries, exits = random_panel(a.assets, a.bars) if job == "signals_500" else sp20_panel()
        target = signals_to_target(entries, exits)
        ct, tt = np.ascontiguousarray(close.to_numpy().T), np.ascontiguousarray(target.to_numpy().T)  # the (k, n) memory-order views

        def floor_pass(): stream_floor(ct, tt, np.empty(ct.shape), np.empty(ct.shape))
        def frames_floor():  # context, not the verdict: the same pass reading the frames as given (pandas' public
            # to_numpy, one copy for a frame of many blocks) and returning frames, what any frames-in/frames-out API pays
            c, t = _rows(close.to_numpy(np.float64)), _rows(target.to_numpy(np.float64))
            e, p = np.empty(c.shape), np.empty(c.shape)
            stream_floor(c, t, e, p)
            return [pd.DataFrame(x.T, index=close.index, columns=close.columns, copy=False) for x in (e, p)]
        def engine(): backtest_weights(close, target, fee_rate=FEE, init_cash=CASH, mode="independent").equity
        def engine_signals(): backtest_signals_call(close, entries, exits)
        floor_pass(); frames_floor(); engine(); engine_signals()
        runs = {"floor": [], "frames_floor": [], "engine": [], "engine_signals": []}
        for _ in range(max(a.runs, 5)):
            for name, fn in (("floor", floor_pass), ("frames_floor", frames_floor), ("engine", engine), ("engine_signals", engine_signals)):
                c = time.process_time(); fn(); runs[name].append(time.process_time() - c)
        ratio = [e / f for e, f in zip(runs["engine"], runs["floor"])]
        ratio_signals = [e / f for e, f in zip(runs["engine_signals"], runs["floor"])]
        ratio_frames = [e / f for e, f in zip(runs["engine"], runs["frames_floor"])]
        out[job] = {"cells": int(ct.size), **{f"{k}_cpu": stats(v) for k, v in runs.items()},
                    "engine_over_floor": stats(ratio), "engine_signals_over_floor": stats(ratio_signals),
                    "engine_over_frames_floor": stats(ratio_frames),
                    "floor_ns_per_cell": float(np.median(runs["floor"])) / ct.size * 1e9,
                    "engine_ns_per_cell": float(np.median(runs["engine"])) / ct.size * 1e9}
    print(json.dumps(out))


def backtest_signals_call(close, entries, exits):
    from trading.backtest.vectorized import backtest_signals
    return backtest_signals(close, entries, exits, fee_rate=FEE, init_cash=CASH).equity


def verdict(ok: bool) -> str: return "holds" if ok else "does not hold"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="warm runs per library and job, and cold (fresh-process) runs for the engine jobs")
    p.add_argument("--sweep-runs", type=int, default=5, help="warm runs of each sweep per library (vectorbt's SMA sweep takes ~15-50 s a run)")
    p.add_argument("--sweep-cold-runs", type=int, default=5, help="fresh-process runs of each sweep per library")
    p.add_argument("--tsmom-lookback", default="21:273:21", help="TSMOM lookbacks, start:stop:step in bars")
    p.add_argument("--tsmom-threshold", default="-0.1,-0.08,-0.06,-0.04,-0.02,0.0,0.02,0.04,0.06,0.08,0.1", help="TSMOM thresholds, comma-separated")
    p.add_argument("--xs-lookback", default="63,126,189,252", help="CrossSectionalMomentum lookbacks (x skips 0, 21)")
    p.add_argument("--xs-top-k", default="1,3,5,7,10", help="CrossSectionalMomentum top-k values")
    p.add_argument("--assets", type=int, default=500); p.add_argument("--bars", type=int, default=5000)
    p.add_argument("--fast", default="2:18"); p.add_argument("--slow", default="20:165:5")
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated subset of {','.join(JOBS)} (a quick look; `make bench` runs all)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--job"); p.add_argument("--lib"); p.add_argument("--warm", type=int, default=0)
    p.add_argument("--memory", action="store_true"); p.add_argument("--save")
    a = p.parse_args()
    if a.worker: return worker(a)

    t0 = time.perf_counter()
    res = {"threads": {"ours_engine": 1, "ours_sweep": "numba prange over accounts, all cores", "vectorbt": 1, "cores": os.cpu_count(),
                       "timer": "CPU time of the process, all threads (time.process_time); wall time alongside"},
           "sizes": {name: getattr(a, name) for name in SIZE_FLAGS}, "runs": a.runs}
    goals = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs = set(a.jobs.split(","))
        if jobs - set(JOBS): raise SystemExit(f"--jobs: unknown {sorted(jobs - set(JOBS))}; choose from {','.join(JOBS)}")
        for job in ("signals_500", "signals_sp20"):
            if job not in jobs: continue
            r = {lib: measure(job, lib, a, tmp, a.runs if lib != "vectorbt_orders" else 1, a.runs) for lib in ("ours", "vectorbt", "vectorbt_orders")}
            ours, theirs = np.load(tmp / f"{job}-ours.npy"), np.load(tmp / f"{job}-vectorbt.npy")
            r["max_rel_diff_equity"] = float(np.abs(ours / theirs - 1).max())
            for lib in ("vectorbt", "vectorbt_orders"):
                r[f"ratio_warm_cpu_vs_{lib}"] = r[lib]["warm_cpu"]["median"] / r["ours"]["warm_cpu"]["median"]
                r[f"ratio_cold_wall_vs_{lib}"] = r[lib]["cold_wall"]["median"] / r["ours"]["cold_wall"]["median"]
            r["memory_ratio_ours_over_vectorbt"] = max(r["ours"]["peak_mib"], 1.0) / max(r["vectorbt"]["peak_mib"], 1.0)  # below 1 MiB: noise
            res[job] = r
            eq = r["max_rel_diff_equity"] < 1e-9
            goals.append((f"general engine >= 2x vectorbt, {job}, warm CPU, same work (equity curve)", r["ratio_warm_cpu_vs_vectorbt"], ">= 2", r["ratio_warm_cpu_vs_vectorbt"] >= 2 and eq))
            goals.append((f"general engine >= 2x vectorbt, {job}, warm CPU, vs its orders alone (less work than ours)", r["ratio_warm_cpu_vs_vectorbt_orders"], ">= 2", r["ratio_warm_cpu_vs_vectorbt_orders"] >= 2 and eq))
            goals.append((f"general engine >= 2x vectorbt, {job}, cold (fresh process, first call) wall", r["ratio_cold_wall_vs_vectorbt"], ">= 2", r["ratio_cold_wall_vs_vectorbt"] >= 2 and eq))
            goals.append((f"general engine memory <= vectorbt's, {job} (peak RSS of the call, ours/theirs)", r["memory_ratio_ours_over_vectorbt"], "<= 1", r["memory_ratio_ours_over_vectorbt"] <= 1))
            goals.append((f"equity identical to vectorbt, {job} (max relative difference)", r["max_rel_diff_equity"], "< 1e-9", eq))
            print(f"[{time.perf_counter() - t0:6.0f}s] {job} done", flush=True)

        # ---- the streaming floor (one fresh process, floor and engine interleaved)
        fl = spawn("floor", "ours", a) if "floor" in jobs else {}
        fl.pop("fresh_process_s", None)
        res["floor"] = fl
        for job, r in fl.items():
            goals.append((f"general engine within 3x of one streaming pass (read close + target, write equity + positions), {job}, "
                          f"median of {r['engine_over_floor']['runs']} paired runs [range {r['engine_over_floor']['min']:.2f}-{r['engine_over_floor']['max']:.2f}]",
                          r["engine_over_floor"]["median"], "<= 3", r["engine_over_floor"]["median"] <= 3))
        print(f"[{time.perf_counter() - t0:6.0f}s] floor done", flush=True)

        # ---- sweeps of registered strategies
        for job in () if a.skip_sweep else [j for j in ("sweep_sma", "sweep_tsmom", "sweep_xsmom") if j in jobs]:
            libs = ("ours", "vectorbt", "ours_fused") if job == "sweep_sma" else ("ours", "vectorbt")
            r = {lib: measure(job, lib, a, tmp, a.sweep_cold_runs if lib != "ours_fused" else 1, a.sweep_runs) for lib in libs}
            ours = np.load(tmp / f"{job}-ours.npy")
            if job == "sweep_sma":
                spawn(job, "vectorbt_same_ma", a, save=str(tmp / f"{job}-vectorbt_same_ma.npy"))  # untimed: the equality check
                theirs = np.load(tmp / f"{job}-vectorbt_same_ma.npy")
                # against vectorbt's own MA: a different rolling-mean summation can break a tie (fast == slow to the last bits) the other way
                r["runs_differing_over_1e-9_vs_vectorbt_own_ma"] = int((np.abs(ours / np.load(tmp / f"{job}-vectorbt.npy") - 1) > 1e-9).sum())
                r["max_rel_diff_vs_fused"] = float(np.abs(ours / np.load(tmp / f"{job}-ours_fused.npy") - 1).max())
            else:
                theirs = np.load(tmp / f"{job}-vectorbt.npy")
            rel = np.abs(ours / theirs - 1)
            r["backtests"] = int(len(ours))
            r["max_rel_diff_final_value"] = float(rel.max()); r["runs_differing_over_1e-9"] = int((rel > 1e-9).sum())
            r["ratio_warm_cpu"] = r["vectorbt"]["warm_cpu"]["median"] / r["ours"]["warm_cpu"]["median"]
            r["ratio_warm_wall"] = r["vectorbt"]["warm_wall"]["median"] / r["ours"]["warm_wall"]["median"]
            r["ratio_cold_wall"] = r["vectorbt"]["cold_wall"]["median"] / r["ours"]["cold_wall"]["median"]
            r["memory_ratio_ours_over_vectorbt"] = max(r["ours"]["peak_mib"], 1.0) / max(r["vectorbt"]["peak_mib"], 1.0)  # below 1 MiB: noise
            res[job] = r
            same = r["runs_differing_over_1e-9"] == 0
            what = {"sweep_sma": "SMACrossover backtests", "sweep_tsmom": "TimeSeriesMomentum backtests",
                    "sweep_xsmom": "CrossSectionalMomentum portfolios (portfolio mode, cash shared)"}[job]
            goals.append((f"any strategy's sweep >= 10x vectorbt, {r['backtests']:,} {what} via sweep_strategy, warm CPU", r["ratio_warm_cpu"], ">= 10", r["ratio_warm_cpu"] >= 10 and same))
            goals.append((f"  same, warm wall (our sweep kernel uses {os.cpu_count()} threads)", r["ratio_warm_wall"], ">= 10", r["ratio_warm_wall"] >= 10 and same))
            goals.append(("  same, cold (fresh process, first call) wall", r["ratio_cold_wall"], ">= 10", r["ratio_cold_wall"] >= 10 and same))
            goals.append((f"  same, memory <= vectorbt's (peak RSS, ours/theirs)", r["memory_ratio_ours_over_vectorbt"], "<= 1", r["memory_ratio_ours_over_vectorbt"] <= 1))
            goals.append((f"  same, final values equal to vectorbt's{' on the same moving averages' if job == 'sweep_sma' else ''} (runs differing by > 1e-9 relative)",
                          r["runs_differing_over_1e-9"], "== 0", same))
            if job == "sweep_sma":
                print(f"  (against vectorbt's own MA, {r['runs_differing_over_1e-9_vs_vectorbt_own_ma']} of {r['backtests']} runs differ by > 1e-9: rolling-mean tie-breaks)")
            print(f"[{time.perf_counter() - t0:6.0f}s] {job} done", flush=True)

    res["goals"] = [{"goal": g, "measured": float(m), "target": t, "verdict": verdict(ok)} for g, m, t, ok in goals]
    res["total_runtime_s"] = time.perf_counter() - t0
    OUT.mkdir(exist_ok=True)
    (OUT / "backtest_speed.json").write_text(json.dumps(res, indent=2) + "\n")
    print_report(res)


def print_report(res: dict):
    f = lambda s: f"{s['median']:.4g} s [{s['min']:.4g}-{s['max']:.4g}, n={s['runs']}]"
    print(f"\nthreads: {res['threads']}")
    for job in ("signals_500", "signals_sp20", "sweep_sma", "sweep_tsmom", "sweep_xsmom"):
        if job not in res: continue
        print(f"\n{job}")
        for lib, r in res[job].items():
            if isinstance(r, dict) and "warm_cpu" in r:
                print(f"  {lib:<16} warm CPU {f(r['warm_cpu'])}  warm wall {f(r['warm_wall'])}  cold wall {f(r['cold_wall'])}  "
                      f"fresh process {f(r['fresh_process_wall'])}  peak +{r['peak_mib']:.0f} MiB")
    for job, fl in res.get("floor", {}).items():
        print(f"\nstreaming floor, {job} ({fl['cells']:,} cells): floor {f(fl['floor_cpu'])} ({fl['floor_ns_per_cell']:.2f} ns/cell); "
              f"backtest_weights {f(fl['engine_cpu'])} ({fl['engine_ns_per_cell']:.2f} ns/cell); backtest_signals {f(fl['engine_signals_cpu'])}")
        print(f"  engine/floor {fl['engine_over_floor']['median']:.2f}x [{fl['engine_over_floor']['min']:.2f}-{fl['engine_over_floor']['max']:.2f}], "
              f"with the signal conversion {fl['engine_signals_over_floor']['median']:.2f}x [{fl['engine_signals_over_floor']['min']:.2f}-{fl['engine_signals_over_floor']['max']:.2f}]")
        if "frames_floor_cpu" in fl:
            print(f"  context: the same pass reading frames and returning frames {f(fl['frames_floor_cpu'])}; engine over it "
                  f"{fl['engine_over_frames_floor']['median']:.2f}x [{fl['engine_over_frames_floor']['min']:.2f}-{fl['engine_over_frames_floor']['max']:.2f}]")
    print("\nGOALS (ratios measured in this run)")
    for g in res["goals"]:
        print(f"  [{g['verdict']:>13}] {g['goal']}: {g['measured']:.4g} (goal {g['target']})")
    print(f"\ntotal {res['total_runtime_s']:.0f} s")


if __name__ == "__main__":
    main()

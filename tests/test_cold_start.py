"""Cold start (issue 15): an empty numba cache never makes the first call wait for the compiler, and whichever path
runs — the interpreted Python source or numba's machine code — the results are bit-identical.

Each test runs a fresh interpreter with its own empty NUMBA_CACHE_DIR, so what it sees is what a user sees right
after `pip install`; nothing is timed (the speed is measured by bench/cold_start.py)."""
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest



def run(*args, env=None, check=True, timeout=600):
    "Run this venv's python with `args` and extra environment `env`; return the CompletedProcess."
    res = subprocess.run([sys.executable, *map(str, args)], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    return res

# The engine paths a first backtest can take, on a panel with the awkward cases: a late listing, a gap, a zero
# target, fees and slippage, every schedule kind, each fill convention, signals, the event engine and a sweep.
ENGINE_JOBS = """
import numpy as np, pandas as pd
from trading.backtest.vectorized import backtest_weights, backtest_signals
from trading.backtest.events import Costs, backtest_events
from trading.backtest.sweep import sweep_sma_crossover, sweep_strategy
from trading.strategies.base import MarketData
from trading.strategies.rules import rolling_mean_nb
from trading.risk.correlation import ewma_covariance
from trading.risk.validation import rolling_historical_var

def jobs():
    rng = np.random.default_rng(7)
    n, k = 300, 6
    idx = pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC")
    close = pd.DataFrame(50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, k)), axis=0)), idx, [f"S{i}" for i in range(k)])
    close.iloc[:40, 2] = np.nan          # listed late
    close.iloc[120:125, 4] = np.nan      # a gap
    opn = close * (1 + rng.normal(0, 0.003, close.shape))
    target = pd.DataFrame(np.where(rng.random((n, k)) < 0.08, rng.random((n, k)) / k, np.nan), idx, close.columns)
    target.iloc[200, :] = 0.0            # a flat target
    out = {}
    for mode in ("portfolio", "independent"):
        for schedule in ("on_change", "every_bar", "M", 0.02):
            for execution in ("next_close", "next_open", "close"):
                r = backtest_weights(close, target, fee_rate=0.001, slippage=0.0005, init_cash=1000.0, schedule=schedule,
                                     mode=mode, execution=execution, open=opn)
                out[mode, str(schedule), execution] = (r.equity, r.positions, r.fees, r.turnover, r.trades)
    entries = close.pct_change() > 0.02; exits = close.pct_change() < -0.02
    r = backtest_signals(close, entries, exits, fee_rate=0.002)
    out["signals"] = (r.equity, r.trades)
    r = backtest_events(MarketData(close=close), target, costs=Costs(fee_rate=0.001))
    out["events"] = (r.equity, r.trades)
    out["sweep"] = sweep_sma_crossover(close.ffill().bfill(), [3, 5], [10, 20], fee_rate=0.001)
    for mode in ("independent", "portfolio"):
        out["sweep", mode] = sweep_strategy("cross_sectional_momentum", MarketData(close=close, open=opn), {"lookback": [20, 60], "skip": [0, 5], "top_k": [2]},
                                            fee_rate=0.001, slippage=0.0005, schedule=0.01, execution="next_open", mode=mode)
    out["sma"] = rolling_mean_nb(close.to_numpy(), 7)
    returns = close.ffill().bfill().pct_change().dropna()
    out["ewma"] = ewma_covariance(returns).values
    out["hist_var"] = rolling_historical_var(returns, window=20)
    return out
"""


def _child(tmp_path, code: str, mode: str, cache: str | None = "cache") -> dict:
    "Run `code` (which leaves `result`) in a fresh interpreter with its own NUMBA_CACHE_DIR (None: the installed cache); return `result` and the kernel stats."
    script = tmp_path / f"child_{mode}.py"
    out = tmp_path / f"out_{mode}.pkl"
    script.write_text(textwrap.dedent(code) + textwrap.dedent(f"""
        from trading.core.jit import kernel_stats, wait_compiled
        import pickle
        wait_compiled()
        pickle.dump(dict(result=result, stats=dict(kernel_stats)), open({str(out)!r}, "wb"))
        """))
    env = {"TRADING_KERNELS": mode} | ({"NUMBA_CACHE_DIR": str(tmp_path / cache)} if cache else {})
    run(script, env=env, timeout=900)
    return pickle.load(open(out, "rb"))


def _assert_identical(a, b, where="result"):
    "Bit-for-bit equality of nested results (frames, series, arrays, tuples, dicts); NaN equals NaN."
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a: _assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)): _assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, pd.DataFrame): pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, pd.Series): pd.testing.assert_series_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, np.ndarray): np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    else: assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def test_interpreted_engines_equal_compiled_bit_for_bit(tmp_path):
    "Every engine path, interpreted (empty cache, never compiled) and compiled (plain numba) in two fresh processes: identical outputs."
    code = ENGINE_JOBS + "\nresult = jobs()\n"
    interpreted = _child(tmp_path, code, "interpreted")
    compiled = _child(tmp_path, code, "compiled", cache=None)  # the cache `make install` warmed: loads, compiles only what warm_up missed
    ran = {name for kind, name in interpreted["stats"] if kind == "interpreted"}
    # the interpreted run really ran the Python source of every kernel family, and never handed over to numba
    assert {"_simulate", "_marked_accounts", "_fill_episodes", "_episodes", "_mark", "_ffill_changes", "_sweep", "rolling_mean_nb",
            "_ewma_nb", "_rolling_hist_nb", "_summarize_accounts", "_summarize_portfolios"} <= ran, sorted(ran)
    assert not [k for k in interpreted["stats"] if k[0] == "handed_over"], interpreted["stats"]
    assert not [k for k in compiled["stats"] if k[0] == "interpreted"], compiled["stats"]
    assert len(interpreted["result"]) == 2 * 4 * 3 + 8
    _assert_identical(interpreted["result"], compiled["result"])


TINY = """
import numpy as np
from trading.core.jit import njit

@njit
def running_total(x):
    out = np.empty_like(x); s = 0.0
    for i in range(len(x)):
        s += x[i]; out[i] = s
    return out

@njit(interpret_max_cells=100)
def running_total_big(x):
    return running_total(x)

@njit(error_model="numpy")
def ratio(a, b): return a[0] / b[0]

@njit
def strict_ratio(a, b): return a[0] / b[0]
"""


def test_cold_call_interprets_then_switches_to_cached_machine_code(tmp_path):
    "Empty cache: call 1 interprets and queues a compile; after it lands call 2 is compiled; the next process loads it."
    (tmp_path / "tiny_kernels.py").write_text(TINY)
    code = f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        from trading.core.jit import kernel_stats, wait_compiled
        from tiny_kernels import running_total
        x = np.random.default_rng(1).normal(size=500)
        first = running_total(x)
        steps = [dict(kernel_stats), len(running_total.signatures)]
        wait_compiled()
        second = running_total(x)
        steps += [dict(kernel_stats), len(running_total.signatures), dict(running_total.stats.cache_misses)]
        result = dict(first=first, second=second, steps=steps)
        """
    cold = _child(tmp_path, code, "auto")
    (after_first, compiled_after_first, after_second, compiled_after_wait, misses) = cold["result"]["steps"]
    assert after_first == {("queued", "running_total"): 1, ("interpreted", "running_total"): 1}
    assert compiled_after_first == 0          # the first call did not wait for numba
    assert after_second == after_first        # the second call did not interpret: machine code ran
    assert compiled_after_wait == 1 and sum(misses.values()) == 1  # compiled once, in the background
    _assert_identical(cold["result"]["first"], cold["result"]["second"])
    warm = _child(tmp_path, code, "auto")     # same cache directory: a fresh process loads, never interprets
    assert warm["result"]["steps"][0] == {} and warm["result"]["steps"][1] == 1
    _assert_identical(warm["result"]["first"], cold["result"]["first"])


def test_large_inputs_and_arithmetic_events_go_to_numba(tmp_path):
    "Above the kernel's cell budget numba compiles at once; a division by zero hands the call to numba's error model."
    (tmp_path / "tiny_kernels.py").write_text(TINY)
    code = f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        from trading.core.jit import kernel_stats
        from tiny_kernels import running_total_big, ratio, strict_ratio
        big = running_total_big(np.ones(1000))       # 1,000 cells > its budget of 100
        after_big = dict(kernel_stats)
        inf = ratio(np.ones(1), np.zeros(1))         # numpy error model: inf, as compiled
        try: strict_ratio(np.ones(1), np.zeros(1)); raised = None
        except ZeroDivisionError as e: raised = str(e)
        result = dict(big=big[-1], after_big=after_big, inf=inf, raised=raised, stats=dict(kernel_stats))
        """
    r = _child(tmp_path, code, "auto")["result"]
    assert r["big"] == 1000.0 and r["after_big"] == {}   # nothing interpreted, nothing queued: compiled in the foreground
    assert r["inf"] == np.inf
    assert r["raised"] == "division by zero"
    assert r["stats"][("handed_over", "ratio")] == 1 and r["stats"][("handed_over", "strict_ratio")] == 1


def test_bad_kernel_mode_is_a_clear_error(tmp_path):
    (tmp_path / "tiny_kernels.py").write_text(TINY)
    res = run("-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import numpy as np; from tiny_kernels import running_total; running_total(np.ones(3))",
              env={"TRADING_KERNELS": "fast", "NUMBA_CACHE_DIR": str(tmp_path / "c")}, check=False)
    assert res.returncode != 0 and "TRADING_KERNELS" in res.stderr and "'fast'" in res.stderr, res.stderr


# Not needed by a backtest; they would cost a fresh process their import time (numba imports scipy's top level
# itself; `scipy.linalg` comes with numba's first dispatch, not with our import).
NOT_ON_THE_ENGINE_PATH = ["scipy.linalg", "scipy.stats", "statsmodels", "sqlalchemy", "matplotlib", "pydantic", "pyarrow.parquet",
                          "trading.strategies", "trading.store", "trading.data", "trading.risk", "trading.analytics.report"]


def test_engine_import_is_lean_and_compiles_nothing():
    "Importing the vectorized engine loads no module it does not need, starts no compiler thread and compiles nothing."
    code = ("import sys, json, threading; import trading.backtest.vectorized as v; from trading.core.jit import all_kernels; "
            "print(json.dumps(dict(mods=sorted(sys.modules), threads=[t.name for t in threading.enumerate()], "
            "compiled=sum(len(k.signatures) for k in all_kernels()), kernels=len(all_kernels()))))")
    out = json.loads(run("-c", code).stdout)
    loaded = [m for m in NOT_ON_THE_ENGINE_PATH if m in out["mods"]]
    assert not loaded, loaded
    assert out["kernels"] >= 8 and out["compiled"] == 0
    assert out["threads"] == ["MainThread"]

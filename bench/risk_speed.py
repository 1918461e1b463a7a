"""Risk speed: Monte Carlo VaR (1,000,000 scenarios x 20 assets) and rolling historical VaR (8,000+ days x 20 assets).

Inputs are real: the mean and covariance of the 20 bundled S&P 500 stocks (snapshot dataset sp20, 1990-2022),
and their daily returns for the rolling VaR. The asset-scaling runs above 20 assets tile that covariance
block-diagonally (a stated stand-in: only 20 real stocks are bundled). Seeds are explicit; timings are the
best of `repeat` warm runs (the first call compiles numba kernels and is excluded). Numba/BLAS threads are
whatever the machine gives (2 cores here). Prints a table and writes bench/results/risk_speed.json.
"""
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parents[1]


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)


def main():
    from trading.data.snapshot import load_snapshot
    from trading.data.panels import price_panel, returns_panel
    from trading.risk.var import monte_carlo_var, normal_var_es
    from trading.risk.validation import rolling_historical_var

    rets = returns_panel(price_panel(load_snapshot(ROOT / "data").bars("sp20"))).iloc[1:]
    rets = rets.fillna(0.0)
    mean, cov = rets.mean().to_numpy(), rets.cov().to_numpy()
    w = np.full(20, 1 / 20)
    res = {"cores": os.cpu_count(), "rolling_days": int(len(rets)), "assets": 20}

    # --- Monte Carlo VaR, 1e6 x 20, float64 and float32, and its agreement with the closed form
    exact = normal_var_es(float(w @ mean), float(np.sqrt(w @ cov @ w)), 0.99)
    monte_carlo_var(mean, cov, w, n_scenarios=10_000, seed=0)  # warm
    for dt in (np.float64, np.float32):
        name = np.dtype(dt).name
        est = monte_carlo_var(mean, cov, w, 0.99, n_scenarios=1_000_000, seed=42, dtype=dt)
        res[f"mc_1e6x20_{name}_s"] = best_of(lambda: monte_carlo_var(mean, cov, w, 0.99, n_scenarios=1_000_000, seed=42, dtype=dt))
        res[f"mc_1e6x20_{name}_var_rel_err_vs_normal"] = abs(est.var / exact.var - 1)
    res["mc_1e6x20_t5_float64_s"] = best_of(lambda: monte_carlo_var(mean, cov, w, 0.99, n_scenarios=1_000_000, dist="student_t", df=5, seed=42))

    # scaling in scenarios (20 assets) and in assets (1e6 scenarios, tiled covariance)
    res["mc_scaling_scenarios"] = {str(n): best_of(lambda: monte_carlo_var(mean, cov, w, n_scenarios=n, seed=1)) for n in (100_000, 300_000, 1_000_000, 3_000_000)}
    scal = {}
    for k in (5, 10, 20, 40, 80):
        reps = -(-k // 20)
        ck = np.kron(np.eye(reps), cov)[:k, :k]; mk = np.tile(mean, reps)[:k]; wk = np.full(k, 1 / k)
        scal[str(k)] = best_of(lambda: monte_carlo_var(mk, ck, wk, n_scenarios=1_000_000, seed=1))
    res["mc_scaling_assets_1e6"] = scal

    # --- rolling historical VaR/ES, all days x 20 assets, window 250
    x = rets
    rolling_historical_var(x.iloc[:300], 250)  # compile
    res["rolling_hist_20_assets_w250_s"] = best_of(lambda: rolling_historical_var(x, 250, 0.99))
    res["rolling_hist_scaling_window"] = {str(win): best_of(lambda: rolling_historical_var(x, win, 0.99)) for win in (250, 500, 1000)}
    res["rolling_hist_scaling_assets"] = {str(k): best_of(lambda: rolling_historical_var(x.iloc[:, :k], 250, 0.99)) for k in (5, 10, 20)}
    # reference: pandas' rolling quantile (VaR only, no ES), same 20 columns
    res["pandas_rolling_quantile_20_assets_w250_s"] = best_of(lambda: x.rolling(250).quantile(0.01, interpolation="lower"), repeat=1)
    v, _ = rolling_historical_var(x, 250, 0.99)
    pq = -x.rolling(250).quantile(0.01, interpolation="lower")  # ceil(250*0.01)=3rd smallest; pandas 'lower' at 0.01*(249)=2.49 -> index 2
    res["rolling_hist_max_abs_diff_vs_pandas"] = float((v - pq).abs().max().max())

    OUT.mkdir(exist_ok=True)
    (OUT / "risk_speed.json").write_text(json.dumps(res, indent=2) + "\n")
    for k, val in res.items(): print(f"{k:48s} {val}")


if __name__ == "__main__":
    main()

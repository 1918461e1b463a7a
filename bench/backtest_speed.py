"""Backtest speed against vectorbt and backtrader, measured in this run on this machine (ratios, not timings, are the result).

Reference job (issue: backtesting): long-only 50/200-day SMA crossover on each of skfolio's 20 stocks
(1990-2022 daily), 10 bps fees, trade at the signal bar's close, all-in/all-out, one account per stock.
Prints a table and writes bench/results/backtest_speed.json.
"""
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
OUT = Path(__file__).with_name("results")
FEE, CASH = 0.001, 100.0
FAST, SLOW = list(range(2, 18)), list(range(20, 165, 5))  # 16 x 29 = 464 (fast, slow) pairs


def best_of(fn, repeat=5):
    "Best wall time of `repeat` warm runs (the first, compiling run is excluded by the caller)."
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)


def fresh_process(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t


def main():
    from skfolio.datasets import load_sp500_dataset
    import vectorbt as vbt
    from trading.backtest.events import Costs, backtest_events
    from trading.backtest.sweep import sweep_sma_crossover
    from trading.backtest.vectorized import backtest_signals, backtest_weights
    from trading.strategies.base import MarketData
    from trading.strategies.rules import SMACrossover, sma

    close = load_sp500_dataset()
    close.index = close.index.tz_localize("UTC")
    data = MarketData(close=close)
    bars = close.size
    strategy = SMACrossover(fast=50, slow=200)
    res = {"bars_per_run": int(bars), "stocks": int(close.shape[1])}

    # --- single run: signals -> equity, and the whole job including the indicators
    long = (sma(close, 50) > sma(close, 200))
    entries, exits = long & ~long.shift(1, fill_value=False), ~long & long.shift(1, fill_value=False)
    ours = backtest_signals(close, entries, exits, fee_rate=FEE, init_cash=CASH)
    # vectorbt fills at the bar it is given; ours fills a decision on the next bar: vectorbt gets the signals one bar later
    v_entries, v_exits = entries.shift(1, fill_value=False), exits.shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(close, v_entries, v_exits, fees=FEE, init_cash=CASH, freq="1D")
    res["single_max_rel_diff_vs_vectorbt"] = float((ours.equity / pf.value() - 1).abs().max().max())
    res["vectorbt_from_signals_warm_s"] = best_of(lambda: vbt.Portfolio.from_signals(close, v_entries, v_exits, fees=FEE, init_cash=CASH, freq="1D"))
    res["ours_backtest_signals_warm_s"] = best_of(lambda: backtest_signals(close, entries, exits, fee_rate=FEE, init_cash=CASH))
    res["ours_full_job_warm_s"] = best_of(lambda: backtest_weights(close, strategy.target_weights(data), fee_rate=FEE, init_cash=CASH, mode="independent"))
    # a fresh process doing the whole job the project's way: verified snapshot -> strategy -> engine
    load = ("from trading.data.snapshot import load_snapshot; from trading.data.panels import price_panel;"
            "c = price_panel(load_snapshot('data').bars('sp20', validate=False));")
    job = (load + "from trading.strategies.base import MarketData; from trading.strategies.rules import SMACrossover;"
           "from trading.backtest.vectorized import backtest_weights;"
           "r = backtest_weights(c, SMACrossover(fast=50, slow=200).target_weights(MarketData(close=c)), fee_rate=0.001, init_cash=100.0, mode='independent');"
           "print(r.final_value.sum())")
    vjob = (load + "import warnings; warnings.filterwarnings('ignore'); import vectorbt as vbt;"
            "f = vbt.MA.run(c, 50); s = vbt.MA.run(c, 200);"
            "pf = vbt.Portfolio.from_signals(c, f.ma_crossed_above(s).shift(1, fill_value=False), f.ma_crossed_below(s).shift(1, fill_value=False), fees=0.001, init_cash=100.0, freq='1D');"
            "print(pf.final_value().sum())")
    res["ours_fresh_process_s"] = min(fresh_process(job) for _ in range(2))
    res["vectorbt_fresh_process_s"] = fresh_process(vjob)

    # --- sweep: 464 pairs x 20 stocks
    sweep = lambda: sweep_sma_crossover(close, FAST, SLOW, fee_rate=FEE, init_cash=CASH)
    table = sweep()
    res["sweep_backtests"] = int(len(table))
    res["ours_sweep_s"] = best_of(sweep, repeat=3)

    def vbt_sweep():
        windows = sorted(set(FAST) | set(SLOW))
        ma = vbt.MA.run(close, windows, param_product=True).ma  # columns: (window, symbol)
        pairs = [(a, b) for a in FAST for b in SLOW if a < b]
        fast = pd.concat([ma[a] for a, _ in pairs], axis=1, keys=pairs, names=["fast", "slow"])
        slow = pd.concat([ma[b] for _, b in pairs], axis=1, keys=pairs, names=["fast", "slow"])
        lng = fast > slow
        e, x = lng & ~lng.shift(1, fill_value=False), ~lng & lng.shift(1, fill_value=False)
        e, x = e.shift(1, fill_value=False), x.shift(1, fill_value=False)  # decided at t, filled at t+1 (the engines' default)
        prices = pd.concat([close] * len(pairs), axis=1, keys=pairs, names=["fast", "slow"])
        return vbt.Portfolio.from_signals(prices, e, x, fees=FEE, init_cash=CASH, freq="1D").final_value()
    vbt_sweep()  # compile
    res["vectorbt_sweep_s"] = best_of(vbt_sweep, repeat=1)
    # identity check on the same moving averages (tie-breaking between two rolling-mean implementations is float noise)
    pairs = [(a, b) for a in FAST for b in SLOW if a < b]
    mas = {w: sma(close, w) for w in sorted(set(FAST) | set(SLOW))}
    lng = pd.concat([mas[a] > mas[b] for a, b in pairs], axis=1, keys=pairs)
    e, x = lng & ~lng.shift(1, fill_value=False), ~lng & lng.shift(1, fill_value=False)
    e, x = e.shift(1, fill_value=False), x.shift(1, fill_value=False)
    prices = pd.concat([close] * len(pairs), axis=1, keys=pairs)
    theirs = vbt.Portfolio.from_signals(prices, e, x, fees=FEE, init_cash=CASH, freq="1D").final_value().to_numpy()
    mine = table["final_value"].to_numpy()
    rel = np.abs(mine / theirs - 1)
    res["sweep_max_rel_diff_vs_vectorbt"] = float(rel.max())
    res["sweep_runs_differing_over_1e-9"] = int((rel > 1e-9).sum())

    # --- event-driven vs backtrader on the same job and fill semantics (market-on-close, all-in, 10 bps)
    target = strategy.target_weights(data)
    target.iloc[-1] = np.nan  # backtrader never processes an order placed on the last bar (no later bar); align by not deciding there
    def events_job():
        return [backtest_events(MarketData(close=close[[s]]), target[[s]], costs=Costs(fee_rate=FEE), init_cash=CASH).final_value.iloc[0]
                for s in close.columns]
    ev_final = np.array(events_job())
    res["ours_events_s"] = best_of(events_job, repeat=3)
    bt_final, bt_s = backtrader_job(close)
    res["backtrader_s"] = bt_s
    res["events_max_rel_diff_vs_backtrader"] = float(np.abs(ev_final / bt_final - 1).max())

    res["ratio_single_run_vs_vectorbt_warm"] = res["vectorbt_from_signals_warm_s"] / res["ours_backtest_signals_warm_s"]
    res["ratio_sweep_throughput_vs_vectorbt"] = res["vectorbt_sweep_s"] / res["ours_sweep_s"]
    res["ratio_events_bars_per_s_vs_backtrader"] = res["backtrader_s"] / res["ours_events_s"]
    res["ours_events_bars_per_s"] = bars / res["ours_events_s"]
    res["backtrader_bars_per_s"] = bars / res["backtrader_s"]
    OUT.mkdir(exist_ok=True)
    (OUT / "backtest_speed.json").write_text(json.dumps(res, indent=2) + "\n")
    width = max(map(len, res))
    for k, v in res.items(): print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")


def backtrader_job(close: pd.DataFrame):
    "Backtrader on the same job: SMA(50) > SMA(200) long, all-in with fees, filled at the signal bar's close (cheat-on-close)."
    import backtrader as bt

    class Cross(bt.Strategy):
        def __init__(self):
            self.fast, self.slow = bt.ind.SMA(period=50), bt.ind.SMA(period=200)
        def next(self):
            want = self.fast[0] > self.slow[0]
            if want and not self.position:
                # all in; a hair under the exact size, or backtrader rejects the order for margin on rounding
                self.buy(size=self.broker.getcash() / (self.data.close[0] * (1 + FEE)) * (1 - 1e-12))
            elif not want and self.position:
                self.close()

    finals, t0 = [], time.perf_counter()
    for sym in close.columns:
        px = close[sym].to_numpy()
        df = pd.DataFrame({"open": px, "high": px, "low": px, "close": px, "volume": 0.0}, index=close.index.tz_localize(None))
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(bt.feeds.PandasData(dataname=df))
        cerebro.addstrategy(Cross)
        cerebro.broker.setcash(CASH)
        cerebro.broker.setcommission(commission=FEE)
        cerebro.broker.set_coc(True)
        cerebro.run()
        finals.append(cerebro.broker.getvalue())
    return np.array(finals), time.perf_counter() - t0


if __name__ == "__main__":
    main()

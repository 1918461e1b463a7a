"""Benchmark (not a test): the per-bar job a live bot and a replayed look-ahead check do, ours vs backtrader.

    python bench/perbar_speed.py [--repeat 5] [--until-bars 600]

The job: 20 stocks x 8,313 daily bars (bundled sp20, 1990-2022); at every bar each stock's SMA(50) vs SMA(200)
decides long (1/20 of the account) or flat, and a change of decision trades the account to its new target at that
bar's close with a 10 bps fee. Strategy, indicator and accounting time are inside the timer on both sides; data
loading is outside for both (backtrader's feeds are built and preloaded inside, as `cerebro.run` needs them).
  backtrader   one Cerebro, 20 PandasData feeds, bt.ind.SMA, next() per bar, order_target_percent with
               cheat-on-close; its best settings for this job: preload=True and runonce=True (indicators computed
               vectorised in `once()` before the bar loop; next() still runs per bar) — runonce=False also timed
  ours         SMACrossover(50, 200, "equal").stepper(): RollingMean per bar (O(1)), the same accounting loop
  ours (old)   the path bots used before: target_weights(data.until(t)) each bar, on the last --until-bars bars
               (it is O(history) per bar; its full-job time is extrapolated from the per-bar cost at the end)
Times are process CPU seconds (the machine may be shared; each side is one thread, so CPU time is its cost).
Decisions are checked equal: backtrader's long/flat per stock per bar == ours at every bar after the warm-up, and
ours == the batch path's targets at every bar. One thread each. Goal (issue 15): ours >= 20x backtrader.
"""
import argparse
import statistics
import time

import numpy as np
import pandas as pd

from trading.data.bundled import BundledSource
from trading.strategies.base import MarketData
from trading.strategies.incremental import iter_bars
from trading.strategies.rules import SMACrossover

FEE, CASH, FAST, SLOW = 0.001, 1_000_000.0, 50, 200


def ours(data: MarketData):
    "Stepper decisions + the accounting: rebalance to the target row at this close when it changes."
    t0 = time.process_time()
    st = SMACrossover(fast=FAST, slow=SLOW, allocation="equal").stepper(data.symbols)
    k = len(data.symbols)
    qty, cash, held = np.zeros(k), CASH, np.full(k, np.nan)
    rows = np.empty((len(data.index), k))
    for i, bar in enumerate(iter_bars(data)):
        row = rows[i] = st.update(bar)
        target = np.nan_to_num(row)
        if np.array_equal(target, held): continue
        px = bar.close
        value = cash + qty @ px
        trade = target * value / px - qty
        cash -= trade @ px + np.abs(trade) @ px * FEE
        qty += trade
        held = target
    return time.process_time() - t0, rows, cash + qty @ data.close.iloc[-1].to_numpy()


def ours_until(data: MarketData, bars: int):
    "The old path on the last `bars` bars: seconds per bar at the end of the history."
    s = SMACrossover(fast=FAST, slow=SLOW, allocation="equal")
    t0 = time.process_time()
    for t in data.index[-bars:]:
        s.target_weights(data.until(t)).iloc[-1]
    return (time.process_time() - t0) / bars


def backtrader_job(close: pd.DataFrame, runonce: bool):
    import backtrader as bt
    k = close.shape[1]
    seen = np.full(close.shape, np.nan)

    class Cross(bt.Strategy):
        def __init__(self):
            self.sma = [(bt.ind.SMA(d.close, period=FAST), bt.ind.SMA(d.close, period=SLOW)) for d in self.datas]
            self.held = [None] * k
        def next(self):
            i = len(self) - 1
            for j, (d, (f, s)) in enumerate(zip(self.datas, self.sma)):
                want = f[0] > s[0]
                seen[i, j] = want
                if want != self.held[j]:
                    self.order_target_percent(d, target=(1.0 / k) if want else 0.0)
                    self.held[j] = want

    t0 = time.process_time()
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce, preload=True)
    idx = close.index.tz_localize(None)
    for sym in close.columns:
        px = close[sym].to_numpy()
        cerebro.adddata(bt.feeds.PandasData(dataname=pd.DataFrame({"open": px, "high": px, "low": px, "close": px, "volume": 0.0}, index=idx)), name=sym)
    cerebro.addstrategy(Cross)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_coc(True)
    cerebro.run()
    return time.process_time() - t0, seen


def med(xs): return f"{statistics.median(xs):.3f} s [{min(xs):.3f}, {max(xs):.3f}]"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--until-bars", type=int, default=600)
    a = p.parse_args(argv)
    data = MarketData.from_bars(BundledSource(["sp20"]).bars())
    n, k = data.close.shape
    print(f"per-bar job: {k} stocks x {n} bars, SMA({FAST}) vs SMA({SLOW}), trade on change at the close, {FEE:.1%} fee; "
          f"median [min, max] of {a.repeat}; 1 thread each")
    ours(data)  # warm (numpy paths, imports); both sides are also run cold below
    runs = [ours(data) for _ in range(a.repeat)]
    rows = runs[0][1]
    batch = SMACrossover(fast=FAST, slow=SLOW, allocation="equal").target_weights(data).to_numpy()
    same_as_batch = np.array_equal(rows, batch, equal_nan=True)
    bt_runs = {ro: [backtrader_job(data.close, ro) for _ in range(max(2, a.repeat // 2) if not ro else a.repeat)] for ro in (True, False)}
    seen = bt_runs[True][0][1]
    # backtrader's next() starts once every SMA(200) exists: bar SLOW - 1
    ours_long = rows[SLOW - 1:] > 0
    bt_long = seen[SLOW - 1:] == 1
    decided = ~np.isnan(seen[SLOW - 1:])
    same_as_bt = bool(decided.all() and np.array_equal(ours_long, bt_long))
    per_bar_until = ours_until(data, a.until_bars)
    t_ours = statistics.median([r[0] for r in runs])
    t_bt = {ro: statistics.median([r[0] for r in v]) for ro, v in bt_runs.items()}
    best_bt = min(t_bt.values())
    print(f"  ours (stepper)                 {med([r[0] for r in runs])}   {n / t_ours:,.0f} bars/s")
    print(f"  backtrader runonce=True        {med([r[0] for r in bt_runs[True]])}")
    print(f"  backtrader runonce=False       {med([r[0] for r in bt_runs[False]])}")
    print(f"  ours, old until(t) path        {per_bar_until * 1e3:.2f} ms/bar at the end of the history (last {a.until_bars} bars); "
          f"full job ~{per_bar_until * n / 2:.1f} s if cost grows linearly")
    print(f"  decisions: stepper == batch targets at every bar: {same_as_batch}; == backtrader's long/flat at all {decided.shape[0]} bars x {k} stocks: {same_as_bt}")
    ratio = best_bt / t_ours
    ok = ratio >= 20 and same_as_batch and same_as_bt
    print(f"GOAL incremental per-bar path >= 20x backtrader (its best setting) with identical decisions: {ratio:.1f}x -> {'HOLDS' if ok else 'FAILS'}")


if __name__ == "__main__":
    main()

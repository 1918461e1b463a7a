"""Jupyter-first research monorepo for systematic trading: offline-first data, backtests, risk, live/paper trading.

Modules:

- `trading.analytics.robustness`: A claim in a report is a number compared with a threshold. This module re-measures that number under the variations a referee would try and computes the claim's verdict from them: nothing in a report says "met" unless this code says so.
- `trading.backtest.claims`: An `Experiment` is a backtest that can be re-run under a referee's variations — a later start, a sub-period, costs ×2, a later fill, one asset left out — and `comparison_statistic` turns "strategy A beats B on metric M" into the function a robustness panel (`trading.analytics.robustness`) evaluates.
- `trading.research.attribution`: Where a strategy's return came from: Fama–French factor exposures with alpha and t-statistics (checked against statsmodels), rolling betas, Brinson sector attribution against a benchmark, and trade-level analysis.
- `trading.research.costs`: Commission schedules (per share, per contract, basis points), bid–ask spread models, square-root market impact with participation caps calibrated from volume, and a strategy's results at several cost levels.
- `trading.research.distributed`: One way to run embarrassingly parallel research work — parameter sweeps, walk-forward folds, Monte Carlo scenarios — in this process or on a Dask cluster, with the same numbers either way.
- `trading.research.stress`: Every strategy's equity curve through the named historical crises, and hypothetical factor shocks — a market crash, a value or size sell-off, or a replay of the worst factor months on record — priced with each strategy's Fama–French betas.
- `trading.research.walkforward`: Choose parameters on a training window, trade them on the next unseen window, roll on; stitch the unseen windows into one out-of-sample record and measure how much of the in-sample edge survived."""

__version__ = "0.0.1"

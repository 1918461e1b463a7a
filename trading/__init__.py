"""Jupyter-first research monorepo for systematic trading: offline-first data, backtests, risk, live/paper trading.

Modules:

- `trading.analytics.robustness`: A claim in a report is a number compared with a threshold. This module re-measures that number under the variations a referee would try and computes the claim's verdict from them: nothing in a report says "met" unless this code says so.
- `trading.backtest.claims`: An `Experiment` is a backtest that can be re-run under a referee's variations — a later start, a sub-period, costs ×2, a later fill, one asset left out — and `comparison_statistic` turns "strategy A beats B on metric M" into the function a robustness panel (`trading.analytics.robustness`) evaluates."""

__version__ = "0.0.1"

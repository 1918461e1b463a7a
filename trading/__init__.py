"""Jupyter-first research monorepo for systematic trading: offline-first data, backtests, risk, live/paper trading.

Modules:

- `trading.analytics.robustness`: A claim in a report is a number compared with a threshold. This module re-measures that number under the variations a referee would try and computes the claim's verdict from them: nothing in a report says "met" unless this code says so."""

__version__ = "0.0.1"

"""Jupyter-first research monorepo for systematic trading: offline-first data, backtests, risk, live/paper trading."""

__version__ = "0.0.1"

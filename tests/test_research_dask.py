"""The Dask path of `trading.research` against the single-process path: sweeps, walk-forward folds and Monte Carlo VaR
give identical numbers on a 2-process LocalCluster; errors, settings and bad addresses behave."""
import os

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from trading.backtest.sweep import sweep_sma_crossover
from trading.core.errors import InputValidationError
from trading.data.panels import price_panel
from trading.data.snapshot import load_snapshot
from trading.research.distributed import dask_client, map_tasks, monte_carlo_var_tasks, sweep_sma_tasks
from trading.research.walkforward import load_spec, sweep_strategy, walk_forward
from trading.strategies.base import MarketData


@pytest.fixture(scope="module")
def client():
    os.environ.pop("TRADING_DASK_SCHEDULER_ADDRESS", None)  # this test wants its own LocalCluster
    with dask_client(n_workers=2, threads_per_worker=1) as c:
        yield c


@pytest.fixture(scope="module")
def close():
    return price_panel(load_snapshot(ROOT / "data").bars("sp20"))[["AAPL", "JPM", "XOM", "MSFT", "KO", "PG"]].loc["2008":"2014"]


def _raise(item):
    if item == 2: raise InputValidationError("item", item, "planted failure")
    return item


def test_cluster_shape(client):
    info = client.scheduler_info()["workers"]
    assert len(info) == 2 and all(w["nthreads"] == 1 for w in info.values())
    assert len({w["host"] + str(w.get("pid", w["id"])) for w in info.values()}) == 2  # two processes, not threads


def test_sma_sweep_identical(client, close):
    serial = sweep_sma_crossover(close, [5, 10, 20], [50, 100], fee_rate=0.001)
    dask = sweep_sma_tasks(close, [5, 10, 20], [50, 100], symbols_per_task=2, client=client, fee_rate=0.001)
    pd.testing.assert_frame_equal(serial, dask, check_exact=True)


def test_any_strategy_sweep_identical(client, close):
    data = MarketData(close)
    grid = {"lookback": [63, 126, 252], "threshold": [0.0, 0.05]}
    pd.testing.assert_frame_equal(sweep_strategy("TimeSeriesMomentum", grid, data, start_bar=252),
                                  sweep_strategy("TimeSeriesMomentum", grid, data, start_bar=252, client=client), check_exact=True)


def test_walk_forward_identical(client, close):
    spec = load_spec({"strategy": "SMACrossover", "grid": {"fast": [10, 20], "slow": [50, 100]}, "fixed": {"allocation": "equal"},
                      "train_bars": 378, "test_bars": 126, "purge_bars": 5, "embargo_bars": 2, "scheme": "anchored"})
    data = MarketData(close)
    a, b = walk_forward(spec, data), walk_forward(spec, data, client=client)
    pd.testing.assert_frame_equal(a.scores, b.scores, check_exact=True)
    pd.testing.assert_frame_equal(a.folds, b.folds, check_exact=True)
    pd.testing.assert_series_equal(a.oos_returns, b.oos_returns, check_exact=True)
    assert a.summary == b.summary and a.summary["folds"] >= 6


def test_monte_carlo_var_identical(client):
    rng = np.random.default_rng(5)
    A = rng.normal(0, 0.01, (6, 6)); cov = A @ A.T; mean = np.full(6, 2e-4); w = np.full(6, 1 / 6)
    kw = dict(n_scenarios=60_000, n_tasks=6, seed=11, dist="student_t", df=4.0, confidence=0.99)
    serial, dask = monte_carlo_var_tasks(mean, cov, w, **kw), monte_carlo_var_tasks(mean, cov, w, client=client, **kw)
    assert serial == dask  # bit-identical: each task owns its seed
    assert monte_carlo_var_tasks(mean, cov, w, **{**kw, "seed": 12}) != serial  # and the seed matters


def test_task_error_is_reraised_typed(client):
    with pytest.raises(InputValidationError, match="planted failure"):
        map_tasks(_raise, [1, 2, 3], client)
    assert map_tasks(_raise, [1, 3], client) == [1, 3]  # the cluster survives a failed task


def test_scheduler_address_from_settings(client, monkeypatch):
    monkeypatch.setenv("TRADING_DASK_SCHEDULER_ADDRESS", client.scheduler.address)
    with dask_client() as c:  # no address given: settings name the existing cluster, nothing new is started
        assert c.scheduler.address == client.scheduler.address
        assert map_tasks(_raise, [1], c) == [1]


def test_bad_scheduler_address_is_a_clear_error():
    with pytest.raises(InputValidationError, match="dask_scheduler_address"):
        with dask_client("tcp://127.0.0.1:9", timeout=2):
            pass

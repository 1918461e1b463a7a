"""Sweeps show a progress bar counting parameter sets (pairs for the fused SMA kernel), moved per chunk; `progress=False`
prints nothing, and the bar changes no result."""
import re

import numpy as np
import pandas as pd
import pytest

from trading.backtest.sweep import sweep_sma_crossover, sweep_strategy
from trading.strategies.base import MarketData


def _close(n=300, k=3, seed=1):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2020-01-01", periods=n, freq="B", tz="UTC")
    return pd.DataFrame(50 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, k)), axis=0)), index=idx, columns=[f"S{i}" for i in range(k)])


def _final_count(err: str) -> tuple[int, int]:
    "The last `n/total` the bar drew."
    counts = re.findall(r"(\d+)/(\d+)", err)
    assert counts, err
    return tuple(map(int, counts[-1]))


def test_sma_sweep_bar_counts_every_pair_and_chunking_changes_nothing(capsys, monkeypatch):
    import trading.backtest.sweep as sweep
    monkeypatch.setattr(sweep, "_SMA_CHUNK_CELLS", 1)  # this small job would run in one call: force the chunks
    close = _close()
    fast, slow = list(range(2, 30, 3)), list(range(20, 120, 7))  # many pairs: the bar splits them into ~20 chunks
    n_pairs = sum(a < b for a in fast for b in slow)
    quiet = sweep_sma_crossover(close, fast, slow, fee_rate=0.001, progress=False)
    assert capsys.readouterr().err == ""
    shown = sweep_sma_crossover(close, fast, slow, fee_rate=0.001, progress=True)
    err = capsys.readouterr().err
    assert _final_count(err) == (n_pairs, n_pairs) and "SMA sweep pairs" in err
    pd.testing.assert_frame_equal(quiet, shown, check_exact=True)
    assert len(shown) == n_pairs * close.shape[1]


@pytest.mark.parametrize("mode", ["independent", "portfolio"])
def test_strategy_sweep_bar_counts_every_parameter_set(capsys, mode):
    data = MarketData(close=_close())
    grid = {"fast": [3, 5, 8, 13], "slow": [21, 34, 55]}
    quiet = sweep_strategy("sma_crossover", data, grid, mode=mode, chunk_mb=0.01, progress=False)  # tiny chunks: several updates
    assert capsys.readouterr().err == ""
    shown = sweep_strategy("sma_crossover", data, grid, mode=mode, chunk_mb=0.01, progress=True)
    assert _final_count(capsys.readouterr().err) == (12, 12)
    pd.testing.assert_frame_equal(quiet, shown, check_exact=True)


def test_default_is_quiet_off_a_terminal(capsys):
    sweep_sma_crossover(_close(), [5, 10], [20, 40])  # pytest's stderr is no TTY and no notebook: nothing drawn
    sweep_strategy("sma_crossover", MarketData(close=_close()), {"fast": [5], "slow": [20]})
    assert capsys.readouterr().err == ""


def test_auto_bar_in_a_terminal_skips_quick_sweeps(monkeypatch):
    "In a terminal the bar is on by default, but work under a second (the numba warm-up on import, small grids) draws nothing."
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self): return True
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    sweep_sma_crossover(_close(), [5, 10], [20, 40])
    sweep_strategy("sma_crossover", MarketData(close=_close()), {"fast": [5], "slow": [20]})
    assert term.getvalue() == ""
    sweep_strategy("sma_crossover", MarketData(close=_close()), {"fast": [5], "slow": [20]}, progress=True)
    assert "1/1" in term.getvalue()  # the same terminal does show a bar asked for

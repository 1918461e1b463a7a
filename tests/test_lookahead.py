"""Every strategy in the repository passes the look-ahead check, with its default parameters, on real data."""
import pytest

from trading.data.bundled import BundledSource
from trading.strategies.base import MarketData, check_no_lookahead
from trading.strategies.registry import strategy_classes

CLASSES = strategy_classes()


@pytest.fixture(scope="module")
def data():
    # several symbols and enough history for long windows (12-month momentum, 200-day averages, regime fits)
    bars = BundledSource(["sp20"]).bars(["AAPL", "JNJ", "JPM", "KO", "XOM", "PG"], start="2003-01-01", end="2009-12-31")
    return MarketData.from_bars(bars)


def test_the_registry_finds_the_baselines():
    assert {"BuyAndHold", "SMACrossover"} <= set(CLASSES)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_no_lookahead(name, data):
    strategy = CLASSES[name]()
    sample = getattr(strategy, "lookahead_sample", None)  # a strategy may supply its own data (e.g. options on an index)
    cuts = check_no_lookahead(strategy, sample() if sample else data, n_cuts=4, seed=1)
    assert len(cuts) >= 2

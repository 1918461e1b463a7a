"""The incremental per-bar path: every registry strategy with a stepper decides bar by bar exactly as its batch path
(zero tolerance), the replay built on it still catches a planted peek, and a bot deciding with steppers places the
very orders a bot recomputing all history each bar places."""
import numpy as np
import pandas as pd
import pytest

from trading.data.bundled import BundledSource
from trading.live.manager import OrderManager
from trading.live.paper import PaperBroker, PaperVenue
from trading.live.runner import BotRunner, bars_at, run_simulated
from trading.risk.limits import RiskLimits
from trading.store.engine import make_engine
from trading.strategies import incremental as inc
from trading.strategies.base import LookAheadError, MarketData, PeekAhead, replay_lookahead
from trading.strategies.registry import strategy_classes
from trading.strategies.rules import SMACrossover

STEPPED = {"BuyAndHold", "SMACrossover", "TimeSeriesMomentum", "CrossSectionalMomentum", "SMATiming"}


@pytest.fixture(scope="module")
def data():
    bars = BundledSource(["sp20"]).bars(["AAPL", "JNJ", "JPM", "KO", "XOM", "PG"], start="2003-01-01", end="2009-12-31")
    return MarketData.from_bars(bars)


def test_the_registry_strategies_named_have_incremental_steppers():
    classes = strategy_classes()
    have = {n for n, c in classes.items() if c in inc.STEPPERS}
    assert have == STEPPED, have  # a new stepper (or a lost one) shows up here and in the report's fallback list


@pytest.mark.parametrize("name", sorted(STEPPED))
def test_batch_equals_bar_by_bar_at_every_bar(name, data):
    strategy = strategy_classes()[name]()
    assert strategy.stepper(data.symbols).incremental
    report = replay_lookahead(strategy, data, incremental=True)
    assert report.bars == "all" and len(report.checked) == len(data.index) - min(strategy.warmup, len(data.index))


def test_a_peek_is_caught_by_the_incremental_replay(data):
    short = MarketData(data.close.iloc[:320])
    # the wrapper has no stepper: it is replayed on data truncated at every bar
    with pytest.raises(LookAheadError, match="without the future"):
        replay_lookahead(PeekAhead(SMACrossover(fast=5, slow=20), 1), short, incremental=True)

    class LeakySMA(SMACrossover):  # a batch path that reads tomorrow's close, given the honest stepper
        def target_weights(self, d):
            return super().target_weights(MarketData(d.close.shift(-1).fillna(d.close)))
    inc.STEPPERS[LeakySMA] = inc.SMACrossoverStepper
    try:
        with pytest.raises(LookAheadError, match="changed without the future"):
            replay_lookahead(LeakySMA(fast=5, slow=20), short, incremental=True)
    finally:
        del inc.STEPPERS[LeakySMA]


def test_a_stepper_that_is_wrong_is_caught(data, monkeypatch):
    "The comparison has teeth: a stepper off by one ulp on one bar fails the replay."
    real = inc.SMACrossoverStepper.update
    calls = {"n": 0}
    def off(self, bar):
        row = real(self, bar)
        calls["n"] += 1
        return np.nextafter(row, 2.0) if calls["n"] == 700 else row
    monkeypatch.setattr(inc.SMACrossoverStepper, "update", off)
    with pytest.raises(LookAheadError):
        replay_lookahead(SMACrossover(fast=10, slow=50), data, incremental=True)


def _bot(tmp_path, tag, strategy, data, start, incremental, limits=None):
    venue = PaperVenue(cash=1_000_000)
    venue.on_bar(data.index[start - 1], bars_at(data, start - 1))
    om = OrderManager(make_engine(f"sqlite:///{tmp_path}/{tag}.db"), PaperBroker(venue), "bot", clock=lambda: venue.now)
    om.start()
    runner = BotRunner(om, strategy, limits=limits, incremental=incremental)
    run_simulated(runner, venue, data, start)
    orders = om.orders().sort_values("client_order_id")[["client_order_id", "symbol", "side", "qty", "status"]].reset_index(drop=True)
    return orders, om.positions(), om.cash(), runner


@pytest.mark.parametrize("strategy,limits", [(SMACrossover(fast=5, slow=30, allocation="equal"), None),
                                             (strategy_classes()["CrossSectionalMomentum"](lookback=63, skip=5, top_k=2, rebalance="W"),
                                              RiskLimits(max_weight=0.4, max_gross=1.0))])
def test_a_bot_with_steppers_places_the_same_orders(tmp_path, data, strategy, limits):
    d = MarketData(*(getattr(data, f).iloc[:200] for f in ("close", "open", "high", "low", "volume")))
    fast = _bot(tmp_path, "inc", strategy, d, 120, True, limits)
    slow = _bot(tmp_path, "batch", strategy, d, 120, False, limits)
    assert len(fast[0]) > 5, len(fast[0])
    pd.testing.assert_frame_equal(fast[0], slow[0])
    assert fast[1] == slow[1] and fast[2] == slow[2]
    assert fast[3]._stepper is not None and fast[3]._stepper.incremental and fast[3]._fed == len(d.index)


def test_a_bot_restarts_its_stepper_when_the_history_is_not_a_prefix(tmp_path, data):
    d = MarketData(data.close.iloc[:200])
    venue = PaperVenue(cash=1_000_000)
    venue.on_bar(d.index[0], bars_at(d, 0))
    runner = BotRunner(OrderManager(make_engine(f"sqlite:///{tmp_path}/r.db"), PaperBroker(venue), "bot"), SMACrossover(fast=5, slow=20))
    a = runner.strategy_targets(d.until(d.index[150]))
    first = runner._stepper
    shifted = MarketData(d.close.iloc[10:])  # a different window: its bar 140 is not the bar stepped last
    b = runner.strategy_targets(shifted)
    assert runner._stepper is not first
    pd.testing.assert_frame_equal(b, SMACrossover(fast=5, slow=20).target_weights(shifted))
    fewer = MarketData(d.close[["AAPL", "JNJ"]])
    pd.testing.assert_frame_equal(runner.strategy_targets(fewer), SMACrossover(fast=5, slow=20).target_weights(fewer))
    pd.testing.assert_frame_equal(a, SMACrossover(fast=5, slow=20).target_weights(d.until(d.index[150])))

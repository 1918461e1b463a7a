"""Look-ahead, proved by replay: every strategy of the registry, every option strategy's order book and the regime
model decide the same at bar t on data cut at t — and each of them, given a planted 1-bar peek, fails. Plus the
engines' fill timing: a decision at t never earns bar t's return, and fills on t+1 unless market-on-close is asked."""
import numpy as np
import pandas as pd
import pytest

from trading.backtest.events import backtest_events
from trading.backtest.vectorized import backtest_weights
from trading.data.bundled import BundledSource
from trading.options.strategies import OptionStrategy
from trading.strategies.base import LookAheadError, MarketData, PeekAhead, replay_lookahead
from trading.strategies.registry import strategy_classes

CLASSES = strategy_classes()
# recomputing these at a decision bar refits models (HMMs, GARCH) on all the history up to it: thinned, evenly
# spaced with the first and last decision kept; every other strategy is replayed at every decision bar
THINNED = {"RegimeAdaptive": 4, "DQNPolicy": 25, "SentimentSectorRotation": 12}  # DQNPolicy decides at every bar (25 of ~1,700 replayed); sector rotation itself is replayed at every decision
OPTION_CHECKS = 6


@pytest.fixture(scope="module")
def data():
    # several symbols and enough history for long windows (12-month momentum, 200-day averages, regime fits)
    bars = BundledSource(["sp20"]).bars(["AAPL", "JNJ", "JPM", "KO", "XOM", "PG"], start="2003-01-01", end="2009-12-31")
    return MarketData.from_bars(bars)


@pytest.fixture(scope="module")
def index_data():
    spx = BundledSource(["sp500"]).bars(start="2001-01-01", end="2005-12-31")
    return MarketData.from_bars(spx)


@pytest.fixture(scope="module")
def index_with_vix():
    "S&P 500 with the VIX close lagged one bar (it prints at 16:15, after the 16:00 index close): 2012-2018."
    spx = MarketData.from_bars(BundledSource(["sp500"]).bars(start="2012-01-01", end="2018-12-31"))
    vix = BundledSource(["vix"]).bars().set_index("ts_event")["close"].shift(1).reindex(spx.index)
    return MarketData(spx.close, extra={"vix": vix.to_frame("VIX")})


def _scrambled(data: MarketData, seed: int = 0) -> MarketData:
    rng = np.random.default_rng(seed)
    return data.map_panels(lambda p: p * rng.lognormal(0, 0.2, p.shape))


class OptionBookDecisions:
    "An option strategy judged by its whole order book (options and index legs), not only its index weight."
    def __init__(self, strategy: OptionStrategy):
        self.strategy, self.name, self.warmup = strategy, f"{strategy.name}.book", strategy.warmup

    def decisions(self, data: MarketData) -> pd.DataFrame:
        return self.strategy.book(data).orders


def _sample(strategy, data):
    sample = getattr(strategy, "lookahead_sample", None)  # a strategy may supply its own data (e.g. macro inputs)
    return sample() if sample else data


def test_the_registry_holds_the_baselines_and_the_option_strategies():
    assert {"BuyAndHold", "SMACrossover", "CoveredCall", "ProtectivePut", "Collar", "VolatilityTrade"} <= set(CLASSES)


@pytest.mark.parametrize("name", sorted(n for n, c in CLASSES.items() if not issubclass(c, OptionStrategy)))
def test_every_decision_replays_and_a_planted_peek_fails(name, data):
    strategy = CLASSES[name]()
    d = _sample(strategy, data)
    report = replay_lookahead(strategy, d, max_checks=THINNED.get(name))
    assert report.checked and len(report.checked) == min(report.decision_bars, THINNED.get(name, report.decision_bars))
    if strategy.target_weights(d).equals(strategy.target_weights(_scrambled(d))):
        return  # calendar rules (buy and hold, equal weight): decisions that read no price cannot leak one
    # the planted leak reads one bar past t; a strategy that skips its most recent bars (12-1 momentum) must reach past them
    peek = 1 + getattr(strategy.params, "skip", 0)
    with pytest.raises(LookAheadError, match="changed when the data after it was removed|fails on data truncated"):
        replay_lookahead(PeekAhead(strategy, peek), d, max_checks=THINNED.get(name))


@pytest.mark.parametrize("name", sorted(n for n, c in CLASSES.items() if issubclass(c, OptionStrategy)))
def test_option_order_books_replay_and_a_planted_peek_fails(name, index_data, index_with_vix):
    book = OptionBookDecisions(CLASSES[name]())
    d = index_with_vix if name == "VolatilityTrade" else index_data  # it trades implied (VIX) against GARCH vol
    report = replay_lookahead(book, d, max_checks=OPTION_CHECKS)
    assert len(report.checked) == OPTION_CHECKS and report.decision_bars > 20  # monthly rolls
    with pytest.raises(LookAheadError):
        replay_lookahead(PeekAhead(book, 1), d, max_checks=OPTION_CHECKS)


def test_walk_forward_regime_probabilities_are_point_in_time(index_data):
    from trading.ml.regime import regime_features, walk_forward_hmm

    class Regimes:
        name, warmup = "walk_forward_hmm", 600

        def decisions(self, d: MarketData) -> pd.DataFrame:
            feats = regime_features(d.close["SPX"])
            probs, _ = walk_forward_hmm(feats, n_states=2, refit="YE", min_train=504, seed=0)
            return probs

    report = replay_lookahead(Regimes(), index_data, max_checks=5)
    assert len(report.checked) == 5
    with pytest.raises(LookAheadError):
        replay_lookahead(PeekAhead(Regimes(), 1), index_data, max_checks=5)


# --- engine fill timing ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_asset():
    rng = np.random.default_rng(7)
    idx = pd.bdate_range("2020-01-01", periods=60, tz="UTC")
    close = pd.DataFrame({"X": 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(idx))))}, index=idx)
    open_ = close.shift(1).fillna(100.0) * np.exp(rng.normal(0, 0.005, (len(idx), 1)))
    # a target that knows each bar's own return (legitimately: it is decided at that bar's close)
    r = close["X"].pct_change(fill_method=None).fillna(0.0)
    target = pd.DataFrame({"X": (r > 0).astype(float)}, index=idx)
    return MarketData(close=close, open=open_), target, r


@pytest.mark.parametrize("engine", ["vectorized", "events"])
@pytest.mark.parametrize("execution, lag", [("next_close", 2), ("close", 1)])
def test_a_decision_earns_only_returns_after_its_fill(one_asset, engine, execution, lag):
    data, target, r = one_asset
    if engine == "vectorized":
        res = backtest_weights(data.close, target, schedule="every_bar", execution=execution)
    else:
        res = backtest_events(data, target, schedule="every_bar", execution=execution)
    # all-in/all-out without costs: bar t's return is earned iff the position decided `lag` bars earlier is long
    expected = (target["X"].shift(lag).fillna(0.0) * r).to_numpy()
    np.testing.assert_allclose(res.returns.iloc[:, 0].to_numpy(), expected, atol=1e-12)
    assert res.execution == execution


def test_events_next_open_fills_at_the_open_after_the_decision(one_asset):
    data, target, r = one_asset
    res = backtest_events(data, target, schedule="on_change", execution="next_open")
    fills = res.fills[res.fills["kind"] == "fill"]
    pos = target["X"].to_numpy()
    # a fill for every change of the wanted position (the first decision counts if it is long), the bar after it
    changes = [i for i in range(len(pos) - 1) if (pos[i] != pos[i - 1] if i else pos[0] > 0)]
    assert list(fills["ts_event"]) == [data.close.index[i + 1] for i in changes]
    np.testing.assert_allclose(fills["price"].to_numpy(), data.open["X"].loc[fills["ts_event"]].to_numpy(), rtol=1e-12)


def test_vectorized_next_open_fills_at_the_next_open(one_asset):
    data, target, r = one_asset
    res = backtest_weights(data.close, target, schedule="every_bar", execution="next_open", open=data.open)
    # long over bar t+1 from its open: earns close[t+1]/open[t+1] - 1 on the entry bar, then close-to-close
    held = target["X"].shift(1).fillna(0.0)
    prev_held = held.shift(1).fillna(0.0)
    c, o = data.close["X"], data.open["X"]
    expected = np.where(held > 0, np.where(prev_held > 0, c / c.shift(1), c / o), np.where(prev_held > 0, o / c.shift(1), 1.0)) - 1
    np.testing.assert_allclose(res.returns.iloc[:, 0].to_numpy(), np.nan_to_num(expected), atol=1e-12)


def test_the_default_is_the_next_bar_and_same_close_must_be_named(one_asset):
    data, target, r = one_asset
    default = backtest_weights(data.close, target, schedule="every_bar")
    assert default.execution == "next_close"
    perfect = (target["X"].shift(1).fillna(0.0) * r + 1).prod()  # what a same-bar fill would "earn" from the peek
    assert (default.returns.iloc[:, 0] + 1).prod() < perfect

"""Issue 12 (research integrity), risk and regime parts: limits keep "keep", the kill switch acts after the breach,
regime names follow volatility, Markov switching reports causal filtered probabilities, CPI is lagged conservatively."""
import numpy as np
import pandas as pd
import pytest

from trading.backtest.vectorized import backtest_weights
from trading.risk.limits import RiskLimits, apply_kill_switch, apply_limits


@pytest.fixture(scope="module")
def sp20():
    from conftest import ROOT
    from trading.data.panels import price_panel
    from trading.data.snapshot import load_snapshot
    from trading.data.universe import get_universe
    full = price_panel(load_snapshot(ROOT / "data").bars("sp20")).dropna()
    return full.loc["2004":"2012"], get_universe("sp20").sectors, full.pct_change().loc[:"2012"]  # earlier returns feed the first VaR estimates


def _annual_turnover(close, target):
    "Turnover when every explicit target row is an order (the engine's 'on_decision' schedule), per year."
    res = backtest_weights(close, target, fee_rate=0.0005, schedule="on_decision", execution="close")
    return float(res.turnover["portfolio"].iloc[1:].sum() / (len(close) / 252))


def test_non_binding_limits_leave_buy_and_hold_alone(sp20):
    close, sectors, rets = sp20
    bh = pd.DataFrame(np.nan, close.index, close.columns); bh.iloc[0] = 1 / close.shape[1]
    loose = RiskLimits(max_weight=1.0, max_sector_weight=1.0, max_gross=1.0, var_budget=0.5)
    out = apply_limits(bh, loose, sectors, rets)
    assert out.iloc[1:].isna().all().all()  # no kept row became an order
    assert _annual_turnover(close, out) == pytest.approx(_annual_turnover(close, bh), abs=1e-12)
    # binding limits trade only on the bars where they bind, far fewer than every bar
    real = apply_limits(bh, RiskLimits(max_weight=0.08, max_sector_weight=0.30, max_gross=1.0, var_budget=0.015), sectors, rets)
    bars = int(real.iloc[1:].notna().any(axis=1).sum())
    assert 0 < bars < 0.5 * (len(close) - 1)


def test_kill_switch_flattens_the_bar_after_the_breach(sp20):
    close = sp20[0]
    bh = pd.DataFrame(np.nan, close.index, close.columns); bh.iloc[0] = 1 / close.shape[1]
    engine = lambda t: backtest_weights(close, t, fee_rate=0.0005, execution="close").equity["portfolio"]
    ks = apply_kill_switch(bh, engine, 0.20, None)
    (breach, _), = ks.triggers
    eq = engine(bh)
    dd = eq / eq.cummax() - 1
    assert breach == dd.index[np.argmax((dd <= -0.20).to_numpy())]  # the first close that reveals the breach
    orders = backtest_weights(close, ks.target, fee_rate=0.0005, execution="close").trades
    exits = pd.to_datetime(orders["exit_ts"]).dropna()
    nxt = close.index[close.index.get_loc(breach) + 1]
    assert len(exits) and (exits == nxt).all()  # every position is closed on the next bar, none on the breach bar
    assert (ks.target.loc[nxt] == 0).all() and ks.target.loc[breach].isna().all()
    # with the engines' next-bar fill the flattening target may carry the breach bar's date: the trade is still the next bar's
    nb_engine = lambda t: backtest_weights(close, t, fee_rate=0.0005, execution="next_close").equity["portfolio"]
    ks0 = apply_kill_switch(bh, nb_engine, 0.20, None, delay=0)
    (breach0, _), = ks0.triggers
    exits0 = pd.to_datetime(backtest_weights(close, ks0.target, fee_rate=0.0005, execution="next_close").trades["exit_ts"]).dropna()
    assert len(exits0) and (exits0 == close.index[close.index.get_loc(breach0) + 1]).all()
    with pytest.raises(Exception, match="delay"): apply_kill_switch(bh, engine, 0.2, None, delay=-1)


def test_regime_states_are_named_by_volatility_not_returns():
    from trading.ml.regime import state_labels
    names = {n for k in (2, 3, 4) for n in state_labels(k)}
    assert not names & {"bull", "bear", "sideways"}
    assert state_labels(3) == ("calm", "normal", "turbulent")


def test_markov_switching_filtered_is_point_in_time():
    from trading.ml.regime import SMOOTHED_FULL_SAMPLE, markov_switching
    rng = np.random.default_rng(0)
    idx = pd.bdate_range("2000-01-03", periods=900, tz="UTC")
    vol = np.where((np.arange(900) // 120) % 2 == 0, 0.006, 0.02)  # alternating calm and turbulent stretches (synthetic)
    r = pd.Series(rng.normal(0, vol), idx)
    ms = markov_switching(r, 2, refit="YE", min_train=300)
    assert list(ms.columns) == ["filtered", SMOOTHED_FULL_SAMPLE]
    cut = idx[700]
    ms_cut = markov_switching(r.loc[:cut], 2, refit="YE", min_train=300)
    pd.testing.assert_series_equal(ms_cut["filtered"], ms["filtered"].loc[:cut])  # removing the future changes nothing
    assert ms["filtered"].iloc[:300].isna().all() and ms["filtered"].iloc[-1] == ms["filtered"].iloc[-1]


def test_cpi_publication_lag_is_conservative():
    from trading.data.macro import PUBLICATION_LAG_DAYS
    assert PUBLICATION_LAG_DAYS["CPILFESL"] >= 45 and PUBLICATION_LAG_DAYS["cpi"] >= 45

"""Issue 12, options inputs: one point-in-time rate prices the options and pays the cash, option trades pay fees
and a spread, fills default to the next bar. Small synthetic markets, each number checked by hand."""
import numpy as np
import pandas as pd
import pydantic
import pytest

from trading.core.errors import InputValidationError
from trading.options.pricing import bsm_price
from trading.options.chains import skew_vol
from trading.options.strategies import CoveredCall, ProtectivePut, VolatilityTrade
from trading.strategies.base import MarketData

IDX = pd.bdate_range("2021-01-04", "2021-06-30", tz="UTC")


def _market(spot=None, rf=None, iv=0.2):
    spot = pd.Series(100.0, index=IDX) if spot is None else spot
    extra = {"atm_vol": pd.DataFrame({"iv": iv}, index=IDX)}
    if rf is not None: extra["rf"] = rf.to_frame("rf")
    return MarketData(pd.DataFrame({"SPX": spot}), extra=extra)


def test_cash_earns_the_rate_the_options_are_priced_at():
    "A book that only holds cash grows at exp(r × days / 365): the old engine-only run stayed flat while pricing at 2%."
    cash_only = VolatilityTrade(r=0.04, require_vix=False, rich=1e9, cheap=-1.0)  # never trades, no index leg
    res = cash_only.run(_market(), init_cash=1_000_000.0)
    days = (res.equity.index[-1] - res.equity.index[0]).days
    assert np.isclose(res.equity.iloc[-1], 1_000_000.0 * np.exp(0.04 * days / 365), rtol=1e-12)
    assert len(res.result.fills) == 0


def test_point_in_time_rate_prices_each_bar_and_pays_the_cash():
    "A rate series stepping 0% -> 5% in March: contracts are priced at the rate of each bar, and cash accrues at it."
    rf = pd.Series(np.where(IDX < pd.Timestamp("2021-03-01", tz="UTC"), 0.0, 0.05), index=IDX)
    spot = pd.Series(np.linspace(100, 112, len(IDX)), index=IDX)
    pp = ProtectivePut(q=0.0, skew_slope=0.25)
    book = pp.book(_market(spot, rf), init_cash=1.0)
    assert (book.proxy["r"] == rf).all()
    for sym, pan in book.panels.items():
        c = book.contracts.set_index("symbol").loc[sym]
        live = pan["price"].dropna()
        T = (c["expiry"] - live.index).days.to_numpy() / 365
        vol = skew_vol(0.2, live.index.map(spot).to_numpy(), c["strike"], T, rf.loc[live.index].to_numpy(), 0.0, 0.25)
        want = bsm_price("P", spot.loc[live.index].to_numpy(), c["strike"], T, vol, rf.loc[live.index].to_numpy(), 0.0)
        np.testing.assert_allclose(live.to_numpy(), want, rtol=0, atol=1e-10)
    g = book.cash_growth
    assert g.loc[:"2021-02-26"].eq(1.0).all() and np.isclose(g.loc["2021-03-02"], np.exp(0.05 / 365))
    shifted = ProtectivePut(q=0.0, rate_shift=0.01).book(_market(spot, rf))
    assert np.allclose(shifted.proxy["r"], rf + 0.01)
    with pytest.raises(InputValidationError, match="rf"):
        ProtectivePut().book(_market(spot, rf.where(IDX != IDX[40])))  # a hole in the rate is refused, with its bar


def test_option_trades_pay_fees_and_spread_settlements_do_not():
    spot = pd.Series(np.linspace(100, 90, len(IDX)), index=IDX)
    free = CoveredCall(r=0.0, q=0.0).run(_market(spot))
    costly = CoveredCall(r=0.0, q=0.0, fee_per_contract=0.65, half_spread=0.05, half_spread_min=0.10).run(_market(spot))
    trades = costly.option_fills(); trades = trades[trades["kind"] == "fill"]
    assert len(trades) >= 5 and (costly.settlements()["held"] != 0).all()
    by_hand = float((trades["qty"].abs() * (0.65 + 100 * np.maximum(0.05 * trades["price"], 0.10))).sum())
    assert np.isclose(costly.option_costs.sum(), by_hand, rtol=1e-12) and np.isclose(free.option_costs.sum(), 0.0)
    assert np.isclose(costly.summary()["option_costs"], by_hand)
    # no rate: the equity gap is the costs paid plus the smaller book they leave (sizing follows the NAV net of costs)
    assert free.equity.iloc[-1] - costly.equity.iloc[-1] >= by_hand * 0.9
    np.testing.assert_allclose(costly.equity.to_numpy(), costly.book.model_nav.dropna().to_numpy(), rtol=1e-8)
    for bad in ({"fee_per_contract": -0.65}, {"half_spread": 1.5}, {"half_spread_min": float("inf")}):
        with pytest.raises(pydantic.ValidationError, match=next(iter(bad))):
            CoveredCall(**bad)


def test_default_fill_is_the_next_close():
    spot = pd.Series(np.linspace(100, 120, len(IDX)), index=IDX)
    nxt, moc = CoveredCall(r=0.0).run(_market(spot)), CoveredCall(r=0.0, execution="close").run(_market(spot))
    f_next = nxt.result.fills[nxt.result.fills["kind"] == "fill"]
    f_moc = moc.result.fills[moc.result.fills["kind"] == "fill"]
    decided = nxt.book.contracts["listed"]
    assert (pd.DatetimeIndex(nxt.book.contracts["traded"]) == IDX[IDX.get_indexer(decided) + 1]).all()
    assert pd.DatetimeIndex(f_next["ts_event"]).min() == IDX[1] and pd.DatetimeIndex(f_moc["ts_event"]).min() == IDX[0]
    with pytest.raises(pydantic.ValidationError, match="execution"):
        CoveredCall(execution="same_bar_open")


def test_option_books_replay_without_lookahead_at_every_bar():
    "Rebuilding the book on data cut at each bar reproduces every order filled up to that bar (next-close and MOC fills)."
    rng = np.random.default_rng(7)
    spot = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.012, len(IDX)))), index=IDX)
    iv = pd.Series(0.2 + 0.05 * np.sin(np.arange(len(IDX)) / 9), index=IDX)
    rf = pd.Series(np.linspace(0.01, 0.03, len(IDX)), index=IDX)
    data = MarketData(pd.DataFrame({"SPX": spot}), extra={"atm_vol": iv.to_frame("iv"), "garch_vol": pd.DataFrame({"g": 0.2}, index=IDX),
                                                          "rf": rf.to_frame("rf")})
    for strat in (CoveredCall(), VolatilityTrade(hedged=True, require_vix=False, rich=1.05, cheap=0.95), ProtectivePut(execution="close")):
        full = strat.book(data, init_cash=1e6).orders
        assert len(full) > 3
        for t in IDX[::3]:
            part = strat.book(data.until(t), init_cash=1e6).orders
            pd.testing.assert_frame_equal(part, full[full["ts_event"] <= t].reset_index(drop=True), check_exact=False, rtol=1e-12)

"""The `risk` stage notebook run by papermill on the real snapshot, checked against independent computations."""
import json
import shutil

import numpy as np
import pandas as pd
import yaml

from conftest import ROOT, run
from trading.data.panels import price_panel
from trading.data.snapshot import load_snapshot

BASEL = {**{x: "green" for x in range(5)}, **{x: "yellow" for x in range(5, 10)}}  # 250 days at 99%; 10+ red


def test_risk_stage_baselines_alone(tmp_path):
    (tmp_path / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / "risk.ipynb", tmp_path / "nbs" / "pipeline")
    params = {"risk": {"data_dir": str(ROOT / "data"), "backtest_equity": "no/such/equity.csv", "start": "2012-01-01",
                       "refit_every": 252, "garch_window": 500, "mc_scenarios": 20_000,
                       "portfolio_start": "2007-01-01", "portfolio_end": "2009-12-31"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = run("trading-stage", "risk", cwd=tmp_path, timeout=600)
    assert "report at" in out.stdout
    m = json.loads((tmp_path / "reports" / "risk" / "metrics.json").read_text())
    assert not any(k.startswith("backtest:") for k in m["var_backtest"])  # works on its own
    assert set(m["var_backtest"]) == {"buy_and_hold_spx", "sma_50_200_spx", "buy_and_hold_sp20", "sma_50_200_sp20"}

    # oracle: historical VaR exceptions of buy-and-hold SPX from the raw closes and pandas' rolling quantile
    close = price_panel(load_snapshot(ROOT / "data").bars("sp500"))["SPX"].loc["2012-01-01":]
    r = close.pct_change().iloc[1:]  # buy-and-hold earns the index return from its second bar
    var = -r.rolling(250).quantile(0.01, interpolation="lower").shift(1)  # 3rd worst of 250 = ceil(250 * 1%)
    first = 500  # every model forecasts from the first FHS forecast (garch_window returns) on
    hits = (-r.iloc[first:] > var.iloc[first:])
    hist = m["var_backtest"]["buy_and_hold_spx"]["historical"]
    assert hist["forecasts"] == len(r) - first
    assert hist["exceptions"] == int(hits.sum())
    assert hist["exceptions_last_250"] == int(hits.iloc[-250:].sum())
    for strategy in m["var_backtest"].values():
        for d in strategy.values():
            assert d["zone_last_250"] == BASEL.get(d["exceptions_last_250"], "red")
            assert abs(d["share_green"] + d["share_yellow"] + d["share_red"] - 1) < 1e-5

    # limits and the kill switch change positions in the 2007-2009 backtest
    lim = m["limits"]
    assert lim["buy_and_hold_kill_switch_only"]["kill_switch_triggers"][0].startswith("2008")
    assert all(v["share_bars_positions_changed"] > 0 for v in lim.values())
    assert lim["sma_50_200_per_symbol"]["max_drawdown_limited"] > lim["sma_50_200_per_symbol"]["max_drawdown_raw"]
    for k, v in lim["sma_50_200_per_symbol"]["max_usage_limited_target"].items(): assert v <= 1 + 1e-6, k
    # VaR/ES: ES >= VaR for every model; stress windows in the data all lose money for the equal-weight book
    for strategy in m["var_es"].values():
        for d in strategy.values(): assert d["es"] >= d["var"] - 1e-12
    assert all(v["cumulative_return"] < 0 for v in m["stress_historical"].values())
    html = (tmp_path / "reports" / "risk" / "risk.html").read_text()
    assert "Basel traffic light" in html and "Stress tests" in html and "data:image/png;base64" in html
    assert "apply_kill_switch(" not in html  # code cells are hidden

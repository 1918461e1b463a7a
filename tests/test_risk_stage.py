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
    smoke = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())["risk"]  # every key: trading-stage refuses partial sections
    params = {"risk": {**smoke, "data_dir": str(ROOT / "data"), "backtest_equity": "no/such/equity.csv", "start": "2012-01-01",
                       "refit_every": 252, "garch_window": 500, "mc_scenarios": 20_000,
                       "portfolio_start": "2007-01-01", "portfolio_end": "2009-12-31"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = run("trading-stage", "risk", cwd=tmp_path, timeout=600)
    assert "report at" in out.stdout
    m = json.loads((tmp_path / "reports" / "risk" / "details.json").read_text())  # the full record
    headline = json.loads((tmp_path / "reports" / "risk" / "metrics.json").read_text())  # the headline `dvc metrics show` lists
    assert headline["claims"] == {k: {"verdict": c["verdict"], "headline": c["headline"]} for k, c in m["claims"].items()}
    assert headline["limits"] == {f"limited {k}": {"max_drawdown": v["max_drawdown_limited"]} for k, v in m["limits"].items()}
    assert not any(k.startswith("backtest:") for k in m["var_backtest"])  # works on its own
    assert set(m["var_backtest"]) == {"buy_and_hold_spx", "sma_50_200_spx", "buy_and_hold_sp20", "sma_50_200_sp20"}

    # oracle: historical VaR exceptions of buy-and-hold SPX from the raw closes and pandas' rolling quantile
    close = price_panel(load_snapshot(ROOT / "data").bars("sp500"))["SPX"].loc["2012-01-01":]
    r = close.pct_change().iloc[2:]  # decided at bar 0, bought at bar 1's close (next-bar fill): earns the index return from bar 2
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

    # limits and the kill switch change positions in the 2007-2009 backtest; no baseline above 1x gross
    lim = m["limits"]
    assert lim["buy_and_hold_kill_switch_only"]["kill_switch_breaches"][0].startswith("2008")
    assert all(v["share_bars_positions_changed"] > 0 for v in lim.values())
    assert all(v["max_gross_raw"] <= 1 + 1e-6 for v in lim.values())
    for k, v in lim["sma_50_200_equal"]["max_usage_limited_orders"].items(): assert v <= 1 + 1e-6, k
    # every claim has a panel in robustness.csv, against the raw and the exposure-matched baseline, and the verdict in
    # metrics.json is the one the shared rule computes from that panel (never written by hand)
    from trading.analytics.robustness import verdict
    panel = pd.read_csv(tmp_path / "reports" / "risk" / "robustness.csv")
    assert set(panel["claim"]) == set(m["claims"]) == set(headline["claims"]) and len(m["claims"]) == 6
    assert {k.rsplit("_vs_", 1)[1] for k in m["claims"]} == {"raw", "exposure_matched"}
    for name, c in m["claims"].items():
        rows = panel[panel["claim"] == name]
        holds = rows["holds"].map({"yes": True, "no": False}).where(rows["holds"] != "n/a", None)
        head, checks = holds.iloc[0], rows.iloc[1:]
        assert verdict(head, list(holds.iloc[1:]), kinds=list(checks["kind"])) == c["verdict"], name
        assert abs(rows["value"].iloc[0] - c["headline"]) < 1e-6
        assert {"benchmark", "costs", "execution", "leave one out", "sub-period"} <= set(checks["kind"])
    # stress windows: the book next to the index over the same bars
    # VaR/ES: ES >= VaR for every model; stress windows in the data all lose money for the equal-weight book
    for strategy in m["var_es"].values():
        for d in strategy.values(): assert d["es"] >= d["var"] - 1e-12
    assert all(v["cumulative_return"] < 0 for v in m["stress_historical"].values())
    assert all(v["benchmark_return"] < 0 and "excess_return" in v for v in m["stress_historical"].values())
    html = (tmp_path / "reports" / "risk" / "risk.html").read_text()
    assert "Basel traffic light" in html and "Stress tests" in html and "data:image/png;base64" in html
    assert html.count("Survivorship") >= 4 and "verdict" in html
    assert "apply_kill_switch(" not in html  # code cells are hidden

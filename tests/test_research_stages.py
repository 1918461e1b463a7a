"""The `walkforward` and `attribution` stage notebooks run by papermill: a bad study fails before any work, naming the
field, with nothing written; the attribution of a planted equity file matches statsmodels on the same months."""
import json
import shutil

import numpy as np
import pandas as pd
import statsmodels.api as sm
import yaml

from conftest import ROOT, run
from trading.data.panels import price_panel
from trading.data.snapshot import load_snapshot
from trading.research.attribution import ff_factors, monthly_returns


def _stage_dir(tmp_path, stage, overrides):
    (tmp_path / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / f"{stage}.ipynb", tmp_path / "nbs" / "pipeline")
    smoke = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())[stage]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({stage: {**smoke, "data_dir": str(ROOT / "data"), **overrides}}))
    return tmp_path


def test_walkforward_bad_study_fails_before_work(tmp_path):
    smoke = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())["walkforward"]
    d = _stage_dir(tmp_path, "walkforward", {"study": {**smoke["study"], "grid": {"fast": [20, 300], "slow": [100]}}})
    res = run("trading-stage", "walkforward", cwd=d, timeout=300, check=False)
    assert res.returncode != 0
    assert "walkforward.grid" in res.stderr + res.stdout and "fast" in res.stderr + res.stdout  # names the bad trial
    assert not (d / "reports" / "walkforward" / "metrics.json").exists()


def test_attribution_of_planted_strategies_matches_statsmodels(tmp_path):
    # two planted "strategies" from the real S&P 500 index: fully invested, and half invested (half cash at 0%)
    spx = price_panel(load_snapshot(ROOT / "data").bars("sp500_index"))["SP500"].loc["2000":"2018"]
    r = spx.pct_change().fillna(0.0)
    eq = pd.DataFrame({"full": (1 + r).cumprod(), "half": (1 + 0.5 * r).cumprod()})
    eq.index = eq.index.strftime("%Y-%m-%d")
    (tmp_path / "reports" / "backtests").mkdir(parents=True)
    eq.rename_axis("date").to_csv(tmp_path / "reports" / "backtests" / "equity.csv")
    d = _stage_dir(tmp_path, "attribution", {"runs": [], "start": "2000-01-01"})
    run("trading-stage", "attribution", cwd=d, timeout=600)
    m = json.loads((d / "reports" / "attribution" / "details.json").read_text())
    exp = m["factor_exposures"]
    assert set(exp) == {"backtest:full", "backtest:half"}  # every strategy of the equity file
    # oracle: statsmodels OLS of the monthly excess returns of the file's own curve on the bundled factors
    ff = ff_factors()
    saved = pd.read_csv(d / "reports" / "backtests" / "equity.csv", index_col="date")
    saved.index = pd.DatetimeIndex(pd.to_datetime(saved.index)).tz_localize("UTC")
    for col in ("full", "half"):
        mr = monthly_returns(saved[col].pct_change().dropna())
        ex = (mr - ff["RF"].reindex(mr.index)).dropna()
        fit = sm.OLS(ex, sm.add_constant(ff.loc[ex.index, ["MKT", "SMB", "HML"]])).fit()
        got = exp[f"backtest:{col}"]
        assert np.isclose(got["beta_MKT"], fit.params["MKT"], rtol=1e-9) and np.isclose(got["t_HML"], fit.tvalues["HML"], rtol=1e-9)
        assert np.isclose(got["alpha_annual"], 12 * fit.params["const"], rtol=1e-9, atol=1e-12)
    assert 0.9 < exp["backtest:full"]["beta_MKT"] < 1.1  # the index against the market factor
    assert np.isclose(exp["backtest:half"]["beta_MKT"], exp["backtest:full"]["beta_MKT"] / 2, rtol=0.05)
    shocks = m["factor_shocks"]
    assert np.isclose(shocks["backtest:full"]["equity crash -20%"], -0.2 * exp["backtest:full"]["beta_MKT"])
    windows = {(w["strategy"], w["window"]) for w in m["stress_windows"]}
    assert ("backtest:full", "gfc_2008_09") in windows and ("benchmark", "gfc_2008_09") in windows
    gfc = {w["strategy"]: w["return"] for w in m["stress_windows"] if w["window"] == "gfc_2008_09"}
    assert np.isclose(gfc["backtest:full"], gfc["benchmark"], atol=1e-6)  # the planted curve is the index
    assert set(m["paper_portfolio"]["weights"]) == {"AAPL", "JPM", "XOM", "MSFT", "KO"}

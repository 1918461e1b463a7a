"""The `options` stage notebook run by papermill, checked against the strategy run directly."""
import json
import shutil

import numpy as np
import pandas as pd
import yaml

from conftest import ROOT, run
from trading.analytics.metrics import cagr
from trading.data.snapshot import load_snapshot
from trading.options.chains import MODEL_NOTE, garch_vol_forecast
from trading.options.strategies import CoveredCall
from trading.strategies.base import MarketData

SMOKE = {"start": "2010-01-01", "end": "2015-12-31", "iv_scales": [0.9, 1.0],
         "strategies": [{"name": "buy-write ATM", "strategy": "CoveredCall", "params": {}},
                        {"name": "protective put 95%", "strategy": "ProtectivePut", "params": {}}]}


def test_options_stage_reports_the_buy_write_it_ran(small_snapshot, tmp_path):
    (tmp_path / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / "options.ipynb", tmp_path / "nbs" / "pipeline")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"options": {**SMOKE, "data_dir": str(small_snapshot)}}))
    out = run("trading-stage", "options", cwd=tmp_path, timeout=600)
    assert "report at" in out.stdout
    metrics = json.loads((tmp_path / "reports" / "options" / "metrics.json").read_text())
    html = (tmp_path / "reports" / "options" / "options.html").read_text()
    assert metrics["note"] == MODEL_NOTE and "modelled, not traded" in html and "data:image/png;base64" in html and "load_snapshot(" not in html

    # the same buy-write, run here directly on the same snapshot slice
    snap = load_snapshot(small_snapshot)
    spx = snap.bars("sp500").set_index("ts_event")["close"].loc["2010-01-01":"2015-12-31"].rename("SPX")
    vix = snap.bars("vix").set_index("ts_event")["close"].reindex(spx.index)
    data = MarketData(pd.DataFrame({"SPX": spx}), extra={"vix": vix.to_frame("VIX"), "garch_vol": garch_vol_forecast(spx).to_frame("g")})
    bw = CoveredCall().run(data, init_cash=1_000_000.0)
    got = metrics["strategies"]["buy-write ATM"]
    first = bw.equity.index[0]
    assert np.isclose(got["cagr"], cagr(bw.returns), atol=1e-6)
    assert np.isclose(got["premium_net"], bw.premium()["premium"].sum(), rtol=1e-9)
    st = bw.settlements()
    assert got["assigned"] == int((st["event"] == "assigned").sum()) and got["assigned"] > 0
    assert got["assigned"] == int(((st["spot"] > st["strike"]) & (st["held"] < 0)).sum())  # short calls finishing in the money
    index_cagr = cagr(spx.loc[first:].pct_change().fillna(0.0))  # same bars as the strategy (first bar: 0 return)
    assert np.isclose(metrics["claim"]["underlying_cagr"], index_cagr, atol=1e-6)
    assert metrics["claim"]["claim_met"] == bool(got["cagr"] / index_cagr - 1 >= 0.25)
    assert set(metrics["claim"]["iv_scale_sensitivity"]) == {"0.9", "1.0"}

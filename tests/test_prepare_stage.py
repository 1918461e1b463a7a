"""The `prepare` stage notebook run by papermill, checked against a direct computation."""
import json
import shutil

import numpy as np
import pandas as pd
import yaml

from conftest import ROOT, run
from trading.data.snapshot import load_snapshot


def test_prepare_stage_writes_validated_panels_and_report(small_snapshot, tmp_path):
    (tmp_path / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / "prepare.ipynb", tmp_path / "nbs" / "pipeline")
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["prepare"].update(data_dir=str(small_snapshot), datasets=["sp500", "vix"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = run("trading-stage", "prepare", cwd=tmp_path, timeout=600)
    assert "report at" in out.stdout

    snap = load_snapshot(small_snapshot)
    for name, sym in [("sp500", "SPX"), ("vix", "VIX")]:
        panel = pd.read_parquet(tmp_path / "artifacts" / "prepare" / f"returns_{name}.parquet").set_index("ts_event")
        closes = snap.bars(name).set_index("ts_event")["close"]
        np.testing.assert_allclose(panel[sym].to_numpy()[1:], (closes / closes.shift(1) - 1).to_numpy()[1:], rtol=1e-12)
        assert str(panel.index.tz) == "UTC"
    report = tmp_path / "reports" / "prepare"
    metrics = json.loads((report / "details.json").read_text())  # the full record; metrics.json keeps the headline
    headline = json.loads((report / "metrics.json").read_text())
    assert headline == {"datasets": {k: {"bars": v["bars"], "symbols": v["symbols"], "volatility": v["median_ann_vol"]} for k, v in metrics["datasets"].items()}}
    assert {p.stem: json.loads(p.read_text()) for p in (report / "metrics").glob("*.json")} == headline["datasets"]  # a DVC row each
    assert metrics["datasets"]["sp500"]["bars"] == 5031
    assert metrics["datasets"]["sp500"]["first"] == "1999-01-04"
    html = (tmp_path / "reports" / "prepare" / "prepare.html").read_text()
    assert "Per-symbol statistics" in html and "data:image/png;base64" in html and "load_snapshot(" not in html


def test_prepare_stage_refuses_a_tampered_snapshot(small_snapshot, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_snapshot, data)
    (data / "bars" / "vix.parquet").write_bytes(b"not parquet")
    (tmp_path / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / "prepare.ipynb", tmp_path / "nbs" / "pipeline")
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["prepare"].update(datasets=["sp500"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    res = run("trading-stage", "prepare", cwd=tmp_path, check=False, timeout=600)
    assert res.returncode != 0 and "snapshot_hash_mismatch" in res.stderr
    assert not (tmp_path / "artifacts" / "prepare" / "returns_sp500.parquet").exists()
    assert (tmp_path / "reports" / "prepare" / "prepare.failed.html").exists()

"""Stage notebooks run where they are opened (JupyterLab's cwd is nbs/pipeline) and read the params the stage reads;
trading-stage refuses a partial params section up front, lists its stages, and runs its kernel without noise."""
import json
import shutil

import nbformat
import pandas as pd
import pytest
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import ROOT, run

SECTION = {"data_dir": "snap", "out_dir": "artifacts/prepare", "metrics_file": "reports/prepare/metrics.json",
           "datasets": ["vix"], "return_kind": "log", "annualization": 260}  # none of these is the notebook's default


def _repo(tmp_path, snapshot, section):
    "A repository in miniature: dvc.yaml marks the root, the prepare notebook, a snapshot under a relative path."
    (tmp_path / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / "prepare.ipynb", tmp_path / "nbs" / "pipeline")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copytree(snapshot, tmp_path / "snap")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"prepare": section}))
    return tmp_path


def test_stage_notebook_opened_in_its_folder_reads_the_repos_params(small_snapshot, tmp_path):
    repo = _repo(tmp_path, small_snapshot, SECTION)
    nb = nbformat.read(repo / "nbs" / "pipeline" / "prepare.ipynb", as_version=4)
    # what JupyterLab does: the kernel starts in the notebook's folder, no papermill, no injected parameters
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo / "nbs" / "pipeline")}}).execute()
    assert not (repo / "nbs" / "pipeline" / "artifacts").exists() and not (repo / "nbs" / "pipeline" / "reports").exists()
    panel = pd.read_parquet(repo / "artifacts" / "prepare" / "returns_vix.parquet")  # out_dir resolved against the root
    assert list(panel.columns) == ["ts_event", "VIX"]
    details = json.loads((repo / "reports" / "prepare" / "details.json").read_text())
    assert details["return_kind"] == "log" and set(details["datasets"]) == {"vix"}  # params.yaml's values, not the cell's
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert f"parameters from {repo / 'params.yaml'}" in printed
    # the oracle: the stage itself (papermill from the root, injected parameters) computes the same numbers
    interactive = [(repo / "reports" / "prepare" / f).read_text() for f in ("metrics.json", "details.json")]
    res = run("trading-stage", "prepare", cwd=repo)
    assert "report at" in res.stdout and [(repo / "reports" / "prepare" / f).read_text() for f in ("metrics.json", "details.json")] == interactive
    pd.testing.assert_frame_equal(pd.read_parquet(repo / "artifacts" / "prepare" / "returns_vix.parquet"), panel)


def test_partial_params_fail_up_front_naming_the_missing_keys(small_snapshot, tmp_path):
    section = {k: v for k, v in SECTION.items() if k not in ("datasets", "annualization")}
    repo = _repo(tmp_path, small_snapshot, section)
    res = run("trading-stage", "prepare", cwd=repo, check=False)
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and "datasets, annualization" in res.stderr and "lacks 2" in res.stderr, res.stderr
    assert not (repo / "reports").exists() and not (repo / "artifacts").exists()  # the notebook never ran
    # opened in Lab, the same partial file stops at the first code cell with the same message
    nb = nbformat.read(repo / "nbs" / "pipeline" / "prepare.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo / "nbs" / "pipeline")}})
    with pytest.raises(CellExecutionError, match="InputValidationError") as err:
        client.execute()
    assert "datasets, annualization" in str(err.value) and "stage_context(" in str(err.value)  # the cell after the parameters


def test_trading_stage_is_quiet_and_shows_progress(small_snapshot, tmp_path):
    repo = _repo(tmp_path, small_snapshot, SECTION)
    res = run("trading-stage", "prepare", cwd=repo)
    assert "report at" in res.stdout
    noise = [l for l in (res.stdout + res.stderr).splitlines() if "without encryption" in l or "KeyboardInterrupt" in l]
    assert not noise, noise
    assert "cell/s" in res.stderr  # papermill's per-cell progress bar
    assert "cell/s" not in run("trading-stage", "prepare", "--no-progress", cwd=repo).stderr


def test_trading_stage_lists_its_stages():
    stages = sorted(p.stem for p in (ROOT / "nbs" / "pipeline").glob("*.ipynb"))
    listed = run("trading-stage", "--list").stdout.split("\n")
    assert sorted(l.split()[0] for l in listed if l.strip()) == stages
    assert "Prepare: validated return panels" in run("trading-stage", "--list").stdout
    helptext = run("trading-stage", "--help").stdout
    assert all(f"  {s} " in helptext for s in stages) and "--list" in helptext
    res = run("trading-stage", check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--list" in res.stderr

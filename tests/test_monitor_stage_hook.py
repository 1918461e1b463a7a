"""`trading-stage` leaves a node_exporter textfile per stage run: duration, success, rows, last success time;
the bot exporter serves the folder, so Prometheus gets stage metrics without node_exporter."""
import nbformat
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN, run


def _tiny_repo(root, body):
    (root / "nbs" / "pipeline").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text(yaml.safe_dump({"tiny": {"n": 7}}))
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("n = 1"); p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny stage"), p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(nb, root / "nbs" / "pipeline" / "tiny.ipynb")


def _samples(path):
    return {s.name: s.value for f in text_string_to_metric_families(path.read_text()) for s in f.samples if s.labels.get("stage") == "tiny"}


def test_a_stage_run_writes_its_prom_file(tmp_path):
    _tiny_repo(tmp_path, "import pandas as pd, pathlib\npathlib.Path('reports/tiny').mkdir(parents=True, exist_ok=True)\n"
                         "pd.DataFrame({'x': range(n)}).to_csv('reports/tiny/rows.csv', index=False)")
    run(BIN / "trading-stage", "tiny", "--no-progress", cwd=tmp_path)
    s = _samples(tmp_path / "artifacts" / "metrics" / "tiny.prom")
    assert s["trading_stage_success"] == 1.0 and s["trading_stage_rows"] == 7.0  # the injected n, counted from the CSV it wrote
    assert s["trading_stage_duration_seconds"] > 0
    assert s["trading_stage_last_success_timestamp_seconds"] == s["trading_stage_last_run_timestamp_seconds"]

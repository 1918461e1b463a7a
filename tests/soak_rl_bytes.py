"""Soak: the `rl` stage twice — once with 1 BLAS thread and the grid in-process, once with 2 BLAS threads and the
grid on 2 dask worker processes (a stand-in for two machines) — must write byte-identical checkpoints, metrics and
panels, or a fresh `dvc repro` rewrites dvc.lock. Usage: python tests/soak_rl_bytes.py [params.smoke.yaml]"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_stage(work: Path, threads: int, params: dict) -> dict:
    (work / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / "rl.ipynb", work / "nbs" / "pipeline")
    shutil.copy(ROOT / "dvc.yaml", work)
    (work / "params.yaml").write_text(yaml.safe_dump({"rl": {**params, "n_workers": threads}}))
    env = {**os.environ, **{k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    subprocess.run([str(Path(sys.executable).parent / "trading-stage"), "rl", "--no-progress"], cwd=work, env=env, check=True, capture_output=True)
    files = sorted(p for p in (work / "artifacts" / "rl").rglob("*.json")) + sorted((work / "reports" / "rl").rglob("*.json")) \
        + [work / "reports" / "rl" / "robustness.csv"]
    return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


if __name__ == "__main__":
    params = yaml.safe_load((ROOT / (sys.argv[1] if len(sys.argv) > 1 else "params.smoke.yaml")).read_text())["rl"]
    params["data_dir"] = str(ROOT / "data")
    with tempfile.TemporaryDirectory() as d:
        a, b = run_stage(Path(d) / "t1", 1, params), run_stage(Path(d) / "t2", 2, params)
    differ = sorted(f for f in a.keys() | b.keys() if a.get(f) != b.get(f))
    print(f"{len(a)} outs compared, {len(differ)} differ" + (f": {differ}" if differ else ""))
    sys.exit(1 if differ else 0)

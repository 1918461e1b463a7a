"""Soak: the `train_regime` stage twice, under 1 and 2 BLAS threads (a stand-in for two machines), must write
byte-identical outs, or a fresh `dvc repro` rewrites dvc.lock. Usage: python tests/soak_lock_bytes.py [params.smoke.yaml]"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUTS = ["artifacts/regime/model.json", "artifacts/regime/probabilities.parquet", "reports/train_regime/metrics.json",
        "reports/train_regime/details.json", "reports/train_regime/robustness.csv"]


def run_stage(work: Path, threads: int, params: dict) -> dict:
    (work / "nbs" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "nbs" / "pipeline" / "train_regime.ipynb", work / "nbs" / "pipeline")
    (work / "params.yaml").write_text(yaml.safe_dump({"train_regime": params}))
    env = {**os.environ, **{k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    subprocess.run([str(Path(sys.executable).parent / "trading-stage"), "train_regime"],
                   cwd=work, env=env, check=True, capture_output=True)
    files = OUTS + sorted(str(p.relative_to(work)) for p in (work / "reports" / "train_regime" / "metrics").glob("*.json"))
    return {f: hashlib.sha256((work / f).read_bytes()).hexdigest() for f in files}


if __name__ == "__main__":
    params = yaml.safe_load((ROOT / (sys.argv[1] if len(sys.argv) > 1 else "params.smoke.yaml")).read_text())["train_regime"]
    params["data_dir"] = str(ROOT / "data")
    with tempfile.TemporaryDirectory() as d:
        a, b = run_stage(Path(d) / "t1", 1, params), run_stage(Path(d) / "t2", 2, params)
    differ = [f for f in a if a[f] != b.get(f)]
    print(f"{len(a)} outs compared, {len(differ)} differ" + (f": {differ}" if differ else ""))
    sys.exit(1 if differ else 0)

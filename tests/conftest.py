import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args, cwd=ROOT, timeout=300, check=True, **kw):
    "Run a command of the project's venv; return the CompletedProcess."
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run(list(map(str, args)), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{args} exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    return res


@pytest.fixture(scope="session")
def small_snapshot(tmp_path_factory):
    "A real snapshot of two bundled datasets, written once by the CLI."
    out = tmp_path_factory.mktemp("snap") / "data"
    run(BIN / "trading-data", "snapshot", "--datasets", "sp500,vix", "--out", out)
    return out

"""Every console script refuses misuse with one line on stderr and exit status 2, and creates nothing where it only read.

Each case is run as a user would run it (a fresh process, the working directory a scratch folder), including a
`pip install trading` without extras: a `sitecustomize` hides the optional packages, and the command must name the
extra to install instead of dying with `ModuleNotFoundError`.
"""
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY = {"trading-data": "trading.data.snapshot", "trading-db": "trading.store.cli", "trading-bot": "trading.live.cli",
         "trading-stage": "trading.pipeline"}
HIDDEN = ("alpaca", "ccxt", "psycopg", "papermill")  # what a bare `pip install trading` lacks

CASES = [  # (command, args, what the one line must say)
    ("trading-data", ["snapshot", "--source", "nope"], "invalid choice: 'nope' (choose from 'bundled'"),
    ("trading-data", ["snapshot", "--timeframe", "7x"], "'7x' is not a bar length"),
    ("trading-data", ["snapshot", "--source", "bundled", "--timeframe", "1h"], "--timeframe do not apply to --source bundled"),
    ("trading-data", ["snapshot", "--out", "/proc/forbidden"], "cannot write there"),
    ("trading-data", ["snapshot", "--source", "alpaca", "--symbols", "AAPL", "--start", "2020-13-01"], "start='2020-13-01'"),
    ("trading-db", ["--url", "sqlite:///x/y.db", "current"], "no SQLite database there"),
    ("trading-db", ["--url", "sqlite:///z.db", "backup", "b.db"], "no SQLite database there"),
    ("trading-db", ["--url", "sqlite:///z.db", "quality", "--as-of", "garbage"], "'garbage' is not an ISO date"),
    ("trading-db", ["--url", "foo://bar", "current"], "the store speaks sqlite:/// and postgresql://"),
    ("trading-bot", ["status", "--name", "x", "--db", "sqlite:///bots/t.db"], "no SQLite database there"),
    ("trading-bot", ["run", "--strategy", "sma_crossover", "--params", "{bad"], "--params: not JSON"),
    ("trading-bot", ["run", "--strategy", "nope", "--db", "sqlite:///t.db"], "known strategies are"),
    ("trading-stage", ["prepare"], "no dvc.yaml here or in any folder above"),
]
EXTRA_CASES = [
    ("trading-data", ["snapshot", "--source", "alpaca", "--symbols", "AAPL", "--start", "2020-01-01", "--out", "d"], "'online' extra"),
    ("trading-data", ["snapshot", "--source", "ccxt", "--symbols", "BTC/USD", "--start", "2024-01-01", "--exchange", "coinbase", "--out", "d"], "'online' extra"),
    ("trading-db", ["--url", "postgresql://x@127.0.0.1/db", "current"], "pip install 'trading[store]'"),
    ("trading-bot", ["run", "--strategy", "sma_crossover", "--broker", "ccxt:coinbase", "--symbols", "BTC/USD", "--db", "sqlite:///t.db"], "'online' extra"),
]

def _run(cmd: str, args: list[str], cwd: Path, hide: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if hide:
        (cwd / "sitecustomize.py").write_text(textwrap.dedent(f"""
            import sys
            class _Hide:  # as if the optional packages were never installed
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in {HIDDEN!r}: raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            sys.meta_path.insert(0, _Hide())
            """))
        env["PYTHONPATH"] = f"{cwd}:{REPO}"
    code = f"import sys; from {ENTRY[cmd]} import main; sys.argv[0] = {cmd!r}; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

def _check(case, tmp_path: Path, hide: bool):
    cmd, args, says = case
    cwd = tmp_path / f"{cmd}-{abs(hash(tuple(args)))}"
    cwd.mkdir()
    before = {p.name for p in cwd.iterdir()}
    r = _run(cmd, args, cwd, hide)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (cmd, args, r.returncode, r.stderr[-800:])
    assert len(lines) == 1 and lines[0].startswith(cmd) and ": error: " in lines[0] and says in lines[0], (cmd, args, r.stderr)
    created = {p.name for p in cwd.iterdir()} - before - {"sitecustomize.py", "__pycache__"}
    if "run" not in args: assert not created, (cmd, args, created)  # a refused or read-only command leaves no file behind

@pytest.mark.parametrize("hide,cases", [(False, CASES), (True, EXTRA_CASES)], ids=["misuse", "missing-extras"])
def test_misuse_is_one_line_and_exit_2(tmp_path, hide, cases):
    with ThreadPoolExecutor(2) as pool:  # fresh interpreters, two at a time: this machine has two cores
        list(pool.map(lambda c: _check(c, tmp_path, hide), cases))

"""The DQN trade-timing agent end to end: a trained checkpoint trades in the paper bot (`trading-bot run --strategy
dqn_policy`) exactly as the strategy decides in research, a missing or damaged checkpoint stops the bot with a clear
error. (The grid's bytes in-process vs on dask worker processes: tests/soak_rl_bytes.py, in `make soak`.)"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trading.data.bundled import BundledSource
from trading.ml.rl.policy import DQNPolicy, QNetwork
from trading.ml.rl.train import train_policy
from trading.strategies.base import MarketData

TINY = dict(total_timesteps=600, learning_starts=200, buffer_size=1000, episode_length=100, target_update_interval=200, net_arch=(16, 16))
SYMBOLS = ["AAPL", "KO", "XOM"]
END, BARS = "2012-12-31", 60


def bot(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "trading-bot"
    return subprocess.run([str(exe) if exe.exists() else shutil.which("trading-bot"), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def train_close() -> pd.Series:
    bars = BundledSource(["sp20"]).bars(["KO"], start="2004-01-01", end="2009-12-31")
    return bars.set_index("ts_event")["close"].astype(float).rename_axis(None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, train_close) -> Path:
    return train_policy(train_close, seed=3, settings=TINY).save(tmp_path_factory.mktemp("rl") / "policy.json")


def test_the_paper_bot_trades_the_checkpoint_as_the_strategy_decides(checkpoint, tmp_path):
    strategy = DQNPolicy(checkpoint=str(checkpoint))
    data = MarketData.from_bars(BundledSource(["sp20"]).bars(SYMBOLS, end=END))
    target = strategy.target_weights(data).iloc[-(BARS + 1):]  # the bars the bot replays (decisions fill a bar later)
    changes = int((target.diff().iloc[1:-1] != 0).sum().sum()) + int((target.iloc[0] > 0).sum())
    assert changes > 0, "pick another training seed: this checkpoint never trades on the replayed bars"
    r = bot(["run", "--strategy", "dqn_policy", "--params", json.dumps({"checkpoint": str(checkpoint)}), "--broker", "paper",
             "--symbols", ",".join(SYMBOLS), "--bars", str(BARS), "--end", END, "--db", f"sqlite:///{tmp_path}/j.db",
             "--state-dir", str(tmp_path / "venues"), "--max-gross", "1.0", "--max-weight", "0.5"], tmp_path)
    assert r.returncode == 0, r.stderr
    fills = int(r.stdout.split("fills: ")[1].split(",")[0].split()[0])
    assert fills > 0
    pos = bot(["positions", "--name", "dqn_policy-paper", "--db", f"sqlite:///{tmp_path}/j.db", "--state-dir", str(tmp_path / "venues")], tmp_path)
    held = {} if pos.stdout.strip() == "(flat)" else {s: float(q) for s, q in (l.split() for l in pos.stdout.strip().splitlines())}
    # the bot holds exactly the symbols whose last filled target (decided at the second-to-last bar) is long
    wanted = {s for s in SYMBOLS if target[s].iloc[-2] > 0}
    assert {s for s, q in held.items() if q > 0} == wanted, (held, target.iloc[-3:])


def test_a_missing_checkpoint_stops_the_bot_with_a_clear_error(tmp_path):
    # damaged, foreign and poisoned checkpoints raise the same typed error in-process (nbs/ml/03_rl_policy.ipynb and below)
    path, message = tmp_path / "policy.json", "no such file"
    r = bot(["run", "--strategy", "dqn_policy", "--params", json.dumps({"checkpoint": str(path)}), "--broker", "paper",
             "--symbols", "KO", "--bars", "5", "--end", END, "--db", f"sqlite:///{tmp_path}/j.db", "--state-dir", str(tmp_path / "v")], tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").iterdir())  # refused before any venue state was written


def test_a_checkpoint_with_a_poisoned_layer_is_refused(checkpoint, tmp_path):
    doc = json.loads(checkpoint.read_text())
    doc["layers"][0]["weight"][0] = None  # NaN once read as float32
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(Exception, match="finite|damaged"):
        QNetwork.load(tmp_path / "p.json")

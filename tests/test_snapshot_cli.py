"""The `trading-data` command as a user runs it: a real process, real files."""
import json
import signal
import subprocess
import time

import pandas as pd

from conftest import BIN, run
from trading.data.snapshot import load_snapshot


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_snapshot_is_byte_identical_across_processes(small_snapshot, tmp_path):
    again = tmp_path / "data"
    run(BIN / "trading-data", "snapshot", "--datasets", "sp500,vix", "--out", again)
    assert _tree(again) == _tree(small_snapshot)
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["datasets"]["sp500"]["rows"] == 5031 and manifest["datasets"]["sp500"]["symbols"] == ["SPX"]
    assert "verified" in run(BIN / "trading-data", "verify", "--dir", again).stdout


def test_bad_requests_exit_2_and_write_nothing(tmp_path):
    for args in (["--datasets", "sp500,not_a_dataset"], ["--source", "alpaca"]):
        res = run(BIN / "trading-data", "snapshot", *args, "--out", tmp_path / "data", check=False)
        assert res.returncode == 2, res
        assert "error" in res.stderr and res.stderr.count("\n") == 1  # one clear line, no traceback
    assert list(tmp_path.iterdir()) == []


def test_verify_refuses_an_edited_file(small_snapshot, tmp_path):
    copy = tmp_path / "data"
    run("cp", "-r", small_snapshot, copy)
    f = copy / "bars" / "sp500.parquet"
    df = pd.read_parquet(f)
    df.loc[10, "close"] *= 1.01
    df.to_parquet(f)
    res = run(BIN / "trading-data", "verify", "--dir", copy, check=False)
    assert res.returncode == 2 and "snapshot_hash_mismatch" in res.stderr and "sp500.parquet" in res.stderr


def test_killed_mid_write_leaves_previous_snapshot_intact(small_snapshot, tmp_path):
    target = tmp_path / "data"
    run("cp", "-r", small_snapshot, target)
    before = _tree(target)
    # kill full-size snapshot writes at several points in their life; every outcome must be a complete snapshot
    for delay in (0.3, 0.8, 1.5):
        proc = subprocess.Popen([BIN / "trading-data", "snapshot", "--out", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        snap = load_snapshot(target)  # raises on any missing or half-written file
        for d in snap.datasets:
            snap.bars(d)
        if _tree(target) != before:  # the write finished before the kill: it must be the full snapshot
            assert len(snap.datasets) == 7
    # the next run cleans up whatever a killed run left beside the target
    run(BIN / "trading-data", "snapshot", "--datasets", "sp500,vix", "--out", target)
    assert _tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]

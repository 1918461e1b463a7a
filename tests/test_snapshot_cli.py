"""The `trading-data` command as a user runs it: a real process, real files."""
import json
import signal
import subprocess
import time

import pandas as pd

from conftest import BIN, ROOT, run
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


# --- the target folder: never delete what the tool did not write ------------------------------------------

def _one_line_exit_2(res):
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr


def _main_exit(main, argv, capsys):
    "Run a CLI's main() in-process (argparse errors exit); return (exit code, stderr)."
    try: code = main([str(a) for a in argv])
    except SystemExit as e: code = e.code
    return code, capsys.readouterr().err


def test_snapshot_refuses_a_folder_holding_files_it_did_not_write(small_snapshot, tmp_path, capsys):
    from trading.data.snapshot import main
    # a folder of the user's own files: refused (the real command, once), every byte left in place
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my research notes")
    (mine / "sub").mkdir()
    (mine / "sub" / "keep.parquet").write_bytes(b"PAR1 not ours")
    before = _tree(mine)
    res = run(BIN / "trading-data", "snapshot", "--datasets", "vix", "--no-macro", "--out", mine, check=False)
    _one_line_exit_2(res)
    assert "not a trading-data snapshot" in res.stderr and "notes.txt" in res.stderr
    assert _tree(mine) == before
    # a previous snapshot of ours into which someone dropped a file: refused too, snapshot and file intact
    prev = tmp_path / "prev"
    run("cp", "-r", small_snapshot, prev)
    (prev / "bars" / "extra.csv").write_text("a,b\n1,2\n")
    before = _tree(prev)
    code, err = _main_exit(main, ["snapshot", "--datasets", "vix", "--no-macro", "--out", prev], capsys)
    assert code == 2 and "bars/extra.csv" in err and err.count("\n") == 1, err
    assert _tree(prev) == before
    # an empty folder inside it, a symlink, a file where the folder should be
    (small := tmp_path / "withdir").mkdir()
    (small / "empty_sub").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "link").symlink_to(mine)
    for target in (small, tmp_path / "afile", tmp_path / "link"):
        code, err = _main_exit(main, ["snapshot", "--datasets", "vix", "--no-macro", "--out", target], capsys)
        assert code == 2 and err.count("\n") == 1, (target, err)
    assert (tmp_path / "afile").read_text() == "x" and (small / "empty_sub").is_dir()
    # an empty folder and a previous snapshot are fine (the latter is replaced whole)
    (tmp_path / "empty").mkdir()
    for _ in range(2):
        assert _main_exit(main, ["snapshot", "--datasets", "vix", "--no-macro", "--out", tmp_path / "empty"], capsys)[0] == 0
    assert load_snapshot(tmp_path / "empty").datasets == ["vix"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty", "link", "mine", "prev", "withdir"]  # no temporary folder left


def test_stale_build_folders_are_removed_only_when_ours(tmp_path):
    ours = tmp_path / ".data-tmp-killed"
    ours.mkdir()
    (ours / ".trading-data-build").touch()
    theirs = tmp_path / ".data-tmp-user"  # same name pattern, not ours
    theirs.mkdir()
    (theirs / "precious.txt").write_text("keep")
    run(BIN / "trading-data", "snapshot", "--datasets", "vix", "--no-macro", "--out", tmp_path / "data")
    assert not ours.exists() and (theirs / "precious.txt").read_text() == "keep"


# --- argument hygiene: one line, exit 2, nothing written ------------------------------------------------------

def test_bad_numeric_flags_end_in_one_line_exit_2(tmp_path, capsys):
    from trading.data.snapshot import main
    out = tmp_path / "data"
    _one_line_exit_2(run(BIN / "trading-data", "snapshot", "--source", "alpaca", "--symbols", "SPY", "--timeout", "nan", "--out", out, check=False))
    for flag, value in [("--max-retries", "-1"), ("--max-retries", "1e9"), ("--max-retries", "nan"), ("--max-retries", "99999999999"),
                        ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-1"), ("--timeout", "0"), ("--timeout", "1e9"),
                        ("--max-gap", "-1"), ("--max-gap", "1.5")]:
        code, err = _main_exit(main, ["snapshot", "--source", "alpaca", "--symbols", "SPY", flag, value, "--out", out], capsys)
        assert code == 2 and err.count("\n") == 1 and flag in err, (flag, value, err)
    assert not out.exists()


def test_trading_stage_accepts_stage_names_only(tmp_path, capsys, monkeypatch):
    from trading.pipeline import main
    victim = tmp_path / "x.ipynb"  # what ../../x would reach from nbs/pipeline if paths were accepted
    victim.write_text("{}")
    res = run(BIN / "trading-stage", "../../x", "--out", tmp_path / "out", check=False)
    _one_line_exit_2(res)
    assert "stage name" in res.stderr
    monkeypatch.chdir(ROOT)
    for stage in (str(tmp_path / "x"), "../pipeline/prepare", "prepare/../../x", "PREPARE", "pre pare", "x\n"):
        code, err = _main_exit(main, [stage, "--out", tmp_path / "out"], capsys)
        assert code == 2 and err.count("\n") == 1 and "stage name" in err, (stage, err)
    code, err = _main_exit(main, ["no_such_stage", "--out", tmp_path / "out"], capsys)
    assert code == 2 and "known stages are" in err and "prepare" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ipynb"]


# --- the manifest hashes the bytes that were parsed ------------------------------------------------------------

def test_manifest_hash_is_of_the_bytes_parsed_while_the_file_grows(tmp_path, monkeypatch):
    import hashlib
    import trading.data.files as files
    from trading.data.snapshot import write_snapshot
    f = tmp_path / "spy.csv"
    f.write_text("ts_event,symbol,close\n2024-01-02,SPY,471\n2024-01-03,SPY,472\n")
    parsed = f.read_bytes()
    real = files.read_bar_file

    def read_then_a_writer_appends(path, *a, **kw):
        df = real(path, *a, **kw)
        with open(path, "a") as fh: fh.write("2024-01-04,SPY,473\n")  # the exporter is still writing
        return df
    monkeypatch.setattr(files, "read_bar_file", read_then_a_writer_appends)
    m = write_snapshot(tmp_path / "data", source="csv", files=[str(f)])
    assert m["datasets"]["csv"]["rows"] == 2
    assert m["request"]["files"]["spy.csv"] == hashlib.sha256(parsed).hexdigest() != hashlib.sha256(f.read_bytes()).hexdigest()

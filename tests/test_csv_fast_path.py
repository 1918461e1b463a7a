"""The CSV importer's fast path (pyarrow's reader, arrow date parsing) gives exactly the frame the pandas text path
gives, refuses what it refuses, and the file is parsed once per FileSource."""
import gzip

import numpy as np
import pandas as pd
import pytest

import trading.data.files as files
from trading.core.errors import DataValidationError
from trading.data.files import FileSource, read_bar_file

GOOD = """ts_event,symbol,open,high,low,close,volume
2024-01-02,AAA,10,11,9,10.5,100
2024-01-03,AAA,10.5,11,10,10.25,200
2024-01-02,CCC,na,NULL,,5,
2024-01-03,CCC,NA,,None,5.5,n/a
2024-01-02,BBB,1.5,1.75,1.25,1.5,1e3
2024-01-03,BBB,1.5,1.75,1.25,1.625,0
"""
INTRADAY = """ts_event,symbol,close
2024-01-02T14:30:00Z,AAA,10.5
2024-01-02T14:31:00+00:00,AAA,10.75
"""


def _slow(monkeypatch):
    monkeypatch.setattr(files, "_read_csv_arrow", lambda data, gz: None)
    monkeypatch.setattr(files, "_plain_dates", lambda s: None)


@pytest.mark.parametrize("text,daily", [(GOOD, True), (GOOD, False), (INTRADAY, False)])
@pytest.mark.parametrize("gz", [False, True])
def test_fast_path_equals_the_pandas_path(tmp_path, monkeypatch, text, daily, gz):
    p = tmp_path / ("b.csv.gz" if gz else "b.csv")
    p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    fast = read_bar_file(p, daily=daily)
    assert isinstance(files._read_csv_arrow(p.read_bytes(), gz), pd.DataFrame)  # the fast path did take this file
    with monkeypatch.context() as m:
        _slow(m)
        slow = read_bar_file(p, daily=daily)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast.attrs["sha256"] == slow.attrs["sha256"]


@pytest.mark.parametrize("bad,rule", [("2021-02-30", "unparseable_timestamp"), ("2021-13-01", "unparseable_timestamp")])
def test_impossible_plain_dates_are_refused_not_rolled_over(tmp_path, bad, rule):
    p = tmp_path / "b.csv"
    p.write_text(f"ts_event,symbol,close\n2021-02-01,AAA,1\n{bad},AAA,2\n")
    with pytest.raises(DataValidationError) as e:
        read_bar_file(p)
    assert e.value.rule == rule and e.value.row == 2


def test_cells_the_reader_refuses_fall_back_to_the_named_row(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("ts_event,symbol,close\n2021-02-01,AAA,1\n2021-02-02,AAA, 2x\n")
    with pytest.raises(DataValidationError) as e:
        read_bar_file(p)
    assert e.value.rule == "wrong_dtype" and e.value.row == 2


def test_a_file_source_parses_each_file_once(tmp_path, monkeypatch):
    p = tmp_path / "b.csv"
    p.write_text(GOOD)
    calls = []
    real = files._read_table
    monkeypatch.setattr(files, "_read_table", lambda *a, **k: calls.append(a) or real(*a, **k))
    src = FileSource(p, calendar="XNYS")
    bars = src.bars()
    assert src.symbols() == ["AAA", "BBB", "CCC"] and len(bars) == 6
    src._frame(False)  # the other reading reuses the parsed table
    assert len(calls) == 1
    assert bars.loc[bars.symbol == "CCC", ["open", "high", "low", "volume"]].isna().all().all()

"""The crash harness's CI subset: 50 SIGKILLs at the named lifecycle points, 0 lost / 0 duplicated orders / 0 mismatches;
and 20 more on the network variant, where the bot trades through AlpacaBroker over HTTP with a fake Alpaca API.

`make soak` runs the same harness with 1,000 kills (tests/soak.py)."""
import os

import pytest

from soak import soak, soak_alpaca
from test_store import new_db  # noqa: F401 - fixture: scratch PostgreSQL databases
from trading.live.broker import CRASH_POINTS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks bots")
def test_fifty_kills_lose_and_double_nothing(tmp_path):
    t = soak(kills=int(os.environ.get("TRADING_SOAK_KILLS", "50")), seed=11, bars=40, work=tmp_path)
    assert t["failures"] == []
    assert t["kills"] >= 50
    assert (t["lost"], t["duplicates"], t["mismatches"]) == (0, 0, 0)
    # the kills landed all over the lifecycle, not only at the easy points
    assert set(t["by_point"]) >= set(CRASH_POINTS) - {"during_shutdown"}, t["by_point"]
    assert t["orders"] > 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks bots")
def test_twenty_kills_over_http_lose_and_double_nothing(tmp_path):
    "`trading-bot run --broker alpaca` killed at every lifecycle point, and by the venue in the middle of an order POST."
    t = soak_alpaca(kills=int(os.environ.get("TRADING_SOAK_NET_KILLS", "20")), seed=5, bars=10, work=tmp_path)
    assert t["failures"] == []
    assert t["kills"] >= 20
    assert (t["lost"], t["duplicates"], t["mismatches"]) == (0, 0, 0)
    assert set(t["by_point"]) == set(CRASH_POINTS), t["by_point"]  # "during_post" here: the server kills the bot mid-POST
    assert t["orders"] > 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks bots")
def test_kills_with_a_postgresql_journal(tmp_path, new_db, monkeypatch):  # noqa: F811
    "The same harness with the journal on PostgreSQL 15 (synchronous_commit=on): a kill mid-transaction is rolled back by the server."
    monkeypatch.setenv("TRADING_SOAK_DB_URL", new_db("postgresql"))
    t = soak(kills=int(os.environ.get("TRADING_SOAK_PG_KILLS", "20")), seed=3, bars=30, work=tmp_path)
    assert t["failures"] == []
    assert t["kills"] >= 20
    assert (t["lost"], t["duplicates"], t["mismatches"]) == (0, 0, 0)

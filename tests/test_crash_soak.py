"""The crash harness's CI subset: 50 SIGKILLs at the named lifecycle points, 0 lost / 0 duplicated orders / 0 mismatches.

`make soak` runs the same harness with 1,000 kills (tests/soak.py)."""
import os

import pytest

from soak import soak
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

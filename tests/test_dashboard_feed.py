"""The dashboard's journal feed (JournalTranslator) on PostgreSQL: a row whose id was handed out before a later row's, but committed after the
feed read that later row, still arrives (PostgreSQL makes rows visible in commit order, not id order)."""
from sqlalchemy import insert

from test_store import new_db  # noqa: F401 - fixture: scratch databases
from trading.apps.feed import JournalPollFeed
from trading.store.engine import make_engine, write
from trading.store.migrate import upgrade
from trading.store.records import append_event, start_run
from trading.store.schema import events


def test_late_commit_below_the_cursor_is_not_lost(new_db):  # noqa: F811
    eng = make_engine(new_db("postgresql"))
    upgrade(eng)
    with write(eng) as c:
        start_run(c, "bot", "b", {"broker": "paper"}, run_id="b", ts="2024-01-02T00:00:00+00:00")
    feed = JournalPollFeed(eng)
    feed.poll()
    slow = eng.connect()
    tx = slow.begin()
    slow.execute(insert(events).values(ts_event="2024-01-02T00:00:01+00:00", run_id="b", kind="trading_state", source="b",
                                       payload={"state": "halted", "reason": "slow writer"}))  # takes its id now, commits later
    with write(eng) as c:
        append_event(c, "trading_state", "b", {"state": "reducing", "reason": "fast writer"}, run_id="b", ts="2024-01-02T00:00:02+00:00")
    first = [e["data"]["state"] for e in feed.poll() if e["data"].get("kind") == "state"]
    assert first == ["reducing"]
    tx.commit()
    slow.close()
    late = feed.poll()
    assert [e["data"]["state"] for e in late if e["data"].get("kind") == "state"] == ["halted"]
    assert feed.poll() == []  # and only once
    seqs = [e["seq"] for e in late]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    eng.dispose()

"""A bot (writer) or a dashboard (reader) process on the store, for tests/test_store.py.

    python tests/store_worker.py writer URL N OUT.json   # N transactions: order + status + fill-free event + equity
    python tests/store_worker.py reader URL N OUT.json   # reads snapshots until it sees N orders (or 60 s pass)
    python tests/store_worker.py busy URL S OUT.json     # commits one event after another for S seconds, or until OUT.json.stop exists
"""
import datetime as dt
import json
import sys
import time
from decimal import Decimal

from sqlalchemy import text

from trading.core.orders import Order
from trading.store.engine import make_engine, read, write
from trading.store.records import append_event, record_equity, record_order, start_run, update_order


def writer(url: str, n: int) -> dict:
    eng = make_engine(url)
    t0 = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    with write(eng) as c:
        run = start_run(c, "bot", "concurrency-writer", dict(n=n), code="test", run_id="writer")
    worst = 0.0
    for i in range(n):
        ts = t0 + dt.timedelta(seconds=i)
        s = time.perf_counter()
        with write(eng) as c:  # one bot step: all of it or none of it is visible
            o = Order(symbol="AAA", side="buy", qty=Decimal(i + 1), ts_created=ts, client_order_id=f"w-{i}")
            record_order(c, o, run)
            update_order(c, o.client_order_id, "accepted", ts)
            record_equity(c, run, ts, Decimal("100000") + Decimal(i) / 100, Decimal("100000"))
            append_event(c, "step", "writer", dict(i=i), run_id=run, ts=ts)
        worst = max(worst, time.perf_counter() - s)
        time.sleep(0.005)  # a bot between two steps
    return dict(ok=True, n=n, worst_commit_s=round(worst, 4))


def reader(url: str, n: int) -> dict:
    eng = make_engine(url)
    seen, reads, torn, errors, worst = set(), 0, 0, [], 0.0
    long_snapshots, writes_during_long = 0, 0
    deadline = time.monotonic() + 60

    def counts(c):
        return tuple(c.execute(text(q)).scalar() for q in (
            "SELECT count(*) FROM orders", "SELECT count(*) FROM order_status_history",
            "SELECT count(*) FROM equity", "SELECT count(*) FROM events WHERE kind = 'step'"))

    while time.monotonic() < deadline:
        s = time.perf_counter()
        hold = reads % 10 == 5  # now and then a slow dashboard query: keep the snapshot open 0.3 s
        try:
            with read(eng) as c:
                orders, hist, eq, ev = counts(c)
                if hold and 0 < orders < n:
                    # keep this snapshot open and watch, through a second connection, for the writer's next commit:
                    # a reader that blocked the writer would never see it (bounded at 10 s)
                    long_snapshots += 1
                    stop = time.monotonic() + 10
                    while time.monotonic() < stop:
                        with read(eng) as c2:
                            if counts(c2)[0] > orders:
                                writes_during_long += 1
                                break
                        time.sleep(0.02)
                    if counts(c) != (orders, hist, eq, ev): torn += 1  # a snapshot must not move under the reader
        except Exception as e:  # a dashboard must never see an error because a bot is writing
            errors.append(f"{type(e).__name__}: {e}")
            continue
        worst = max(worst, time.perf_counter() - s)
        reads += 1
        if not (hist == 2 * orders and eq == orders and ev == orders): torn += 1  # a half-visible step
        seen.add(orders)
        if orders >= n: break
    return dict(reads=reads, distinct_counts=len(seen), final=max(seen) if seen else 0, torn=torn, errors=errors[:5],
                n_errors=len(errors), worst_read_s=round(worst, 4), long_snapshots=long_snapshots,
                writes_during_long=writes_during_long)


def busy(url: str, seconds: int, out: str) -> dict:
    "A busy writer: small commits back to back (a bot logging, a feed recording), each acknowledged by its commit returning."
    import os
    eng = make_engine(url)
    stop, deadline, n = out + ".stop", time.monotonic() + seconds, 0
    while time.monotonic() < deadline and not os.path.exists(stop):
        with write(eng) as c:
            append_event(c, "busy", "writer", dict(i=n, blob="x" * 200))
        n += 1
        if n == 20: open(out + ".started", "w").close()  # the test starts its backup/restore once commits flow
        time.sleep(0.001)
    eng.dispose()
    return dict(ok=True, commits=n)


if __name__ == "__main__":
    mode, url, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    res = busy(url, n, out) if mode == "busy" else (writer if mode == "writer" else reader)(url, n)
    with open(out, "w") as f: json.dump(res, f)

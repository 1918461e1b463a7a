"""WebSocket streams: a client that is cut off again and again misses nothing a running paper bot journals;
tokens are refused as an attacker would try them; a client that stops reading is dropped with a reason while
the publisher (the bot) never waits; concurrent publishers keep each topic's seq gap-free."""
import asyncio
import json
import secrets
import threading
import time

import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from monitor_bot import PaperBotThread
from trading.monitor.stream import SLOW_CONSUMER, StoreFeed, StreamHub, StreamServer, ThreadedStreamClient
from trading.store.engine import read
from trading.store.schema import equity, fills, order_status_history, orders

TOKEN = secrets.token_urlsafe(24)


def _kick_all(srv, code=1012, reason="server restart"):
    "Close every client's connection from the server side (what a network blip or a restart does)."
    async def close_all():
        await asyncio.gather(*(c.ws.close(code, reason) for c in list(srv.clients)))
    asyncio.run_coroutine_threadsafe(close_all(), srv._loop).result(5)


def test_a_reconnecting_client_misses_nothing_the_bot_journals(tmp_path):
    bot = PaperBotThread(tmp_path, bar_seconds=0.02)
    bot.data = bot.data.until(bot.data.index[80])  # 50 bars after warm-up
    hub = StreamHub(buffer=100_000)
    srv = StreamServer(hub, TOKEN).start()
    feed = StoreFeed(bot.om.engine, hub, from_start=True, interval=0.05)
    received = {t: [] for t in ("portfolio", "orders", "fills")}
    client = ThreadedStreamClient(srv.url, TOKEN, topics=list(received), controls=False,
                                  on_event=lambda e: received[e["topic"]].append(e)).start()
    bot.start(); feed.start()
    kicks = 0
    while bot._thread.is_alive():  # cut the client off every 0.2 s while the bot trades
        time.sleep(0.2)
        if srv.clients: _kick_all(srv); kicks += 1
    assert bot.error is None
    time.sleep(0.3); feed.poll()  # the last rows
    last = hub.last_seq()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(len(received[t]) < last[t] for t in received): time.sleep(0.1)
    client.stop(); feed.stop(); srv.stop(); bot.exporter.stop()
    assert kicks >= 3 and client.client.connections >= 4, (kicks, client.client.connections)
    for t, evs in received.items():
        assert [e["seq"] for e in evs] == list(range(1, last[t] + 1)), f"{t}: missing or duplicated events"
    # and the stream carries what the journal holds, no more, no less
    with read(bot.om.engine) as conn:
        fill_ids = [r.fill_id for r in conn.execute(select(fills.c.fill_id).order_by(fills.c.id))]
        n_status = conn.execute(select(order_status_history.c.id).join(orders, orders.c.id == order_status_history.c.order_id)).all()
        n_marks = conn.execute(select(equity.c.ts_event)).all()
    assert [e["data"]["fill_id"] for e in received["fills"]] == fill_ids and len(fill_ids) > 5
    assert len(received["orders"]) == len(n_status) and len(received["portfolio"]) == len(n_marks)
    e = received["fills"][0]
    assert set(e) == {"seq", "topic", "ts", "bot", "data"} and e["bot"] == "e2e" and e["ts"].endswith("+00:00")


async def _hello(url, hello_frame):
    "Send one hello; return the close code and reason the server answered with (or the first frame)."
    async with connect(url, max_size=2**20) as ws:
        if hello_frame is not None: await ws.send(hello_frame)
        try:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))
        except ConnectionClosed as e:
            return (e.rcvd.code, e.rcvd.reason)


@pytest.mark.parametrize("frame", [
    None,  # no hello at all (times out)
    json.dumps({"topics": ["orders"]}),  # no token
    json.dumps({"token": TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")}),  # one character off
    json.dumps({"token": TOKEN + "x"}),  # a prefix match is not a match
    json.dumps({"token": 12345}), json.dumps({"token": [TOKEN]}), json.dumps({"token": None}),
    json.dumps(TOKEN), "not json {", json.dumps([{"token": TOKEN}]),
    json.dumps({"token": TOKEN, "topics": ["../etc"]}), json.dumps({"token": TOKEN, "since": {"orders": -1}}),
    json.dumps({"token": TOKEN, "since": {"orders": "5"}}), json.dumps({"token": TOKEN, "topics": []}),
], ids=["no-hello", "no-token", "one-char-off", "prefix", "number", "list", "null", "bare-string", "not-json", "array",
        "bad-topic", "negative-since", "string-since", "no-topics"])  # named, not by value: the random token must not reach test ids (xdist workers collect the same names)
def test_bad_hellos_are_refused_without_echoing_the_token(frame):
    hub = StreamHub()
    srv = StreamServer(hub, TOKEN, hello_timeout=1.0).start()
    try:
        hub.publish("orders", {"secret_order": 1}, bot="b")
        code, reason = asyncio.run(_hello(srv.url, frame))
        assert code == 4401 and TOKEN not in reason and TOKEN[:8] not in reason, (code, reason)
        assert not srv.clients
    finally:
        srv.stop()


def test_an_oversized_hello_is_refused():
    srv = StreamServer(StreamHub(), TOKEN).start()
    try:
        code, _ = asyncio.run(_hello(srv.url, json.dumps({"token": TOKEN, "pad": "x" * 200_000})))
        assert code == 1009  # message too big: closed before it is parsed
    finally:
        srv.stop()


def test_the_right_token_gets_a_welcome_and_one_event_per_frame_without_batch():
    hub = StreamHub()
    srv = StreamServer(hub, TOKEN).start()
    try:
        for i in range(3): hub.publish("news", {"headline": f"h{i}"})
        async def go():
            async with connect(srv.url) as ws:
                await ws.send(json.dumps({"token": TOKEN, "topics": ["news"]}))
                return [json.loads(await ws.recv()) for _ in range(4)]
        frames = asyncio.run(go())
        assert frames[0]["control"] == "welcome" and [f["seq"] for f in frames[1:]] == [1, 2, 3]
        assert all(isinstance(f, dict) and f["bot"] is None for f in frames[1:])
    finally:
        srv.stop()


@pytest.mark.xfail(strict=False, reason="open defect (issue 17): on a quiet machine the slow client is never dropped "
                   "(dropped_slow == 0: loopback socket buffers absorb the 20 MB) and then receives nothing for 10 s")
def test_a_slow_client_is_dropped_with_a_reason_and_never_blocks_the_publisher():
    hub = StreamHub(buffer=10_000)  # a fast client that a burst drops too resumes from the buffer
    srv = StreamServer(hub, TOKEN, queue_size=500).start()
    fast = ThreadedStreamClient(srv.url, TOKEN, topics=["fills"], controls=False).start()
    try:
        async def slow():
            async with connect(srv.url, max_queue=1) as ws:  # reads nothing after the hello
                await ws.send(json.dumps({"token": TOKEN, "topics": ["fills"], "batch": False}))
                await asyncio.sleep(0.5)
                publish_done.wait(60)
                try:
                    while True: await asyncio.wait_for(ws.recv(), 10)
                except ConnectionClosed as e:
                    return e.rcvd.code, e.rcvd.reason
        publish_done = threading.Event()
        res = {}
        def runner():
            try: res.update(r=asyncio.run(slow()))
            except BaseException as e: res.update(err=repr(e))
        th = threading.Thread(target=runner); th.start()
        while len(srv.clients) < 2: time.sleep(0.05)
        payload = "x" * 4000
        for i in range(5_000):  # 20 MB the slow client never reads; publish returns at once (queues are bounded)
            hub.publish("fills", {"i": i, "pad": payload}, bot="b")
            if i % 100 == 0: time.sleep(0.005)  # a bot's pace, not one burst
        publish_done.set()
        th.join(60)
        assert "r" in res, (res, srv.dropped_slow, len(srv.clients))
        code, reason = res["r"]
        assert code == SLOW_CONSUMER and "slow consumer" in reason, res
        assert srv.dropped_slow >= 1
        got = [fast.get(timeout=20)["seq"] for _ in range(5_000)]  # the client that reads lost nothing (resuming if it was dropped too)
        assert got == list(range(1, 5_001))
    finally:
        fast.stop(); srv.stop()


def test_concurrent_publishers_keep_each_topic_gap_free():
    hub = StreamHub(buffer=50_000)
    srv = StreamServer(hub, TOKEN).start()
    c = ThreadedStreamClient(srv.url, TOKEN, topics=["orders", "fills"], controls=False).start()
    time.sleep(0.3)
    try:
        def pub(topic, k):
            for i in range(2_000): hub.publish(topic, {"k": k, "i": i}, bot=f"b{k}")
        ths = [threading.Thread(target=pub, args=(t, k)) for k, t in enumerate(["orders", "orders", "fills", "fills"])]
        for t in ths: t.start()
        for t in ths: t.join()
        seen = {"orders": [], "fills": []}
        for _ in range(8_000):
            e = c.get(timeout=20); seen[e["topic"]].append(e)
        for t, evs in seen.items():
            assert [e["seq"] for e in evs] == list(range(1, 4_001)), t
            for k in {e["data"]["k"] for e in evs}:  # each publisher's own events stay in its order
                mine = [e["data"]["i"] for e in evs if e["data"]["k"] == k]
                assert mine == sorted(mine) and len(mine) == 2_000
    finally:
        c.stop(); srv.stop()


def test_a_restarted_server_resets_the_client():
    hub1 = StreamHub()
    srv = StreamServer(hub1, TOKEN).start()
    for i in range(5): hub1.publish("orders", {"i": i}, bot="b")
    c = ThreadedStreamClient(srv.url, TOKEN, topics=["orders"]).start()
    assert c.get(timeout=5)["control"] == "welcome"
    assert [c.get(timeout=5)["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
    since, epoch = c.last, c.epoch
    c.stop(); port = srv.port; srv.stop()
    hub2 = StreamHub()
    srv2 = StreamServer(hub2, TOKEN, port=port).start()
    try:
        for i in range(2): hub2.publish("orders", {"i": 100 + i}, bot="b")
        c2 = ThreadedStreamClient(srv2.url, TOKEN, topics=["orders"], since=since, epoch=epoch).start()
        w = c2.get(timeout=5)
        assert w["control"] == "welcome" and w["reset"] is True
        assert [c2.get(timeout=5)["data"]["i"] for _ in range(2)] == [100, 101]  # not skipped as "already seen"
        c2.stop()
    finally:
        srv2.stop()

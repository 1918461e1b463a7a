"""WebSocket streams: a client that is cut off again and again misses nothing a running paper bot journals;
tokens are refused as an attacker would try them; a client that stops reading (a real full socket: a tiny receive
buffer) is dropped with a reason while the publisher (the bot) never waits and a fast client misses nothing; a
server with such a client still stops; concurrent publishers keep each topic's seq gap-free."""
import asyncio
import json
import secrets
import socket
import threading
import time

import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.uri import parse_uri

from monitor_bot import PaperBotThread
from trading.monitor.stream import SLOW_CONSUMER, JournalPublisher, StreamHub, StreamServer, ThreadedStreamClient
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
    feed = JournalPublisher(bot.om.engine, hub, from_start=True, interval=0.05)
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
    assert len([e for e in received["orders"] if e["data"].get("by") != "risk"]) == len(n_status)
    assert len([e for e in received["portfolio"] if e["data"]["kind"] == "equity"]) == len(n_marks)
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


class RawSlowClient:
    "A WebSocket client on a plain socket with a tiny receive buffer, which reads nothing until told to (websockets' sans-I/O protocol frames it)."
    def __init__(self, url: str, token: str, topics: list[str], rcvbuf: int = 4096):
        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # set before connect: the window the server sees stays small
        host, port = url.split("//")[1].split(":")
        self.sock.connect((host, int(port)))
        self.sock.settimeout(10)
        self.proto.send_request(self.proto.connect())
        self._flush()
        while self.proto.state.name == "CONNECTING" and self.proto.handshake_exc is None:
            self.proto.receive_data(self.sock.recv(65536))
        assert self.proto.handshake_exc is None, self.proto.handshake_exc
        self.proto.events_received()
        self.proto.send_text(json.dumps({"token": token, "topics": topics, "batch": False}).encode())
        self._flush()

    def _flush(self):
        for data in self.proto.data_to_send():
            if data: self.sock.sendall(data)

    def read_until_closed(self, timeout: float = 20) -> tuple[int, int | None, str]:
        "Read everything now: (text frames received, close code or None, close reason or what ended the socket)."
        self.sock.settimeout(timeout)
        frames = 0
        while True:
            try: data = self.sock.recv(1 << 20)
            except (TimeoutError, ConnectionResetError) as e: return frames, None, type(e).__name__
            if data: self.proto.receive_data(data)
            else: self.proto.receive_eof()
            frames += sum(ev.opcode.name == "TEXT" for ev in self.proto.events_received())
            self._flush()  # answers the close frame, completing the handshake
            if self.proto.close_rcvd is not None: return frames, self.proto.close_rcvd.code, self.proto.close_rcvd.reason
            if not data: return frames, None, "eof"

    def close(self): self.sock.close()


def _until(cond, timeout: float = 30, what: str = "condition"):
    "Wait for `cond()` (a generous deadline that fails the test instead of hanging it)."
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_slow_client_is_dropped_with_a_reason_and_never_blocks_the_publisher():
    queue_size, n, pad = 200, 2_500, "x" * 4000  # 10 MB: more than the slow client's window, the server's socket buffer and its queue hold
    hub = StreamHub(buffer=n)
    srv = StreamServer(hub, TOKEN, queue_size=queue_size, close_timeout=10.0).start()
    fast = ThreadedStreamClient(srv.url, TOKEN, topics=["fills"], controls=False).start()
    slow = RawSlowClient(srv.url, TOKEN, ["fills"])  # reads nothing until it was dropped, then everything
    try:
        _until(lambda: len(srv.clients) == 2 and fast.client.connections == 1, what="both clients")
        peak_events = peak_bytes = 0
        published = threading.Event()
        def bot():  # the publisher: a bot's pace, not one burst
            for i in range(n):
                hub.publish("fills", {"i": i, "pad": pad}, bot="b")
                if i % 50 == 0: time.sleep(0.01)
            published.set()
        th = threading.Thread(target=bot); th.start()
        while not published.is_set():  # what the server holds per client stays bounded all along
            for events, unsent in srv.backlog(): peak_events, peak_bytes = max(peak_events, events), max(peak_bytes, unsent)
            time.sleep(0.005)
        th.join(60); assert not th.is_alive(), "the publisher blocked"
        _until(lambda: srv.dropped_slow >= 1, what="the slow client dropped")
        assert len(srv.clients) == 1  # only the fast one is served (and queued for) now, while the slow one has read nothing
        assert peak_events <= queue_size and peak_bytes <= 2**15 + 2 * len(pad), (peak_events, peak_bytes)  # queue_size events + write_limit bytes
        frames, code, reason = slow.read_until_closed()
        assert code == SLOW_CONSUMER and "slow consumer" in reason and "since" in reason, (frames, code, reason)
        assert 0 < frames < n  # what the socket held, then the close frame: the rest it must fetch with `since`
        got = [fast.get(timeout=20)["seq"] for _ in range(n)]  # the client that reads lost nothing, in order, on one connection
        assert got == list(range(1, n + 1)) and fast.client.connections == 1
        assert srv.dropped_slow == 1
    finally:
        fast.stop(); slow.close(); srv.stop()


def test_a_dropped_client_that_never_reads_again_is_cut_off():
    "Its close frame cannot get through (websockets' close would wait forever): after close_timeout the connection is aborted."
    hub = StreamHub(buffer=100)
    srv = StreamServer(hub, TOKEN, queue_size=50, close_timeout=1.0).start()
    stuck = RawSlowClient(srv.url, TOKEN, ["fills"])
    try:
        _until(lambda: len(srv.clients) == 1, what="the client")
        pad, i = "x" * 4000, 0
        while not srv.dropped_slow:
            hub.publish("fills", {"i": i, "pad": pad}, bot="b"); i += 1
            if i % 50 == 0: time.sleep(0.01)
            assert i < 20_000, "the client was never dropped"
        assert not srv.clients
        _until(lambda: srv.aborted == 1 and not srv._closing, timeout=srv.close_timeout + 20, what="the close to give up")
        frames, code, how = stuck.read_until_closed()
        assert code is None and how in ("ConnectionResetError", "eof"), (frames, code, how)  # cut off: no close frame got through
    finally:
        stuck.close(); srv.stop()


def test_stop_returns_promptly_while_a_client_has_stopped_reading():
    "websockets' close waits for a peer that never reads (the close frame queues behind unread data): stop() must not."
    hub = StreamHub(buffer=100)
    srv = StreamServer(hub, TOKEN, queue_size=100_000, close_timeout=1.0).start()  # never dropped: the queue holds it all
    stuck = RawSlowClient(srv.url, TOKEN, ["fills"])
    try:
        _until(lambda: len(srv.clients) == 1, what="the client")
        pad, i = "x" * 4000, 0
        while not any(unsent >= 2**15 for _, unsent in srv.backlog()):  # until the server's writer is stuck in send()
            hub.publish("fills", {"i": i, "pad": pad}, bot="b"); i += 1
            if i % 50 == 0: time.sleep(0.01)
            assert i < 20_000, "the socket never filled"
        stopper = threading.Thread(target=srv.stop); stopper.start()
        stopper.join(30)
        assert not stopper.is_alive() and not srv._thread.is_alive(), "stop() is stuck behind a blocked send"
        assert srv.aborted >= 1
        StreamServer(hub, TOKEN, port=srv.port).start().stop()  # and the port is free for a restarted server
    finally:
        stuck.close(); srv.stop()


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


def test_the_stream_command_serves_a_stores_journal_and_refuses_to_run_without_a_token(tmp_path):
    "`python -m trading.monitor.stream`: what the dashboard subscribes to (TRADING_STREAM_URL) when bots run elsewhere."
    import os, re, signal, subprocess, sys
    from trading.store.engine import make_engine, write
    from trading.store.migrate import upgrade
    from trading.store.records import append_event, start_run
    db = f"sqlite:///{tmp_path / 'j.db'}"
    eng = make_engine(db)
    upgrade(eng)
    with write(eng) as c:
        start_run(c, "bot", "b", {"broker": "paper"}, run_id="b", ts="2024-01-02T00:00:00+00:00")
        append_event(c, "trading_state", "b", {"state": "halted", "reason": "test"}, run_id="b", ts="2024-01-02T00:00:01+00:00")
    cmd = [sys.executable, "-m", "trading.monitor.stream", "--db", db, "--port", "0"]
    env = {k: v for k, v in os.environ.items() if k != "TRADING_STREAM_TOKEN"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "TRADING_STREAM_TOKEN" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    proc = subprocess.Popen(cmd, env={**env, "TRADING_STREAM_TOKEN": TOKEN}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"ws://127\.0\.0\.1:\d+", line).group(0)
        assert TOKEN not in line
        c = ThreadedStreamClient(url, TOKEN, topics=["portfolio"], controls=False).start()
        got = [{k: v for k, v in c.get(timeout=20)["data"].items() if k != "journal_id"} for _ in range(2)]
        c.stop()
        assert {"kind": "state", "state": "halted", "reason": "test"} in got and any(d["kind"] == "bot" and d["broker"] == "paper" for d in got)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        eng.dispose()

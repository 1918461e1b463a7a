"""Load of the WebSocket stream: N clients x R events/s on loopback for S seconds; loss and delivery latency.

The server (StreamServer over a StreamHub, publishing from a separate thread at a fixed rate, as a bot does) runs
in this process; the clients run in a child process (one asyncio loop, N connections), so the two compete for the
machine's cores the way a dashboard and a bot do. Each event carries its publish time (time.time(), one clock on
one machine); a client records receive - publish for every event. Loss: every client must see seq 1..total of
its topic with no gap and no duplicate.

    python bench/stream_load.py                       # 50 clients x 1,000 events/s x 10 s
    python bench/stream_load.py --clients 10 --rate 200 --seconds 3
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from trading.monitor.stream import StreamHub, StreamServer  # noqa: E402


def clients_proc(url, token, n, total, ready, out, batch):
    async def one(i, lat, results):
        from websockets.asyncio.client import connect
        seqs = []
        async with connect(url, max_size=2**22) as ws:
            await ws.send(json.dumps({"token": token, "topics": ["fills"], "batch": batch}))
            ready.put(i)
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                for m in frame if isinstance(frame, list) else (frame,):
                    if "control" in m: continue
                    seqs.append(m["seq"])
                    lat.append(now - m["data"]["t_pub"])
                if seqs and seqs[-1] >= total: break
        results[i] = seqs

    async def main():
        lat, results = [], {}
        await asyncio.gather(*(one(i, lat, results) for i in range(n)))
        return lat, results

    lat, results = asyncio.run(main())
    lost = sum(total - len(set(s)) for s in results.values())
    ordered = all(s == list(range(1, total + 1)) for s in results.values())
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.put({"lat": np.asarray(lat), "lost": lost, "ordered": ordered, "clients": len(results), "cpu": ru.ru_utime + ru.ru_stime})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rate", type=int, default=1000, help="events per second published")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--no-batch", action="store_true", help="one event per frame (the clients do not ask for batches)")
    a = p.parse_args(argv)
    total = int(a.rate * a.seconds)
    token = secrets.token_urlsafe(24)
    hub = StreamHub(buffer=total + 10)
    srv = StreamServer(hub, token, queue_size=max(10_000, total)).start()
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=clients_proc, args=(srv.url, token, a.clients, total, ready, out, not a.no_batch))
    proc.start()
    for _ in range(a.clients): ready.get(timeout=60)
    time.sleep(0.5)  # every hello processed

    def publisher():
        t0 = time.perf_counter()
        for i in range(total):
            due = t0 + i / a.rate
            if (d := due - time.perf_counter()) > 0: time.sleep(d)
            hub.publish("fills", {"i": i, "t_pub": time.time(), "symbol": "AAA", "qty": "1", "price": "100.00"}, bot="bench")
        return time.perf_counter() - t0

    import resource
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    th = threading.Thread(target=publisher); th.start(); th.join()
    pub_s = time.perf_counter() - t0
    res = out.get(timeout=600)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    proc.join(30); srv.stop()
    lat = res["lat"] * 1e3
    print(f"stream load ({'one event per frame' if a.no_batch else 'batched frames'}): {res['clients']} clients x {a.rate:,} events/s x {a.seconds:g} s = {total:,} events published, "
          f"{len(lat):,} deliveries")
    print(f"  publish took {pub_s:.2f} s (target {a.seconds:g} s: {a.seconds / pub_s:.2f}x of the asked rate); all delivered after {wall:.2f} s")
    print(f"  lost {res['lost']} (seq gaps or missing), in order and gap-free: {res['ordered']}; slow clients dropped: {srv.dropped_slow}")
    n = max(len(lat), 1)
    print(f"  CPU: server + publisher {server_cpu:.2f} s ({server_cpu / n * 1e6:.1f} us per delivery), clients {res['cpu']:.2f} s "
          f"({res['cpu'] / n * 1e6:.1f} us per delivery); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  delivery latency ms: p50 {np.percentile(lat, 50):.1f}  p90 {np.percentile(lat, 90):.1f}  p99 {np.percentile(lat, 99):.1f}  max {lat.max():.1f}")
    return 0 if res["lost"] == 0 and res["ordered"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

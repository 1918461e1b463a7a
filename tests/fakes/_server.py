"""A scripted HTTP server on 127.0.0.1 (port 0): routes answer JSON; faults (status, malformed or truncated body, delay, a byte
trickle, a connection reset) are queued per path; `rate_limit = (n, window_s)` answers 429 beyond n requests per window."""
from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    path: str  # substring of the request path it applies to
    status: int = 500  # HTTP status to answer with
    body: bytes = b'{"message": "internal server error"}'
    delay: float = 0.0  # seconds to sleep before answering (a hang when longer than the client timeout)
    times: int = 1  # how many matching requests it answers
    headers: dict | None = None
    after: bool = False  # route the request first (it takes effect), then answer with this fault
    method: str | None = None  # only requests of this HTTP method (None: any)
    trickle: float = 0.0  # seconds between body bytes (a slow trickle: each read is quick, the whole answer is not)
    reset: bool = False  # abort the connection (TCP RST) instead of answering
    truncate: int | None = None  # send only this many body bytes, then close (Content-Length says more)


class LoopbackServer:
    """Base class: subclasses implement `route(path, query, headers) -> (status, json-able body)` for GETs, or
    `route_request(method, path, query, headers, body)` for every method (body: the raw request bytes).
    A fault with `after=True` lets the request take effect and then answers with the fault (accept-then-time-out)."""

    def __init__(self):
        self.requests: list[tuple[str, dict, dict]] = []  # (path, query, headers) of every request, in order
        self.log: list[tuple[str, str, dict, bytes]] = []  # (method, path, query, body) of every request, in order
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.rate_limit: tuple[int, float] | None = None  # (requests, window seconds): more in one window answer 429
        self.throttled = 0  # 429s answered by the rate limit
        self.limit_headers = False  # send X-RateLimit-Limit/Remaining/Reset with every answer (when rate_limit is set)
        self._window: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer._handle(self)

            def do_POST(self):
                outer._handle(self)

            def do_DELETE(self):
                outer._handle(self)

            def do_PATCH(self):
                outer._handle(self)

            def log_message(self, *args):  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def fault(self, path: str, status: int = 500, body: bytes | str | None = None, delay: float = 0.0, times: int = 1, headers: dict | None = None,
              after: bool = False, method: str | None = None, trickle: float = 0.0, reset: bool = False, truncate: int | None = None):
        "Answer the next `times` requests whose path contains `path` (and method, if given) with this status/body (after `delay` seconds)."
        if isinstance(body, str):
            body = body.encode()
        self._faults.append(Fault(path, status, body if body is not None else Fault.body, delay, times, headers, after, method, trickle, reset, truncate))
        return self

    def _over_limit(self) -> bool:
        "True when this request exceeds `rate_limit` (a sliding window, like the venue's published limit)."
        if self.rate_limit is None: return False
        n, window = self.rate_limit
        now = time.monotonic()
        self._window = [t for t in self._window if now - t < window]
        if len(self._window) >= n: return True
        self._window.append(now)
        return False

    def _limit_headers(self) -> dict:
        "Alpaca's `X-RateLimit-*` headers: the limit, what is left in the window, when the oldest request leaves it (epoch s)."
        if self.rate_limit is None or not self.limit_headers: return {}
        n, window = self.rate_limit
        reset = time.time() + (self._window[0] + window - time.monotonic() if self._window else 0)
        return {"X-RateLimit-Limit": str(n), "X-RateLimit-Remaining": str(max(n - len(self._window), 0)), "X-RateLimit-Reset": f"{reset:.3f}"}

    def reset(self) -> None:
        "Forget recorded requests and pending faults (between tests sharing one server)."
        self.requests.clear()
        self.log.clear()
        self._faults.clear()
        self._window.clear()
        self.throttled = 0

    def hits(self, path: str) -> list[dict]:
        "Query dicts of the requests whose path contains `path`."
        return [q for p, q, _ in self.requests if path in p]

    def route(self, path: str, query: dict, headers: dict):
        raise NotImplementedError

    def route_request(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        "Every request; the default sends GETs to `route` and refuses other methods."
        if method != "GET":
            return 405, {"message": f"{method} not allowed"}
        return self.route(path, query, headers)

    def _send_fault(self, h, f: Fault):
        if f.reset:  # RST: the client sees "connection reset by peer"
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        if not (f.trickle or f.truncate is not None): return self._send(h, f.status, f.body, f.headers)
        h.send_response(f.status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(f.body)))
        for k, v in (f.headers or {}).items(): h.send_header(k, v)
        h.end_headers()
        body = f.body if f.truncate is None else f.body[: f.truncate]
        try:
            for i in range(len(body)):
                h.wfile.write(body[i:i + 1]); h.wfile.flush()
                if f.trickle: time.sleep(f.trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

    def _send(self, h, status: int, body: bytes, headers: dict | None = None):
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        try:
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def _handle(self, h):
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = dict(h.headers)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((parts.path, query, headers))
            self.log.append((h.command, parts.path, query, raw))
            fault = next((f for f in self._faults if f.path in parts.path and f.times > 0 and f.method in (None, h.command)), None)
            if fault:
                fault.times -= 1
            elif self._over_limit():
                self.throttled += 1
                fault = Fault(parts.path, 429, b'{"code": 42910000, "message": "rate limit exceeded"}', headers={"Retry-After": "1", **self._limit_headers()})
            limit_headers = self._limit_headers()
        if fault and not fault.after:
            if fault.delay:
                time.sleep(fault.delay)
            return self._send_fault(h, fault)
        try:
            status, body = self.route_request(h.command, parts.path, query, headers, raw)
        except KeyError as e:
            status, body = 404, {"message": f"not found: {e}"}
        if fault:  # the request took effect; the answer is lost or delayed
            if fault.delay:
                time.sleep(fault.delay)
            return self._send_fault(h, fault)
        headers_out = None
        if isinstance(body, tuple):  # (body, headers)
            body, headers_out = body
        if limit_headers: headers_out = {**limit_headers, **(headers_out or {})}
        self._send(h, status, json.dumps(body).encode(), headers_out)

"""Alpaca Trading API v2 on loopback, backed by a `PaperVenue`, in the wire format alpaca-py's `TradingClient` sends and parses.

REST: `POST/GET /v2/orders`, `GET /v2/orders/{id}`, `GET /v2/orders:by_client_order_id`, `DELETE /v2/orders/{id}` (204),
`GET /v2/positions`, `GET /v2/account`, `GET /v2/assets/{symbol}`, `GET /v2/account/activities/FILL` (paged by
`page_token` = the last activity id). Errors as the real API answers them: `{"code": int, "message": str}` with 401
(keys), 403 (buying power, short), 404, 422 (duplicate client id, unknown asset, bad qty/time in force).
Numbers go out as strings, timestamps as RFC 3339 UTC. Crypto positions use Alpaca's slash-less symbol (`BTCUSD`).

Stream: `TradingStream`'s protocol on `ws://127.0.0.1:{port}/stream` (authenticate -> authorization,
listen -> listening, then `{"stream": "trade_updates", "data": {event, execution_id, order, timestamp, price, qty,
position_qty}}` as binary JSON frames), with fault switches `duplicate_next`, `hold_next` (reorder: the held event
goes out after the next one), `drop_next` and `disconnect()`.

Crash-harness switches (tests/soak.py --venue alpaca): `wall_clock=False` leaves the venue's clock to whoever calls
`venue.on_bar` (a simulated clock), and `kill_after_post = [pid, n]` SIGKILLs process `pid` when the n-th order POST
has taken effect at the venue, before the answer is written: a client killed truly during its POST.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import threading
import uuid
from decimal import Decimal, InvalidOperation

from trading.core.errors import OrderRejectedError
from trading.core.orders import Order, OrderStatus
from trading.live.broker import DuplicateClientOrderIdError, MarketRules
from trading.live.paper import PaperVenue

from ._server import LoopbackServer

NS = uuid.UUID("6f1d8a52-3b0c-4c59-9a9e-1c2d3e4f5a6b")
ACCOUNT_ID = str(uuid.uuid5(NS, "account"))
_STATUS = {OrderStatus.NEW: "new", OrderStatus.ACCEPTED: "new", OrderStatus.PARTIALLY_FILLED: "partially_filled",
           OrderStatus.FILLED: "filled", OrderStatus.CANCELED: "canceled", OrderStatus.REJECTED: "rejected", OrderStatus.EXPIRED: "expired"}


def rfc3339(ts: dt.datetime) -> str:
    return ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def _err(status: int, code: int, message: str, **extra):
    return status, {"code": code, "message": message, **extra}


class AlpacaTradingServer(LoopbackServer):
    def __init__(self, venue: PaperVenue | None = None, # the book behind the API; default: $100k cash, market orders fill on arrival
                 keys: tuple[str, str] | None = None, # (key id, secret) every request must carry; None accepts anything
                 wall_clock: bool = True, # move the venue's clock to now on every request; False: the caller drives it (on_bar)
                ):
        super().__init__()
        self.venue = venue or PaperVenue(cash=100_000, immediate=True)
        self.keys, self.wall_clock = keys, wall_clock
        self.kill_after_post: list | None = None  # [pid, n]: SIGKILL pid once the n-th order POST took effect (crash harness)
        self.assets: dict[str, dict] = {}  # symbol as traded ("AAPL", "BTC/USD", OCC option) -> Alpaca asset JSON
        self.ids: dict[str, str] = {}  # client_order_id -> Alpaca order id (uuid)
        self.cids: dict[str, str] = {}  # Alpaca order id -> client_order_id
        self.wire: dict[str, dict] = {}  # client_order_id -> what was sent (type, time_in_force, created_at)
        self.venue.listeners.append(self._on_event)
        # stream state
        self.stream_sent: list[dict] = []  # every trade_updates message actually sent
        self.duplicate_next = 0  # fault: send the next N events twice
        self.drop_next = 0  # fault: lose the next N events
        self.hold_next = 0  # fault: hold the next N events and send each after the event that follows it (reorder)
        self._held: list[dict] = []
        self._loop = self._queue = self._ws_server = None
        self._clients: set = set()
        self.connections = 0  # authenticated stream connections so far

    # -- set-up --------------------------------------------------------------------------------
    def add_asset(self, symbol: str, price: float, # last price the venue fills market orders at
                  asset_class: str = "us_equity", # us_equity, us_option or crypto
                  fractionable: bool = True, min_order_size: str | None = None, min_trade_increment: str | None = None,
                  price_increment: str | None = None):
        "List `symbol` as a tradable Alpaca asset and give the venue a price for it."
        a = dict(id=str(uuid.uuid5(NS, symbol)), symbol=symbol, name=symbol, status="active", tradable=True, marginable=asset_class == "us_equity",
                 shortable=False, easy_to_borrow=False, fractionable=fractionable, attributes=[],
                 exchange={"us_equity": "NASDAQ", "us_option": "", "crypto": "CRYPTO"}[asset_class])
        a["class"] = asset_class
        if asset_class == "crypto":
            a.update(min_order_size=min_order_size or "0.0001", min_trade_increment=min_trade_increment or "0.000000001",
                     price_increment=price_increment or "1")
            self.venue.rules[symbol] = MarketRules(symbol=symbol, qty_step=Decimal(a["min_trade_increment"]), min_qty=Decimal(a["min_order_size"]))
        elif asset_class == "us_option":
            self.venue.rules[symbol] = MarketRules(symbol=symbol, qty_step=Decimal(1), min_qty=Decimal(1), multiplier=Decimal(100))
        self.assets[symbol] = a
        self.set_price(symbol, price)
        return self

    def set_price(self, symbol: str, price: float) -> None:
        "A new last price (resting market orders fill at it)."
        with self.venue._lock:
            self._tick()
            self.venue.set_price(symbol, price)

    def _tick(self):
        if not self.wall_clock: return
        self.venue.now = max(self.venue.now, dt.datetime.now(dt.timezone.utc))

    def _asset(self, symbol: str) -> dict | None:
        if symbol in self.assets: return self.assets[symbol]
        return next((a for a in self.assets.values() if a["class"] == "crypto" and a["symbol"].replace("/", "") == symbol), None)

    # -- wire formats ----------------------------------------------------------------------------
    def order_json(self, cid: str) -> dict:
        o, w = self.venue.order(cid), self.wire[cid]
        final_at = rfc3339(o.ts_updated) if o.status.is_final else None
        s = lambda x: None if x is None else str(x)
        return dict(id=self.ids[cid], client_order_id=cid, created_at=w["created_at"], updated_at=rfc3339(max(o.ts_updated, _parse_ts(w["created_at"]))),
                    submitted_at=w["created_at"], filled_at=final_at if o.status is OrderStatus.FILLED else None,
                    expired_at=final_at if o.status is OrderStatus.EXPIRED else None, canceled_at=final_at if o.status is OrderStatus.CANCELED else None,
                    failed_at=None, replaced_at=None, replaced_by=None, replaces=None, asset_id=self.assets[o.symbol]["id"], symbol=o.symbol,
                    asset_class=self.assets[o.symbol]["class"], notional=None, qty=str(o.qty), filled_qty=str(o.filled_qty),
                    filled_avg_price=s(o.avg_fill_price), order_class="simple", order_type=w["type"], type=w["type"], side=o.side.value,
                    position_intent=None, time_in_force=w["time_in_force"], limit_price=s(o.limit_price), stop_price=s(o.stop_price),
                    status=_STATUS[o.status], extended_hours=False, legs=None, trail_percent=None, trail_price=None, hwm=None)

    def _activity(self, i: int) -> dict:
        f = self.venue.fill_log[i]
        o = self.venue.order(f.client_order_id)
        cum = sum((x.qty for x in self.venue.fill_log[: i + 1] if x.venue_order_id == f.venue_order_id), Decimal(0))
        return dict(id=f"{f.ts_event.strftime('%Y%m%d%H%M%S%f')[:-3]}::{uuid.uuid5(NS, f.fill_id)}", account_id=ACCOUNT_ID, activity_type="FILL",
                    transaction_time=rfc3339(f.ts_event), type="fill" if cum >= o.qty else "partial_fill", price=str(f.price), qty=str(f.qty),
                    side=f.side.value, symbol=f.symbol, leaves_qty=str(o.qty - cum), order_id=self.ids[f.client_order_id], cum_qty=str(cum),
                    order_status="filled" if cum >= o.qty else "partially_filled")

    def _position(self, symbol: str, qty: Decimal) -> dict:
        a, px = self.assets[symbol], Decimal(repr(self.venue.last[symbol]))
        mult = self.venue._mult(symbol)
        fills = [f for f in self.venue.fill_log if f.symbol == symbol and f.side.value == ("buy" if qty > 0 else "sell")]
        avg = sum((f.qty * f.price for f in fills), Decimal(0)) / sum((f.qty for f in fills), Decimal(0)) if fills else px
        return dict(asset_id=a["id"], symbol=symbol.replace("/", ""), exchange=a["exchange"], asset_class=a["class"], asset_marginable=a["marginable"],
                    avg_entry_price=str(avg), qty=str(qty), side="long" if qty > 0 else "short", market_value=str(qty * px * mult),
                    cost_basis=str(qty * avg * mult), unrealized_pl=str(qty * (px - avg) * mult), unrealized_plpc="0", unrealized_intraday_pl="0",
                    unrealized_intraday_plpc="0", current_price=str(px), lastday_price=str(px), change_today="0", qty_available=str(qty))

    def account_json(self) -> dict:
        cash, equity = self.venue.cash, self.venue.equity()
        return dict(id=ACCOUNT_ID, account_number="PA3LOOPBACK", status="ACTIVE", crypto_status="ACTIVE", currency="USD", buying_power=str(cash),
                    regt_buying_power=str(cash), daytrading_buying_power="0", non_marginable_buying_power=str(cash), cash=str(cash),
                    accrued_fees="0", portfolio_value=str(equity), equity=str(equity), last_equity=str(equity), long_market_value=str(equity - cash),
                    short_market_value="0", initial_margin="0", maintenance_margin="0", last_maintenance_margin="0", sma="0",
                    daytrade_count=0, multiplier="1", pattern_day_trader=False, trading_blocked=False, transfers_blocked=False,
                    account_blocked=False, created_at="2024-01-02T14:30:00Z", trade_suspended_by_user=False, shorting_enabled=False)

    # -- routes ----------------------------------------------------------------------------------
    def route_request(self, method, path, query, headers, body):
        if self.keys is not None and (headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")) != self.keys:
            return _err(401, 40110000, "request is not authorized")
        with self.venue._lock:
            self._tick()
            if path == "/v2/orders" and method == "POST": return self._submit(body)
            if path == "/v2/orders" and method == "GET": return self._orders(query)
            if path == "/v2/orders:by_client_order_id" and method == "GET":
                cid = query.get("client_order_id", "")
                return (200, self.order_json(cid)) if cid in self.ids else _err(404, 40410000, "order not found")
            if path.startswith("/v2/orders/"):
                oid = path.removeprefix("/v2/orders/")
                if oid not in self.cids: return _err(404, 40410000, f"order not found for {oid}")
                cid = self.cids[oid]
                if method == "GET": return 200, self.order_json(cid)
                if method == "DELETE":
                    o = self.venue.order(cid)
                    if o.status.is_final: return _err(422, 42210000, f'order is already in "{_STATUS[o.status]}" state')
                    self.venue.cancel(cid)
                    return 204, None
            if path == "/v2/positions" and method == "GET":
                return 200, [self._position(s, q) for s, q in self.venue.positions().items()]
            if path == "/v2/account" and method == "GET": return 200, self.account_json()
            if path.startswith("/v2/assets/") and method == "GET":
                a = self._asset(path.removeprefix("/v2/assets/"))
                return (200, a) if a else _err(404, 40410000, "asset not found")
            if path == "/v2/account/activities/FILL" and method == "GET": return self._activities(query)
        return _err(404, 40410000, "endpoint not found")

    def _submit(self, body: bytes):
        try: req = json.loads(body)
        except ValueError: return _err(400, 40010000, "request body format is invalid")
        cid = req.get("client_order_id") or str(uuid.uuid4())
        if cid in self.ids: return _err(422, 40010001, "client_order_id must be unique")
        sym, typ, tif = req.get("symbol"), req.get("type"), req.get("time_in_force")
        asset = self.assets.get(sym)
        if asset is None: return _err(422, 40010001, f'asset "{sym}" not found')
        try: qty = Decimal(str(req["qty"]))
        except (KeyError, InvalidOperation): return _err(422, 40010001, "qty is required")
        if not qty > 0: return _err(422, 40010001, "qty must be > 0")
        if req.get("order_class", "simple") != "simple": return _err(422, 40010001, "only simple orders are supported here")
        whole = qty == qty.to_integral_value()
        if asset["class"] == "crypto" and tif not in ("gtc", "ioc"): return _err(422, 40010001, "invalid crypto time_in_force")
        if asset["class"] == "us_option" and (not whole or tif != "day"): return _err(422, 40010001, "options orders must be whole contracts and day orders")
        if asset["class"] == "us_equity" and not whole:
            if not asset["fractionable"]: return _err(422, 40010001, f"asset {sym} is not fractionable")
            if tif != "day": return _err(422, 40010001, "fractional orders must be DAY orders")
        px = lambda k: None if req.get(k) is None else Decimal(str(req[k]))
        limit, stop = px("limit_price"), px("stop_price")
        order_type = "market_on_close" if typ == "market" and tif == "cls" else typ
        try:
            order = Order(symbol=sym, side=req.get("side"), qty=qty, order_type=order_type, limit_price=limit, stop_price=stop,
                          time_in_force=tif, client_order_id=cid)
        except ValueError as e: return _err(422, 40010001, str(e).splitlines()[0])
        mult = self.venue._mult(sym)
        if order.side.value == "buy":
            cost = qty * (limit or Decimal(repr(self.venue.last[sym]))) * mult
            if cost > self.venue.cash:
                return _err(403, 40310000, "insufficient buying power", buying_power=str(self.venue.cash), cost_basis=str(cost))
        oid = str(uuid.uuid4())
        self.ids[cid], self.cids[oid] = oid, cid
        self.wire[cid] = dict(type=typ, time_in_force=tif, created_at=rfc3339(self.venue.now))
        try: self.venue.submit(order)
        except DuplicateClientOrderIdError: return _err(422, 40010001, "client_order_id must be unique")
        except OrderRejectedError as e:
            del self.ids[cid], self.cids[oid], self.wire[cid]
            return _err(403, 40310000, str(e))
        if self.kill_after_post and self.kill_after_post[0]:
            self.kill_after_post[1] -= 1
            if self.kill_after_post[1] <= 0:  # the order is in the book; the client dies before it hears so
                pid, self.kill_after_post = self.kill_after_post[0], None
                os.kill(pid, signal.SIGKILL)
        return 200, self.order_json(cid)

    def _orders(self, query):
        status = query.get("status", "open")
        limit = min(int(query.get("limit") or 50), 500)
        rows = [self.order_json(cid) for cid in self.venue.orders]
        if status == "open": rows = [r for r in rows if r["status"] in ("new", "partially_filled", "accepted", "pending_new")]
        elif status == "closed": rows = [r for r in rows if r["status"] in ("filled", "canceled", "expired", "rejected")]
        if query.get("after"): rows = [r for r in rows if _parse_ts(r["submitted_at"]) > _parse_ts(query["after"])]
        if query.get("until"): rows = [r for r in rows if _parse_ts(r["submitted_at"]) < _parse_ts(query["until"])]
        if query.get("symbols"): rows = [r for r in rows if r["symbol"] in query["symbols"].split(",")]
        rows.sort(key=lambda r: r["submitted_at"], reverse=query.get("direction", "desc") == "desc")
        return 200, rows[:limit]

    def _activities(self, query):
        rows = [self._activity(i) for i in range(len(self.venue.fill_log))]
        if query.get("after"): rows = [r for r in rows if _parse_ts(r["transaction_time"]) > _parse_ts(query["after"])]
        if query.get("until"): rows = [r for r in rows if _parse_ts(r["transaction_time"]) < _parse_ts(query["until"])]
        if query.get("direction", "desc") == "desc": rows.reverse()
        if query.get("page_token"):
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(query["page_token"]) + 1:] if query["page_token"] in ids else []
        return 200, rows[: min(int(query.get("page_size") or 100), 100)]

    def _send(self, h, status, body, headers=None):
        if status == 204:  # No Content: no body at all, or keep-alive clients read garbage next time
            h.send_response(204)
            for k, v in (headers or {}).items(): h.send_header(k, v)
            h.end_headers()
            return
        super()._send(h, status, body, headers)

    # -- trade-updates stream ----------------------------------------------------------------------
    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws_port}/stream"

    def start_stream(self):
        "Serve the trade-updates WebSocket on a background event loop."
        ready = threading.Event()

        async def main():
            from websockets.asyncio.server import serve
            self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
            async with serve(self._ws_handler, "127.0.0.1", 0) as server:
                self._ws_server, self._ws_port = server, server.sockets[0].getsockname()[1]
                ready.set()
                await self._pump()

        self._ws_thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._ws_thread.start()
        ready.wait(5)
        return self

    def stop(self):
        if self._loop is not None: self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        super().stop()

    def disconnect(self) -> None:
        "Drop every stream connection (the client should reconnect)."
        async def close_all():
            for ws in list(self._clients): await ws.close(1011, "loopback disconnect")
        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(5)

    async def _ws_handler(self, ws):
        try:
            auth = json.loads(await ws.recv())
            key = auth.get("data", {})
            ok = auth.get("action") == "authenticate" and (self.keys is None or (key.get("key_id"), key.get("secret_key")) == self.keys)
            await ws.send(json.dumps({"stream": "authorization", "data": {"status": "authorized" if ok else "unauthorized", "action": "authenticate"}}).encode())
            if not ok: return
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("action") == "listen":
                    streams = [s for s in msg.get("data", {}).get("streams", []) if s == "trade_updates"]
                    await ws.send(json.dumps({"stream": "listening", "data": {"streams": streams}}).encode())
                    if streams:
                        self._clients.add(ws)
                        self.connections += 1
        except Exception:
            pass
        finally:
            self._clients.discard(ws)

    def _on_event(self, event, order, fill):
        if self._loop is None or order.client_order_id not in self.ids: return
        data = dict(event=event, order=self.order_json(order.client_order_id), timestamp=rfc3339(order.ts_updated),
                    position_qty=str(self.venue.held.get(order.symbol, Decimal(0))))
        if fill is not None:
            data.update(execution_id=str(uuid.uuid5(NS, fill.fill_id)), price=str(fill.price), qty=str(fill.qty), timestamp=rfc3339(fill.ts_event))
        self._loop.call_soon_threadsafe(self._queue.put_nowait, {"stream": "trade_updates", "data": data})

    async def _pump(self):
        while (msg := await self._queue.get()) is not None:
            if self.drop_next: self.drop_next -= 1; continue
            if self.hold_next: self.hold_next -= 1; self._held.append(msg); continue
            out = [msg, msg] if self.duplicate_next else [msg]
            if self.duplicate_next: self.duplicate_next -= 1
            out += self._held; self._held = []
            for m in out:
                self.stream_sent.append(m)
                for ws in list(self._clients):
                    try: await ws.send(json.dumps(m).encode())
                    except Exception: pass

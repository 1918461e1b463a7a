"""Binance spot trading on loopback: the public endpoints ccxt's `load_markets` reads (from `ExchangeServer`) plus the
signed account and order endpoints, backed by a `PaperVenue` that fills market orders at the price the test sets.

Private endpoints (any signature accepted, the `X-MBX-APIKEY` header required, `signature` param required):
`POST /api/v3/order` (MARKET/LIMIT, `quantity`, `price`, `timeInForce=GTC`, `newClientOrderId`; FULL answers with
`fills[]`), `GET /api/v3/order` (by `orderId` or `origClientOrderId`), `DELETE /api/v3/order`, `GET /api/v3/openOrders`,
`GET /api/v3/allOrders`, `GET /api/v3/myTrades` (`fromId`, `startTime`, `endTime`, `limit`), `GET /api/v3/account`.
Public extras: `GET /api/v3/ticker/24hr`, `GET /api/v3/ticker/price` (the venue's last price).

Errors come as Binance sends them, `{"code": ..., "msg": ...}`: -1013 filter failures (LOT_SIZE, PRICE_FILTER,
NOTIONAL), -2010 duplicate client id / insufficient balance, -2013 unknown order (query), -2011 unknown order (cancel),
-1121 invalid symbol, -2014/-2015 missing API key. With `limit=(n, window_s)` the server itself answers 429 (code -1003,
`Retry-After`) past `n` requests a window and 418 (an IP ban) to a client that keeps going after `ban_after` 429s.
Every request is in `srv.log`; the book is `srv.venue` (a `PaperVenue`; `set_price`, `partial_fraction`, `on_bar`).

Commission (`commission=`): "quote" (the default) charges every fee in the quote asset; "received" charges it in the
asset received, as Binance does by default (a buy's fee comes out of the base asset bought, a sell's out of the quote);
an asset name such as "BNB" pays fees in that asset (BNB burn) at the `BNB/<quote>` price, falling back to "received"
when its balance is short. Balances (`/api/v3/account`), `myTrades` and the order answer's `fills[]` show where each
fee was paid (`commission`, `commissionAsset`). `assets={"BNB": "1"}` funds assets that are not a traded base.
"""
from __future__ import annotations

import datetime as dt
import math
import threading
import time
from decimal import ROUND_UP, Decimal
from urllib.parse import parse_qs

from trading.backtest.events import Costs
from trading.core.errors import OrderRejectedError
from trading.core.orders import Order, OrderStatus, OrderType, Side, TimeInForce
from trading.live.broker import DuplicateClientOrderIdError, MarketRules
from trading.live.paper import PaperVenue

from .exchange_server import ExchangeServer, _split

PRIVATE = {"/api/v3/order", "/api/v3/openOrders", "/api/v3/allOrders", "/api/v3/myTrades", "/api/v3/account"}
STATUS = {OrderStatus.NEW: "NEW", OrderStatus.ACCEPTED: "NEW", OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
          OrderStatus.FILLED: "FILLED", OrderStatus.CANCELED: "CANCELED", OrderStatus.REJECTED: "REJECTED",
          OrderStatus.EXPIRED: "EXPIRED"}


def _s(x) -> str:
    "Binance's 8-decimal number strings."
    return f"{Decimal(x):.8f}"


def _ms(ts: dt.datetime) -> int:
    return int(ts.timestamp() * 1000)


def err(code: int, msg: str, status: int = 400):
    return status, {"code": code, "msg": msg}


class BinanceTradingServer(ExchangeServer):
    def __init__(self, prices: dict[str, float], # unified symbol -> last price (quote currency)
                 cash: str | int = 100_000, # starting quote-currency balance
                 quote: str = "USDT", # the one quote asset of the account
                 holdings: dict[str, str] | None = None, # unified symbol -> starting base-asset quantity
                 step: str = "0.00001", min_qty: str = "0.00001", min_notional: str = "5", tick: str = "0.01",
                 fee_rate: float = 0.001, # taker commission rate
                 commission: str = "quote", # where fees are paid: "quote", "received" (Binance's default) or an asset ("BNB")
                 assets: dict[str, str] | None = None, # starting balances of assets that are not a traded base (BNB)
                 limit: tuple[int, float] | None = None, # (requests, window seconds) before 429s; None: unlimited
                 ban_after: int = 3, # 429s ignored before a 418 ban
                 ban_seconds: int = 120):
        super().__init__(candles={s: [] for s in prices})
        self.quote = quote
        self.rules = {s: MarketRules(symbol=s, qty_step=Decimal(step), min_qty=Decimal(min_qty), min_notional=Decimal(min_notional),
                                     price_tick=Decimal(tick)) for s in prices}
        self.venue = PaperVenue(cash=cash, costs=Costs(fee_rate=fee_rate), immediate=True)  # filters are checked here, with Binance codes
        for s, p in prices.items():
            self.venue.set_price(s, p)
        for s, q in (holdings or {}).items():
            self.venue.held[s] = Decimal(q)
        self.commission = commission
        for a, q in (assets or {}).items():
            self.venue.balances[a] = Decimal(q)
        if commission != "quote":
            self.venue.fee_charge = self._commission
        self.venue.listeners.append(self._number)
        self.limit, self.ban_after, self.ban_seconds = limit, ban_after, ban_seconds
        self._hits: list[float] = []
        self._throttled, self._banned_until = 0, 0.0
        self._created: dict[str, int] = {}  # client id -> ms it arrived
        self._ids: dict[str, int] = {}  # the venue's order id -> Binance's integer orderId
        self._tlock = threading.RLock()

    # -------------------------------------------------------------- helpers
    def _number(self, event, order, fill) -> None:
        "Give every new order Binance's kind of id: an integer, increasing."
        if order.venue_order_id not in self._ids:
            self._ids[order.venue_order_id] = len(self._ids) + 1

    def _commission(self, order, qty, price, fee):
        "(asset, amount) a fill's fee is paid in (the venue's `fee_charge`); None: the quote asset."
        q8 = Decimal("0.00000001")
        if self.commission != "received":  # BNB burn: in the asset, at its price, while its balance lasts
            px = self.venue.last.get(f"{self.commission}/{self.quote}")
            if px:
                amount = (fee / Decimal(repr(px))).quantize(q8, ROUND_UP)
                if self.venue.balances.get(self.commission, Decimal(0)) >= amount:
                    return self.commission, amount
        if order.side is Side.BUY:  # the fee comes out of what was bought
            return _split(order.symbol)[0], (qty * Decimal(repr(self.venue.costs.fee_rate))).quantize(q8, ROUND_UP)
        return None

    def _binance_spot_info(self):
        info = super()._binance_spot_info()
        for s in info["symbols"]:
            r = self.rules[self._unified(s["symbol"])]
            s["filters"] = [{"filterType": "PRICE_FILTER", "minPrice": _s(r.price_tick), "maxPrice": "1000000.00000000", "tickSize": _s(r.price_tick)},
                            {"filterType": "LOT_SIZE", "minQty": _s(r.min_qty), "maxQty": "9000.00000000", "stepSize": _s(r.qty_step)},
                            {"filterType": "NOTIONAL", "minNotional": _s(r.min_notional), "applyMinToMarket": True,
                             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}]
        return info

    def _unified(self, binance_symbol: str | None) -> str | None:
        return next((s for s in self.rules if self._binance_symbol(s) == binance_symbol), None)

    def _fills_of(self, o) -> list:
        return [(i + 1, f) for i, f in enumerate(self.venue.fill_log) if f.venue_order_id == o.venue_order_id]

    def _order_json(self, o) -> dict:
        quote_qty = sum((f.qty * f.price for _, f in self._fills_of(o)), Decimal(0))
        created = self._created.get(o.client_order_id, _ms(o.ts_updated))
        return {"symbol": self._binance_symbol(o.symbol), "orderId": self._ids[o.venue_order_id], "orderListId": -1,
                "clientOrderId": o.client_order_id, "price": _s(o.limit_price or 0), "origQty": _s(o.qty), "executedQty": _s(o.filled_qty),
                "cummulativeQuoteQty": _s(quote_qty), "status": STATUS[o.status], "timeInForce": "GTC", "type": o.order_type.upper(),
                "side": o.side.value.upper(), "stopPrice": _s(0), "icebergQty": _s(0), "time": created, "updateTime": _ms(o.ts_updated),
                "isWorking": True, "workingTime": created, "origQuoteOrderQty": _s(0), "selfTradePreventionMode": "EXPIRE_MAKER"}

    def _trade_json(self, trade_id: int, f) -> dict:
        return {"symbol": self._binance_symbol(f.symbol), "id": trade_id, "orderId": self._ids[f.venue_order_id], "orderListId": -1,
                "price": _s(f.price), "qty": _s(f.qty), "quoteQty": _s(f.qty * f.price),
                "commission": _s(f.fee_qty if f.fee_asset else f.fee), "commissionAsset": f.fee_asset or self.quote, "time": _ms(f.ts_event), "isBuyer": f.side is Side.BUY, "isMaker": False, "isBestMatch": True}

    def _locked(self) -> dict[str, Decimal]:
        "Asset -> quantity reserved by working orders (buys lock quote at the limit or last price, sells lock base)."
        out: dict[str, Decimal] = {}
        for o in self.venue.open_orders():
            left = o.qty - o.filled_qty
            if o.side is Side.BUY:
                px = o.limit_price or Decimal(repr(self.venue.last[o.symbol]))
                out[self.quote] = out.get(self.quote, Decimal(0)) + left * px
            else:
                base = _split(o.symbol)[0]
                out[base] = out.get(base, Decimal(0)) + left
        return out

    def _free(self, asset: str) -> Decimal:
        total = self.venue.cash if asset == self.quote else sum((q for s, q in self.venue.held.items() if _split(s)[0] == asset), Decimal(0))
        total += self.venue.balances.get(asset, Decimal(0)) if asset != self.quote else Decimal(0)
        return total - self._locked().get(asset, Decimal(0))

    def _find(self, q: dict):
        "The order a query names (orderId or origClientOrderId, in its symbol), or an error answer."
        sym = self._unified(q.get("symbol"))
        if sym is None:
            return None, err(-1121, "Invalid symbol.")
        if "orderId" not in q and "origClientOrderId" not in q:
            return None, err(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if "origClientOrderId" in q:
            o = self.venue.order(q["origClientOrderId"])
        else:
            o = next((x for x in self.venue.orders.values() if self._ids.get(x.venue_order_id) == int(q["orderId"])), None)
        return (o if o is not None and o.symbol == sym else None), None

    def _throttle(self):
        "None, or the 429/418 answer when the client is over the limit."
        if not self.limit:
            return None
        now, (n, window) = time.monotonic(), self.limit
        if now < self._banned_until:
            return 418, ({"code": -1003, "msg": "Way too many requests; IP banned."}, {"Retry-After": str(math.ceil(self._banned_until - now))})
        self._hits = [t for t in self._hits if t > now - window] + [now]
        if len(self._hits) <= n:
            self._throttled = 0
            return None
        self._throttled += 1
        if self._throttled > self.ban_after:
            self._banned_until = now + self.ban_seconds
            return 418, ({"code": -1003, "msg": "Way too many requests; IP banned."}, {"Retry-After": str(self.ban_seconds)})
        return 429, ({"code": -1003, "msg": f"Too many requests; current limit is {n} requests per {window} s."},
                     {"Retry-After": str(math.ceil(window))})

    # -------------------------------------------------------------- endpoints
    def _new_order(self, p: dict):
        sym = self._unified(p.get("symbol"))
        if sym is None:
            return err(-1121, "Invalid symbol.")
        kind, side = p.get("type"), p.get("side")
        if kind not in ("MARKET", "LIMIT"):
            return err(-1116, "Invalid orderType.")
        if side not in ("BUY", "SELL"):
            return err(-1117, "Invalid side.")
        if "quantity" not in p:
            return err(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        qty, r = Decimal(p["quantity"]), self.rules[sym]
        price = None
        if kind == "LIMIT":
            if "price" not in p:
                return err(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            if p.get("timeInForce") != "GTC":
                return err(-1115, "Invalid timeInForce.")  # the fake rests every limit order (no IOC/FOK matching)
            price = Decimal(p["price"])
            if price <= 0 or price % r.price_tick != 0:
                return err(-1013, "Filter failure: PRICE_FILTER")
        if qty < r.min_qty or (qty - r.min_qty) % r.qty_step != 0:
            return err(-1013, "Filter failure: LOT_SIZE")
        ref = price if price is not None else Decimal(repr(self.venue.last[sym]))
        if qty * ref < r.min_notional:
            return err(-1013, "Filter failure: NOTIONAL")
        cid = p.get("newClientOrderId") or f"fake{len(self.venue.orders) + 1}"
        if self.venue.order(cid) is not None:
            return err(-2010, "Duplicate order sent.")
        fee_in_quote = Decimal(repr(self.venue.costs.fee_rate)) if self.commission == "quote" else Decimal(0)
        need, asset = (qty * ref * (1 + fee_in_quote), self.quote) if side == "BUY" else (qty, _split(sym)[0])
        if need > self._free(asset):
            return err(-2010, "Account has insufficient balance for requested action.")
        order = Order(symbol=sym, side=Side(side.lower()), qty=qty, order_type=OrderType(kind.lower()), limit_price=price,
                      time_in_force=TimeInForce.GTC, client_order_id=cid)
        self._created[cid] = int(time.time() * 1000)
        try:
            o = self.venue.submit(order)
        except DuplicateClientOrderIdError:
            return err(-2010, "Duplicate order sent.")
        except OrderRejectedError as e:
            return err(-2010, str(e))
        body = self._order_json(o)
        body["transactTime"] = body.pop("updateTime")
        if p.get("newOrderRespType", "FULL") == "FULL":
            body["fills"] = [{"price": _s(f.price), "qty": _s(f.qty), "commission": _s(f.fee_qty if f.fee_asset else f.fee),
                              "commissionAsset": f.fee_asset or self.quote, "tradeId": i}
                             for i, f in self._fills_of(o)]
        return 200, body

    def _cancel(self, q: dict):
        o, bad = self._find(q)
        if bad:
            return bad
        if o is None or o.status.is_final:
            return err(-2011, "Unknown order sent.")
        o = self.venue.cancel(o.client_order_id)
        body = self._order_json(o)
        body.update(origClientOrderId=o.client_order_id, clientOrderId=f"cancel{self._ids[o.venue_order_id]}", transactTime=body.pop("updateTime"))
        return 200, body

    def _orders(self, q: dict, open_only: bool):
        sym = self._unified(q.get("symbol")) if "symbol" in q else None
        if ("symbol" in q or not open_only) and sym is None:
            return err(-1121, "Invalid symbol.") if "symbol" in q else err(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        rows = [o for o in self.venue.orders.values() if (sym is None or o.symbol == sym) and (not open_only or not o.status.is_final)]
        if not open_only:
            start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
            rows = [o for o in rows if self._ids[o.venue_order_id] >= int(q.get("orderId", 0))
                    and start <= self._created.get(o.client_order_id, 0) <= end][: min(int(q.get("limit", 500)), 1000)]
        return 200, [self._order_json(o) for o in rows]

    def _my_trades(self, q: dict):
        sym = self._unified(q.get("symbol"))
        if sym is None:
            return err(-1121, "Invalid symbol.")
        start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        rows = [(i + 1, f) for i, f in enumerate(self.venue.fill_log) if f.symbol == sym and i + 1 >= int(q.get("fromId", 0))
                and start <= _ms(f.ts_event) <= end and ("orderId" not in q or self._ids[f.venue_order_id] == int(q["orderId"]))]
        return 200, [self._trade_json(i, f) for i, f in rows[: min(int(q.get("limit", 500)), 1000)]]

    def _account(self):
        assets = {self.quote} | {_split(s)[0] for s in self.rules} | set(self.venue.balances)
        locked = self._locked()
        balances = [{"asset": a, "free": _s(self._free(a)), "locked": _s(locked.get(a, 0))} for a in sorted(assets)]
        return 200, {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0, "canTrade": True,
                     "canWithdraw": True, "canDeposit": True, "brokered": False, "requireSelfTradePrevention": False,
                     "updateTime": int(time.time() * 1000), "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 1}

    def _ticker(self, q: dict):
        sym = self._unified(q.get("symbol"))
        if sym is None:
            return err(-1121, "Invalid symbol.")
        px = _s(Decimal(repr(self.venue.last[sym])))
        return 200, {"symbol": q["symbol"], "lastPrice": px, "price": px, "bidPrice": px, "askPrice": px, "openPrice": px,
                     "highPrice": px, "lowPrice": px, "volume": "0", "quoteVolume": "0", "closeTime": int(time.time() * 1000)}

    def route_request(self, method, path, query, headers, body):
        with self._tlock:
            limited = self._throttle()
        if limited:
            return limited
        if path in ("/api/v3/ticker/24hr", "/api/v3/ticker/price"):
            return self._ticker(query)
        if path not in PRIVATE:
            return super().route_request(method, path, query, headers, body)
        p = {**query, **{k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}}
        if not any(k.lower() == "x-mbx-apikey" and v for k, v in headers.items()):
            return err(-2014, "API-key format invalid.", 401)
        if "signature" not in p:
            return err(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        with self.venue._lock:
            self.venue.now = max(self.venue.now, dt.datetime.now(dt.timezone.utc))  # the venue runs on the wall clock
            if (method, path) == ("POST", "/api/v3/order"):
                return self._new_order(p)
            if (method, path) == ("GET", "/api/v3/order"):
                o, bad = self._find(p)
                return bad or ((200, self._order_json(o)) if o is not None else err(-2013, "Order does not exist."))
            if (method, path) == ("DELETE", "/api/v3/order"):
                return self._cancel(p)
            if (method, path) == ("GET", "/api/v3/openOrders"):
                return self._orders(p, open_only=True)
            if (method, path) == ("GET", "/api/v3/allOrders"):
                return self._orders(p, open_only=False)
            if (method, path) == ("GET", "/api/v3/myTrades"):
                return self._my_trades(p)
            if (method, path) == ("GET", "/api/v3/account"):
                return self._account()
        return err(-1000, f"{method} {path} is not supported", 405)


class RollingBinance(BinanceTradingServer):
    "Binance spot where each new candle fetch (the first page of the first pair) reveals one more candle; the book's price follows."
    def __init__(self, candles: dict[str, list], # unified symbol -> every candle the test will reveal ([ms, o, h, l, c, v] rows)
                 warm: int, # candles visible at the first fetch
                 **venue, # BinanceTradingServer's account and filter arguments
                ):
        super().__init__({s: c[warm - 2][4] for s, c in candles.items()}, **venue)
        self.every, self.lead = candles, next(iter(candles))
        self.visible, self.fetches = warm - 1, 0
        self._reveal()

    def _reveal(self):
        for s, c in self.every.items():
            self.candles[s] = c[:self.visible]
            self.venue.set_price(s, c[self.visible - 1][4])

    def _binance_klines(self, q):
        lead = self.every[self.lead]
        if q.get("symbol") == self.lead.replace("/", "") and int(q.get("startTime", 0)) <= lead[0][0]:
            self.fetches += 1
            self.visible = min(self.visible + 1, len(lead))
            self._reveal()
        return super()._binance_klines(q)

"""Binance and Coinbase public REST endpoints on loopback, in the wire formats ccxt parses.

Binance: `/api/v3/exchangeInfo`, `/fapi/v1/exchangeInfo`, `/dapi/v1/exchangeInfo` (what `load_markets` asks),
`/api/v3/klines` (arrays `[openTime, "o", "h", "l", "c", "v", closeTime, "qv", trades, "tbv", "tbqv", "0"]`),
`/fapi/v1/fundingRate`. Coinbase Advanced Trade: `/v2/currencies`, `/v2/currencies/crypto`, `/v2/exchange-rates`,
`/api/v3/brokerage/market/products` and `/api/v3/brokerage/market/products/{id}/candles`
(`{"candles": [{"start": epoch s, "low", "high", "open", "close", "volume"}]}`, newest first).
Candles are `[ms, open, high, low, close, volume]` lists, keyed by the unified symbol (`BTC/USDT`).
"""
from __future__ import annotations

import numpy as np

from ._server import LoopbackServer

GRANULARITY_S = {"ONE_MINUTE": 60, "FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900, "ONE_HOUR": 3600, "SIX_HOUR": 21600, "ONE_DAY": 86400}


def make_candles(start_ms: int, n: int, step_ms: int = 86_400_000, seed: int = 0, price: float = 40_000.0) -> list[list]:
    "`n` valid candles from `start_ms` every `step_ms`, a seeded random walk."
    rng = np.random.default_rng(seed)
    out, close = [], price
    for i in range(n):
        o = close
        close = round(o * float(np.exp(rng.normal(0, 0.02))), 2)
        h = round(max(o, close) * (1 + abs(float(rng.normal(0, 0.005)))), 2)
        lo = round(min(o, close) * (1 - abs(float(rng.normal(0, 0.005)))), 2)
        out.append([start_ms + i * step_ms, o, h, lo, close, round(float(rng.uniform(10, 1000)), 4)])
    return out


def _split(symbol: str) -> tuple[str, str]:
    base, quote = symbol.split(":")[0].split("/")
    return base, quote


class ExchangeServer(LoopbackServer):
    def __init__(self, candles: dict | None = None, # unified symbol -> candles; serves both exchanges
                 funding: dict | None = None, # perpetual base/quote ("BTC/USDT") -> [(ms, rate)]
                 page_size: int = 1000, # server cap on candles per answer (Binance: 1000, Coinbase: 350)
                ):
        super().__init__()
        self.candles, self.funding, self.page_size = candles or {}, funding or {}, page_size
        self.repeat_page = False  # fault: klines ignore startTime (every call answers the first page again)
        self.short_pagination = False  # fault: klines after the first page answer [] though more candles exist
        self.kline_calls = 0

    # -------------------------------------------------------------- Binance
    def _binance_symbol(self, sym): b, q = _split(sym); return b + q

    def _binance_spot_info(self):
        f = [{"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
             {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00", "stepSize": "0.00001"}]
        symbols = [{"symbol": self._binance_symbol(s), "status": "TRADING", "baseAsset": _split(s)[0], "baseAssetPrecision": 8,
                    "quoteAsset": _split(s)[1], "quotePrecision": 8, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
                    "isSpotTradingAllowed": True, "isMarginTradingAllowed": False, "filters": f, "permissions": ["SPOT"],
                    "permissionSets": [["SPOT"]]} for s in self.candles]
        return {"timezone": "UTC", "serverTime": 1704067200000, "rateLimits": [], "exchangeFilters": [], "symbols": symbols}

    def _binance_futures_info(self):
        f = [{"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": "0.10"},
             {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"}]
        symbols = [{"symbol": self._binance_symbol(s), "pair": self._binance_symbol(s), "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": _split(s)[0],
                    "quoteAsset": _split(s)[1], "marginAsset": _split(s)[1], "pricePrecision": 2, "quantityPrecision": 3,
                    "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "filters": f,
                    "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC"]} for s in self.funding]
        return {"timezone": "UTC", "serverTime": 1704067200000, "rateLimits": [], "exchangeFilters": [], "assets": [], "symbols": symbols}

    def _binance_klines(self, q):
        by_id = {self._binance_symbol(s): s for s in self.candles}
        if q.get("symbol") not in by_id: return 400, {"code": -1121, "msg": "Invalid symbol."}
        start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 500)), self.page_size)
        self.kline_calls += 1
        if self.repeat_page: start = 0
        if self.short_pagination and self.kline_calls > 1: return 200, []
        rows = [c for c in self.candles[by_id[q["symbol"]]] if start <= c[0] <= end][:limit]
        return 200, [[c[0], *(f"{x:.8f}" for x in c[1:6]), c[0] + 86_399_999, "0", 10, "0", "0", "0"] for c in rows]

    def _binance_funding(self, q):
        by_id = {self._binance_symbol(s): s for s in self.funding}
        if q.get("symbol") not in by_id: return 400, {"code": -1121, "msg": "Invalid symbol."}
        start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 100)), self.page_size)
        rows = [r for r in self.funding[by_id[q["symbol"]]] if start <= r[0] <= end][:limit]
        return 200, [{"symbol": q["symbol"], "fundingTime": t, "fundingRate": f"{r:.8f}", "markPrice": "40000.00"} for t, r in rows]

    # -------------------------------------------------------------- Coinbase
    def _coinbase_products(self, q):
        if q.get("product_type") == "FUTURE": return 200, {"products": [], "num_products": 0}
        products = [{"product_id": f"{b}-{qt}", "price": "1", "base_increment": "0.00000001", "quote_increment": "0.01",
                     "quote_min_size": "1", "quote_max_size": "10000000", "base_min_size": "0.00000001", "base_max_size": "3400",
                     "base_name": b, "quote_name": qt, "status": "online", "trading_disabled": False, "is_disabled": False,
                     "product_type": "SPOT", "base_currency_id": b, "quote_currency_id": qt}
                    for b, qt in map(_split, self.candles)]
        return 200, {"products": products, "num_products": len(products)}

    def _coinbase_candles(self, product_id, q):
        by_id = {"-".join(_split(s)): s for s in self.candles}
        if product_id not in by_id: return 404, {"error": "NOT_FOUND", "error_details": "ProductID is invalid", "message": "ProductID is invalid"}
        step = GRANULARITY_S[q["granularity"]]
        start, end = int(q["start"]) * 1000, int(q["end"]) * 1000
        rows = [c for c in self.candles[by_id[product_id]] if start <= c[0] < end + step * 1000][:self.page_size]
        return 200, {"candles": [{"start": str(c[0] // 1000), "low": str(c[3]), "high": str(c[2]), "open": str(c[1]),
                                  "close": str(c[4]), "volume": str(c[5])} for c in reversed(rows)]}

    def route(self, path, q, headers):
        if path == "/api/v3/exchangeInfo": return 200, self._binance_spot_info()
        if path == "/fapi/v1/exchangeInfo": return 200, self._binance_futures_info()
        if path == "/dapi/v1/exchangeInfo": return 200, {"timezone": "UTC", "serverTime": 1704067200000, "symbols": []}
        if path == "/api/v3/klines": return self._binance_klines(q)
        if path == "/fapi/v1/fundingRate": return self._binance_funding(q)
        if path.startswith("/sapi/v1/margin/"): return 200, []  # what load_markets also asks when API keys are set
        if path == "/v2/currencies": return 200, {"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]}
        if path == "/v2/currencies/crypto": return 200, {"data": []}
        if path == "/v2/exchange-rates": return 200, {"data": {"currency": "USD", "rates": {}}}
        if path == "/api/v3/brokerage/market/products": return self._coinbase_products(q)
        if path.startswith("/api/v3/brokerage/market/products/") and path.endswith("/candles"):
            return self._coinbase_candles(path.split("/")[-2], q)
        return 404, {"message": "Not Found"}

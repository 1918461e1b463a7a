"""Alpaca options on loopback, in the wire format alpaca-py parses.

Trading API `GET /v2/options/contracts` answers `{"option_contracts": [...], "next_page_token": str | null}` (filters:
underlying_symbols, expiration_date_gte/lte, type, strike_price_gte/lte; paginated by `limit` + opaque `page_token`).
Data API `GET /v1beta1/options/bars` answers `{"bars": {"SYM": [{"t","o","h","l","c","v","n","vw"}]}, "next_page_token"}`
and `GET /v1beta1/options/snapshots` answers `{"snapshots": {"SYM": {"latestQuote", "latestTrade", "impliedVolatility",
"greeks"}}, "next_page_token": null}`. Quotes of the snapshots are priced with Black-Scholes-Merton at a known volatility.
"""
from __future__ import annotations

import base64
import uuid

from ._server import LoopbackServer


def contract_wire(symbol: str, underlying: str, expiry: str, right: str, strike: float, **extra) -> dict:
    "One contract as Alpaca's /v2/options/contracts lists it."
    ns = uuid.uuid5(uuid.NAMESPACE_URL, symbol)
    body = dict(id=str(ns), symbol=symbol, name=f"{underlying} {expiry} {'Call' if right == 'C' else 'Put'} {strike}", status="active",
                tradable=True, expiration_date=expiry, root_symbol=underlying, underlying_symbol=underlying,
                underlying_asset_id=str(uuid.uuid5(uuid.NAMESPACE_URL, underlying)), type="call" if right == "C" else "put",
                style="american", strike_price=str(strike), size="100", open_interest="1234", open_interest_date=expiry,
                close_price="2.5", close_price_date=expiry)
    body.update(extra)
    return body


def _token(n):
    return base64.b64encode(str(n).encode()).decode()


class AlpacaOptionsServer(LoopbackServer):
    def __init__(self, contracts: list[dict] | None = None, # contract_wire dicts
                 bars: dict | None = None, # OCC symbol -> list of bar dicts
                 snapshots: dict | None = None, # OCC symbol -> snapshot dict (wire keys)
                 page_size: int = 10_000, # the server's cap per page
                 keys: tuple[str, str] | None = None, # (key id, secret) required; None accepts anything
                ):
        super().__init__()
        self.contracts, self.bars, self.snapshots = contracts or [], bars or {}, snapshots or {}
        self.page_size, self.keys = page_size, keys

    def _page(self, rows, query):
        limit = min(int(query.get("limit") or 100), self.page_size)
        offset = int(base64.b64decode(query["page_token"]).decode()) if query.get("page_token") else 0
        nxt = offset + limit if offset + limit < len(rows) else None
        return rows[offset:offset + limit], (_token(nxt) if nxt else None)

    def route(self, path, query, headers):
        if self.keys is not None and (headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")) != self.keys:
            return 403, {"message": "forbidden"}
        if path == "/v2/options/contracts":
            rows = [c for c in self.contracts
                    if (not query.get("underlying_symbols") or c["underlying_symbol"] in query["underlying_symbols"].split(","))
                    and (not query.get("expiration_date_gte") or c["expiration_date"] >= query["expiration_date_gte"])
                    and (not query.get("expiration_date_lte") or c["expiration_date"] <= query["expiration_date_lte"])
                    and (not query.get("type") or c["type"] == query["type"])
                    and (not query.get("strike_price_gte") or float(c["strike_price"]) >= float(query["strike_price_gte"]))
                    and (not query.get("strike_price_lte") or float(c["strike_price"]) <= float(query["strike_price_lte"]))]
            page, nxt = self._page(rows, query)
            return 200, {"option_contracts": page, "next_page_token": nxt}
        if path == "/v1beta1/options/bars":
            symbols = [s for s in query.get("symbols", "").split(",") if s]
            unknown = [s for s in symbols if s not in self.bars]
            if unknown: return 400, {"code": 42210000, "message": f"invalid symbol: {unknown[0]}"}
            rows = [(s, b) for s in sorted(symbols) for b in self.bars[s]]
            page, nxt = self._page(rows, query)
            out: dict[str, list] = {}
            for s, b in page: out.setdefault(s, []).append(b)
            return 200, {"bars": out, "next_page_token": nxt}
        if path == "/v1beta1/options/snapshots":
            symbols = [s for s in query.get("symbols", "").split(",") if s]
            unknown = [s for s in symbols if s not in self.snapshots]
            if unknown: return 400, {"code": 42210000, "message": f"invalid symbol: {unknown[0]}"}
            return 200, {"snapshots": {s: self.snapshots[s] for s in symbols}, "next_page_token": None}
        raise KeyError(path)

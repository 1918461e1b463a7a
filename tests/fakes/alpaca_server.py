"""Alpaca market-data API v2 (stocks) and v1beta3 (crypto) on loopback, in the wire format alpaca-py parses.

Bars: `GET /v2/stocks/bars` and `GET /v1beta3/crypto/us/bars` answer
`{"bars": {"SYM": [{"t","o","h","l","c","v","n","vw"}, ...]}, "next_page_token": str | null}`, paginated over
all requested symbols (sorted by symbol, then time) with an opaque `page_token`, exactly as the real API does.
Latest quotes/trades: `/v2/stocks/{quotes,trades}/latest` and `/v1beta3/crypto/us/latest/{quotes,trades}`.
News: `GET /v1beta1/news` answers `{"news": [article, ...], "next_page_token": str | null}`, newest first (sort=desc,
the API's default), filtered by `symbols`, `start`, `end`, paginated with an opaque `page_token` (articles: the recorded
format, e.g. `trading.nlp.fixtures.fixture_alpaca_news`; keys starting with `_` are fixture bookkeeping, not sent).
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone

import numpy as np

from ._server import LoopbackServer


def rfc3339(ts) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_bars(timestamps, seed: int = 0, price: float = 100.0) -> list[dict]:
    "Valid Alpaca bar dicts (t,o,h,l,c,v,n,vw) at `timestamps` (UTC datetimes), a seeded random walk."
    rng = np.random.default_rng(seed)
    out, close = [], price
    for ts in timestamps:
        o = close
        close = round(o * float(np.exp(rng.normal(0, 0.01))), 4)
        h = round(max(o, close) * (1 + abs(float(rng.normal(0, 0.003)))), 4)
        lo = round(min(o, close) * (1 - abs(float(rng.normal(0, 0.003)))), 4)
        v = float(rng.integers(1_000, 100_000))
        out.append(dict(t=rfc3339(ts), o=o, h=h, l=lo, c=close, v=v, n=int(v // 10), vw=round((h + lo + close) / 3, 4)))
    return out


class AlpacaServer(LoopbackServer):
    def __init__(self, stock_bars: dict | None = None, # symbol -> list of bar dicts (raw, unadjusted prices)
                 crypto_bars: dict | None = None, # "BTC/USD" -> list of bar dicts
                 splits: dict | None = None, # symbol -> (first RFC3339 timestamp after the split, ratio): adjusted bars before it are divided by ratio
                 page_size: int = 10_000, # the server's own cap on bars per page (the real API: 10 000)
                 keys: tuple[str, str] | None = None, # (key id, secret) the stock endpoints require; None accepts anything
                 news: list[dict] | None = None, # Alpaca news articles (wire format)
                 news_page_size: int = 50, # the server's cap on articles per page (the real API: 50)
                ):
        super().__init__()
        self.stock_bars, self.crypto_bars = stock_bars or {}, crypto_bars or {}
        self.splits, self.page_size, self.keys = splits or {}, page_size, keys
        self.news, self.news_page_size = news or [], news_page_size
        self.loop_page_token = False  # fault: every page points at the same next page (a token that loops)
        self.short_pagination = False  # fault: the first page says it is the last (next_page_token null) though more rows exist

    # -- helpers
    def _authorised(self, headers) -> bool:
        if self.keys is None: return True
        return (headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")) == self.keys

    def _adjusted(self, sym, bar, adjustment):
        if adjustment in (None, "", "raw") or sym not in self.splits: return bar
        first_after, ratio = self.splits[sym]
        if bar["t"] >= first_after: return bar
        b = dict(bar)
        for k in ("o", "h", "l", "c", "vw"): b[k] = round(b[k] / ratio, 6)
        b["v"] = b["v"] * ratio
        return b

    def _bars(self, table, query, adjustment=None):
        symbols = [s for s in query.get("symbols", "").split(",") if s]
        if not symbols: return 400, {"message": "missing symbols"}
        unknown = [s for s in symbols if s not in table]
        if unknown: return 400, {"code": 42210000, "message": f"invalid symbol: {unknown[0]}"}
        start, end = query.get("start"), query.get("end")
        limit = min(int(query.get("limit") or 1000), self.page_size)
        rows = [(s, self._adjusted(s, b, adjustment)) for s in sorted(symbols) for b in table[s]
                if (not start or b["t"] >= _norm(start)) and (not end or b["t"] <= _norm(end))]
        offset = int(base64.b64decode(query["page_token"]).decode()) if query.get("page_token") else 0
        page = rows[offset:offset + limit]
        nxt = offset + limit if offset + limit < len(rows) else None
        if self.loop_page_token and nxt: nxt = limit  # always "page 2"
        if self.short_pagination: nxt = None
        bars: dict[str, list] = {}
        for s, b in page: bars.setdefault(s, []).append(b)
        body = {"bars": bars, "next_page_token": base64.b64encode(str(nxt).encode()).decode() if nxt else None}
        if "currency" in query or adjustment is not None: body["currency"] = "USD"
        return 200, body

    def _latest(self, table, query, kind):
        symbols = [s for s in query.get("symbols", "").split(",") if s]
        unknown = [s for s in symbols if s not in table]
        if unknown: return 400, {"code": 42210000, "message": f"invalid symbol: {unknown[0]}"}
        out = {}
        for s in symbols:
            last = table[s][-1]
            if kind == "quotes":
                out[s] = dict(t=last["t"], ax="V", ap=round(last["c"] * 1.0005, 4), **{"as": 3}, bx="V", bp=round(last["c"] * 0.9995, 4), bs=2, c=["R"], z="C")
            else:
                out[s] = dict(t=last["t"], x="V", p=last["c"], s=100, c=["@"], i=52983525029461, z="C")
        return 200, {kind: out}

    def _news(self, query):
        symbols = {s for s in query.get("symbols", "").split(",") if s}
        start, end = query.get("start"), query.get("end")
        rows = [{k: v for k, v in a.items() if not k.startswith("_")} for a in self.news
                if (not symbols or symbols & set(a["symbols"])) and (not start or a["created_at"] >= _norm(start))
                and (not end or a["created_at"] <= _norm(end))]
        rows.sort(key=lambda a: a["created_at"], reverse=query.get("sort", "desc") != "asc")
        limit = min(int(query.get("limit") or 10), self.news_page_size)
        offset = int(base64.b64decode(query["page_token"]).decode()) if query.get("page_token") else 0
        nxt = offset + limit if offset + limit < len(rows) else None
        return 200, {"news": rows[offset:offset + limit], "next_page_token": base64.b64encode(str(nxt).encode()).decode() if nxt else None}

    def route(self, path, query, headers):
        if path == "/v1beta1/news": return self._news(query) if self._authorised(headers) else (401, {"message": "unauthorized."})
        if path.startswith("/v2/stocks") and not self._authorised(headers):
            return 401, {"message": "unauthorized."}
        if path == "/v2/stocks/bars": return self._bars(self.stock_bars, query, query.get("adjustment"))
        if path == "/v1beta3/crypto/us/bars": return self._bars(self.crypto_bars, query)
        if path in ("/v2/stocks/quotes/latest", "/v2/stocks/trades/latest"):
            return self._latest(self.stock_bars, query, path.split("/")[3])
        if path in ("/v1beta3/crypto/us/latest/quotes", "/v1beta3/crypto/us/latest/trades"):
            return self._latest(self.crypto_bars, query, path.split("/")[-1])
        return 404, {"message": "Not Found"}


def _norm(ts: str) -> str:
    "RFC3339 in any offset -> the Z form the bars carry, for string comparison."
    return rfc3339(datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc))

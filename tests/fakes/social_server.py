"""A StockTwits-style symbol stream on loopback: `GET /streams/symbol/{SYMBOL}.json[?max=ID]` answers
`{"messages": [...], "cursor": {"more", "max", "since"}}`, newest first, `page_size` messages per page; `?max=ID` asks for
messages with ids below ID (older). `loop_cursor` makes every page point back at the first (a cursor that never moves)."""
from __future__ import annotations

from ._server import LoopbackServer


class SocialServer(LoopbackServer):
    def __init__(self, streams: dict[str, list[dict]] | None = None, # symbol -> messages (any order)
                 page_size: int = 30):
        super().__init__()
        self.streams, self.page_size, self.loop_cursor = streams or {}, page_size, False

    def route(self, path, query, headers):
        if not (path.startswith("/streams/symbol/") and path.endswith(".json")): return 404, {"errors": [{"message": "not found"}]}
        sym = path[len("/streams/symbol/"):-len(".json")]
        if sym not in self.streams: return 404, {"errors": [{"message": f"symbol {sym} not found"}]}
        msgs = sorted(self.streams[sym], key=lambda m: -m["id"])
        if query.get("max"): msgs = [m for m in msgs if m["id"] < int(query["max"])]
        page = msgs[:self.page_size]
        more = len(msgs) > self.page_size
        last = page[-1]["id"] if page else None
        if self.loop_cursor and more: last = sorted(self.streams[sym], key=lambda m: -m["id"])[self.page_size - 1]["id"] + 1
        return 200, {"messages": page, "cursor": {"more": more, "max": last, "since": page[0]["id"] if page else None}}

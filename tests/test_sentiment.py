"""Sentiment end to end against real services and processes: the point-in-time store on SQLite and PostgreSQL (idempotent
and race-safe ingest, versioned scores, rows from before revision 0004), alpaca-py's NewsClient against the loopback fake,
the social client's pagination and faults, the model and the lexicons loading with the network switched off, and the
sentiment panel a strategy reads being point-in-time."""
import os
import subprocess
import sys
import threading
import uuid

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fakes.alpaca_server import AlpacaServer
from fakes.social_server import SocialServer
from trading.core.errors import DataValidationError, SourceUnavailableError
from trading.net.http import PaginationError
from trading.nlp.aggregate import decayed_sentiment
from trading.nlp.fixtures import fixture_alpaca_news, fixture_news_items, fixture_social_page
from trading.nlp.sources import TextItem, SocialClient, alpaca_news
from trading.nlp.store import news_since, save_items, save_scores, scores_asof, unscored
from trading.store.engine import make_engine, read, write
from trading.store.migrate import upgrade

PG_URL = os.environ.get("TRADING_TEST_PG_URL")
T = lambda s: pd.Timestamp(s, tz="UTC")
SYMS = ["AAPL", "MSFT", "XOM", "JPM"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/s.db"
        return
    if not PG_URL: pytest.skip("TRADING_TEST_PG_URL not set")
    admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"trading_nlp_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c: c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield make_url(PG_URL).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    with admin.connect() as c: c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _count(eng, table):
    with read(eng) as c: return c.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def test_point_in_time_store(db_url):
    eng = make_engine(db_url)
    upgrade(eng, "0003")
    with write(eng, check_revision=False) as c:  # a headline stored before revision 0004: when it was seen is unknown
        c.execute(text("INSERT INTO news (ts_event, source, headline, content_hash) VALUES (:t, 'old', 'FIXTURE: stored at 0003', 'h-old')"),
                  {"t": 1_700_000_000_000_000 if eng.dialect.name == "sqlite" else T("2023-11-14 22:13:20").to_pydatetime()})
    upgrade(eng)
    raw = fixture_alpaca_news(SYMS, n_items=40, seed=3, late_share=0.3)
    items = fixture_news_items(raw)
    ids = save_items(eng, items)
    assert save_items(eng, items[::-1]) == ids[::-1] and _count(eng, "news") == len(set(ids)) + 1  # idempotent
    assert _count(eng, "news_symbols") == sum(len(i.symbols) for i in {i.content_hash: i for i in items}.values())
    old_id = 1
    todo = unscored(eng, "m:1")
    assert old_id in todo["news_id"].tolist() and len(todo) == len(set(ids)) + 1
    scores = np.linspace(-1, 1, len(ids))
    assert save_scores(eng, ids + [old_id], list(scores) + [0.0], "m:1", ts_scored=T("2026-01-01")) == len(ids) + 1
    before = _count(eng, "sentiment")
    with pytest.raises(DataValidationError, match="model_id_reused"):  # a new model under an old id: refused whole
        save_scores(eng, [ids[0], ids[1]], [0.0, 0.123], "m:1")
    with pytest.raises(Exception):
        save_scores(eng, [ids[0]], [2.0], "m:2")
    assert _count(eng, "sentiment") == before
    # the oracle: every (item, symbol) whose publication and delivery both precede t, computed from the items themselves
    for t in [T("2022-10-20"), T("2022-11-15 15:00"), T("2022-12-31")]:
        got = scores_asof(eng, t, "m:1")
        want = sorted((n, s) for n, it in zip(ids, items) if it.known_at <= t for s in it.symbols)
        assert sorted(set(zip(got["news_id"], got["symbol"]))) == sorted(set(want))
        assert old_id not in got["news_id"].tolist()  # unknown ts_seen: left out, not guessed
        assert (got["known_at"] <= t).all()
    late = [(n, it) for n, it, r in zip(ids, items, raw) if r["_delivered_days_late"]]
    assert late
    n, it = late[0]
    assert n not in scores_asof(eng, it.ts_event + pd.Timedelta("1D"), "m:1")["news_id"].tolist()  # published, not yet delivered
    feed = news_since(eng, T("2000-01-01"), limit=1000)
    assert len(feed) == len(set(ids)) + 1 and feed["score"].notna().all()
    assert feed.loc[feed.news_id == old_id, "headline"].item() == "FIXTURE: stored at 0003"
    arrived = feed["ts_seen"].fillna(feed["ts_event"])
    assert arrived.is_monotonic_decreasing  # newest first
    eng.dispose()


def test_concurrent_ingests_store_each_story_once(db_url):
    eng = make_engine(db_url)
    upgrade(eng)
    items = fixture_news_items(fixture_alpaca_news(SYMS, n_items=60, seed=5))
    errors, results = [], []
    def ingest(k):
        e = make_engine(db_url)
        try:
            for i in range(0, len(items), 7): results.append(save_items(e, items[i:i + 7][::(-1) ** k]))
        except Exception as ex: errors.append(ex)
        finally: e.dispose()
    threads = [threading.Thread(target=ingest, args=(k,)) for k in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors, errors
    assert _count(eng, "news") == len({i.content_hash for i in items})
    assert _count(eng, "news_symbols") == sum(len(i.symbols) for i in {i.content_hash: i for i in items}.values())
    eng.dispose()


def test_alpaca_news_client_reads_every_page_from_the_loopback_fake():
    raw = fixture_alpaca_news(SYMS, n_items=120, seed=7)
    with AlpacaServer(news=raw, news_page_size=50, keys=("K", "S")) as srv:
        got = alpaca_news(None, "2022-10-01T00:00:00Z", "2022-12-31T00:00:00Z", "K", "S", url_override=srv.url, backfill_latency="1min")
        pages = srv.hits("/v1beta1/news")
        assert len(got) == 120 and len(pages) == 3  # 50 + 50 + 20: alpaca-py followed the page tokens
        assert sorted(i.external_id for i in got) == sorted(str(r["id"]) for r in raw)
        assert all(i.headline.startswith("FIXTURE:") for i in got)
        one = alpaca_news(["XOM"], "2022-10-01T00:00:00Z", "2022-12-31T00:00:00Z", "K", "S", url_override=srv.url, backfill_latency="1min")
        assert one and all("XOM" in i.symbols for i in one) and len(one) == sum("XOM" in r["symbols"] for r in raw)
        live = alpaca_news(["XOM"], "2022-10-01T00:00:00Z", "2022-12-31T00:00:00Z", "K", "S", url_override=srv.url)
        assert all(i.ts_seen > T("2025-01-01") for i in live)  # live: seen now, so a backtest of 2022 will not read them
        with pytest.raises(SourceUnavailableError):
            alpaca_news(None, "2022-10-01T00:00:00Z", "2022-12-31T00:00:00Z", "K", "wrong", url_override=srv.url, backfill_latency="1min")


def test_social_client_pages_retries_and_refuses_bad_pages():
    page1 = fixture_social_page(("BTC.X",), n=50, seed=1, max_id=1000)["messages"]
    with SocialServer({"BTC.X": page1}, page_size=20) as srv:
        client = SocialClient(srv.url, timeout=5, backoff=0.01)
        got = client.stream("BTC.X", pages=5, backfill_latency="1min")
        assert len(got) == 50 and len(srv.hits("/streams/symbol/BTC.X.json")) == 3
        assert {i.symbols for i in got} == {("BTC/USD",)}
        srv.reset()
        srv.fault("/streams/symbol/BTC.X.json", status=503)  # one transient failure: retried
        assert len(client.stream("BTC.X", pages=1, backfill_latency="1min")) == 20
        srv.fault("/streams/symbol/BTC.X.json", status=200, body=b'{"messages": [{"id": 1, "body": "x"')
        with pytest.raises(DataValidationError, match="malformed_json"):
            client.stream("BTC.X", pages=1, backfill_latency="1min")
        srv.loop_cursor = True
        with pytest.raises(PaginationError):
            client.stream("BTC.X", pages=5, backfill_latency="1min")


OFFLINE = r"""
import socket, sys
def refuse(*a, **k): raise OSError("network disabled by the test")
socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse
import nltk; nltk.data.path[:] = [sys.argv[1]]  # an empty directory: any NLTK data lookup would fail
from trading.nlp.models import LMScorer, MiniLMEncoder, VaderScorer
import os
assert os.environ.get("HF_HUB_OFFLINE") is None
import numpy as np
from trading.nlp.models import MiniLMSentiment
enc = MiniLMEncoder()
texts = ["Revenue rose 20% on strong demand", "Revenue fell 20% on weak demand", "The cafeteria serves soup on Fridays", "x"]
e = enc.encode(texts, batch_size=3)
assert os.environ["HF_HUB_OFFLINE"] == "1"
assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)  # L2-normalised
assert np.allclose(enc.encode([texts[1]])[0], e[1], atol=1e-5)  # length-sorting and batching keep each text's embedding
tiny = ["Profit surged and guidance was raised", "Shares soared after a record quarter", "Losses deepened and the dividend was cut",
        "The stock plunged after a fraud probe", "The annual meeting is scheduled for May", "The company will report results on Thursday"]
m = MiniLMSentiment(enc).fit(tiny, [1, 1, -1, -1, 0, 0])
sc = m.score(["Earnings jumped and the outlook improved", "Bankruptcy fears sent the shares down"])
assert m.name.startswith("minilm-logreg:") and sc[0] > sc[1], sc
print(e.shape, LMScorer().score(["Losses widened"])[0], VaderScorer().score(["great"])[0] > 0)
"""


def test_models_load_with_the_network_switched_off(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: nothing could come from a previous download either
    (tmp_path / "nltk").mkdir()
    out = subprocess.run([sys.executable, "-c", OFFLINE, str(tmp_path / "nltk")], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["(4,", "384)", "-1.0", "True"]


def test_the_sentiment_panel_is_point_in_time():
    rng = np.random.default_rng(11)
    idx = pd.bdate_range("2022-01-03", periods=120, tz="UTC") + pd.Timedelta("21h")
    n = 400
    published = idx[0] + pd.to_timedelta(rng.uniform(-3, 170, n), unit="D")
    delay = pd.to_timedelta(np.where(rng.random(n) < 0.3, rng.uniform(1, 6, n), rng.uniform(0, 0.01, n)), unit="D")
    ev = pd.DataFrame({"symbol": rng.choice(SYMS, n), "ts_event": published, "known_at": published + delay, "score": rng.uniform(-1, 1, n)})
    full = decayed_sentiment(ev, idx, 3.0)
    leaky = decayed_sentiment(ev.assign(known_at=ev["ts_event"]), idx, 3.0)  # publication time only: late deliveries leak
    differs = 0
    for b in range(5, len(idx), 7):
        t = idx[b]
        cut = decayed_sentiment(ev[ev["known_at"] <= t], idx[: b + 1], 3.0, symbols=list(full.columns))
        pd.testing.assert_series_equal(cut.iloc[-1], full.iloc[b], check_names=False)
        cut_leaky = decayed_sentiment(ev[ev["known_at"] <= t].assign(known_at=lambda d: d["ts_event"]), idx[: b + 1], 3.0, symbols=list(full.columns))
        differs += not np.allclose(cut_leaky.iloc[-1].to_numpy(), leaky.iloc[b].to_numpy(), equal_nan=True)
    assert differs > 0  # the same check catches a panel built on publication time

"""Canary: distinctive secrets planted in the environment never come out of the process, whole or in pieces.

The secrets are configured the way a user configures them (environment variables), then every command
is driven into its error paths: bad arguments, unreachable URLs, a venue that answers 401 with the key in a
body cut at 200 characters, a database that can't be reached with the password in an upper-case or
user-less URL. Nothing printed, logged or written may contain a canary or any 6-character piece of one.
"""
import os
import subprocess
import sys

import pytest

from conftest import BIN, run
from fakes.alpaca_server import AlpacaServer, make_bars

# random-looking on purpose: no 6-character piece of them occurs in ordinary output (field names, words)
KEY = "PKQ7X2M9ZL4WJ8VB3N"
SECRET = "Zq8vT3kW9xRm2LpY7dHf4sNb6Gc"
DB_PW = "Hx4qV8mZ2kW7tJ9r"
CCXT_KEY, CCXT_SECRET = "Yt6pR3vN8qB2mX5w", "Wk9zD4hF7jL2sQ8gC5"
CANARIES = [KEY, SECRET, DB_PW, CCXT_KEY, CCXT_SECRET]


def _pieces(secret, n=6):
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


def assert_no_canary(text, where=""):
    for c in CANARIES:
        leaked = [p for p in _pieces(c) if p in text]
        assert not leaked, f"{where}: piece(s) {leaked[:3]} of a canary secret leaked:\n{text[-2000:]}"


@pytest.fixture
def env(tmp_path):
    e = {**os.environ, "APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET, "TRADING_CCXT_API_KEY": CCXT_KEY,
         "TRADING_CCXT_SECRET": CCXT_SECRET, "TRADING_DB_URL": f"POSTGRESQL+psycopg://:{DB_PW}@127.0.0.1:9/trading",
         "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return e


def _run(env, cwd, *args):
    res = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert_no_canary(res.stdout + res.stderr, " ".join(map(str, args[:3])))
    return res


def test_the_canary_detector_detects():
    with pytest.raises(AssertionError): assert_no_canary(f"error body ... {SECRET[:6]}")
    with pytest.raises(AssertionError): assert_no_canary(f"postgresql://u:{DB_PW}@h/db")


def test_settings_never_show_a_secret(env, tmp_path):
    code = ("from trading.core.settings import Settings; s = Settings(_env_file=None); "
            "print(repr(s)); print(s); print(s.__dict__); print(vars(s)); print(s.model_dump()); print(s.model_dump_json()); "
            "print(s.db_url.__repr__()); import json; print(json.dumps({'s': repr(s)}))")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert_no_canary(res.stdout + res.stderr, "settings")
    assert "**********" in res.stdout


def test_logs_never_show_a_secret(env, tmp_path):
    code = ("import logging, sys; from trading.core.settings import Settings, install_redaction; "
            "logging.basicConfig(stream=sys.stdout, level=logging.INFO); s = Settings(_env_file=None); install_redaction(s); "
            "log = logging.getLogger('x'); "
            f"log.info('key %s secret %s', {KEY!r}, {SECRET!r}); log.warning('body: ' + ('y' * 180 + {SECRET!r})[:200]); "
            f"log.error('url %s', s.db_url)\n"
            f"try: raise RuntimeError('venue said ' + {CCXT_SECRET!r}[:12])\n"
            "except RuntimeError: log.exception('failed')")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert_no_canary(res.stdout + res.stderr, "logging")
    assert res.stdout.count("**********") >= 4, res.stdout


def test_trading_data_error_paths(env, tmp_path):
    out = tmp_path / "data"
    # unreachable venues
    _run(env, tmp_path, BIN / "trading-data", "snapshot", "--source", "alpaca", "--symbols", "SPY", "--base-url", "http://127.0.0.1:9",
         "--timeout", "2", "--max-retries", "0", "--out", out)
    _run(env, tmp_path, BIN / "trading-data", "snapshot", "--source", "ccxt", "--exchange", "binance", "--symbols", "BTC/USDT",
         "--base-url", f"http://user:{CCXT_SECRET}@127.0.0.1:9", "--timeout", "2", "--max-retries", "0", "--out", out)
    # bad arguments that echo what was typed
    _run(env, tmp_path, BIN / "trading-data", "snapshot", "--source", "alpaca", "--symbols", "SPY", "--timeout", "nan", "--out", out)
    # a venue that answers 401 with the secret in its body, cut at 200 characters inside the secret
    srv = AlpacaServer({"SPY": make_bars([])}).start()
    try:
        for pad in (171, 175, 190, 196):
            srv.fault("/v2/stocks/bars", status=401, body="x" * pad + f'{{"message": "{SECRET} {KEY}"}}', times=10)
            res = _run(env, tmp_path, BIN / "trading-data", "snapshot", "--source", "alpaca", "--symbols", "SPY", "--start", "2024-01-02",
                       "--end", "2024-01-05", "--base-url", srv.url, "--timeout", "5", "--max-retries", "0", "--out", out)
            assert res.returncode == 2 and "401" in res.stderr, res.stderr
            srv._faults.clear()
    finally:
        srv.stop()
    assert not out.exists()


def test_trading_db_error_paths(env, tmp_path):
    for url in (f"POSTGRESQL+psycopg://:{DB_PW}@127.0.0.1:9/trading", f"postgresql+psycopg://bot:{DB_PW}@127.0.0.1:9/trading",
                f"postgresql://:{DB_PW}@127.0.0.1:9/t", f"mysql://u:{DB_PW}@h/db"):
        _run({**env, "TRADING_DB_URL": url}, tmp_path, BIN / "trading-db", "current")
        _run(env, tmp_path, BIN / "trading-db", "--url", url, "upgrade")


def test_trading_db_unparseable_url(env, tmp_path):
    _run({**env, "TRADING_DB_URL": f"not a url {DB_PW}"}, tmp_path, BIN / "trading-db", "current")


def test_trading_bot_error_paths(env, tmp_path):
    _run(env, tmp_path, BIN / "trading-bot", "status", "nobot")
    _run(env, tmp_path, BIN / "trading-bot", "run", "--strategy", "sma_crossover", "--broker", "alpaca", "--iterations", "1",
         "--trading-url", "http://127.0.0.1:9", "--data-url", "http://127.0.0.1:9", "--request-timeout", "1")
    _run(env, tmp_path, BIN / "trading-bot", "run", "--strategy", "no_such_strategy", "--params", f'{{"k": "{SECRET}"}}')


# --- monitoring and streams (trading.monitor) ---------------------------------------------------------------------
MONITOR_SCRIPT = r'''
import asyncio, json, logging, os, sys, time, urllib.request, urllib.error
from pathlib import Path
sys.path.insert(0, os.environ["TESTS_DIR"])
out = Path(sys.argv[1])
logging.basicConfig(level=logging.DEBUG, handlers=[logging.FileHandler(out / "debug.log"), logging.StreamHandler(sys.stderr)],
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
from trading.core.settings import Settings, install_redaction
settings = Settings()
install_redaction(settings)
from monitor_bot import PaperBotThread
from trading.monitor.metrics import write_stage_prom
from trading.monitor.stream import JournalPublisher, StreamHub, StreamServer, ThreadedStreamClient
from trading.pipeline import _record_stage_metrics

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.read().decode()
    except urllib.error.HTTPError as e: return e.read().decode()

# a bot whose settings hold every secret, its exporter, a stream of its journal, stage metrics
_record_stage_metrics("prepare", 1.0, True, out, out / "metrics")
bot = PaperBotThread(out, bar_seconds=0.0, textfile_dir=out / "metrics")
bot.data = bot.data.until(bot.data.index[50])
hub = StreamHub()
token = os.environ["STREAM_TOKEN"]
srv = StreamServer(hub, token).start()
feed = JournalPublisher(bot.om.engine, hub, from_start=True, interval=0.05)
client = ThreadedStreamClient(srv.url, token).start()
bot.start(); feed.start()
bot._thread.join(120); time.sleep(0.3); feed.poll()
frames = []
while True:
    try: frames.append(client.get(timeout=1.0))
    except Exception: break
(out / "stream.jsonl").write_text("\n".join(json.dumps(f) for f in frames))
assert any(f.get("topic") == "fills" for f in frames), "no fills streamed"
# an attacker tries a secret as the stream token, and garbage
async def hello(frame):
    from websockets.asyncio.client import connect
    async with connect(srv.url) as ws:
        await ws.send(frame)
        try: await ws.recv()
        except Exception as e: return repr(e)
for f in (json.dumps({"token": os.environ["APCA_API_SECRET_KEY"]}), os.environ["APCA_API_KEY_ID"]):
    print("refused:", asyncio.run(hello(f)))
(out / "metrics.txt").write_text(get(bot.exporter.url + "/metrics"))
(out / "readyz.json").write_text(get(bot.exporter.url + "/readyz") + get(bot.exporter.url + "/healthz") + get(bot.exporter.url + "/nope"))
# the store goes away: a PostgreSQL URL whose password is a canary, on a port nobody serves
from trading.store.engine import make_engine
bot.om.engine = make_engine(settings.db_url, lock_timeout=None)
(out / "metrics_down.txt").write_text(get(bot.exporter.url + "/metrics"))
(out / "readyz_down.json").write_text(get(bot.exporter.url + "/readyz"))
from trading.monitor.exporter import readiness
print(readiness(bot.om).text())
try:
    bot.om.engine.connect()
except Exception:
    logging.getLogger("canary").exception("store down")
client.stop(); feed.stop(); srv.stop(); bot.exporter.stop()
'''


def test_monitor_servers_and_streams_never_show_a_secret(env, tmp_path):
    "A bot, its exporter, its stream and a stage's metrics at DEBUG with every canary set: logs, tracebacks, /metrics, /readyz, stream payloads, .prom files and the DB dump hold none."
    import sqlite3
    out = tmp_path / "out"; out.mkdir()
    e = {**env, "TESTS_DIR": str(os.path.dirname(os.path.abspath(__file__))), "STREAM_TOKEN": SECRET + "-stream-token",
         "TRADING_DB_URL": f"postgresql+psycopg://trading:{DB_PW}@127.0.0.1:9/trading"}
    res = subprocess.run([sys.executable, "-c", MONITOR_SCRIPT, str(out)], env=e, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_no_canary(res.stdout + res.stderr, "monitor script output")
    assert res.stdout.count("refused:") == 2 and "4401" in res.stdout
    assert "DEBUG" in (out / "debug.log").read_text()
    assert "Traceback" in res.stderr  # the store-down traceback was logged (and is checked)
    dump = "\n".join(sqlite3.connect(out / "e2e.db").iterdump())
    files = {p.name: p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix in (".log", ".txt", ".json", ".jsonl", ".prom")}
    assert {"debug.log", "metrics.txt", "readyz.json", "stream.jsonl", "prepare.prom", "metrics_down.txt", "readyz_down.json"} <= set(files)
    assert 'trading_store_up{bot="e2e"} 0.0' in files["metrics_down.txt"]  # the scrape answered while the store was down
    for name, text in {**files, "db dump": dump}.items():
        assert_no_canary(text, name)
    # the stream token is a secret too
    for name, text in {**files, "db dump": dump, "output": res.stdout + res.stderr}.items():
        assert e["STREAM_TOKEN"] not in text, name

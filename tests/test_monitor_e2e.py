"""End to end: a paper bot and its exporter, a real Prometheus scraping it, a real Alertmanager, and a loopback
webhook receiver. An induced halt (the `trading-bot halt` command, another process) raises TradingBotHalted at the
webhook; every Grafana panel's query returns data; `/readyz` and `trading-bot status` agree.

Bounded: Prometheus scrapes and evaluates every second and Alertmanager's group_wait is 1 s (the project's
files otherwise: the rules and routes are the ones in monitor/)."""
import json
import queue
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import BIN, ROOT, run
from monitor_bot import PaperBotThread
from trading.monitor import services
from trading.monitor.metrics import write_stage_prom

pytestmark = pytest.mark.skipif(not (Path(services.PROMETHEUS).exists() and Path(services.ALERTMANAGER).exists()),
                                reason="Debian prometheus / prometheus-alertmanager not installed (make services)")


class Webhook:
    "A loopback receiver of Alertmanager's webhook posts."
    def __init__(self):
        self.posts = queue.Queue()
        hook = self
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.put(json.loads(body))
                self.send_response(200); self.end_headers()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, alertname, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try: post = self.posts.get(timeout=0.5)
            except queue.Empty: continue
            for a in post.get("alerts", []):
                if a["labels"].get("alertname") == alertname and a["status"] == "firing": return a
        return None


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if v := cond(): return v
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mon")
    stages = tmp / "stages"
    write_stage_prom("prepare", 2.5, True, rows=120, out_dir=stages)
    bot = PaperBotThread(tmp, textfile_dir=stages).start()
    hook = Webhook()
    am_port = services.free_port()
    cfg = services.render_configs(tmp / "cfg", targets=[f"127.0.0.1:{bot.exporter.port}"], alertmanager=f"127.0.0.1:{am_port}",
                                  webhook_url=hook.url, scrape_interval="1s", evaluation_interval="1s", group_wait="1s")
    am = services.alertmanager(cfg, tmp / "am", am_port).start()
    prom = services.prometheus(cfg, tmp / "prom").start()
    try:
        yield dict(bot=bot, hook=hook, prom=prom, am=am, tmp=tmp)
    finally:
        prom.stop(); am.stop(); bot.stop(); hook.server.shutdown()


def test_prometheus_scrapes_the_bot(stack):
    prom = stack["prom"]
    up = _wait(lambda: [r for r in services.query(prom.url, 'up{job="trading-bot"}') if r["value"][1] == "1"], 20, "a successful scrape")
    assert up
    eq = _wait(lambda: services.query(prom.url, "trading_equity"), 20, "trading_equity")
    assert eq[0]["metric"]["bot"] == "e2e"
    assert stack["bot"].error is None


def test_every_grafana_panel_query_returns_data(stack):
    prom, bot = stack["prom"], stack["bot"]
    dash = json.loads((ROOT / "monitor" / "grafana" / "dashboards" / "trading.json").read_text())
    # structure: unique ids, a uid, every panel on the 24-column grid with a PromQL target on the provisioned datasource
    ids = [p["id"] for p in dash["panels"]]
    assert dash["uid"] and len(ids) == len(set(ids))
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        assert p["datasource"]["uid"] == "trading-prometheus" and p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
    assert {"Portfolio", "Bots side by side", "Execution", "Risk", "Data and network health", "Pipeline stages"} <= {p["title"] for p in dash["panels"] if p["type"] == "row"}
    _wait(lambda: bot.bars_done >= 30 and services.query(prom.url, "count_over_time(trading_equity[1m]) > 5"), 30, "some history in Prometheus")
    empty = []
    for p in panels:
        for t in p["targets"]:
            expr = t["expr"].replace("$bot", ".*").replace("$__rate_interval", "30s")
            if not services.query(prom.url, expr): empty.append((p["title"], expr))
    assert not empty, f"panels whose query returns nothing: {empty}"


def test_status_and_readyz_agree(stack):
    bot = stack["bot"]
    with urllib.request.urlopen(bot.exporter.url + "/readyz", timeout=5) as r:
        ready = json.loads(r.read())
    assert ready["ready"] is True, ready
    res = run(BIN / "trading-bot", "status", "--db", bot.db, "--state-dir", bot.state_dir, "--name", "e2e", "--max-data-age", "3D")
    assert "ready      yes" in res.stdout, res.stdout
    for name, c in ready["checks"].items():
        assert re.search(rf"ok\s+{name}\s", res.stdout), (name, res.stdout)


def test_an_induced_halt_reaches_the_webhook(stack):
    bot, hook = stack["bot"], stack["hook"]
    run(BIN / "trading-bot", "halt", "--db", bot.db, "--state-dir", bot.state_dir, "--name", "e2e", "--reason", "e2e test halt")
    alert = hook.wait_for("TradingBotHalted", timeout=30)
    assert alert is not None, "no TradingBotHalted at the webhook within 30 s\n" + stack["prom"].log_tail() + stack["am"].log_tail()
    assert alert["labels"]["bot"] == "e2e" and alert["labels"]["severity"] == "critical"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bot.exporter.url + "/readyz", timeout=5)
    assert e.value.code == 503 and "e2e test halt" in e.value.read().decode()
    res = run(BIN / "trading-bot", "status", "--db", bot.db, "--state-dir", bot.state_dir, "--name", "e2e")
    assert "ready      NO" in res.stdout and "halted: e2e test halt" in res.stdout, res.stdout


def test_trading_bot_run_serves_metrics_and_a_stream_while_it_runs(tmp_path):
    import os
    targets = tmp_path / "targets"
    base = [BIN / "trading-bot", "run", "--strategy", "sma_crossover", "--params", '{"fast": 3, "slow": 10}', "--bars", "20",
            "--db", f"sqlite:///{tmp_path}/bots.db", "--state-dir", tmp_path / "bots", "--metrics-port", "0", "--metrics-targets", targets]
    res = run(*base, "--stream-port", "0", check=False)  # no TRADING_STREAM_TOKEN in the environment
    assert res.returncode == 2 and "TRADING_STREAM_TOKEN" in res.stderr, res.stderr
    env = {**os.environ, "TRADING_STREAM_TOKEN": "t" * 24, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    import subprocess
    res = subprocess.run([str(a) for a in base + ["--stream-port", "0", "--name", "cli-mon"]], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"metrics http://127\.0\.0\.1:\d+/metrics", res.stdout) and re.search(r"stream ws://127\.0\.0\.1:\d+", res.stdout), res.stdout
    assert "t" * 24 not in res.stdout + res.stderr
    assert targets.is_dir() and not list(targets.glob("*.json"))  # registered while running, gone when the bot stopped

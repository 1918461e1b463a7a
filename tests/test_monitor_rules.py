"""The project's alert rules, Prometheus and Alertmanager configs pass the tools' own checks and unit tests
(promtool / amtool from Debian; skipped, with the reason, only where a binary is absent)."""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MON = ROOT / "monitor"


def _tool(path):
    if not Path(path).exists(): pytest.skip(f"{path} is not installed (make services installs the Debian package)")
    return path


def _run(*argv):
    return subprocess.run([str(a) for a in argv], cwd=MON, capture_output=True, text=True, timeout=60)


def test_promtool_unit_tests_of_every_rule_pass():
    res = _run(_tool("/usr/bin/promtool"), "test", "rules", "alerts_test.yml")
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_every_rule_has_a_unit_test():
    rules = {r["alert"] for g in yaml.safe_load((MON / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tested = {t["alertname"] for case in yaml.safe_load((MON / "alerts_test.yml").read_text())["tests"] for t in case["alert_rule_test"]
              if t.get("exp_alerts")}
    assert rules == tested, f"rules without a firing test: {sorted(rules - tested)}"


def test_a_broken_rule_fails_its_unit_test(tmp_path):
    "The unit tests can fail: a halt rule that looks at the wrong state is caught."
    shutil.copy(MON / "alerts_test.yml", tmp_path)
    (tmp_path / "alerts.yml").write_text((MON / "alerts.yml").read_text().replace('trading_state{state="halted"} == 1', 'trading_state{state="reducing"} == 1'))
    res = subprocess.run([_tool("/usr/bin/promtool"), "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "TradingBotHalted" in res.stdout + res.stderr


def test_promtool_checks_rules_and_config():
    res = _run(_tool("/usr/bin/promtool"), "check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run("/usr/bin/promtool", "check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_amtool_checks_the_alertmanager_config():
    res = _run(_tool("/usr/bin/amtool"), "check-config", "alertmanager.yml")
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr
    cfg = yaml.safe_load((MON / "alertmanager.yml").read_text())
    urls = [w["url"] for r in cfg["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls)


def test_alertmanager_routes_a_halt_to_the_webhook():
    res = _run(_tool("/usr/bin/amtool"), "config", "routes", "test", "--config.file=alertmanager.yml", "--verify.receivers=trading-webhook",
               "alertname=TradingBotHalted", "severity=critical", "bot=a")
    assert res.returncode == 0, res.stdout + res.stderr

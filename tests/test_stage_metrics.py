"""`dvc metrics show` and `dvc plots show` on the pipeline's own dvc.yaml: a narrow table, every run in the equity plot."""
import json
import shutil

import yaml

from conftest import ROOT, run
from trading.analytics.stage_metrics import claim_row, strategy_row, write_stage_metrics

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
REPORT_DIRS = {"prepare": "prepare", "backtest": "backtests", "options": "options", "risk": "risk", "train_regime": "train_regime", "paper": "paper",
               "crypto": "crypto", "walkforward": "walkforward", "rl": "rl", "sentiment": "sentiment"}
TERMINAL = 230  # characters: a maximised 1080p terminal (1,920 px at 8 px a column is 240); the nested metrics.json files made a 95,503-character line
# (the Path column alone is 97 wide: DVC prints each row's file, and the risk claims have 69-character names)


def _entries(stage, kind):
    return {k: v for e in DVC["stages"][stage].get(kind, []) for k, v in (e.items() if isinstance(e, dict) else [(e, {})])}


def test_every_stage_declares_its_rows_as_metrics_and_its_detail_as_an_uncached_out():
    for stage, d in REPORT_DIRS.items():
        assert _entries(stage, "metrics") == {f"reports/{d}/metrics": {"cache": False}}, stage
        outs = _entries(stage, "outs")
        for f in ("metrics.json", "details.json"): assert outs[f"reports/{d}/{f}"] == {"cache": False}, (stage, f)


def test_the_equity_plot_draws_every_backtest_run_on_a_date_axis():
    (plot,) = DVC["plots"]
    (spec,) = plot.values()
    assert spec["y"] == {"reports/backtests/equity.csv": [r["name"] for r in PARAMS["backtest"]["runs"]]}  # all nine, in order
    assert spec["x"] == "date"
    assert not any("plots" in st for st in DVC["stages"].values())  # a stage-level plot of equity.csv would draw its last column only
    assert _entries("backtest", "outs")["reports/backtests/equity.csv"] == {"cache": False}
    template = json.loads((ROOT / ".dvc" / "plots" / f"{spec['template']}.json").read_text())
    assert template["encoding"]["x"]["type"] == "temporal"  # a quantitative axis cannot place "2001-01-02"


def _claims(d):  # claim names from the committed reports (the headline and the old nested layout both key them)
    f = ROOT / "reports" / d / "metrics.json"
    return json.loads(f.read_text()).get("claims", {}) if f.exists() else {}


def _headlines():
    "Headlines of the real shape: the run, strategy, dataset and claim names the pipeline's params and reports use."
    run_row = {"cagr": -0.123456, "sharpe_ratio": -1.234567, "max_drawdown": -0.654321, "annualized_volatility": 0.234567, "annualized_turnover": 12.345678}
    claims = lambda d: {k: claim_row({"verdict": "does not hold", "headline": -0.1234567}) for k in _claims(d)}
    return {
        "prepare": {"datasets": {n: {"bars": 166260, "symbols": 20, "volatility": 0.292767} for n in PARAMS["prepare"]["datasets"]}},
        "backtests": {"runs": {r["name"]: strategy_row(run_row) for r in PARAMS["backtest"]["runs"]}, "claims": claims("backtests")},
        "options": {"strategies": {**{s["name"]: strategy_row(run_row) for s in PARAMS["options"]["strategies"]}, "underlying index": strategy_row(run_row)},
                    "claims": claims("options")},
        "risk": {"limits": {"limited buy_and_hold_kill_switch_only": {"max_drawdown": -0.402573}}, "claims": claims("risk")},
        "train_regime": {"index": {"SMA 10-month timing": {"cagr": 0.059, "max_drawdown": -0.1926}}, "claims": claims("train_regime")},
        "paper": {"runs": {r["name"]: {"agree": True} for r in PARAMS["paper"]["runs"]}},
        "crypto": {"runs": {r["name"]: strategy_row(run_row) for r in PARAMS["crypto"]["runs"]},
                   "claims": {c["name"]: claim_row({"verdict": "holds in part", "headline": 0.1234567}) for c in PARAMS["crypto"]["claims"]},
                   "lp_synthetic": {f"lp_{p['policy']}_{i}_synthetic": strategy_row(run_row) for i, p in enumerate(PARAMS["crypto"]["lp"]["policies"])}},
        "walkforward": {"walkforward": {f"walkforward_{PARAMS['walkforward']['study']['strategy']}_oos": {"cagr": 0.061581, "sharpe": 0.630652, "max_drawdown": -0.215}}},
        "rl": {"books": {f"SP500_{b}": {"cagr": 0.061581, "sharpe": 0.630652, "max_drawdown": -0.215} for b in ("dqn_pooled", "buy_and_hold", "sma_crossover", "random_same_turnover")},
               "claims": claims("rl")},
        "sentiment": {"scorers": {m: {"accuracy": 0.6458333} for m in ("vader:3.3.2", "lm:0.1.1", "minilm-logreg:0123456789ab")}},
    }


def test_dvc_metrics_show_fits_a_terminal(tmp_path):
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    run("git", "init", "-q", cwd=tmp_path)
    run("dvc", "init", "-q", cwd=tmp_path)
    heads = _headlines()
    assert sum(len(g) for h in heads.values() for g in h.values()) > 30  # the real number of rows, not a toy
    for d, head in heads.items(): write_stage_metrics(tmp_path / "reports" / d / "metrics.json", head, details={"everything": "else"})
    lines = run("dvc", "metrics", "show", cwd=tmp_path).stdout.splitlines()
    header = lines[0].split()
    assert len(lines) == 1 + sum(len(g) for h in heads.values() for g in h.values())  # a row per run, strategy, dataset and claim
    assert len(header) <= 12, header  # shared column names, not one per run x statistic
    assert max(map(len, lines)) <= TERMINAL, max(map(len, lines))

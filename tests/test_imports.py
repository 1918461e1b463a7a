"""`import trading` (and every module of it) must not pull in heavy libraries: they load lazily where used."""
import json
import pkgutil

import trading
from conftest import run

HEAVY = ["torch", "transformers", "stable_baselines3", "ccxt", "alpaca", "sklearn", "skfolio", "arch",
         "statsmodels", "exchange_calendars", "papermill", "nbconvert", "dvc", "matplotlib", "plotly"]


def _loaded_after(stmt: str) -> set[str]:
    code = f"import sys, json; {stmt}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    return set(json.loads(run("python", "-c", code).stdout))


def test_import_trading_is_light():
    assert not set(HEAVY) & _loaded_after("import trading")


def test_every_module_imports_without_heavy_libraries():
    mods = [m.name for m in pkgutil.walk_packages(trading.__path__, "trading.") if not m.name.endswith("_modidx")]
    assert len(mods) >= 10, mods
    loaded = _loaded_after("; ".join(f"import {m}" for m in mods))
    assert not set(HEAVY) & loaded, sorted(set(HEAVY) & loaded)

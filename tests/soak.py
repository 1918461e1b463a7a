"""Crash harness: SIGKILL a paper bot at the named points of the order lifecycle, restart it, and check that nothing was lost or doubled.

    python tests/soak.py --kills 1000        # what `make soak` runs
    python tests/soak.py --kills 50 --seed 1 # the CI subset (tests/test_crash_soak.py)

Each *epoch* is one bot replaying `--bars` bundled bars on a paper venue whose book is persisted on
disk (the venue survives the bot; it is the oracle). The bot runs in a forked child with
TRADING_CRASH_AT=<point>:<n>, so it kills itself with SIGKILL the n-th time it passes <point>; the
harness restarts it until the replay completes, then compares three things:
  - the venue's orders with the journal (lost: an order one side has and the other does not, or a
    journal order left non-final; duplicated: two venue orders for one decision and symbol),
  - the venue's positions and cash with the journal's (derived from its fills),
  - the venue's final positions and cash with a crash-free run of the same epoch: crashes must not
    change what was traded.
Forking after the imports makes a restart cost milliseconds instead of seconds; the child is still
a real process killed by a real SIGKILL in the middle of whatever it was doing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from trading.live.broker import CRASH_POINTS
from trading.live.cli import main as bot_main
from trading.live.paper import PaperVenue
from trading.store.engine import make_engine, read
from trading.store.schema import orders as orders_t
from sqlalchemy import select

SYMBOLS = "AAPL,JPM,XOM,MSFT,KO"
PARAMS = '{"fast": 2, "slow": 6, "allocation": "equal"}'
ENDS = ["2008-12-31", "2011-06-30", "2015-09-30", "2018-03-31", "2020-06-30", "2022-12-31"]


def run_bot(argv: list[str], crash_at: str | None) -> int:
    "Run `trading-bot` in a forked child; returns its exit code, or -signal if it was killed."
    pid = os.fork()
    if pid == 0:  # child
        try:
            if crash_at:
                os.environ["TRADING_CRASH_AT"] = crash_at
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            code = bot_main(argv)
        except BaseException:  # noqa: BLE001 - report and exit; never return into the harness loop
            import traceback
            traceback.print_exc()
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def bot_args(work: Path, name: str, end: str, bars: int, cmd: str = "run") -> list[str]:
    common = ["--db", f"sqlite:///{work}/journal.db", "--state-dir", str(work / "venues")]
    if cmd != "run":
        return [cmd, "--name", name, *common]
    return ["run", "--strategy", "sma_crossover", "--params", PARAMS, "--name", name, "--symbols", SYMBOLS,
            "--bars", str(bars), "--end", end, *common]


def venue_state(work: Path, name: str) -> PaperVenue:
    return PaperVenue(state_path=work / "venues" / f"{name}.venue.json")


def audit(work: Path, name: str, reference: PaperVenue) -> dict:
    "Compare the venue (oracle) with the journal and with the crash-free reference run."
    venue = venue_state(work, name)
    eng = make_engine(f"sqlite:///{work}/journal.db")
    try:
        with read(eng) as conn:
            rows = conn.execute(select(orders_t.c.client_order_id, orders_t.c.status, orders_t.c.filled_qty)
                                .where(orders_t.c.run_id == name)).all()
    finally:
        eng.dispose()
    journal = {r.client_order_id: r for r in rows}
    at_venue = venue.orders
    lost = [c for c in at_venue if c not in journal]  # the venue has an order the journal forgot
    lost += [c for c, r in journal.items() if r.status == "new"]  # an intent left unsent
    lost += [c for c, r in journal.items() if c in at_venue and r.status != at_venue[c].status.value]  # the journal's status is not the venue's
    lost += [c for c, r in journal.items() if r.status != "rejected" and c not in at_venue and r.status != "canceled"]
    lost += [c for c, r in journal.items() if c in at_venue and r.filled_qty != at_venue[c].filled_qty]
    per_decision = Counter((c.rsplit("-", 2)[1], o.symbol) for c, o in at_venue.items())
    duplicates = sum(n - 1 for n in per_decision.values() if n > 1)
    # the journal's own view of positions and cash, computed by the manager in a child (no DB handles in the parent)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        from trading.live.manager import OrderManager
        from trading.live.paper import PaperBroker
        eng2 = make_engine(f"sqlite:///{work}/journal.db")
        om = OrderManager(eng2, PaperBroker(venue_state(work, name)), name)
        out = {"positions": {s: str(q) for s, q in om.positions().items()}, "cash": str(om.cash())}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    j = json.loads(data)
    mismatches = []
    if {s: Decimal(q) for s, q in j["positions"].items()} != venue.positions():
        mismatches.append(f"journal positions {j['positions']} != venue {venue.positions()}")
    if Decimal(j["cash"]) != venue.cash:
        mismatches.append(f"journal cash {j['cash']} != venue {venue.cash}")
    if venue.positions() != reference.positions() or venue.cash != reference.cash:
        mismatches.append(f"venue after crashes {venue.positions()} cash {venue.cash} != crash-free run {reference.positions()} cash {reference.cash}")
    return {"lost": sorted(set(lost)), "duplicates": duplicates, "mismatches": mismatches, "orders": len(at_venue)}


def soak(kills: int, seed: int = 0, bars: int = 40, max_n: int = 6, work: Path | None = None, verbose: bool = False) -> dict:
    from trading.data.bundled import BundledSource
    BundledSource(["sp20"]).bars(SYMBOLS.split(","))  # load the bundled data once; forked bots inherit it
    rng = random.Random(seed)
    own = work is None
    work = Path(work or tempfile.mkdtemp(prefix="soak-"))
    totals = {"kills": 0, "lost": 0, "duplicates": 0, "mismatches": 0, "epochs": 0, "orders": 0, "restarts": 0, "failures": []}
    by_point: Counter = Counter()
    t0 = time.time()
    epoch = 0
    try:
        while totals["kills"] < kills:
            end = rng.choice(ENDS)
            name, ref_name = f"soak{epoch}", f"ref{epoch}"
            code = run_bot(bot_args(work, ref_name, end, bars), None)
            if code != 0:
                totals["failures"].append(f"reference run {ref_name} exited {code}")
                break
            reference = venue_state(work, ref_name)
            while True:
                point = rng.choice(CRASH_POINTS)
                n = rng.randint(1, max_n)
                code = run_bot(bot_args(work, name, end, bars), f"{point}:{n}" if totals["kills"] < kills else None)
                totals["restarts"] += 1
                if code == -signal.SIGKILL:
                    totals["kills"] += 1
                    by_point[point] += 1
                    continue
                if code != 0:
                    totals["failures"].append(f"{name} exited {code} (crash point {point}:{n})")
                break
            if run_bot(bot_args(work, name, end, bars, "reconcile"), None) != 0:
                totals["failures"].append(f"{name}: final reconciliation did not match")
            a = audit(work, name, reference)
            totals["lost"] += len(a["lost"])
            totals["duplicates"] += a["duplicates"]
            totals["mismatches"] += len(a["mismatches"])
            totals["orders"] += a["orders"]
            totals["epochs"] += 1
            if verbose or a["lost"] or a["duplicates"] or a["mismatches"]:
                print(f"epoch {epoch} ({end}): kills so far {totals['kills']}, {a}", file=sys.stderr)
            epoch += 1
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    totals["by_point"] = dict(sorted(by_point.items()))
    totals["seconds"] = round(time.time() - t0, 1)
    return totals


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bars", type=int, default=40, help="bars per epoch")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    t = soak(a.kills, a.seed, a.bars, verbose=a.verbose)
    print(f"kills {t['kills']} / lost orders {t['lost']} / duplicate orders {t['duplicates']} / position mismatches {t['mismatches']}")
    print(f"  {t['epochs']} bots, {t['orders']} orders at the venue, {t['restarts']} starts, {t['seconds']} s; kills by point: {t['by_point']}")
    for f in t["failures"]:
        print(f"  FAILURE: {f}")
    return 0 if t["lost"] == t["duplicates"] == t["mismatches"] == 0 and not t["failures"] and t["kills"] >= a.kills else 1


if __name__ == "__main__":
    sys.exit(main())

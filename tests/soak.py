"""Crash harness: SIGKILL a paper bot at the named points of the order lifecycle, restart it, and check that nothing was lost or doubled.

    python tests/soak.py --kills 1000        # what `make soak` runs
    python tests/soak.py --kills 50 --seed 1 # the CI subset (tests/test_crash_soak.py)
    python tests/soak.py --venue alpaca --kills 200  # the bot trades over HTTP with a fake Alpaca API (see the section below)

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


def run_bot(argv: list[str], crash_at: str | None, env: dict | None = None, on_start=None) -> int:
    "Run `trading-bot` in a forked child (with `env` added to its environment); returns its exit code, or -signal if it was killed."
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.environ.update(env or {})
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
    if on_start:
        on_start(pid)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def journal_url(work: Path) -> str:
    "The bots' store: TRADING_SOAK_DB_URL (e.g. a scratch PostgreSQL database) or a SQLite file in the work folder."
    return os.environ.get("TRADING_SOAK_DB_URL") or f"sqlite:///{work}/journal.db"


def bot_args(work: Path, name: str, end: str, bars: int, cmd: str = "run") -> list[str]:
    common = ["--db", journal_url(work), "--state-dir", str(work / "venues")]
    if cmd != "run":
        return [cmd, "--name", name, *common]
    return ["run", "--strategy", "sma_crossover", "--params", PARAMS, "--name", name, "--symbols", SYMBOLS,
            "--bars", str(bars), "--end", end, *common]


def venue_state(work: Path, name: str) -> PaperVenue:
    return PaperVenue(state_path=work / "venues" / f"{name}.venue.json")


def audit(work: Path, name: str, reference: PaperVenue, venue: PaperVenue | None = None) -> dict:
    "Compare the venue (oracle; default: the bot's paper book on disk) with the journal and with the crash-free reference run."
    venue = venue if venue is not None else venue_state(work, name)
    eng = make_engine(journal_url(work))
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
        eng2 = make_engine(journal_url(work))
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
    # cash to 1e-12: Python's Decimal rounds each step to 28 digits, PostgreSQL's NUMERIC sums exactly
    if abs(Decimal(j["cash"]) - venue.cash) > Decimal("1e-12"):
        mismatches.append(f"journal cash {j['cash']} != venue {venue.cash}")
    if venue.positions() != reference.positions() or venue.cash != reference.cash:
        mismatches.append(f"venue after crashes {venue.positions()} cash {venue.cash} != crash-free run {reference.positions()} cash {reference.cash}")
    return {"lost": sorted(set(lost)), "duplicates": duplicates, "mismatches": mismatches, "orders": len(at_venue)}


def tally(totals: dict, a: dict, label: str, verbose: bool) -> None:
    "Add one epoch's audit to the totals; print it when anything went wrong (or always, verbose)."
    totals["lost"] += len(a["lost"])
    totals["duplicates"] += a["duplicates"]
    totals["mismatches"] += len(a["mismatches"])
    totals["orders"] += a["orders"]
    totals["epochs"] += 1
    if verbose or a["lost"] or a["duplicates"] or a["mismatches"]:
        print(f"{label}: kills so far {totals['kills']}, {a}", file=sys.stderr)


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
            tally(totals, audit(work, name, reference), f"epoch {epoch} ({end})", verbose)
            epoch += 1
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    totals["by_point"] = dict(sorted(by_point.items()))
    totals["seconds"] = round(time.time() - t0, 1)
    return totals


# -- the network variant: the bot trades through AlpacaBroker over HTTP ------------------------------------------------
#
# The harness process serves a fake Alpaca trading API (tests/fakes/alpaca_trading_server.py) on a PaperVenue with a
# simulated clock (`immediate=False`: market orders rest until the next bar) and a fake Alpaca data API. It drives the
# clock: for each bar it moves the venue to that bar (resting orders fill at its open) and reveals it to the data API,
# then runs `trading-bot run --broker alpaca --iterations 1 --interval 0` (the production wall-clock path, unchanged)
# until one run completes. Kills: the manager's crash points in the bot, plus "during_post" done by the server: it
# SIGKILLs the bot after the order took effect at the venue and before answering. The venue is the oracle.

ALPACA_KEYS = ("PKSOAKLOOPBACK01", "soak-loopback-secret-value-01")
NET_ENV = {"APCA_API_KEY_ID": ALPACA_KEYS[0], "APCA_API_SECRET_KEY": ALPACA_KEYS[1], "TRADING_ALPACA_PAPER": "true"}


def net_bars(seed: int, n: int) -> tuple[list, dict]:
    "`n` XNYS sessions ending yesterday and Alpaca wire bars (a seeded random walk per symbol) on them."
    import pandas as pd
    from fakes.alpaca_server import make_bars
    from trading.data.calendars import expected_timestamps
    today = pd.Timestamp.now(tz="UTC").normalize()
    sessions = list(expected_timestamps("XNYS", today - pd.Timedelta(days=3 * n + 30), today - pd.Timedelta(days=1)))[-n:]
    stamps = [pd.Timestamp(d.date(), tz="America/New_York").tz_convert("UTC") for d in sessions]  # Alpaca: midnight New York
    return sessions, {sym: make_bars(stamps, seed=seed * 100 + i, price=40.0 + 35 * i) for i, sym in enumerate(SYMBOLS.split(","))}


class NetVenue:
    "The fake Alpaca trading and data APIs for one bot, on a clock the harness moves bar by bar."
    def __init__(self, sessions: list, bars: dict, warm: int):
        from fakes.alpaca_server import AlpacaServer
        from fakes.alpaca_trading_server import AlpacaTradingServer
        self.sessions, self.bars = sessions, bars
        self.trading = AlpacaTradingServer(PaperVenue(cash=100_000, immediate=False), keys=ALPACA_KEYS, wall_clock=False).start()
        self.trading._httpd.handle_error = lambda request, address: None  # a client killed mid-request is expected here
        for sym, b in bars.items():
            self.trading.add_asset(sym, b[warm - 1]["c"])
        self.data = AlpacaServer({sym: [] for sym in bars}, keys=ALPACA_KEYS).start()
        for srv in (self.trading, self.data):  # answers go out as header + body writes: without this, Nagle + delayed ACK add 40 ms to each
            srv._httpd.RequestHandlerClass.disable_nagle_algorithm = True
        self.lookback_days = (sessions[-1] - sessions[0]).days + 10

    def show(self, k: int) -> None:
        "Move the venue to bar `k` (resting orders fill at its open) and let the data API serve bars up to it."
        self.trading.venue.on_bar(self.sessions[k], {sym: dict(open=b[k]["o"], high=b[k]["h"], low=b[k]["l"], close=b[k]["c"], volume=b[k]["v"])
                                                     for sym, b in self.bars.items()})
        self.data.stock_bars = {sym: b[:k + 1] for sym, b in self.bars.items()}

    def args(self, work: Path, name: str, cmd: str = "run") -> list[str]:
        common = ["--db", journal_url(work), "--state-dir", str(work / "venues"), "--trading-url", self.trading.url]
        if cmd != "run":
            return [cmd, "--name", name, *common]
        return ["run", "--strategy", "sma_crossover", "--params", PARAMS, "--name", name, "--broker", "alpaca", "--symbols", SYMBOLS,
                "--iterations", "1", "--interval", "0", "--lookback-days", str(self.lookback_days), "--request-timeout", "5", "--requests-per-minute", "60000",
                "--data-url", self.data.url, *common]

    def stop(self) -> None:
        self.data.stop()
        self.trading.stop()


class KillPlan:
    "Crash points in shuffled rounds; a point stays next until a bot actually died there, so every point gets its kills."
    def __init__(self, rng: random.Random, kills: int, max_n: int, totals: dict):
        self.rng, self.kills, self.max_n, self.totals, self.queue = rng, kills, max_n, totals, []

    def __call__(self):
        if self.totals["kills"] >= self.kills:
            return None
        if not self.queue:
            self.queue = self.rng.sample(CRASH_POINTS, len(CRASH_POINTS))
        return self.queue[0], self.rng.randint(1, self.max_n)

    def killed(self, point: str) -> None:
        if self.queue and self.queue[0] == point:
            self.queue.pop(0)


def net_epoch(work: Path, name: str, sessions: list, bars: dict, warm: int, plan, totals: dict, by_point: Counter) -> NetVenue | None:
    "One bot over the bars, restarted after every kill `plan()` asks for ((point, n) or None); returns its venue (None on failure)."
    v = NetVenue(sessions, bars, warm)
    for k in range(warm - 1, len(sessions)):
        v.show(k)
        while True:
            spec = plan()
            point, n = spec or (None, 0)
            if point == "during_post":  # done by the server, in the middle of the HTTP exchange
                v.trading.kill_after_post = [None, n]
            arm = lambda pid: v.trading.kill_after_post and v.trading.kill_after_post.__setitem__(0, pid)
            code = run_bot(v.args(work, name), f"{point}:{n}" if point and point != "during_post" else None, env=NET_ENV, on_start=arm)
            v.trading.kill_after_post = None
            totals["restarts"] += 1
            if code == -signal.SIGKILL:
                totals["kills"] += 1
                by_point[point] += 1
                if hasattr(plan, "killed"):
                    plan.killed(point)
                continue
            if code != 0:
                totals["failures"].append(f"{name} exited {code} at bar {k} (crash point {point}:{n})")
                v.stop()
                return None
            break
    if run_bot(v.args(work, name, "reconcile"), None, env=NET_ENV) != 0:
        totals["failures"].append(f"{name}: final reconciliation did not match")
    return v


def soak_alpaca(kills: int, seed: int = 0, bars: int = 10, warm: int = 8, max_n: int = 3, work: Path | None = None, verbose: bool = False) -> dict:
    "The crash harness over HTTP: `kills` SIGKILLs of bots trading through AlpacaBroker against the fake Alpaca API."
    import trading.data.alpaca, trading.live.alpaca, alpaca.data.historical, alpaca.trading.client  # noqa: F401,E401 - forked bots inherit them
    rng = random.Random(seed)
    own = work is None
    work = Path(work or tempfile.mkdtemp(prefix="soak-alpaca-"))
    totals = {"kills": 0, "lost": 0, "duplicates": 0, "mismatches": 0, "epochs": 0, "orders": 0, "restarts": 0, "failures": []}
    by_point: Counter = Counter()
    t0 = time.time()
    epoch = 0
    plan = KillPlan(rng, kills, max_n, totals)
    try:
        while totals["kills"] < kills and not totals["failures"]:
            sessions, wire = net_bars(seed * 1000 + epoch, warm + bars)
            name, ref_name = f"net{epoch}", f"netref{epoch}"
            ref = net_epoch(work, ref_name, sessions, wire, warm, lambda: None, totals, Counter())
            if ref is None:
                break
            v = net_epoch(work, name, sessions, wire, warm, plan, totals, by_point)
            if v is None:
                ref.stop()
                break
            try:
                a = audit(work, name, ref.trading.venue, venue=v.trading.venue)
            finally:
                v.stop()
                ref.stop()
            tally(totals, a, f"epoch {epoch}", verbose)
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
    p.add_argument("--bars", type=int, default=None, help="bars per epoch (default: paper 40, alpaca 10)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--db-url", help="the bots' store (default: a SQLite file); e.g. an empty PostgreSQL database")
    p.add_argument("--venue", choices=["paper", "alpaca"], default="paper",
                   help="paper: the bot's own paper book; alpaca: the bot trades over HTTP with a fake Alpaca API served by this process")
    a = p.parse_args(argv)
    if a.db_url:
        os.environ["TRADING_SOAK_DB_URL"] = a.db_url  # the forked bots inherit it
    if a.venue == "alpaca":
        t = soak_alpaca(a.kills, a.seed, a.bars or 10, verbose=a.verbose)
    else:
        t = soak(a.kills, a.seed, a.bars or 40, verbose=a.verbose)
    print(f"kills {t['kills']} / lost orders {t['lost']} / duplicate orders {t['duplicates']} / position mismatches {t['mismatches']}")
    print(f"  {t['epochs']} bots, {t['orders']} orders at the venue, {t['restarts']} starts, {t['seconds']} s; kills by point: {t['by_point']}")
    for f in t["failures"]:
        print(f"  FAILURE: {f}")
    return 0 if t["lost"] == t["duplicates"] == t["mismatches"] == 0 and not t["failures"] and t["kills"] >= a.kills else 1


if __name__ == "__main__":
    sys.exit(main())

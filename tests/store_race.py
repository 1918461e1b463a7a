"""Concurrent writers of the same bars, in separate processes, for tests/test_store_concurrency.py and tests/soak_store.py.

Each trial has its own symbol. All writers pass a barrier, then ingest the same keys with values of their own
(writer w writes close = 100 + w/2 + i/100), in one of the three `on_conflict` modes, into fresh keys or keys
already holding base values. Afterwards the stored bars must be exactly one writer's values, and every writer's
report must agree with what is stored:

- error mode: one writer wins (inserted, or updated nothing and found its own values); every other writer gets a
  typed `bar_conflict`. A writer that reports success with values that are not the stored ones lost a write.
- update mode: every writer succeeds and reports its rows written (inserted or updated); the stored values are one
  writer's. A writer reporting "unchanged" for values it did not write lost an update.
- ignore mode: the first writer inserts (or, on seeded keys, all ignore); the others report `ignored`, never
  "unchanged" for values that are not theirs.
"""
from __future__ import annotations

import multiprocessing as mp
import time
import traceback

import numpy as np
import pandas as pd

N_BARS = 40
BASE_WRITER = 99  # the seeded values' "writer"


def bars_of(symbol: str, writer: int, n: int = N_BARS) -> pd.DataFrame:
    "n daily bars of `symbol` whose closes identify `writer`."
    from trading.data.bars import to_bar_schema
    close = 100 + writer / 2 + np.arange(n) / 100
    ts = pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")
    return to_bar_schema(pd.DataFrame(dict(ts_event=ts, symbol=symbol, open=close, high=close + 0.5, low=close - 0.5, close=close,
                                           volume=1000.0, source=f"writer-{writer}")))


def writer_of(close0: float) -> int:
    return int(round((close0 - 100) * 2))


def _worker(url: str, writer: int, plan: list, barrier, results):
    from trading.core.errors import DataValidationError
    from trading.store.bars import ingest_bars
    import trading.store.engine as store_engine
    busy_error = getattr(store_engine, "StoreBusyError", ())  # () catches nothing: lets this harness run against older code too
    eng = store_engine.make_engine(url)
    try:
        for trial, symbol, mode, _seeded in plan:
            df = bars_of(symbol, writer)
            barrier.wait(timeout=120)
            try:
                r = ingest_bars(eng, df, "24/7", on_conflict=mode)
                results.put((trial, writer, "ok", (r.rows, r.inserted, r.updated, r.unchanged, getattr(r, "ignored", 0))))
            except DataValidationError as e:
                results.put((trial, writer, getattr(e, "rule", "data_error"), str(e)[:200]))
            except busy_error as e:
                results.put((trial, writer, "busy", str(e)[:200]))
            except Exception as e:  # an untyped error is a finding of its own
                results.put((trial, writer, "untyped", f"{type(e).__name__}: {e}"[:300]))
    except Exception:
        results.put((-1, writer, "crash", traceback.format_exc()[-500:]))
    finally:
        eng.dispose()


def _judge(mode: str, seeded: bool, stored_writer: int | None, reports: dict[int, tuple]) -> list[str]:
    "What went wrong in one trial (empty: nothing)."
    bad = []
    n = N_BARS
    for w, (status, detail) in reports.items():
        if status in ("untyped", "crash"): bad.append(f"writer {w}: {status} {detail}"); continue
        if status == "busy": continue  # typed, rolled back: allowed (the caller may retry)
        if status == "bar_conflict":
            if mode != "error": bad.append(f"writer {w}: bar_conflict in {mode} mode")
            continue
        if status != "ok": bad.append(f"writer {w}: {status} {detail}"); continue
        rows, inserted, updated, unchanged, ignored = detail
        mine = stored_writer == w
        if unchanged and not mine: bad.append(f"writer {w}: reported {unchanged} unchanged, but the stored bars are writer {stored_writer}'s")
        if (inserted or updated) and mode != "update" and not mine:
            bad.append(f"writer {w}: wrote {inserted}+{updated} rows, but the stored bars are writer {stored_writer}'s")
        if mode == "error" and not mine: bad.append(f"writer {w}: succeeded in error mode but its values are not stored")
        if mode == "update" and inserted + updated != n: bad.append(f"writer {w}: update mode wrote {inserted}+{updated} of {n} rows (lost update)")
        if mode == "ignore" and not mine and ignored != n: bad.append(f"writer {w}: ignore mode reported {ignored} ignored of {n}")
    oks = [w for w, (s, _) in reports.items() if s == "ok"]
    if mode == "error" and stored_writer not in (BASE_WRITER, *oks):
        bad.append(f"stored values are writer {stored_writer}'s, who did not succeed")
    if mode == "update" and oks and stored_writer not in oks: bad.append(f"update mode: stored values are writer {stored_writer}'s, not a succeeding writer's")
    if mode == "ignore" and seeded and stored_writer != BASE_WRITER: bad.append("ignore mode overwrote the seeded bars")
    return bad


def run_race(url: str, # a migrated database
             writers: int = 2, # concurrent writer processes
             trials: int = 12, # trials per (mode, seeded) pair
             modes=("error", "update", "ignore"),
            ) -> dict:
    "Race `writers` processes over `trials` fresh key sets per mode (half seeded with base values); return counts and failures."
    from trading.store.bars import ingest_bars, read_bars
    from trading.store.engine import make_engine
    eng = make_engine(url)
    plan, t = [], 0
    for mode in modes:
        for seeded in (False, True):
            for _ in range(trials):
                plan.append((t, f"RACE{t:04d}", mode, seeded)); t += 1
    from trading.store.bars import upsert_instruments
    from trading.store.engine import write
    with write(eng) as c:  # instruments known up front, as in a store that has ingested these symbols before
        upsert_instruments(c, [s for _, s, _, _ in plan], "24/7")
    for trial, symbol, mode, seeded in plan:
        if seeded: ingest_bars(eng, bars_of(symbol, BASE_WRITER), "24/7")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, w, plan, barrier, results)) for w in range(writers)]
    t0 = time.perf_counter()
    for p in procs: p.start()
    got = []
    while len(got) < writers * len(plan):
        try: got.append(results.get(timeout=1))
        except Exception:  # queue.Empty: stop waiting once every writer has exited
            if not any(p.is_alive() for p in procs) and results.empty(): break
            continue
        if got[-1][2] == "crash": break
    for p in procs: p.join(timeout=60)
    seconds = time.perf_counter() - t0
    by_trial: dict[int, dict] = {}
    for trial, w, status, detail in got: by_trial.setdefault(trial, {})[w] = (status, detail)
    stored = read_bars(eng, [s for _, s, _, _ in plan])
    eng.dispose()
    failures, counts = [], dict(trials=len(plan), writers=writers, conflicts=0, busy=0, seconds=round(seconds, 2))
    if -1 in by_trial: failures.append(f"worker crashed: {by_trial[-1]}")
    for trial, symbol, mode, seeded in plan:
        reports = by_trial.get(trial, {})
        if len(reports) != writers: failures.append(f"trial {trial}: {len(reports)} of {writers} writers reported"); continue
        rows = stored[stored["symbol"] == symbol]
        owners = {writer_of(c - i / 100) for i, c in enumerate(rows["close"])}
        if len(rows) != N_BARS or len(owners) != 1:
            failures.append(f"trial {trial} ({mode}): stored {len(rows)} bars from writers {sorted(owners)} (a torn batch)"); continue
        counts["conflicts"] += sum(s == "bar_conflict" for s, _ in reports.values())
        counts["busy"] += sum(s == "busy" for s, _ in reports.values())
        failures += [f"trial {trial} ({mode}, {'seeded' if seeded else 'fresh'}): {b}" for b in _judge(mode, seeded, owners.pop(), reports)]
    counts["failed_trials"] = len({f.split(":")[0] for f in failures})
    return dict(counts, failures=failures)

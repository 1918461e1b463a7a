"""Soak for the file importer: many random mutations of a good export, each must be refused with a typed error that
names the file, the row and the rule, and must leave the target folder untouched.

    python tests/fuzz_input.py --cases 3000 [--seed 1]

Prints a tally per rule; exits 1 on the first mutation that got in, crashed untyped, or wrote anything.
"""
import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile_input import HEADER, NUMERIC_POISON, SYMBOL_POISON, TIME_POISON, good_rows, write_csv  # noqa: E402

from trading.core.errors import DataValidationError, TradingError  # noqa: E402
from trading.data.snapshot import write_snapshot  # noqa: E402

EXTRA = ["", " ", "NaN", "-0", "1e-300", "+", "--1", "1e308", "٣", "１２", "1 2", "null", "\ufeff1", "0.0.1", "1e5000", "-1e400"]


def mutate(rng, rows):
    "Apply 1-3 random edits; return a description."
    what = []
    for _ in range(int(rng.integers(1, 4))):
        row = int(rng.integers(0, len(rows)))
        col = int(rng.integers(0, len(HEADER)))
        pool = (list(TIME_POISON) if col == 0 else SYMBOL_POISON if col == 1 else list(NUMERIC_POISON) + EXTRA)
        value = pool[int(rng.integers(len(pool)))]
        rows[row][col] = f'"{value}"' if "," in value else value
        what.append(f"{HEADER[col]}[{row + 1}]={value[:20]!r}")
    return "; ".join(what)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    tally, accepted_benign = Counter(), 0
    root = Path(tempfile.mkdtemp())
    try:
        for k in range(a.cases):
            rows = good_rows()
            what = mutate(rng, rows)
            f, out = root / f"case{k}.csv", root / "data"
            write_csv(f, rows)
            try:
                write_snapshot(out, source="csv", files=[str(f)], calendar="XNYS")
            except DataValidationError as e:
                if f"source={f}" not in str(e): print(f"case {k} ({what}): error does not name the file: {e}"); return 1
                tally[e.rule] += 1
            except TradingError as e:
                tally[type(e).__name__] += 1
            except Exception as e:  # noqa: BLE001 - an untyped crash is the finding
                print(f"case {k} ({what}): untyped {type(e).__name__}: {e}"); return 1
            else:
                # some edits are harmless ("-0" volume, "1e-300" volume, an empty volume cell ...): the bars must still be valid
                shutil.rmtree(out)
                accepted_benign += 1
                if accepted_benign <= 20: print(f"accepted: {what}")
            if out.exists(): print(f"case {k} ({what}): wrote {out}"); return 1
            f.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{a.cases} mutated files: {sum(tally.values())} refused, {accepted_benign} accepted as valid bars (benign edits), 0 untyped errors")
    for rule, n in tally.most_common(): print(f"  {rule:24s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

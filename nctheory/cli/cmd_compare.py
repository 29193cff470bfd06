"""`nctheory compare RUN...`: overlay runs (one panel per metric) and print their final values side by side."""

from __future__ import annotations

import json
from pathlib import Path

from nctheory.errors import InputError

NAME = "compare"
HELP = "overlay several training runs and print a table of their final metrics"
DEFAULT_COLUMNS = ["excess", "delta_to_of", "ncc_test"]


def add_arguments(p):
    p.add_argument("runs", metavar="RUN", nargs="+", help="run folders written by `nctheory train`")
    p.add_argument("--metric", action="append", metavar="COLUMN",
                   help=f"metrics.csv column to overlay (repeatable; default {' '.join(DEFAULT_COLUMNS)})")
    p.add_argument("--out", default="compare.png", metavar="FILE.png", help="overlay plot (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the final values as JSON")


def run(args) -> int:
    from nctheory.harness.plots import compare_runs, read_metrics

    cols = args.metric or DEFAULT_COLUMNS
    finals = {}
    for r in args.runs:
        rows = read_metrics(r)
        if not rows:
            raise InputError(f"{r}/metrics.csv has no rows")
        missing = [c for c in cols if c not in rows[0]]
        if missing and args.metric:
            raise InputError(f"{r}/metrics.csv has no column(s) {', '.join(missing)}")
        last = {}
        for c in cols:  # last non-empty value of each column
            vals = [row.get(c) for row in rows if isinstance(row.get(c), float) and row.get(c) == row.get(c)]
            last[c] = vals[-1] if vals else None
        finals[str(r)] = {"epochs": int(rows[-1]["epoch"]), **last}
    out = compare_runs(args.runs, cols, args.out)
    if args.json:
        print(json.dumps({"plot": str(out), "runs": finals}, indent=2))
        return 0
    w = max(len(Path(r).name) for r in finals)
    print(f"{'run'.ljust(w)}  {'epochs':>6}  " + "  ".join(f"{c:>14}" for c in cols))
    for r, f in finals.items():
        vals = "  ".join(f"{f[c]:>14.6g}" if f[c] is not None else f"{'-':>14}" for c in cols)
        print(f"{Path(r).name.ljust(w)}  {f['epochs']:>6}  {vals}")
    print(f"\noverlay written to {out}")
    return 0

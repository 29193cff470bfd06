"""`nctheory compare RUN...`: overlay runs (one panel per metric) and print their final values side by side.

``--out`` is checked first (:func:`nctheory.validate.output_file`: .png/.pdf/.svg, not a folder, its folder
exists and is writable, not a run's data file; an existing file inside a run folder is replaced only
with ``--force``); every run's metrics.csv is checked (:func:`nctheory.runfolder.read_metrics_csv`:
epochs 1..N, whole numbers) before anything is drawn; the overlay is written atomically and the
message names the file written.
"""

from __future__ import annotations

import json

from nctheory.errors import InputError

NAME = "compare"
HELP = "overlay several training runs and print a table of their metrics (final, or at given epochs)"
DEFAULT_COLUMNS = ["excess", "delta_to_of", "ncc_test"]


def add_arguments(p):
    p.add_argument("runs", metavar="RUN", nargs="+", help="run folders written by `nctheory train`")
    p.add_argument("--metric", action="append", metavar="COLUMN",
                   help=f"metrics.csv column to overlay (repeatable; default {' '.join(DEFAULT_COLUMNS)})")
    p.add_argument("--out", default="compare.png", metavar="FILE.png",
                   help="overlay plot, .png, .pdf or .svg (default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="replace --out even when it is an existing file inside a run folder (never a run's data)")
    p.add_argument("--json", action="store_true", help="print the final values as JSON")
    p.add_argument("--at", metavar="E1,E2,...",
                   help="also give the metrics at these epochs (one row per run and epoch; '-' where the "
                        "metric was not measured at that epoch)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")


def _parse_epochs(text: str) -> list[int]:
    from nctheory.runfolder import MAX_EPOCH
    from nctheory.validate import number_list

    if not text.strip():
        raise InputError(f"--at takes comma-separated epochs, e.g. 10,50,200; got {text!r}")
    return number_list(text, "--at", kind="int", lo=1, hi=MAX_EPOCH)


def _value(row, c):
    v = row.get(c)
    return v if isinstance(v, float) and v == v else None


def _cell(v) -> str:
    return "-" if v is None else f"{v:.6g}"


def run(args) -> int:
    from nctheory.harness.plots import compare_runs, read_metrics
    from nctheory.validate import PLOT_SUFFIXES, output_file

    output_file(args.out, "--out", suffixes=PLOT_SUFFIXES, force=args.force)
    cols = args.metric or DEFAULT_COLUMNS
    at = _parse_epochs(args.at) if args.at is not None else None
    finals, table = {}, []
    for r in args.runs:
        rows = read_metrics(r)
        if not rows:
            raise InputError(f"{r}/metrics.csv has no rows")
        missing = [c for c in cols if c not in rows[0]]
        if missing and args.metric:
            raise InputError(f"{r}/metrics.csv has no column(s) {', '.join(missing)}")
        last = {}
        for c in cols:  # last non-empty value of each column
            vals = [_value(row, c) for row in rows if _value(row, c) is not None]
            last[c] = vals[-1] if vals else None
        finals[str(r)] = {"epochs": int(rows[-1]["epoch"]), **last}
        if at:
            by_epoch = {int(row["epoch"]): row for row in rows}
            for e in at:
                row = by_epoch.get(e)
                table.append((str(r), e, {c: (_value(row, c) if row else None) for c in cols}))
        else:
            table.append((str(r), finals[str(r)]["epochs"], last))
    out = compare_runs(args.runs, cols, args.out, force=args.force)
    if args.json:
        res = {"plot": str(out), "runs": finals}
        if at:
            res["at"] = [{"run": name, "epoch": e, **vals} for name, e, vals in table]
        print(json.dumps(res, indent=2))
        return 0
    if args.markdown:
        print("| run | epoch | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        for name, e, vals in table:
            print(f"| {name} | {e} | " + " | ".join(_cell(vals[c]) for c in cols) + " |")
    else:
        w = max(len(name) for name, _, _ in table)
        print(f"{'run'.ljust(w)}  {'epoch':>6}  " + "  ".join(f"{c:>14}" for c in cols))
        for name, e, vals in table:
            print(f"{name.ljust(w)}  {e:>6}  " + "  ".join(f"{_cell(vals[c]):>14}" for c in cols))
    print(f"\noverlay written to {out}")
    return 0

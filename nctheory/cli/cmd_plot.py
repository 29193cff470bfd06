"""`nctheory plot RUN`: re-draw a run folder's PNG plots from metrics.csv (no retraining)."""

from __future__ import annotations

import json

NAME = "plot"
HELP = "re-plot a training run folder (loss vs bound, geometry distances, collapse, NCC accuracy, Gram heatmap)"


def add_arguments(p):
    p.add_argument("run", metavar="RUN", nargs="+", help="run folder(s) written by `nctheory train`")
    p.add_argument("--json", action="store_true", help="print the written files as JSON")


def run(args) -> int:
    from nctheory.harness.plots import plot_run

    written = {r: [str(p) for p in plot_run(r)] for r in args.run}
    if args.json:
        print(json.dumps(written, indent=2))
    else:
        for r, files in written.items():
            print(f"{r}: {len(files)} plots")
            for f in files:
                print(f"  {f}")
    return 0

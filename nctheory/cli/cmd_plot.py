"""`nctheory plot RUN`: re-draw a run folder's PNG plots from metrics.csv (no retraining).

Every RUN is checked before any plot is written (metrics.csv by :func:`nctheory.runfolder.read_metrics_csv`,
gram_final.npy by :func:`nctheory.harness.plots.load_gram`, the plot files must not be folders, the folder
writable); each PNG is written atomically. ``plot`` writes only the run's own plot files
(nctheory.runfolder.RUN_PLOT_FILES), never its data.
"""

from __future__ import annotations

import json

NAME = "plot"
HELP = "re-plot a training run folder (loss vs bound, geometry distances, collapse, NCC accuracy, Gram heatmap)"


def add_arguments(p):
    p.add_argument("run", metavar="RUN", nargs="+", help="run folder(s) written by `nctheory train`")
    p.add_argument("--json", action="store_true", help="print the written files as JSON")


def run(args) -> int:
    from nctheory.harness.plots import plot_run, read_metrics

    for r in args.run:  # every run readable before the first is plotted
        read_metrics(r)
    written = {r: [str(p) for p in plot_run(r)] for r in args.run}
    if args.json:
        print(json.dumps(written, indent=2))
    else:
        for r, files in written.items():
            print(f"{r}: {len(files)} plots")
            for f in files:
                print(f"  {f}")
    return 0

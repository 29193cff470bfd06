"""PNG plots of a run folder (re-made from metrics.csv / gram_final.npy without retraining) and run overlays."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from nctheory.errors import InputError
from nctheory.plotting import gram_heatmap, pyplot

PANELS = [  # (file, title, [(column, label)], log-scale)
    ("loss.png", "SCL loss (sum form) and the predicted lower bound", [("loss", "loss"), ("bound", "bound (Thm 1/2)")],
     False),
    ("excess.png", "loss - bound", [("excess", "excess")], True),
    ("geometry.png", "distance of the class-mean Gram matrix to target geometries",
     [("delta_to_of", "Δ to OF"), ("delta_to_etf", "Δ to ETF"), ("delta_to_prototypes", "Δ to prototypes G*"),
      ("delta_to_ufm", "Δ to UFM optimum")], True),
    ("collapse.png", "within-class collapse and class-mean angles",
     [("beta_nc", "β_NC"), ("mean_class_cosine", "avg class-mean cosine")], False),
    ("accuracy.png", "nearest-class-centre accuracy",
     [("ncc_train", "NCC train"), ("ncc_test", "NCC test"), ("ncc_test_pre", "NCC test (pre-projection)")], False),
]


def read_metrics(run) -> list[dict]:
    path = Path(run) / "metrics.csv"
    if not path.exists():
        raise InputError(f"{run} is not a run folder (no metrics.csv)")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    out = []
    for i, r in enumerate(rows, start=2):
        row = {k: _num(v) for k, v in r.items()}
        if not isinstance(row.get("epoch"), float) or not math.isfinite(row["epoch"]):
            raise InputError(f"{path} line {i} has no numeric epoch: not a metrics file written by nctheory train")
        out.append(row)
    if not out:
        raise InputError(f"{path} holds no epoch yet")
    return out


def _num(v):
    if v is None or v == "":
        return math.nan
    try:
        return float(v)
    except ValueError:
        return v


def _series(rows, col):
    x = np.array([r.get("epoch", math.nan) for r in rows], dtype=float)
    y = np.array([r.get(col, math.nan) if isinstance(r.get(col, math.nan), float) else math.nan for r in rows],
                 dtype=float)
    keep = np.isfinite(y)
    return x[keep], y[keep]


def plot_run(run) -> list[Path]:
    """Write the PNG panels of ``run`` (those with data) and the final Gram heatmap; return the paths."""
    plt = pyplot()
    run = Path(run)
    rows = read_metrics(run)
    written = []
    for fname, title, cols, logy in PANELS:
        series = [(lab, *_series(rows, c)) for c, lab in cols]
        series = [s for s in series if s[1].size]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for lab, x, y in series:
            if logy and np.all(y > 0):
                ax.semilogy(x, y, marker=".", label=lab)
            else:
                ax.plot(x, y, marker=".", label=lab, linestyle="--" if lab.startswith("bound") else "-")
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run / fname, dpi=110)
        plt.close(fig)
        written.append(run / fname)
    gpath = run / "gram_final.npy"
    if gpath.exists():
        fig, ax = plt.subplots(figsize=(4, 3.5))
        im = gram_heatmap(ax, np.load(gpath), "class-mean Gram G_M / max|G_M| (last epoch)")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(run / "gram_final.png", dpi=110)
        plt.close(fig)
        written.append(run / "gram_final.png")
    return written


def compare_runs(runs, columns, out_png) -> Path:
    """Overlay ``columns`` of several runs, one panel per column, labelled by each run's name or folder."""
    plt = pyplot()
    if not runs:
        raise InputError("compare needs at least one run folder")
    data = []
    for r in runs:
        rows = read_metrics(r)
        label = Path(r).name
        cfgp = Path(r) / "config.json"
        if cfgp.exists():
            try:
                label = json.loads(cfgp.read_text())["config"].get("name") or label
            except (ValueError, KeyError):
                pass
        data.append((label, rows))
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 3.6), squeeze=False)
    for ax, col in zip(axes[0], columns):
        for label, rows in data:
            x, y = _series(rows, col)
            if y.size:
                ax.plot(x, y, marker=".", label=label)
        ax.set_title(col)
        ax.set_xlabel("epoch")
        if col.startswith("delta") or col == "excess":
            ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:  # e.g. excess of a loss without a bound: say so instead of an empty legend
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png

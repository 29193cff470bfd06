"""PNG plots of a run folder (re-made from metrics.csv / gram_final.npy without retraining) and run overlays."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from nctheory.errors import InputError
from nctheory.plotting import gram_heatmap, pyplot
from nctheory.runfolder import atomic_savefig, read_metrics_csv
from nctheory.validate import (PLOT_SUFFIXES, check_budget, estimate_bytes, output_file, probe_writable, real_array,
                               text)

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
    """The rows of ``run``/metrics.csv as dicts of floats (empty cells NaN; text cells kept as text),
    checked by :func:`nctheory.runfolder.read_metrics_csv`: epochs exactly 1..N, whole numbers."""
    run = Path(run)
    if not run.is_dir():
        raise InputError(f"{run} is not a run folder ({'a file' if run.exists() else 'it does not exist'})")
    path = run / "metrics.csv"
    if not path.exists():
        raise InputError(f"{run} is not a run folder (no metrics.csv)")
    chk = read_metrics_csv(path)
    out = []
    for r in chk.rows:
        row = {k: _num(v) for k, v in r.items()}
        row["epoch"] = float(int(r["epoch"]))
        out.append(row)
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


def load_gram(path) -> np.ndarray:
    """A run's gram_final.npy as a float64 (k, k) array: a .npy file (no pickles) holding a square, real,
    finite matrix; its size is checked against the memory limit before it is read."""
    path = Path(path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        why = "it holds pickled Python objects" if "pickle" in why else why[:100]
        raise InputError(f"{path} is not a readable .npy array ({why})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{path} is not a .npy array (an .npz archive?)")
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise InputError(f"{path} must hold a square k x k class-mean Gram matrix, got shape {tuple(arr.shape)}")
    k = int(arr.shape[0])
    # the float64 copy, its normalised copy and matplotlib's RGBA image of it
    check_budget(estimate_bytes((k, k), copies=3) + estimate_bytes((k, k, 4), dtype="uint8"),
                 f"the {k} x {k} Gram heatmap of {path}", "remove or move gram_final.npy to plot the other panels")
    G = real_array(np.array(arr), str(path))
    return np.asarray(G, dtype=np.float64)


def _check_targets(run: Path, names) -> None:
    """Every plot file ``plot_run`` is about to write must be a regular file or absent, and the run folder
    writable: checked before the first is written, so a refused run gets no plot at all."""
    for name in names:
        p = run / name
        if p.is_symlink() or (p.exists() and not p.is_file()):
            kind = "a folder" if p.is_dir() else "not a regular file"
            raise InputError(f"{p} is {kind}; plot writes the run's {name} there (move it away)")
    probe_writable(run, "run folder", run)


def plot_run(run) -> list[Path]:
    """Write the PNG panels of ``run`` (those with data) and the final Gram heatmap; return the paths.
    Every input is read and checked first, every file written atomically."""
    plt = pyplot()
    run = Path(run)
    rows = read_metrics(run)
    panels = []
    for fname, title, cols, logy in PANELS:
        series = [(lab, *_series(rows, c)) for c, lab in cols]
        series = [s for s in series if s[1].size]
        if series:
            panels.append((fname, title, series, logy))
    gpath = run / "gram_final.npy"
    G = load_gram(gpath) if gpath.exists() else None
    _check_targets(run, [p[0] for p in panels] + (["gram_final.png"] if G is not None else []))
    written = []
    for fname, title, series, logy in panels:
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
        try:
            atomic_savefig(fig, run / fname, dpi=110)
        finally:
            plt.close(fig)
        written.append(run / fname)
    if G is not None:
        fig, ax = plt.subplots(figsize=(4, 3.5))
        im = gram_heatmap(ax, G, "class-mean Gram G_M / max|G_M| (last epoch)")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        try:
            atomic_savefig(fig, run / "gram_final.png", dpi=110)
        finally:
            plt.close(fig)
        written.append(run / "gram_final.png")
    return written


def _run_label(run: Path) -> str:
    """The run's configured name (config.json's config.name), else its folder name."""
    try:
        cfg = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return run.name
    name = cfg.get("config", {}).get("name") if isinstance(cfg, dict) and isinstance(cfg.get("config"), dict) else None
    return name if isinstance(name, str) and name else run.name


def compare_runs(runs, columns, out_png, *, force: bool = False) -> Path:
    """Overlay ``columns`` of several runs, one panel per column, labelled by each run's name or folder;
    written atomically to ``out_png`` (.png/.pdf/.svg), which is checked first
    (:func:`nctheory.validate.output_file`: an existing file inside a run folder only with ``force``)."""
    if not runs:
        raise InputError("compare needs at least one run folder")
    columns = [text(c, "column", nonempty=True) for c in columns]
    if not columns:
        raise InputError("compare needs at least one metric column")
    out_png = output_file(out_png, "out", suffixes=PLOT_SUFFIXES, force=force)
    plt = pyplot()
    data = [(_run_label(Path(r)), read_metrics(r)) for r in runs]
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 3.6), squeeze=False)
    try:
        for ax, col in zip(axes[0], columns):
            for label, rows in data:
                x, y = _series(rows, col)
                if y.size:
                    ax.plot(x, y, marker=".", label=label)
            ax.set_title(col)
            ax.set_xlabel("epoch")
            if (col.startswith("delta") or col == "excess") and any(
                    np.any(_series(rows, col)[1] > 0) for _, rows in data):
                ax.set_yscale("log")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            else:  # e.g. excess of a loss without a bound: say so instead of an empty legend
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        atomic_savefig(fig, out_png, dpi=110)
    finally:
        plt.close(fig)
    return Path(out_png)

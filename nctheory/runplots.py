"""PNG plots of a run folder (re-made from metrics.csv / gram_final.npy without retraining) and run overlays.

A base module (it reads run folders through :mod:`nctheory.runfolder` only), so that ``nctheory train``,
:class:`nctheory.Monitor`, ``nctheory plot`` and ``nctheory compare`` draw the same pictures.

Every panel has a y-axis label and integer epoch ticks, and says which run setting it shows (the class
ratio R = n_max / n_min of the training counts, n_w for the prototype losses, tau). A curve equal to one
drawn before it in the same panel (e.g. Delta to the UFM+ optimum when that optimum is the OF) is drawn
dashed with open markers over it and labelled "(= <the other>)", so no line hides another.
"""

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

# (file, title, [axes: (y-axis label, log-scale, [(column, legend label)])]); one file per picture, one axes
# per quantity: beta_NC and the cosines are on separate axes (their scales differ)
PANELS = [
    ("loss.png", "SCL loss (sum form) and the predicted lower bound",
     [("loss (sum form)", False, [("loss", "loss"), ("bound", "bound (Kini Thm 1/2)")])]),
    ("excess.png", "loss - bound", [("excess", True, [("excess", "excess")])]),
    ("geometry.png", "distance of the class-mean Gram matrix to target geometries",
     [("Δ (Gill Def. 3)", True, [("delta_to_of", "Δ to OF"), ("delta_to_etf", "Δ to ETF"),
                                ("delta_to_prototypes", "Δ to prototypes G*"), ("delta_to_ufm", "Δ to UFM optimum")])]),
    ("collapse.png", "within-class collapse and class-mean angles",
     [("β_NC (Kini E.3.1)", True, [("beta_nc", "β_NC")]),
      ("mean cosine (Kini E.3.2)", False, [("mean_class_cosine", "avg class-mean cosine")])]),
    ("accuracy.png", "nearest-class-centre accuracy",
     [("accuracy", False, [("ncc_train", "NCC train"), ("ncc_test", "NCC test"),
                           ("ncc_test_pre", "NCC test (pre-projection)")])]),
]
# two curves are "the same" when they agree to this relative tolerance at every common epoch: values written
# by repr(float) round-trip exactly, so equal definitions give equal numbers; 1e-12 allows a re-ordered sum
SAME_CURVE_RTOL = 1e-12


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


def run_setting(run) -> str:
    """What the panels of ``run`` show, from its config.json: "R = 10, n_w = 100, τ = 0.1" (R = n_max / n_min of
    the training counts; n_w only for the losses with prototype copies). Empty when config.json is unreadable."""
    try:
        info = json.loads((Path(run) / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(info, dict):
        return ""
    cfg = info.get("config") if isinstance(info.get("config"), dict) else {}
    parts = []
    counts = info.get("counts")
    if isinstance(counts, list) and counts and all(isinstance(c, (int, float)) and c > 0 for c in counts):
        parts.append(f"R = {max(counts) / min(counts):.3g}")
    loss = cfg.get("loss")
    if isinstance(loss, str) and loss.startswith("scl_prototypes") or loss == "gill_prop1":
        nw = "∞" if loss in ("scl_prototypes_limit", "gill_prop1") else cfg.get("n_w")
        parts.append(f"n_w = {nw}")
    tau = cfg.get("tau")
    if isinstance(tau, (int, float)) and not isinstance(tau, bool):
        parts.append(f"τ = {tau:g}")
    return ", ".join(parts)


def _same(a, b) -> bool:
    (xa, ya), (xb, yb) = a, b
    common, ia, ib = np.intersect1d(xa, xb, return_indices=True)
    return bool(common.size and common.size == xb.size
                and np.allclose(ya[ia], yb[ib], rtol=SAME_CURVE_RTOL, atol=0.0))


def _draw(ax, series, logy: bool) -> None:
    """Curves of one axes; a curve equal to an earlier one is drawn over it, dashed with open markers,
    its label saying which curve it equals."""
    drawn = []
    for lab, x, y in series:
        twin = next((d for d in drawn if _same((d[1], d[2]), (x, y))), None)
        style = {"marker": "o" if twin else ".", "label": lab if twin is None else f"{lab} (= {twin[0]})"}
        if twin is not None:
            style.update(linestyle="--", markerfacecolor="none", markersize=6, zorder=3)
        elif lab.startswith("bound"):
            style["linestyle"] = "--"
        ax.plot(x, y, **style)
        drawn.append((lab, x, y))
    if logy and all(np.all(y > 0) for _, _, y in series):
        ax.set_yscale("log")


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_run(run) -> list[Path]:
    """Write the PNG panels of ``run`` (those with data) and the final Gram heatmap; return the paths.
    Every input is read and checked first, every file written atomically."""
    plt = pyplot()
    run = Path(run)
    rows = read_metrics(run)
    setting = run_setting(run)
    panels = []
    for fname, title, axes in PANELS:
        drawn = []
        for ylabel, logy, cols in axes:
            series = [(lab, *_series(rows, c)) for c, lab in cols]
            series = [s for s in series if s[1].size]
            if series:
                drawn.append((ylabel, logy, series))
        if drawn:
            panels.append((fname, title, drawn))
    gpath = run / "gram_final.npy"
    G = load_gram(gpath) if gpath.exists() else None
    _check_targets(run, [p[0] for p in panels] + (["gram_final.png"] if G is not None else []))
    written = []
    for fname, title, drawn in panels:
        fig, axs = plt.subplots(1, len(drawn), figsize=(5.5 * len(drawn), 3.6), squeeze=False)
        for ax, (ylabel, logy, series) in zip(axs[0], drawn):
            _draw(ax, series, logy)
            _epoch_axis(ax)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
        fig.suptitle(title + (f"  ({setting})" if setting else ""), fontsize=9)
        fig.tight_layout()
        try:
            atomic_savefig(fig, run / fname, dpi=110)
        finally:
            plt.close(fig)
        written.append(run / fname)
    if G is not None:
        fig, ax = plt.subplots(figsize=(4, 3.5))
        im = gram_heatmap(ax, G, "class-mean Gram G_M / max|G_M| (last epoch)" + (f"\n{setting}" if setting else ""))
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
    data = []
    for r in runs:
        setting = run_setting(r)
        data.append((_run_label(Path(r)) + (f" ({setting})" if setting else ""), read_metrics(r)))
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 3.6), squeeze=False)
    try:
        for ax, col in zip(axes[0], columns):
            series = [(label, *_series(rows, col)) for label, rows in data]
            series = [s for s in series if s[1].size]
            _draw(ax, series, logy=col.startswith("delta") or col == "excess")
            ax.set_title(col)
            ax.set_ylabel(col)
            _epoch_axis(ax)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            else:  # e.g. excess of a loss without a bound: say so instead of an empty legend
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        atomic_savefig(fig, out_png, dpi=110)
    finally:
        plt.close(fig)
    return Path(out_png)

"""`nctheory prototypes`: the geometry that fixed prototypes produce (Gill et al. 2023, Fig. 3), in the UFM.

For a prototype geometry G_* (etf, minority-angles, majority-collapse, or a Gram matrix FILE), class
counts and temperature, reports the certified UFM optimum of SCL with n_w copies of each prototype in
the batch (finite n_w: exact class-block-reduced Gram program; n_w = inf: the n_w -> oo limit, per-class
Gram programs), the learnt class-mean Gram G_M, Gill's Delta_{G*} (Def. 3) and max |G_M - G_*|. See
:mod:`nctheory.solvers.prototypes` for the programs and their certificates.

Counts: ``--counts N1,...,Nk`` (one batch's class sizes), or ``--R R1,R2,...`` (each finite and >= 1) for
the class counts of one batch of Gill et al.'s CIFAR-10-STEP experiments (batch 2048, ``--n-major``
(default k//2) majority classes of 5000 and the rest of 5000/R in the dataset; default R = 1).
``--n-major`` (in [1, k-1]) is also the number of majority classes of the minority-angles and
majority-collapse geometries; with ``--counts`` and a geometry that has no majority classes (etf, FILE)
it would have no effect and is refused.

Every input is checked before any solve: ``--plot`` first (:func:`nctheory.validate.output_file`: .png,
.pdf or .svg, not a folder, its folder exists and is writable, never a run folder's data, an existing file
in a run folder only with ``--force``), the numbers, the --geometry file (a real k x k array: a JSON
object, complex or boolean values are refused), and the memory of the programs
(:func:`nctheory.solvers.prototypes.memory_estimate`, before G_* is built: --k 1000000 is one line, not an
allocation failure). The plot is written atomically (:func:`nctheory.runfolder.atomic_savefig`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from nctheory.errors import InputError

NAME = "prototypes"
HELP = "learned class-mean geometry of SCL with fixed prototypes (finite n_w and n_w -> inf), certified"
DESCRIPTION = __doc__


def add_arguments(p):
    p.add_argument("--geometry", required=True, metavar="etf|minority-angles|majority-collapse|FILE",
                   help="prototype geometry, or a file holding a k x k unit-diagonal PSD Gram matrix "
                        "(.npy, .json nested list, or whitespace/comma-separated text)")
    p.add_argument("--k", type=int, required=True, help="number of classes")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--counts", metavar="N1,...,Nk", help="class counts of the batch (every class >= 1)")
    src.add_argument("--R", metavar="R1,R2,...", help="STEP ratios: Gill's batch of --batch samples (default 1)")
    p.add_argument("--batch", type=int, default=2048, help="batch size for --R (default 2048, Gill et al.)")
    p.add_argument("--nw", required=True, metavar="N|inf[,...]",
                   help="copies of each prototype per batch: integers >= 0 and/or inf (comma-separated)")
    p.add_argument("--tau", type=float, default=0.1, help="temperature (default 0.1, Gill et al.)")
    p.add_argument("--n-major", type=int, default=None,
                   help="number of majority classes, in [1, k-1] (default k//2): of the geometry "
                        "(minority-angles, majority-collapse) and of the --R counts")
    p.add_argument("--t", type=float, default=0.5, help="minority-angles parameter in [0, 1] (default 0.5)")
    p.add_argument("--limit-form", choices=("derived", "paper"), default="derived",
                   help="n_w = inf objective: the derived limit (default) or Gill Prop. 1 as printed")
    p.add_argument("--json", action="store_true", help="print JSON (every G_M in full)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="heatmaps of G_* and each learnt G_M, and Delta vs n_w (.png, .pdf or .svg)")
    p.add_argument("--force", action="store_true",
                   help="replace --plot even when it is an existing file inside a run folder (never a run's data)")


GRAM_FILE_MAX_BYTES = 200 * 10**6  # a k x k Gram file: 200 MB holds k = 5000 in .npy (8 bytes an entry)


def load_gram(path: str) -> np.ndarray:
    """A real 2-D float64 array read from ``path`` (.npy without pickles, .json nested list, or text with
    whitespace or commas); anything else (a JSON object, complex or boolean values, garbage) is an
    InputError naming the file."""
    from nctheory.validate import input_file, real_array

    if not Path(path).exists():
        raise InputError(f"--geometry: {path!r} is neither a geometry name ({', '.join(_names())}) nor a file")
    f = input_file(path, "--geometry", max_bytes=GRAM_FILE_MAX_BYTES)
    try:
        if f.suffix == ".npy":
            G = np.load(f, allow_pickle=False)
        elif f.suffix == ".json":
            G = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(G, list):
                raise ValueError(f"expected a nested list (one list per row), got a JSON {type(G).__name__}")
        else:
            text = f.read_text(encoding="utf-8")
            with warnings.catch_warnings():  # "input contained no data" is a warning there: an error here
                warnings.simplefilter("error")
                G = np.loadtxt(f, delimiter="," if "," in text else None, ndmin=2)
    except (ValueError, OSError, EOFError, UnicodeDecodeError, UserWarning) as exc:
        msg = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise InputError(f"--geometry {path}: cannot read a Gram matrix ({msg})") from None
    return np.asarray(real_array(G, f"--geometry {path}", ndim=2), dtype=np.float64)


def _names():
    from nctheory.solvers.prototypes import GILL_GEOMETRIES

    return GILL_GEOMETRIES


def _target(args) -> tuple[str, np.ndarray]:
    from nctheory.geometry import prototype_gram
    from nctheory.solvers.prototypes import GILL_GEOMETRIES, target_gram

    if args.geometry in GILL_GEOMETRIES:
        params = {"t": args.t} if args.geometry == "minority-angles" else {}
        return args.geometry, prototype_gram(args.geometry, args.k, args.n_major, **params)
    return Path(args.geometry).name, target_gram(load_gram(args.geometry), args.k)


def _check_n_major(args) -> None:
    """--n-major must be an integer in [1, k-1] whatever the geometry, and must have an effect."""
    if args.n_major is None:
        return
    if not 1 <= args.n_major <= args.k - 1:
        raise InputError(f"--n-major must lie in [1, k-1] = [1, {args.k - 1}] (majorities and minorities both "
                         f"present), got {args.n_major}")
    if args.counts is not None and args.geometry not in ("minority-angles", "majority-collapse"):
        raise InputError(f"--n-major has no effect with --counts and --geometry {args.geometry} (it sets the "
                         "majority classes of the minority-angles/majority-collapse geometries and of the --R counts)")


def _ratios(text: str | None) -> list[float]:
    """--R: comma-separated imbalance ratios, each finite and >= 1 (default [1])."""
    from nctheory.validate import number_list

    return number_list(text, "--R", kind="real", lo=1) if text else [1.0]


def run(args) -> int:
    from nctheory.cli.progress import stderr_progress
    from nctheory.counts import parse_counts
    from nctheory.solvers.prototypes import check_memory, gill_batch_counts, learned_geometry, parse_nw
    from nctheory.validate import PLOT_SUFFIXES, integer, number_list, output_file, real

    if args.plot is not None:
        output_file(args.plot, "--plot", suffixes=PLOT_SUFFIXES, force=args.force)
    integer(args.k, "--k", lo=2)
    real(args.tau, "--tau", lo=0, lo_open=True)
    real(args.t, "--t", lo=0, hi=1)
    integer(args.batch, "--batch", lo=1)
    _check_n_major(args)
    nws = [parse_nw(v) for v in args.nw.split(",") if v.strip()]
    if not nws:
        raise InputError("--nw is empty")
    if args.counts is not None:
        counts = number_list(args.counts, "--counts", kind="int", lo=1, min_len=2)
        if len(counts) != args.k:
            raise InputError(f"--counts has {len(counts)} entries but --k is {args.k}")
    check_memory(args.k, nws)  # before G_* (k x k) is built
    name, Gs = _target(args)
    if args.counts is not None:
        comps = [("counts", parse_counts(counts, min_count=1, min_classes=2).tolist())]
    else:
        Rs = _ratios(args.R)
        if args.batch < args.k:
            raise InputError("--batch must be at least k")
        comps = [(R, gill_batch_counts(args.k, R, args.batch, n_major_classes=args.n_major)) for R in Rs]
    rows, note, total = [], stderr_progress(), len(comps) * len(nws)
    for R, counts in comps:
        for nw in nws:
            if note is not None:
                note(f"[{len(rows) + 1}/{total}] {'counts' if R == 'counts' else f'R = {R:g}'}, n_w = {nw}: "
                     "certifying the learned geometry")
            r = learned_geometry(Gs, counts, nw, args.tau, args.limit_form)
            s = r.summary()
            s["R"] = R
            rows.append(s)
    out = {"geometry": name, "k": args.k, "tau": args.tau, "G_star": Gs.tolist(), "results": rows}
    if args.plot is not None:
        out["plot"] = str(plot_geometries(rows, Gs, name, args.plot))
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"prototype geometry {name} (k = {args.k}, tau = {args.tau:g}); certified UFM optimum of SCL with prototypes")
    print(f"{'R/counts':>14} {'n_w':>6} {'Delta_G*':>10} {'max|G_M-G*|':>12} {'min cos within':>15} {'rel. gap':>10}")
    for s in rows:
        lab = f"R={s['R']:g}" if s["R"] != "counts" else "counts"
        gap = s["certificate"].get("rel_gap", s["certificate"].get("per_class_rel_gap_max"))
        print(f"{lab:>14} {str(s['n_w']):>6} {s['delta_to_target']:>10.5f} {s['max_entry_error']:>12.5f} "
              f"{min(s['within_class_cosine']):>15.6f} {gap:>10.1e}")
    last = rows[-1]
    print(f"\nG_M at the last row ({'R=' + format(last['R'], 'g') if last['R'] != 'counts' else 'counts'}, "
          f"n_w = {last['n_w']}, counts {last['counts']}):")
    print(np.array2string(np.asarray(last["G_M"]), precision=3, suppress_small=True, max_line_width=140))
    if args.plot:
        print(f"\nplot written to {out['plot']}")
    return 0


def plot_geometries(rows, Gs, name: str, path: str) -> Path:
    """Grid of heatmaps (:func:`nctheory.plotting.gram_heatmap`, raw cosines on [-1, 1], not normalised, so
    G_M and G_* share one scale): one row per composition (R or counts), one column per n_w, G_* first;
    and a panel of Delta_{G*} against n_w (inf drawn at the right edge)."""
    from nctheory.plotting import gram_heatmap, pyplot

    plt = pyplot()
    comps = list(dict.fromkeys(str(r["R"]) for r in rows))
    nws = list(dict.fromkeys(str(r["n_w"]) for r in rows))
    fig, axes = plt.subplots(len(comps), len(nws) + 2, figsize=(2.3 * (len(nws) + 2), 2.3 * len(comps) + 0.4),
                             squeeze=False)
    im = None
    for i, c in enumerate(comps):
        im = gram_heatmap(axes[i, 0], Gs, f"target G* ({name})", normalise=False, annotate_up_to=6)
        for j, nw in enumerate(nws):
            r = next(r for r in rows if str(r["R"]) == c and str(r["n_w"]) == nw)
            lab = f"R={float(c):g}" if c != "counts" else "counts"
            gram_heatmap(axes[i, j + 1], np.asarray(r["G_M"]), f"{lab}, n_w={nw}\nDelta={r['delta_to_target']:.3f}",
                         normalise=False, annotate_up_to=6)
        for ax in axes[i, :-1]:
            ax.tick_params(labelsize=5)
        ax = axes[i, -1]
        sel = [r for r in rows if str(r["R"]) == c]
        fin = [r for r in sel if r["n_w"] != "inf"]
        xs = [max(r["n_w"], 1) for r in fin]
        if fin:
            ax.plot(xs, [r["delta_to_target"] for r in fin], "o-", label="finite n_w")
        inf = [r for r in sel if r["n_w"] == "inf"]
        if inf:
            ax.axhline(inf[0]["delta_to_target"], color="k", ls="--", label="n_w = inf")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # few points: minor labels would overlap
        ax.set_xlabel("n_w (0 drawn at 1)", fontsize=7)
        ax.set_ylabel("Delta_G*", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.suptitle(f"Learnt class-mean Gram G_M with fixed {name} prototypes (certified UFM optima)", fontsize=9)
    fig.tight_layout()
    if im is not None:
        fig.colorbar(im, ax=axes[:, :-1].ravel().tolist(), shrink=0.8, pad=0.01).ax.tick_params(labelsize=6)
    from nctheory.runfolder import atomic_savefig

    out = Path(path)
    try:
        atomic_savefig(fig, out, dpi=110)  # the folder must exist (checked before solving), it is not created
    finally:
        plt.close(fig)
    return out

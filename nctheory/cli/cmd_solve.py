"""`nctheory solve`: the UFM / UFM+ optimum of a loss, with its certificate and geometry verdict.

A thin command over :func:`nctheory.solvers.solve_ufm`: it parses the arguments, reads the labels / plan /
prototype files into a :class:`~nctheory.solvers.UFMProblem`, prints the :class:`~nctheory.solvers.UFMReport`
(JSON or a human summary), plots the class-mean Gram matrix and returns the report's exit code.

Every input is checked before any solve: ``--plot`` first (:func:`nctheory.validate.output_file`: .png,
.pdf or .svg, not a folder, its folder exists and is writable, never a run folder's data and an existing
file inside a run folder only with ``--force``), then the files and the problem, whose memory
:func:`~nctheory.solvers.solve_ufm` estimates before allocating (exit 2 with the estimate and the method
that fits). The plot is written atomically (:func:`nctheory.runfolder.atomic_savefig`).
"""

from __future__ import annotations

import json

import numpy as np

from nctheory.errors import InputError

NAME = "solve"
HELP = "solve the UFM (or UFM+ with --relu) of a loss to a certified optimum and name its geometry"
DESCRIPTION = (
    "Minimise a loss over free unit features (UFM; --relu: also entrywise non-negative, UFM+). Methods: "
    "'gram' = exact convex program over the Gram matrix (d >= n; with --relu its doubly-non-negative (DNN) "
    "relaxation, a certified lower bound on UFM+), "
    "'reduced' = the same program reduced by class symmetry (full-batch SCL only, any counts), "
    "'riemannian' = gradient method over unit features (any d >= 2, mini-batch plans; best of restarts, "
    "stationarity only, no global certificate; auto picks it for --relu with fixed prototypes, where H >= 0 "
    "depends on W's coordinates and the Gram program is only a lower bound), "
    "'enumerate' = exact minimum over all sign patterns for --dim 1 (the unit sphere in R^1 is {-1, +1}, every "
    "point is stationary there: auto picks it for --dim 1 and --method riemannian --dim 1 is answered by it). "
    "OUTPUT RULE: the key 'value' (human output: a line 'value ... (certified optimum)') appears only together with "
    "\"certified\": true, i.e. a certified optimum of the problem asked for: gram/reduced: a relative duality gap "
    "<= 1e-6 AND an explicit feasible point of that problem (in dimension D with --dim D, with H >= 0 with --relu) "
    "whose loss is within 1e-6 of the rigorous lower bound; enumerate: exhaustive. Exit 0. "
    "A first-order (riemannian) result is printed under 'upper_bound' with \"certified\": false (human: 'upper bound "
    "from first-order search (not certified)'), exit 0. With --dim D below the size, auto first solves the exact "
    "program (reduced for full-batch scl, else gram up to size 64): certified when a D-dimensional point attains it, "
    "otherwise it keeps that program's certified 'lower_bound' and adds riemannian's 'upper_bound' in dimension D "
    "(the minimum lies between them), exit 0. A gram/reduced solve whose relaxation optimum is not shown "
    "attained in the problem asked for (--dim D below its rank, or --relu without a non-negative factorisation, "
    "e.g. --relu with fixed prototypes) prints only 'lower_bound' with \"certified\": false, and the relaxation's "
    "optimum, rank, class-mean Gram and geometry under 'relaxation'; exit 1. Exit 2: bad input (one line). Exit 3: "
    "the solver did not converge or certify (no number is printed)."
)


def add_arguments(p):
    from nctheory.solvers.ufm import METHODS

    p.add_argument("--loss", required=True,
                   help="the loss: a name of nctheory.losses.catalogue with a Gram form, e.g. scl ('-' may replace '_')")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--counts", metavar="N1,N2,...", help="class sizes, e.g. 10,2,2")
    src.add_argument("--labels", metavar="FILE", help="labels file (.json/.npy/.npz/text, one per line)")
    p.add_argument("--tau", type=float, default=1.0, help="temperature (default %(default)s)")
    p.add_argument("--relu", action="store_true",
                   help="UFM+: entrywise non-negative features (gram/reduced: the value is certified only when a "
                        "non-negative point attaining the DNN lower bound is exhibited, e.g. NC+OF; else lower bound, exit 1)")
    p.add_argument("--dim", type=int, metavar="D",
                   help="feature dimension, >= 1 (default: large enough for the Gram program). With gram/reduced and "
                        "D below the size, the result is certified only if a D-dimensional point attains the "
                        "optimum; otherwise --method gram/reduced print only a lower bound (exit 1) and auto adds "
                        "a first-order upper bound in dimension D (exit 0)")
    p.add_argument("--plan", metavar="PLAN", help="batching plan (.json/.npz, see `nctheory make-plan`) for mini-batch SCL")
    p.add_argument("--prototypes", default="etf", metavar="etf|learned|FILE.npy",
                   help="fixed prototypes/classifier for the losses that take them: 'etf' (default), a (k, d) "
                        ".npy file of unit rows, or 'learned' (free unit rows, optimised with the features)")
    p.add_argument("--nw", type=int, default=1, metavar="N", help="prototype copies n_w for scl-prototypes (default 1)")
    p.add_argument("--method", default="auto", choices=list(METHODS),
                   help="solver (see the description above; default auto)")
    p.add_argument("--restarts", type=int, default=8, help="restarts of the riemannian method, >= 1 (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the riemannian restarts (default 0)")
    p.add_argument("--gtol", type=float, default=1e-6, help="riemannian stationarity tolerance, > 0 (default 1e-6)")
    p.add_argument("--max-iter", type=int, default=5000, help="riemannian iterations per restart, >= 1 (default 5000)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png",
                   help="heatmap of the class-mean Gram matrix (like Kini et al. Fig. 1): .png, .pdf or .svg")
    p.add_argument("--force", action="store_true",
                   help="replace --plot even when it is an existing file inside a run folder (never a run's data)")


# ----------------------------------------------------------------------------------------- inputs
def _labels_and_batches(args):
    """(labels, batches or None, multiset) from --plan, --counts or --labels. A plan's views become feature
    rows and its class ids are ranked 0..k-1 (nctheory.batching.load_plan); multiset: its batches may
    repeat a sample."""
    if args.plan:
        from nctheory.batching import load_plan  # plan format of the batching issue

        plan = load_plan(args.plan).expanded()  # views as feature rows: sample i's view v is row v * n + i
        if args.counts or args.labels:
            raise InputError("--plan carries its own labels: do not also give --counts or --labels")
        return np.asarray(plan.labels), [np.asarray(b) for b in plan.batches], plan.multiset  # checked by solve_ufm
    if args.counts:
        from nctheory.counts import counts_from_text

        counts = counts_from_text(args.counts, min_count=1, min_classes=2)
        return np.repeat(np.arange(counts.size), counts), None, False
    if args.labels:
        from nctheory.batching import read_labels

        return np.asarray(read_labels(args.labels)), None, False  # checked by solve_ufm (nothing sized by a label)
    raise InputError("give the classes by --counts, --labels or --plan")


def _prototypes(spec: str):
    """'etf' / 'learned', or the real array read from a .npy file (complex, bool, object refused)."""
    from nctheory.validate import input_file, real_array

    if spec in ("etf", "learned"):
        return spec
    path = input_file(spec, "--prototypes", suffixes=(".npy",))
    try:
        W = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--prototypes {spec}: cannot read a .npy array ({msg})") from None
    return real_array(W, f"--prototypes {spec}", ndim=2)


def ufm_problem(args):
    """The UFMProblem the arguments describe (files read here)."""
    from nctheory.solvers import UFMProblem

    y, batches, multiset = _labels_and_batches(args)
    return UFMProblem(loss=args.loss, labels=y, tau=args.tau, relu=args.relu, dim=args.dim, batches=batches,
                      multiset=multiset,
                      prototypes=_prototypes(args.prototypes), n_w=args.nw, restarts=args.restarts, seed=args.seed,
                      gtol=args.gtol, max_iter=args.max_iter, plan_name=args.plan, prototypes_name=args.prototypes)


# ------------------------------------------------------------------------------------------ output
def _fmt_matrix(M, width=8):
    M = np.asarray(M)
    if M.shape[0] > 12:
        return f"  ({M.shape[0]} x {M.shape[0]}; use --json or --plot for the full matrix)"
    return "\n".join("  " + " ".join(f"{v:{width}.4f}" for v in row) for row in M)


def _bound_name(out) -> str:
    return "value" if out["certified"] else ("upper_bound" if "upper_bound" in out else "lower_bound")


def _number_lines(out) -> list:
    """The reported number (value / upper bound / lower bound) and what certifies it."""
    relax = out.get("relaxation")
    if out["certified"]:
        lines = [f"value      {out['value']:.10g}  (certified optimum)",
                 f"certificate: status {out['status']} ({out['solver']}), lower bound {out['dual_bound']:.10g}, "
                 f"gap {out['gap']:.2e} (relative {out['rel_gap']:.2e}); {out['gap_kind']}"]
        if out.get("dimension_check"):
            c = out["dimension_check"]
            lines.append(f"  attained{'' if c['dim'] is None else ' in dimension ' + str(c['dim'])}"
                         f"{' with H >= 0' if out.get('relu') else ''} by: {c['construction']} (the relaxation's "
                         f"optimum is {c['relaxation_optimum']:.10g}, Gram rank {c['relaxation_rank']}"
                         f"{'; --relu: doubly-non-negative relaxation of UFM+' if out.get('relu') else ''})")
        return lines
    if "upper_bound" in out:
        lines = [f"upper bound {out['upper_bound']:.10g}  upper bound from first-order search (not certified)",
                 f"  best of {out['restarts']} restarts, {out['converged_restarts']} stationary, spread "
                 f"{out['spread']:.2e}, stationarity {out['stationarity']:.1e} <= {out['gtol']:.0e}; no global "
                 "certificate (non-convex problem)"]
        if "relaxation_lower_bound" in out:
            lb = out["relaxation_lower_bound"]
            lines.append(f"lower bound {lb['lower_bound']:.10g}  certified, from the {lb['method']} relaxation "
                         f"(status {lb['status']}, {lb['solver']}): the minimum lies in [lower, upper], width "
                         f"{out['bracket_width']:.3e}")
        return lines
    return [f"lower bound {out['lower_bound']:.10g}  certified lower bound only, NOT the optimum "
            f"(not certified; exit 1)",
            f"  why: {out['lower_bound_note']}",
            f"  certificate of the bound: status {out['status']} ({out['solver']}); {out['gap_kind']}",
            f"relaxation (d >= n{', --dim ignored' if out.get('dim') else ''}"
            f"{', G >= 0 instead of H >= 0' if out.get('relu') else ''}): "
            f"optimum {relax['optimum']:.10g}, Gram rank {relax['rank']}"]


def _geometry_lines(src, relaxation: bool) -> list:
    """The class-mean Gram matrix, the geometry name and the ideal candidates' losses."""
    lines = ["class-mean Gram matrix G_M" + (" OF THE RELAXATION (not a point in the requested dimension):"
                                             if relaxation else ":"), _fmt_matrix(src["class_mean_gram"])]
    g = src["geometry"]
    lines.append(("geometry of the relaxation: " if relaxation else "geometry: ") +
                 f"{g['name']}  (delta_OF {g['delta_of']:.2e}, delta_ETF {g['delta_etf']:.2e}, "
                 f"min within-class cosine {g['nc_min_cosine'] if g['nc_min_cosine'] is None else round(g['nc_min_cosine'], 6)}, tol {g['tol']})")
    for name, c in (g.get("candidates") or {}).items():
        if not c.get("feasible"):
            lines.append(f"  {name}: infeasible here" + (f" ({c['note']})" if c.get("note") else ""))
            continue
        if c.get("beaten_by_feasible"):
            what = ("not optimal: the solver's feasible point has lower loss"
                    + (" (the difference is below the 1e-6 certificate tolerance)" if c["optimal_within_tol"] else ""))
        else:
            what = "optimal within tolerance" if c["optimal_within_tol"] else "certified NOT optimal"
        lines.append(f"  {name}: loss {c['value']:.10g}, excess over the lower bound {c['excess_over_dual_bound']:.3e} -> {what}")
    if g.get("name_basis", "").startswith("loss of the ideal"):
        lines.append(f"  (geometry named by: {g['name_basis']}; distance-based name: {g.get('distance_name')})")
    return lines


def human(out) -> str:
    lines = [f"loss {out['loss']}  tau={out['tau']}  relu={out['relu']}  n={out['n']}  k={out['k']}  "
             f"counts={out['counts'] if len(out['counts']) <= 12 else str(out['counts'][:12])[:-1] + ', ...]'}"
             + (f"  dim={out['dim']}" if out.get("dim") is not None else ""),
             f"method {out['method']}"]
    lines += _number_lines(out)
    if "kini_bound" in out:
        key = _bound_name(out)
        lines.append(f"{out['kini_bound_note']}: {out['kini_bound']:.10g}  ({key.replace('_', ' ')} - bound = "
                     f"{out[key + '_minus_kini_bound']:.3e})")
    relax = out.get("relaxation")
    lines += _geometry_lines(relax if relax is not None else out, relax is not None)
    if out.get("note_method"):
        lines.append("note: " + out["note_method"])
    return "\n".join(lines)


def plot(out, path):
    from nctheory.plotting import gram_heatmap, pyplot

    plt = pyplot()
    relax = out.get("relaxation")
    src = relax if relax is not None else out
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    title = (f"{out['loss']}{'+ReLU' if out['relu'] else ''}, tau={out['tau']}: {src['geometry']['name']}"
             + (" (relaxation d>=n)" if relax is not None else ""))
    im = gram_heatmap(ax, src["class_mean_gram"], title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("class"); ax.set_ylabel("class")
    fig.suptitle(r"$G_M / \max |G_M|$", fontsize=9)
    fig.tight_layout()
    from nctheory.runfolder import atomic_savefig

    try:
        atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)


def run(args) -> int:
    from nctheory.cli.progress import stderr_progress
    from nctheory.solvers import solve_ufm
    from nctheory.validate import PLOT_SUFFIXES, output_file

    if args.plot is not None:
        output_file(args.plot, "--plot", suffixes=PLOT_SUFFIXES, force=args.force)
    report = solve_ufm(ufm_problem(args), args.method, progress=stderr_progress())
    if args.plot:
        plot(report.data, args.plot)
    if args.json:
        out = report.to_json()
        if args.plot:
            out["plot"] = args.plot
        print(json.dumps(out, indent=2))
    else:
        print(human(report.data))
        if args.plot:
            print(f"heatmap written to {args.plot}")
    # a lower bound only (the optimum of the requested problem was not determined): exit 1
    return report.exit_code

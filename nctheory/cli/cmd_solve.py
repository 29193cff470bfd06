"""`nctheory solve`: the UFM / UFM+ optimum of a loss, with its certificate and geometry verdict."""

from __future__ import annotations

import json

import numpy as np

from nctheory.errors import InputError

NAME = "solve"
HELP = "solve the UFM (or UFM+ with --relu) of a loss to a certified optimum and name its geometry"
DESCRIPTION = (
    "Minimise a loss over free unit features (UFM; --relu: also entrywise non-negative, UFM+). Methods: "
    "'gram' = exact convex program over the Gram matrix (d >= n; with --relu its doubly-non-negative "
    "relaxation, a certified lower bound that is tight when the optimum is completely positive), "
    "'reduced' = the same program reduced by class symmetry (full-batch SCL only, any counts), "
    "'riemannian' = gradient method over unit features (any d, mini-batch plans; best of restarts, "
    "stationarity only, no global certificate; auto picks it for --relu with fixed prototypes, where H >= 0 "
    "depends on W's coordinates and the Gram program is only a lower bound). Prints value, certificate, "
    "class-mean Gram matrix and "
    "geometry verdict. Exit 3 when the solver does not certify its result (no number is printed)."
)

LOSSES = ("scl", "scl-prototypes", "normface", "ntce", "nonl", "proto", "ce-fixed")
PROTO_LOSSES = ("scl-prototypes", "normface", "ntce", "nonl", "ce-fixed")
GRAM_MAX_SIZE = 64    # auto picks gram up to this size: n = 48 takes ~3-5 s, n = 96 ~60-90 s (Clarabel, one core)


def add_arguments(p):
    p.add_argument("--loss", required=True, choices=LOSSES, help="the loss (see nctheory.losses)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--counts", metavar="N1,N2,...", help="class sizes, e.g. 10,2,2")
    src.add_argument("--labels", metavar="FILE", help="labels file (.json/.npy/.npz/text, one per line)")
    p.add_argument("--tau", type=float, default=1.0, help="temperature (default %(default)s)")
    p.add_argument("--relu", action="store_true", help="UFM+: entrywise non-negative features")
    p.add_argument("--dim", type=int, metavar="D", help="feature dimension (default: large enough for the Gram program)")
    p.add_argument("--plan", metavar="PLAN", help="batching plan (.json/.npz, see `nctheory make-plan`) for mini-batch SCL")
    p.add_argument("--prototypes", default="etf", metavar="etf|learned|FILE.npy",
                   help="fixed prototypes/classifier for the losses that take them: 'etf' (default), a (k, d) "
                        ".npy file of unit rows, or 'learned' (free unit rows, optimised with the features)")
    p.add_argument("--nw", type=int, default=1, metavar="N", help="prototype copies n_w for scl-prototypes (default 1)")
    p.add_argument("--method", default="auto", choices=["auto", "gram", "reduced", "riemannian"])
    p.add_argument("--restarts", type=int, default=8, help="restarts of the riemannian method (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gtol", type=float, default=1e-6, help="riemannian stationarity tolerance (default 1e-6)")
    p.add_argument("--max-iter", type=int, default=5000, help="riemannian iterations per restart")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="heatmap of the class-mean Gram matrix (like Kini et al. Fig. 1)")


# ----------------------------------------------------------------------------------------- inputs
def _labels_and_batches(args):
    batches = None
    if args.plan:
        from nctheory.batching import load_plan  # plan format of the batching issue

        plan = load_plan(args.plan)
        y = np.asarray(plan.labels, dtype=np.int64)
        batches = [np.asarray(b, dtype=np.int64) for b in plan.batches]
        if args.counts or args.labels:
            raise InputError("--plan carries its own labels: do not also give --counts or --labels")
    elif args.counts:
        try:
            counts = [int(c) for c in args.counts.split(",") if c.strip()]
        except ValueError:
            raise InputError(f"--counts must be comma-separated integers, got {args.counts!r}") from None
        if len(counts) < 2 or min(counts) < 1:
            raise InputError("--counts needs at least two classes, each with at least one sample")
        y = np.repeat(np.arange(len(counts)), counts)
    elif args.labels:
        from nctheory.batching import read_labels

        y = np.asarray(read_labels(args.labels), dtype=np.int64)
    else:
        raise InputError("give the classes by --counts, --labels or --plan")
    if y.size == 0 or y.min() < 0:
        raise InputError("labels must be non-negative and non-empty")
    k = int(y.max()) + 1
    if np.bincount(y, minlength=k).min() == 0:
        raise InputError(f"labels must use every class 0..{k - 1} (class {int(np.argmin(np.bincount(y)))} is empty)")
    if k < 2:
        raise InputError("need at least two classes")
    return y, k, batches


def _prototypes(args, k, d):
    """(k, d) fixed unit rows, or None for 'learned'."""
    spec = args.prototypes
    if spec == "learned":
        return None
    if spec == "etf":
        from nctheory.geometry import simplex_etf

        return simplex_etf(k, max(d, k) if d is not None else k)
    try:
        W = np.load(spec, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read prototypes {spec!r}: {exc}") from None
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != k:
        raise InputError(f"prototypes must be a ({k}, d) array, got shape {W.shape}")
    if not np.allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-8):
        raise InputError("prototype rows must have unit norm")
    return W


def _form(args, y, k, batches):
    from nctheory.losses import gram as lg

    if args.loss == "scl":
        return lg.scl_form(y, args.tau, batches)
    if batches is not None and args.loss != "scl-prototypes":
        raise InputError(f"--plan applies to scl and scl-prototypes, not {args.loss}")
    if args.loss == "scl-prototypes":
        return lg.scl_with_prototypes_form(y, k, args.nw, args.tau, batches)
    if args.loss == "normface":
        return lg.normface_form(y, k, args.tau)
    if args.loss == "ntce":
        return lg.ntce_form(y, k, args.tau)
    if args.loss == "nonl":
        return lg.nonl_form(y, k, args.tau)
    if args.loss == "ce-fixed":
        return lg.ce_fixed_classifier_form(y, k, args.tau)
    return lg.proto_loss_form(y, args.tau)


def _torch_objective(args, y, k, batches, n):
    """Objective over the joint Z = [features; prototypes] for the riemannian method (nctheory.losses)."""
    import torch

    from nctheory import losses as L

    tau = args.tau

    def f(Z):
        yt = torch.as_tensor(y, device=Z.device)
        z, W = Z[:n], Z[n:]
        if args.loss == "scl":
            return L.scl(z, yt, tau) if batches is None else L.scl_batches(z, yt, batches, tau)
        if args.loss == "scl-prototypes":
            return L.scl_with_prototypes(z, yt, W, args.nw, tau, batches)
        if args.loss == "normface":
            return L.normface(z, yt, W, tau)
        if args.loss == "ntce":
            return L.ntce(z, yt, W, tau)
        if args.loss == "nonl":
            return L.nonl(z, yt, W, tau)
        if args.loss == "ce-fixed":
            return L.ce_fixed_classifier(z, yt, W, tau)
        return L.proto_loss(z, yt, tau, k)

    return f


# ------------------------------------------------------------------------------------------ solve
def _choose_method(args, n, size):
    if args.method != "auto":
        return args.method
    if args.dim is not None and args.dim < size:
        return "riemannian"
    if args.relu and args.loss in PROTO_LOSSES and args.prototypes != "learned":
        return "riemannian"  # H >= 0 with fixed W depends on W's coordinates: no exact Gram program (see below)
    if args.loss == "scl" and not args.plan:
        return "reduced"
    return "gram" if size <= GRAM_MAX_SIZE else "riemannian"


def solve(args) -> dict:
    from nctheory.losses._inputs import check_tau
    from nctheory.solvers.verdict import class_mean_gram, geometry, within_class_min_cosine

    check_tau(args.tau)
    y, k, batches = _labels_and_batches(args)
    n = y.size
    uses_w = args.loss in PROTO_LOSSES
    size = n + (k if uses_w else 0)
    method = _choose_method(args, n, size)
    if args.dim is not None and args.dim < 1:
        raise InputError("--dim must be positive")
    if args.nw < 0:
        raise InputError("--nw must be non-negative")
    out = {"loss": args.loss, "tau": args.tau, "relu": bool(args.relu), "n": int(n), "k": k,
           "counts": np.bincount(y, minlength=k).tolist(), "method": method, "plan": args.plan}
    bound = None
    if args.loss == "scl":
        from nctheory.bounds import batch_bound, full_batch_bound

        bound = full_batch_bound(out["counts"], args.tau) if batches is None else batch_bound(y, batches, args.tau)
        out["kini_bound"] = bound
        out["kini_bound_note"] = ("Kini Thm 1" if batches is None else "Kini Thm 2") + \
            " lower bound for UFM+ (classes with a single sample (in a batch) left out)"

    if method == "reduced":
        if args.loss != "scl" or batches is not None:
            raise InputError("--method reduced handles full-batch scl only (use gram or riemannian)")
        from nctheory.solvers.reduced import solve_reduced

        res = solve_reduced(out["counts"], args.tau, nonneg=args.relu)
        out.update(res.summary())
        out["certified"] = True
    elif method == "gram":
        if size > 400:
            raise InputError(f"the Gram program has a {size} x {size} PSD cone: too large (use --method riemannian"
                             + (" or reduced" if args.loss == "scl" and batches is None else "") + ")")
        from nctheory.solvers.gram import solve_gram

        form = _form(args, y, k, batches)
        fixed = fixed_idx = None
        if uses_w:
            W = _prototypes(args, k, args.dim)
            if W is not None:
                fixed, fixed_idx = W @ W.T, n + np.arange(k)
                out["prototypes"] = args.prototypes
        res = solve_gram(form, y=y, k=k, nonneg=args.relu, n_samples=n, fixed=fixed, fixed_index=fixed_idx)
        out.update(res.summary())
        out["certified"] = True
        if args.relu and fixed is not None:
            out["note_relu_prototypes"] = (
                "with fixed prototypes, H >= 0 depends on the coordinates of W, which the Gram matrix does not see: "
                "this program (G >= 0 on the sample block) is a certified LOWER BOUND on UFM+, not tight in general "
                "(measured: SCL with ETF prototypes, counts 4,2,2, tau 0.5: 14.30100 here vs 14.30429 by "
                "--method riemannian in the canonical ETF coordinates)")
        if args.dim is not None and args.dim < res.rank:
            out["note_dim"] = f"optimal Gram matrix has rank {res.rank} > --dim {args.dim}: not attained in dimension {args.dim}"
    else:
        from nctheory.solvers.riemannian import solve_riemannian

        d = args.dim if args.dim is not None else size
        fixed = fixed_idx = None
        if uses_w:
            W = _prototypes(args, k, d)
            if W is not None:
                if W.shape[1] != d:
                    raise InputError(f"prototypes have dimension {W.shape[1]} but --dim is {d}")
                fixed, fixed_idx = W, n + np.arange(k)
        res = solve_riemannian(_torch_objective(args, y, k, batches, n), size, d, nonneg=args.relu,
                               fixed_rows=fixed_idx, fixed=fixed, restarts=args.restarts, seed=args.seed,
                               max_iter=args.max_iter, gtol=args.gtol)
        out.update(res.summary())
        G = res.Z @ res.Z.T
        GM = class_mean_gram(G, y, k)
        out["class_mean_gram"] = GM.tolist()
        out["geometry"] = geometry(GM, within_class_min_cosine(G, y))
        out["gap"] = None
        out["certified"] = False
        out["certificate_note"] = ("first-order method: stationarity (max row KKT residual) only; the value is the best "
                                   "of the restarts, an upper bound on the optimum, not a certified optimum")
    if bound is not None:
        out["value_minus_kini_bound"] = out["value"] - bound
    return out


# ------------------------------------------------------------------------------------------ output
def _fmt_matrix(M, width=8):
    M = np.asarray(M)
    if M.shape[0] > 12:
        return f"  ({M.shape[0]} x {M.shape[0]}; use --json or --plot for the full matrix)"
    return "\n".join("  " + " ".join(f"{v:{width}.4f}" for v in row) for row in M)


def human(out) -> str:
    lines = [f"loss {out['loss']}  tau={out['tau']}  relu={out['relu']}  n={out['n']}  k={out['k']}  "
             f"counts={out['counts'] if len(out['counts']) <= 12 else str(out['counts'][:12])[:-1] + ', ...]'}",
             f"method {out['method']}"]
    if out["certified"]:
        lines.append(f"value      {out['value']:.10g}")
        lines.append(f"certificate: status {out['status']} ({out['solver']}), dual bound {out['dual_bound']:.10g}, "
                     f"gap {out['gap']:.2e} (relative {out['rel_gap']:.2e}); {out['gap_kind']}")
        if out.get("nonneg"):
            lines.append("  (--relu: doubly-non-negative relaxation of UFM+, a certified lower bound; tight when the "
                         "optimal G is completely positive, e.g. the 0/1 NC+OF block matrix)")
    else:
        lines.append(f"value      {out['value']:.10g}  (best of {out['restarts']} restarts, {out['converged_restarts']} "
                     f"stationary, spread {out['spread']:.2e}, stationarity {out['stationarity']:.1e} <= {out['gtol']:.0e})")
        lines.append("certificate: none (first-order method; stationarity only)")
    if "kini_bound" in out:
        lines.append(f"{out['kini_bound_note']}: {out['kini_bound']:.10g}  (value - bound = {out['value_minus_kini_bound']:.3e})")
    lines.append("class-mean Gram matrix G_M:")
    lines.append(_fmt_matrix(out["class_mean_gram"]))
    g = out["geometry"]
    lines.append(f"geometry: {g['name']}  (delta_OF {g['delta_of']:.2e}, delta_ETF {g['delta_etf']:.2e}, "
                 f"min within-class cosine {g['nc_min_cosine'] if g['nc_min_cosine'] is None else round(g['nc_min_cosine'], 6)}, tol {g['tol']})")
    for name, c in (g.get("candidates") or {}).items():
        if not c.get("feasible"):
            lines.append(f"  {name}: infeasible here")
        else:
            if c.get("beaten_by_feasible"):
                what = ("not optimal: the solver's feasible point has lower loss"
                        + (" (the difference is below the 1e-6 certificate tolerance)" if c["optimal_within_tol"] else ""))
            else:
                what = "optimal within tolerance" if c["optimal_within_tol"] else "certified NOT optimal"
            lines.append(f"  {name}: loss {c['value']:.10g}, excess over the lower bound {c['excess_over_dual_bound']:.3e} -> {what}")
    if g.get("name_basis", "").startswith("loss of the ideal"):
        lines.append(f"  (geometry named by: {g['name_basis']}; distance-based name: {g.get('distance_name')})")
    for key in ("note_dim", "note_relu_prototypes"):
        if out.get(key):
            lines.append("note: " + out[key])
    return "\n".join(lines)


def plot(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    GM = np.asarray(out["class_mean_gram"])
    S = GM / np.abs(GM).max()
    k = GM.shape[0]
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(S, cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"{out['loss']}{'+ReLU' if out['relu'] else ''}, tau={out['tau']}: {out['geometry']['name']}", fontsize=9)
    ax.set_xlabel("class"); ax.set_ylabel("class")
    if k <= 20:
        ax.set_xticks(range(k)); ax.set_yticks(range(k))
    fig.suptitle(r"$G_M / \max |G_M|$", fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise InputError(f"cannot write plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


def run(args) -> int:
    from nctheory.claims.registry import jsonable

    out = solve(args)
    if args.plot:
        plot(out, args.plot)
        out["plot"] = args.plot
    if args.json:
        print(json.dumps(jsonable(out), indent=2))
    else:
        print(human(out))
        if args.plot:
            print(f"heatmap written to {args.plot}")
    return 0

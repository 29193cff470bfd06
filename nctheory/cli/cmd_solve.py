"""`nctheory solve`: the UFM / UFM+ optimum of a loss, with its certificate and geometry verdict."""

from __future__ import annotations

import json

import numpy as np

from nctheory.errors import InputError, SolverError

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

LOSSES = ("scl", "scl-prototypes", "normface", "ntce", "nonl", "proto", "ce-fixed")
PROTO_LOSSES = ("scl-prototypes", "normface", "ntce", "nonl", "ce-fixed")
GRAM_MAX_SIZE = 64    # auto picks gram up to this size: n = 48 takes ~3-5 s, n = 96 ~60-90 s (Clarabel, one core)


def add_arguments(p):
    p.add_argument("--loss", required=True, choices=LOSSES, help="the loss (see nctheory.losses)")
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
    p.add_argument("--method", default="auto", choices=["auto", "gram", "reduced", "riemannian", "enumerate"],
                   help="solver (see the description above; default auto)")
    p.add_argument("--restarts", type=int, default=8, help="restarts of the riemannian method, >= 1 (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the riemannian restarts (default 0)")
    p.add_argument("--gtol", type=float, default=1e-6, help="riemannian stationarity tolerance, > 0 (default 1e-6)")
    p.add_argument("--max-iter", type=int, default=5000, help="riemannian iterations per restart, >= 1 (default 5000)")
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
        from nctheory.counts import counts_from_text

        counts = counts_from_text(args.counts, min_count=1, min_classes=2)
        y = np.repeat(np.arange(counts.size), counts)
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

        if d is not None and d < k - 1:
            raise InputError(f"a simplex ETF of {k} prototypes needs --dim >= {k - 1}, got {d}")
        return simplex_etf(k, d if d is not None else k)
    try:
        W = np.load(spec, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read prototypes {spec!r}: {exc}") from None
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != k:
        raise InputError(f"prototypes must be a ({k}, d) array, got shape {W.shape}")
    if not np.allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-8):
        raise InputError("prototype rows must have unit norm")
    if d is not None and W.shape[1] != d:
        raise InputError(f"prototypes have dimension {W.shape[1]} but --dim is {d}")
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
def _check_options(args):
    """Numeric options are bad input (one line, exit 2), checked before any work is done."""
    if args.dim is not None and args.dim < 1:
        raise InputError(f"--dim must be >= 1, got {args.dim}")
    if args.nw < 0:
        raise InputError(f"--nw must be >= 0, got {args.nw}")
    if args.restarts < 1:
        raise InputError(f"--restarts must be >= 1, got {args.restarts}")
    if args.max_iter < 1:
        raise InputError(f"--max-iter must be >= 1, got {args.max_iter}")
    if not (np.isfinite(args.gtol) and args.gtol > 0):
        raise InputError(f"--gtol must be a positive finite number, got {args.gtol}")


def _choose_method(args, n, size):
    if args.method == "enumerate":
        if args.dim != 1:
            raise InputError("--method enumerate solves --dim 1 exactly (the unit sphere in R^1 is {-1, +1}); give --dim 1")
        return "enumerate"
    if args.dim == 1 and args.method in ("auto", "riemannian"):
        return "enumerate"  # S^0 = {-1, +1}: every point is stationary, a gradient method certifies nothing
    if args.method != "auto":
        return args.method
    if args.relu and args.loss in PROTO_LOSSES and args.prototypes != "learned":
        return "riemannian"  # H >= 0 with fixed W depends on W's coordinates: no exact Gram program (see below)
    # with --dim D below the size the exact programs are relaxations: they are tried first (certified when a
    # D-dimensional point attains their bound) and solve() falls back to riemannian when it does not
    if args.loss == "scl" and not args.plan:
        return "reduced"
    return "gram" if size <= GRAM_MAX_SIZE else "riemannian"


# keys that describe the problem asked for (kept when auto falls back from a relaxation to riemannian)
_PROBLEM_KEYS = ("loss", "tau", "relu", "n", "k", "counts", "method", "plan", "dim", "prototypes", "kini_bound",
                 "kini_bound_note")


def _bracket(out, lower, method, D):
    """auto with --dim D after a first-order search: a certified value when the search's point (feasible in
    dimension D) meets the relaxation's rigorous lower bound within GAP_TOL, else the bracket [lower, upper]."""
    from nctheory.solvers.gram import GAP_TOL

    lb, ub = lower["lower_bound"], out["upper_bound"]
    gap = ub - lb
    if gap <= GAP_TOL * max(1.0, abs(ub)):
        del out["upper_bound"]
        out.update({"value": ub, "dual_bound": lb, "gap": gap, "rel_gap": gap / max(1.0, abs(ub)),
                    "certified": True, "status": lower["status"],
                    "solver": f"{lower['solver']} lower bound + riemannian point",
                    "gap_kind": (f"rigorous: loss of an explicit unit-feature point in dimension {D} (first-order "
                                 f"search) - the {method} program's certified lower bound ({lower['gap_kind']})")})
        out.pop("certificate_note", None)
        out["note_method"] = (f"auto: the {method} program's optimum was not shown attained in dimension {D} by the "
                              f"constructions tried, but the first-order search found a point in dimension {D} "
                              "whose loss meets its certified lower bound: a certified optimum")
        return
    out["relaxation_lower_bound"] = lower
    out["lower_bound"] = lb
    out["bracket_width"] = gap
    out["note_method"] = (f"auto: the {method} program's optimum is not attained in dimension {D}, so its value is "
                          f"only a certified lower bound; the first-order search in dimension {D} gives an upper "
                          "bound: the minimum lies between the two")


def _solve_riemannian(args, y, k, batches, size, uses_w, out):
    """First-order search over unit features in dimension --dim (default: the size): an upper bound."""
    from nctheory.solvers.riemannian import solve_riemannian
    from nctheory.solvers.verdict import class_mean_gram, geometry, within_class_min_cosine

    n = y.size
    d = args.dim if args.dim is not None else size
    fixed = fixed_idx = None
    if uses_w:
        W = _prototypes(args, k, d)
        if W is not None:
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
    out["certificate_note"] = ("upper bound from first-order search (not certified): the loss of the best "
                               "stationary restart, a feasible point, so an upper bound on the minimum in "
                               f"dimension {d}; stationarity (max row KKT residual <= gtol) says nothing about "
                               "global optimality (non-convex)")


# keys of a Gram/reduced summary that describe the d >= n optimum (moved under "relaxation" when that
# optimum is not attained in the requested dimension)
_RELAXATION_KEYS = ("value", "rank", "class_mean_gram", "geometry", "solver_value", "form_check", "feasibility",
                    "within_class_cosine")


def _relaxation_only(out, summ, reason):
    """Report only the certified lower bound: the d >= n optimum is not a D-dimensional result."""
    rel = {("optimum" if kk == "value" else kk): summ.pop(kk) for kk in _RELAXATION_KEYS if kk in summ}
    out.update(summ)
    out["certified"] = False
    out["lower_bound"] = summ["dual_bound"]
    out["lower_bound_note"] = reason
    out["relaxation"] = rel


def _apply_dimension(out, summ, att, D, y, k, sample_only, relaxation_candidates, dim_given=True, relu=False):
    """Certified optimum of the requested problem (att["attained"]: an explicit feasible point in dimension D,
    non-negative under --relu, whose loss meets the relaxation's lower bound) or that lower bound only."""
    from nctheory.solvers.verdict import class_mean_gram, geometry, settle_name, within_class_min_cosine

    check = {"dim": D if dim_given else None, "relaxation_optimum": summ["value"], "relaxation_rank": summ["rank"],
             "construction": att["construction"], "rel_excess_over_lower_bound": att["rel_excess"],
             "tried": att["tried"]}
    if not att["attained"]:
        what = " ".join(([f"in dimension {D}"] if dim_given else []) + (["with H >= 0"] if relu else []))
        why = (f"the relaxation's optimum ({summ['value']:.10g}, Gram rank {summ['rank']}"
               + (", doubly-non-negative relaxation of UFM+" if relu else "") + f") is not shown attained {what}: "
               + ("no feasible point was found" if att["value"] is None else
                  f"the best feasible point found ({att['construction']}) has loss {att['value']:.10g}, "
                  f"{att['rel_excess']:.1e} relative above the lower bound")
               + "; the minimum is >= the lower bound and not determined here (--method riemannian gives an upper bound)")
        _relaxation_only(out, summ, why)
        out["dimension_check"] = check
        return
    value = att["value"]
    summ["relaxation_optimum"] = summ["value"]
    summ["value"] = value
    summ["gap"] = value - summ["dual_bound"]
    summ["rel_gap"] = summ["gap"] / max(1.0, abs(value))
    if att["gram"] is None:  # the ideal NC + OF (one-hot features)
        GM, nc = np.eye(k), 1.0
        summ["rank"] = k
    else:
        Gd = att["gram"]
        GM = class_mean_gram(Gd, y, k) if sample_only or Gd.shape[0] > k else Gd
        nc = within_class_min_cosine(Gd, y) if Gd.shape[0] >= y.size else 1.0
        w = np.linalg.eigvalsh(Gd)
        summ["rank"] = int(np.sum(w > 1e-6 * w.max()))
    geo = geometry(GM, nc)
    if relaxation_candidates:
        cands = {}
        for name, c in relaxation_candidates.items():
            need = k if name == "OF" else k - 1
            cands[name] = dict(c) if D >= need else {"feasible": False, "note": f"needs dimension >= {need}"}
        geo["candidates"] = cands
        settle_name(geo)
    summ["class_mean_gram"] = GM.tolist()
    summ["geometry"] = geo
    out.update(summ)
    out["certified"] = True
    out["dimension_check"] = check


def solve(args) -> dict:
    from nctheory.losses._inputs import check_tau
    from nctheory.solvers.verdict import class_mean_gram, geometry, within_class_min_cosine

    check_tau(args.tau)
    _check_options(args)
    y, k, batches = _labels_and_batches(args)
    n = y.size
    uses_w = args.loss in PROTO_LOSSES
    size = n + (k if uses_w else 0)
    method = _choose_method(args, n, size)
    out = {"loss": args.loss, "tau": args.tau, "relu": bool(args.relu), "n": int(n), "k": k,
           "counts": np.bincount(y, minlength=k).tolist(), "method": method, "plan": args.plan, "dim": args.dim}
    if args.method == "riemannian" and method == "enumerate":
        out["note_method"] = ("--dim 1: the unit sphere in R^1 is {-1, +1} and every point is stationary, so the "
                              "exact minimum over all sign patterns is computed instead of a gradient search")
    bound = None
    if args.loss == "scl":
        from nctheory.bounds import batch_bound, full_batch_bound

        bound = full_batch_bound(out["counts"], args.tau) if batches is None else batch_bound(y, batches, args.tau)
        out["kini_bound"] = bound
        out["kini_bound_note"] = ("Kini Thm 1" if batches is None else "Kini Thm 2") + \
            " lower bound for UFM+ (classes with a single sample (in a batch) left out)"

    if method == "enumerate":
        from nctheory.solvers.signs import solve_signs

        form = _form(args, y, k, batches)
        W = _prototypes(args, k, 1) if uses_w else None
        res = solve_signs(form, size, nonneg=args.relu, fixed_rows=None if W is None else n + np.arange(k), fixed=W)
        out.update(res.summary())
        G = res.Z @ res.Z.T
        GM = class_mean_gram(G, y, k)
        out["class_mean_gram"] = GM.tolist()
        out["geometry"] = geometry(GM, within_class_min_cosine(G, y))
        out["rank"] = 1
    elif method == "reduced":
        if args.loss != "scl" or batches is not None:
            raise InputError("--method reduced handles full-batch scl only (use gram or riemannian)")
        from nctheory.solvers.gram import GAP_TOL
        from nctheory.solvers.reduced import reduced_scl_value, solve_reduced

        res = solve_reduced(out["counts"], args.tau, nonneg=args.relu)
        summ = res.summary()
        dim_given = args.dim is not None and args.dim < n
        if dim_given or args.relu:  # --relu: the DNN value counts only with an explicit H >= 0 attaining it
            from nctheory.solvers.dimension import attain_in_dimension

            D = args.dim if dim_given else k  # NC holds at the repaired optimum: features = class means (k of them)
            cands = res.geometry.get("candidates") or {}
            att = attain_in_dimension(res.G, D, lambda M: reduced_scl_value(M, out["counts"], args.tau),
                                      res.dual_bound, GAP_TOL, nonneg=args.relu, of_candidate=cands.get("OF"), k=k)
            _apply_dimension(out, summ, att, D, np.arange(k), k, False, cands, dim_given, args.relu)
        else:
            out.update(summ)
            out["certified"] = True
    elif method == "gram":
        if size > 400:
            raise InputError(f"the Gram program has a {size} x {size} PSD cone: too large (use --method riemannian"
                             + (" or reduced" if args.loss == "scl" and batches is None else "") + ")")
        from nctheory.solvers.gram import GAP_TOL, solve_gram

        form = _form(args, y, k, batches)
        fixed = fixed_idx = None
        if uses_w:
            W = _prototypes(args, k, args.dim)
            if W is not None:
                fixed, fixed_idx = W @ W.T, n + np.arange(k)
                out["prototypes"] = args.prototypes
        res = solve_gram(form, y=y, k=k, nonneg=args.relu, n_samples=n, fixed=fixed, fixed_index=fixed_idx)
        summ = res.summary()
        if args.relu and fixed is not None:
            _relaxation_only(out, summ, (
                "with fixed prototypes, H >= 0 depends on the coordinates of W, which the Gram matrix does not see: "
                "this program (G >= 0 on the sample block) is a certified LOWER BOUND on UFM+, not tight in general "
                "(measured: SCL with ETF prototypes, counts 4,2,2, tau 0.5: lower bound 14.3010 here vs 14.30429 by "
                "--method riemannian in the canonical ETF coordinates)"))
        elif (args.dim is not None and args.dim < size) or args.relu:
            # --dim below the size: the program is a relaxation (rank <= D dropped); --relu: the DNN program is a
            # relaxation of UFM+ (tight only where the optimum has a non-negative factorisation)
            from nctheory.solvers.dimension import attain_in_dimension

            dim_given = args.dim is not None and args.dim < size
            D = args.dim if dim_given else size
            cands = (res.geometry or {}).get("candidates") or {}
            att = attain_in_dimension(res.G, D, form.evaluate, res.dual_bound, GAP_TOL, nonneg=args.relu,
                                      fixed=None if fixed is None else (fixed_idx, fixed),
                                      of_candidate=cands.get("OF") if size == n else None, k=k,
                                      nonneg_rows=np.arange(n), y=y)
            _apply_dimension(out, summ, att, D, y, k, size == n, cands, dim_given, args.relu)
        else:
            out.update(summ)
            out["certified"] = True
    else:
        _solve_riemannian(args, y, k, batches, size, uses_w, out)
    if (args.method == "auto" and method in ("gram", "reduced") and not out["certified"]
            and args.dim is not None and args.dim < size):
        # auto with --dim D: the relaxation's optimum is not attained in dimension D. Keep its certified lower
        # bound and add the first-order upper bound in dimension D: the minimum lies between the two.
        lower = {"lower_bound": out["lower_bound"], "method": method, "note": out["lower_bound_note"],
                 "status": out.get("status"), "solver": out.get("solver"), "gap_kind": out.get("gap_kind")}
        relaxation_only = dict(out)  # what is reported (exit 1) if the first-order search fails
        for key in list(out):
            if key not in _PROBLEM_KEYS:
                del out[key]
        out["method"] = "riemannian"
        try:
            _solve_riemannian(args, y, k, batches, size, uses_w, out)
        except SolverError as exc:
            out.clear()
            out.update(relaxation_only)
            out["note_method"] = (f"auto: the {method} program's optimum is not attained in dimension {args.dim} "
                                  f"and the first-order search in dimension {args.dim} did not converge ({exc}); "
                                  "only the certified lower bound is reported")
        else:
            _bracket(out, lower, method, args.dim)
    if bound is not None:
        key = "value" if out["certified"] else ("upper_bound" if "upper_bound" in out else "lower_bound")
        out[f"{key}_minus_kini_bound"] = out[key] - bound
    return out


# ------------------------------------------------------------------------------------------ output
def _fmt_matrix(M, width=8):
    M = np.asarray(M)
    if M.shape[0] > 12:
        return f"  ({M.shape[0]} x {M.shape[0]}; use --json or --plot for the full matrix)"
    return "\n".join("  " + " ".join(f"{v:{width}.4f}" for v in row) for row in M)


def human(out) -> str:
    lines = [f"loss {out['loss']}  tau={out['tau']}  relu={out['relu']}  n={out['n']}  k={out['k']}  "
             f"counts={out['counts'] if len(out['counts']) <= 12 else str(out['counts'][:12])[:-1] + ', ...]'}"
             + (f"  dim={out['dim']}" if out.get("dim") is not None else ""),
             f"method {out['method']}"]
    relax = out.get("relaxation")
    if out["certified"]:
        lines.append(f"value      {out['value']:.10g}  (certified optimum)")
        lines.append(f"certificate: status {out['status']} ({out['solver']}), lower bound {out['dual_bound']:.10g}, "
                     f"gap {out['gap']:.2e} (relative {out['rel_gap']:.2e}); {out['gap_kind']}")
        if out.get("dimension_check"):
            c = out["dimension_check"]
            lines.append(f"  attained{'' if c['dim'] is None else ' in dimension ' + str(c['dim'])}"
                         f"{' with H >= 0' if out.get('relu') else ''} by: {c['construction']} (the relaxation's "
                         f"optimum is {c['relaxation_optimum']:.10g}, Gram rank {c['relaxation_rank']}"
                         f"{'; --relu: doubly-non-negative relaxation of UFM+' if out.get('relu') else ''})")
    elif "upper_bound" in out:
        lines.append(f"upper bound {out['upper_bound']:.10g}  upper bound from first-order search (not certified)")
        lines.append(f"  best of {out['restarts']} restarts, {out['converged_restarts']} stationary, spread "
                     f"{out['spread']:.2e}, stationarity {out['stationarity']:.1e} <= {out['gtol']:.0e}; no global "
                     "certificate (non-convex problem)")
        if "relaxation_lower_bound" in out:
            lb = out["relaxation_lower_bound"]
            lines.append(f"lower bound {lb['lower_bound']:.10g}  certified, from the {lb['method']} relaxation "
                         f"(status {lb['status']}, {lb['solver']}): the minimum lies in [lower, upper], width "
                         f"{out['bracket_width']:.3e}")
    else:
        lines.append(f"lower bound {out['lower_bound']:.10g}  certified lower bound only, NOT the optimum "
                     f"(not certified; exit 1)")
        lines.append(f"  why: {out['lower_bound_note']}")
        lines.append(f"  certificate of the bound: status {out['status']} ({out['solver']}); {out['gap_kind']}")
        lines.append(f"relaxation (d >= n{', --dim ignored' if out.get('dim') else ''}"
                     f"{', G >= 0 instead of H >= 0' if out.get('relu') else ''}): "
                     f"optimum {relax['optimum']:.10g}, Gram rank {relax['rank']}")
    if "kini_bound" in out:
        key = "value" if out["certified"] else ("upper_bound" if "upper_bound" in out else "lower_bound")
        lines.append(f"{out['kini_bound_note']}: {out['kini_bound']:.10g}  ({key.replace('_', ' ')} - bound = "
                     f"{out[key + '_minus_kini_bound']:.3e})")
    src = relax if relax is not None else out
    lines.append("class-mean Gram matrix G_M" + (" OF THE RELAXATION (not a point in the requested dimension):"
                                                 if relax is not None else ":"))
    lines.append(_fmt_matrix(src["class_mean_gram"]))
    g = src["geometry"]
    lines.append(("geometry of the relaxation: " if relax is not None else "geometry: ") +
                 f"{g['name']}  (delta_OF {g['delta_of']:.2e}, delta_ETF {g['delta_etf']:.2e}, "
                 f"min within-class cosine {g['nc_min_cosine'] if g['nc_min_cosine'] is None else round(g['nc_min_cosine'], 6)}, tol {g['tol']})")
    for name, c in (g.get("candidates") or {}).items():
        if not c.get("feasible"):
            lines.append(f"  {name}: infeasible here" + (f" ({c['note']})" if c.get("note") else ""))
        else:
            if c.get("beaten_by_feasible"):
                what = ("not optimal: the solver's feasible point has lower loss"
                        + (" (the difference is below the 1e-6 certificate tolerance)" if c["optimal_within_tol"] else ""))
            else:
                what = "optimal within tolerance" if c["optimal_within_tol"] else "certified NOT optimal"
            lines.append(f"  {name}: loss {c['value']:.10g}, excess over the lower bound {c['excess_over_dual_bound']:.3e} -> {what}")
    if g.get("name_basis", "").startswith("loss of the ideal"):
        lines.append(f"  (geometry named by: {g['name_basis']}; distance-based name: {g.get('distance_name')})")
    for key in ("note_method",):
        if out.get(key):
            lines.append("note: " + out[key])
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
    # a lower bound only (the optimum of the requested problem was not determined): exit 1
    return 0 if out["certified"] or "upper_bound" in out else 1

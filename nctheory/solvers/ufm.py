"""The UFM / UFM+ minimum of a loss, as one library call: :func:`solve_ufm` (what `nctheory solve` prints).

    from nctheory.solvers import UFMProblem, solve_ufm
    report = solve_ufm(UFMProblem("scl", labels=np.repeat([0, 1, 2], [10, 2, 2]), tau=1.0, relu=True))
    report.value, report.certified, report.to_json()

A problem is a loss of the catalogue (:func:`nctheory.losses.catalogue.get_loss`, one with a Gram form),
labels (and optionally mini-batches), a temperature, UFM or UFM+ (``relu``: features entrywise >= 0),
a feature dimension (None: large enough for the Gram program) and, for the losses that take a
classifier or prototypes, fixed prototypes ("etf", a (k, d) array of unit rows) or "learned" ones.
Features are the first n rows of the joint point, the k prototype rows come after them.

Methods (``method="auto"`` chooses, :func:`choose_method`):
- "gram": the exact convex program over the Gram matrix (:func:`nctheory.solvers.gram.solve_gram`, d >= n;
  with relu its doubly-non-negative relaxation, a certified lower bound on UFM+);
- "reduced": the same program reduced by class symmetry (full-batch SCL only, any counts,
  :func:`nctheory.solvers.reduced.solve_reduced`);
- "riemannian": a first-order search over unit features in dimension D (mini-batch plans, d < n,
  relu with fixed prototypes): an upper bound, never a certified optimum;
- "enumerate": the exact minimum over all sign patterns in dimension 1 (the unit sphere in R^1 is
  {-1, +1} and every point is stationary there).

What a number is called (DEVELOPERS.md), enforced by :class:`UFMReport`: ``value`` only with
``certified: True`` (a rigorous duality gap <= GAP_TOL and an explicit feasible point of the problem
asked for: in dimension D, with H >= 0 under relu; or an exhaustive enumeration); ``upper_bound`` with
``certified: False`` for a first-order result; ``lower_bound`` with ``certified: False`` for a
relaxation whose optimum is not shown attained in the requested problem (then the relaxation's
optimum, rank, class-mean Gram and geometry sit under ``relaxation``). With ``dim`` below the size,
"auto" first solves the exact program (reduced for full-batch SCL, else gram up to GRAM_MAX_SIZE):
certified when a D-dimensional point attains it, otherwise it keeps that program's certified
``lower_bound`` and adds the first-order ``upper_bound`` in dimension D (the minimum lies between).

Memory (issue 15): :func:`solve_ufm` estimates the memory of the method it is about to run
(:func:`memory_estimate`) and refuses, before allocating anything, a problem whose estimate exceeds the
limit (:func:`nctheory.validate.check_budget`: ``--max-memory``, $NCTHEORY_MAX_MEMORY or the memory
available now), with a one-line estimate and the method (or --dim) that fits. The models, fitted to
the peak resident growth of single solves on this machine (Clarabel, torch on CPU; the constants below
are above every measurement):

- gram / reduced: the interior-point solver keeps dense blocks of the PSD cone's scaling, about
  ``PSD_BYTES`` m^4 bytes for an m x m cone (measured 15-21 m^4 for gram, full-batch SCL, m = 32..64:
  22 MB at m = 32, 258 MB at m = 64; 22-26 k^4 for reduced with k = 20, 30 distinct counts), plus
  ``LOGIT_BYTES`` per logit of the log-sum-exp form (exponential cones, sparse matrices; measured ~400 B
  per logit for reduced with k = 300 and 1000 equal counts: 34 MB, 407 MB). The cone is m = n (+ k) for
  gram, and the number of distinct class counts (orbits) for reduced, whose form has k^2 logits.
- riemannian: ``POINT_COPIES`` float64 copies of the m x d point (iterates, gradients, steps; measured
  25-31) and one stored point per restart, plus ``PAIR_COPIES`` float64 copies of the largest per-batch
  logit matrix (b x b for the SCL family, b the largest batch, + k rows for scl_prototypes; n x k for
  the losses with a classifier; measured up to 14 copies of n x n for SCL, n = 1000..4000, d = 8).
- enumerate: three float64 blocks of m^2 x 2048 sign patterns (:mod:`nctheory.solvers.signs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nctheory import validate
from nctheory._json import jsonable
from nctheory.errors import InputError, SolverError

GRAM_MAX_SIZE = 64    # auto picks gram up to this size: n = 48 takes ~3-5 s, n = 96 ~60-90 s (Clarabel, one core)
GRAM_SIZE_LIMIT = 400  # the largest PSD cone the gram method accepts (its feasibility tolerance is sized for it)
METHODS = ("auto", "gram", "reduced", "riemannian", "enumerate")

# memory models of the methods (bytes; module docstring, "Memory": each constant is above every measurement)
PSD_BYTES = 30       # per m^4 of an m x m PSD cone (measured 15-26)
LOGIT_BYTES = 500    # per logit of an LSE form in the conic program (measured ~400)
POINT_COPIES = 40    # float64 copies of the m x d point alive in the first-order search (measured 25-31)
PAIR_COPIES = 16     # float64 copies of the largest per-evaluation logit matrix (measured up to 14)
SIGN_CHUNK = 2048    # sign patterns evaluated at once by nctheory.solvers.signs (its _CHUNK)

# keys that describe the problem asked for (kept when auto falls back from a relaxation to riemannian)
_PROBLEM_KEYS = ("loss", "tau", "relu", "n", "k", "counts", "method", "plan", "dim", "prototypes", "kini_bound",
                 "kini_bound_note")
# keys of a Gram/reduced summary that describe the d >= n optimum (moved under "relaxation" when that
# optimum is not attained in the requested dimension)
_RELAXATION_KEYS = ("value", "rank", "class_mean_gram", "geometry", "solver_value", "form_check", "feasibility",
                    "within_class_cosine")


@dataclass
class UFMProblem:
    """min over unit features (and prototype rows) of a loss: the UFM, or UFM+ with ``relu``.

    loss: a catalogue name with a Gram form ('-' may replace '_'), reported as given. labels: (n,) integers
    using every class 0..k-1 (k >= 2). tau > 0. dim: the feature dimension D >= 1, or None (large enough for
    the Gram program). batches: a mini-batch plan (lists of sample indices) for the losses that take one,
    or None (one batch); multiset: a batch may repeat a sample (a copy with the same feature: samplers with
    replacement, nctheory.losses.scl_batches), for scl. prototypes: "etf" (the simplex ETF, fixed), "learned" (free unit rows optimised
    with the features) or a (k, d) array of fixed unit rows, for the losses with a classifier / prototypes.
    n_w: prototype copies (scl_prototypes). restarts, seed, gtol, max_iter: the first-order search.
    plan_name, prototypes_name: how the report names the plan and an array of prototypes (the CLI: file
    names); reported only.
    """

    loss: str
    labels: object
    tau: float = 1.0
    relu: bool = False
    dim: int | None = None
    batches: object = None
    multiset: bool = False
    prototypes: object = "etf"
    n_w: int = 1
    restarts: int = 8
    seed: int = 0
    gtol: float = 1e-6
    max_iter: int = 5000
    plan_name: str | None = None
    prototypes_name: str | None = None


class UFMReport:
    """The result of :func:`solve_ufm`. ``data`` holds exactly what `nctheory solve --json` prints (same keys,
    same order); ``result`` the solver's own result object (SolveResult, RiemannianResult or SignResult:
    the Gram matrix or the point), or None. The naming rule of DEVELOPERS.md is checked on construction
    (ValueError if violated: a bug, not bad input): ``value`` appears iff ``certified`` is True; otherwise
    ``upper_bound`` (a first-order point, optionally with the relaxation's ``lower_bound``: a bracket) or
    ``lower_bound`` alone."""

    def __init__(self, data: dict, result=None):
        _check_naming(data)
        self.data = data
        self.result = result

    @property
    def certified(self) -> bool:
        return bool(self.data["certified"])

    @property
    def value(self) -> float | None:
        """The certified optimum (None when not certified)."""
        return self.data.get("value")

    @property
    def upper_bound(self) -> float | None:
        return self.data.get("upper_bound")

    @property
    def lower_bound(self) -> float | None:
        return self.data.get("lower_bound")

    @property
    def method(self) -> str:
        return self.data["method"]

    @property
    def geometry(self) -> dict:
        """The geometry verdict of the reported point (of the relaxation when only a lower bound is known)."""
        return (self.data.get("relaxation") or self.data)["geometry"]

    @property
    def exit_code(self) -> int:
        """0: a certified value or a first-order upper bound; 1: a lower bound only (the optimum of the
        requested problem is not determined)."""
        return 0 if self.certified or "upper_bound" in self.data else 1

    def to_json(self) -> dict:
        """A JSON-able copy of ``data``."""
        return jsonable(self.data)


def _check_naming(d: dict) -> None:
    if d.get("certified") is True:
        bad = "value" not in d or "upper_bound" in d or "lower_bound" in d
    elif d.get("certified") is False:
        bad = "value" in d or not ("upper_bound" in d or "lower_bound" in d)
    else:
        bad = True
    if bad or ("upper_bound" in d and d.get("method") != "riemannian"):
        raise ValueError(f"solver report breaks the naming rule of DEVELOPERS.md: certified={d.get('certified')!r}, "
                         f"keys {sorted(k for k in ('value', 'upper_bound', 'lower_bound') if k in d)}, "
                         f"method {d.get('method')!r}")


# ------------------------------------------------------------------------------------------- inputs
def _check_problem(p: UFMProblem, method: str):
    """The loss entry, labels, k and batches of a problem; numeric options are bad input (checked first).
    Nothing here is sized by the largest label: labels 0, 0, 1e15, 1e15 are refused for the empty
    classes between them (relabel 0..k-1), found from the distinct labels alone."""
    from nctheory.losses.catalogue import LOSSES, get_loss

    validate.real(p.tau, "tau", lo=0, lo_open=True)
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    validate.integer(p.dim, "--dim", lo=1, allow_none=True)
    validate.integer(p.n_w, "--nw", lo=0)
    validate.integer(p.restarts, "--restarts", lo=1)
    validate.integer(p.max_iter, "--max-iter", lo=1)
    validate.integer(p.seed, "--seed", lo=0, hi=validate.SEED_MAX)
    validate.real(p.gtol, "--gtol", lo=0, lo_open=True)
    spec = get_loss(p.loss)
    if not spec.has_gram:
        raise InputError(f"loss {p.loss!r} has no Gram form: solve handles "
                         + ", ".join(n.replace("_", "-") for n, s in LOSSES.items() if s.has_gram))
    y = validate.int_array(p.labels, "labels", ndim=1, lo=0, min_size=1)
    classes = np.unique(y)
    k = int(classes[-1]) + 1
    if classes.size < k:  # some class in 0..k-1 has no sample
        empty = int(np.flatnonzero(classes != np.arange(classes.size))[0])
        raise InputError(f"labels must use every class 0..{k - 1} (class {empty} is empty"
                         + (f"; relabel the {classes.size} classes present 0..{classes.size - 1})"
                            if classes.size < k // 2 else ")"))
    if k < 2:
        raise InputError("need at least two classes")
    batches = None if p.batches is None else [validate.int_array(b, f"batch {i}", ndim=1, lo=0, hi=y.size - 1)
                                              for i, b in enumerate(p.batches)]
    if batches is not None and not spec.batches:
        raise InputError("--plan applies to " + " and ".join(
            n.replace("_", "-") for n, s in LOSSES.items() if s.has_gram and s.batches) + f", not {p.loss}")
    validate.boolean(p.multiset, "multiset")
    if p.multiset and not spec.multiset:
        raise InputError("a plan whose batches repeat a sample applies to "
                         + ", ".join(n.replace("_", "-") for n, s in LOSSES.items() if s.multiset) + f", not {p.loss}")
    return spec, y, k, batches


def _prototypes(p: UFMProblem, k: int, d: int | None):
    """(k, d) fixed unit rows, or None for 'learned'."""
    spec = p.prototypes
    if isinstance(spec, str) and spec == "learned":
        return None
    if isinstance(spec, str) and spec == "etf":
        from nctheory.geometry import simplex_etf

        if d is not None and d < k - 1:
            raise InputError(f"a simplex ETF of {k} prototypes needs --dim >= {k - 1}, got {d}")
        return simplex_etf(k, d if d is not None else k)
    if isinstance(spec, str):
        raise InputError(f"prototypes must be 'etf', 'learned' or a (k, d) array, got {spec!r}")
    W = np.asarray(spec, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != k:
        raise InputError(f"prototypes must be a ({k}, d) array, got shape {W.shape}")
    if not np.allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-8):
        raise InputError("prototype rows must have unit norm")
    if d is not None and W.shape[1] != d:
        raise InputError(f"prototypes have dimension {W.shape[1]} but --dim is {d}")
    return W


def _prototypes_label(p: UFMProblem) -> str:
    if p.prototypes_name is not None:
        return p.prototypes_name
    return p.prototypes if isinstance(p.prototypes, str) else "array"


class _CheckedProblem:
    """The checked problem: loss entry, labels, k, batches, sizes, and the loss's Gram form / torch objective."""

    def __init__(self, p: UFMProblem, method: str):
        self.p = p
        self.spec, self.y, self.k, self.batches = _check_problem(p, method)
        self.n = self.y.size
        self.uses_w = self.spec.classifier != "none"
        self.size = self.n + (self.k if self.uses_w else 0)
        self.n_w = int(p.n_w) if self.spec.takes_n_w else 0

    def form(self):
        return self.spec.gram_form(self.y, k=self.k, tau=self.p.tau, n_w=self.n_w, batches=self.batches,
                                   multiset=bool(self.p.multiset))

    def objective(self):
        from nctheory.solvers.riemannian import loss_objective

        return loss_objective(self.spec.name, self.y, k=self.k, tau=self.p.tau, n_w=self.n_w, batches=self.batches,
                              multiset=bool(self.p.multiset))


def memory_estimate(problem: UFMProblem, method: str, dim: int | None = None) -> tuple[int, str]:
    """(bytes, what) the method ("gram", "reduced", "riemannian", "enumerate") needs for ``problem`` (in
    dimension ``dim`` for riemannian, default the problem's --dim or its size), by the models of the module
    docstring ("Memory"). Pure arithmetic on the problem's sizes: nothing is allocated."""
    s = problem if isinstance(problem, _CheckedProblem) else _CheckedProblem(problem, "auto")
    return _memory(s, method, dim)


def _pair_elements(s: "_CheckedProblem") -> tuple[int, str]:
    """Entries of the largest logit matrix one loss evaluation forms, and its description."""
    sizes = [s.n] if s.batches is None else [int(b.size) for b in s.batches]
    b = max(sizes)
    if s.spec.name in ("scl", "supcon_mean", "scl_prototypes"):
        side = b + (s.k if s.spec.name == "scl_prototypes" else 0)
        return side * side, f"{side} x {side} logits"
    if s.spec.name in ("ntce", "nonl"):
        return b * b, f"{b} x {b} logits"
    return b * s.k, f"{b} x {s.k} logits"


def _memory(s: "_CheckedProblem", method: str, dim: int | None = None) -> tuple[int, str]:
    if method == "gram":
        m = s.size
        sizes = [s.n] if s.batches is None else [int(b.size) for b in s.batches]
        extra = s.k if s.uses_w else 0
        logits = sum((b + extra) ** 2 for b in sizes)  # an upper bound on the form's logits for every loss
        return (PSD_BYTES * m ** 4 + LOGIT_BYTES * logits,
                f"the gram program ({m} x {m} PSD cone, up to {logits} logits)")
    if method == "reduced":
        orbits = int(np.unique(np.bincount(s.y, minlength=s.k)).size)
        return (PSD_BYTES * orbits ** 4 + LOGIT_BYTES * s.k ** 2,
                f"the reduced program ({orbits} x {orbits} PSD cone, {s.k ** 2} logits)")
    if method == "riemannian":
        d = dim if dim is not None else (s.p.dim if s.p.dim is not None else s.size)
        pair, what = _pair_elements(s)
        need = 8 * ((POINT_COPIES + s.p.restarts) * s.size * d + PAIR_COPIES * pair)
        default = " (--dim defaults to the size)" if s.p.dim is None and dim is None else ""
        return need, (f"riemannian ({s.size} x {d} unit features{default}, {what} per evaluation, "
                      f"{s.p.restarts} restarts)")
    if method == "enumerate":
        return 8 * 3 * s.size ** 2 * SIGN_CHUNK, f"enumerate ({s.size} signs, {SIGN_CHUNK} patterns at a time)"
    raise ValueError(f"no memory model for method {method!r}")  # a programming error


def _fits(s: "_CheckedProblem", method: str, limit: int, dim: int | None = None) -> bool:
    return _memory(s, method, dim)[0] <= limit


def _what_fits(s: "_CheckedProblem", method: str, limit: int) -> str:
    """The suggestion of a refusal: a method (or a --dim for riemannian) whose estimate fits the limit."""
    tips = []
    if method != "reduced" and s.spec.name == "scl" and s.batches is None and _fits(s, "reduced", limit):
        tips.append(f"--method reduced fits (~{validate.format_bytes(_memory(s, 'reduced')[0])}; full-batch scl, "
                    "any counts)")
    # a smaller dimension for the first-order search (below the --dim already refused, if that was riemannian)
    dims = [d for d in (64, 16, 8, 2) if d < s.size and (method != "riemannian" or s.p.dim is None or d < s.p.dim)]
    fitting = [d for d in dims if _fits(s, "riemannian", limit, d)]
    if fitting:
        d = fitting[0]
        tips.append(f"--method riemannian --dim {d} fits (~{validate.format_bytes(_memory(s, 'riemannian', d)[0])}, "
                    f"an upper bound in dimension {d})")
    if method != "gram" and s.size <= GRAM_SIZE_LIMIT and _fits(s, "gram", limit):
        tips.append(f"--method gram fits (~{validate.format_bytes(_memory(s, 'gram')[0])})")
    if tips:
        return "; ".join(tips)
    return "no method fits: use fewer samples (or raise --max-memory)"


def _check_memory(s: "_CheckedProblem", method: str) -> None:
    """Refuse (InputError, one line, before allocating) a method whose estimate exceeds the memory limit."""
    need, what = _memory(s, method)
    limit, _ = validate.memory_limit()
    if need > limit:
        validate.check_budget(need, what, _what_fits(s, method, limit))


def choose_method(p: UFMProblem, method: str = "auto") -> str:
    """The method :func:`solve_ufm` runs for ``method`` (module docstring)."""
    return _choose(_CheckedProblem(p, method), method)


def _choose(s: _CheckedProblem, method: str) -> str:
    p = s.p
    if method == "enumerate":
        if p.dim != 1:
            raise InputError("--method enumerate solves --dim 1 exactly (the unit sphere in R^1 is {-1, +1}); give --dim 1")
        return "enumerate"
    if p.dim == 1 and method in ("auto", "riemannian"):
        return "enumerate"  # S^0 = {-1, +1}: every point is stationary, a gradient method certifies nothing
    if method != "auto":
        return method
    if p.relu and s.uses_w and not (isinstance(p.prototypes, str) and p.prototypes == "learned"):
        return "riemannian"  # H >= 0 with fixed W depends on W's coordinates: no exact Gram program (_solve_gram)
    # with dim D below the size the exact programs are relaxations: they are tried first (certified when a
    # D-dimensional point attains their bound) and solve_ufm falls back to riemannian when it does not
    if s.spec.name == "scl" and s.batches is None:
        return "reduced"
    return "gram" if s.size <= GRAM_MAX_SIZE else "riemannian"


# -------------------------------------------------------------------------------------------- solve
def solve_ufm(problem: UFMProblem, method: str = "auto", progress=None) -> UFMReport:
    """The UFM / UFM+ minimum of ``problem`` by ``method`` ("auto", "gram", "reduced", "riemannian",
    "enumerate"; module docstring), with its certificate and geometry verdict. InputError for bad input;
    SolverError when the chosen solver does not certify (gram/reduced) or converge (riemannian).
    ``progress``: a callable given one line of text at each stage (the method chosen and its memory
    estimate, the search in the requested dimension), or None."""
    s = _CheckedProblem(problem, method)
    p, y, k = problem, s.y, s.k
    chosen = _choose(s, method)
    if chosen == "gram" and s.size > GRAM_SIZE_LIMIT:
        raise InputError(f"the Gram program has a {s.size} x {s.size} PSD cone: too large (use --method riemannian"
                         + (" or reduced" if s.spec.name == "scl" and s.batches is None else "") + ")")
    _check_memory(s, chosen)
    if progress is not None:
        need, what = _memory(s, chosen)
        progress(f"solving {p.loss} ({'UFM+' if p.relu else 'UFM'}, n = {s.n}, k = {k}) by {chosen}: {what}; "
                 f"memory estimate {need / 2**20:.1f} MiB")
    out = {"loss": p.loss, "tau": p.tau, "relu": bool(p.relu), "n": int(s.n), "k": k,
           "counts": np.bincount(y, minlength=k).tolist(), "method": chosen, "plan": p.plan_name, "dim": p.dim}
    if method == "riemannian" and chosen == "enumerate":
        out["note_method"] = ("--dim 1: the unit sphere in R^1 is {-1, +1} and every point is stationary, so the "
                              "exact minimum over all sign patterns is computed instead of a gradient search")
    bound = _kini_bound(s, out)
    result = {"enumerate": _solve_enumerate, "reduced": _solve_reduced, "gram": _solve_gram,
              "riemannian": _solve_riemannian}[chosen](s, out)
    if (method == "auto" and chosen in ("gram", "reduced") and not out["certified"]
            and p.dim is not None and p.dim < s.size):
        if progress is not None:
            progress(f"the optimum is not attained in dimension {p.dim}: bracketing it there")
        result = _bracket_in_dimension(s, out, chosen) or result
    if bound is not None:
        key = "value" if out["certified"] else ("upper_bound" if "upper_bound" in out else "lower_bound")
        out[f"{key}_minus_kini_bound"] = out[key] - bound
    return UFMReport(out, result)


def _kini_bound(s: _CheckedProblem, out: dict):
    """Kini Thm 1 (full batch) / Thm 2 (mini-batches) lower bound for SCL (None for the other losses)."""
    if s.spec.name != "scl":
        return None
    from nctheory.bounds import batch_bound, full_batch_bound

    bound = (full_batch_bound(out["counts"], s.p.tau) if s.batches is None
             else batch_bound(s.y, s.batches, s.p.tau, multiset=bool(s.p.multiset)))
    out["kini_bound"] = bound
    out["kini_bound_note"] = ("Kini Thm 1" if s.batches is None else "Kini Thm 2") + \
        " lower bound for UFM+ (classes with a single sample (in a batch) left out)"
    return bound


def _point_geometry(out: dict, G: np.ndarray, y: np.ndarray, k: int) -> None:
    """Class-mean Gram and geometry verdict of a point's Gram matrix G, into out."""
    from nctheory.solvers.verdict import class_mean_gram, name_geometry, within_class_min_cosine

    GM = class_mean_gram(G, y, k)
    out["class_mean_gram"] = GM.tolist()
    out["geometry"] = name_geometry(GM, within_class_min_cosine(G, y))


def _solve_enumerate(s: _CheckedProblem, out: dict):
    from nctheory.solvers.signs import solve_signs

    W = _prototypes(s.p, s.k, 1) if s.uses_w else None
    res = solve_signs(s.form(), s.size, nonneg=s.p.relu, fixed_rows=None if W is None else s.n + np.arange(s.k),
                      fixed=W)
    out.update(res.summary())
    _point_geometry(out, res.Z @ res.Z.T, s.y, s.k)
    out["rank"] = 1
    return res


def _solve_reduced(s: _CheckedProblem, out: dict):
    if s.spec.name != "scl" or s.batches is not None:
        raise InputError("--method reduced handles full-batch scl only (use gram or riemannian)")
    from nctheory.solvers.reduced import solve_reduced

    p, k = s.p, s.k
    res = solve_reduced(out["counts"], p.tau, nonneg=p.relu)
    summ = res.summary()
    dim_given = p.dim is not None and p.dim < s.n
    if dim_given or p.relu:  # relu: the DNN value counts only with an explicit H >= 0 attaining it
        from nctheory.solvers.dimension import attain_in_dimension
        from nctheory.solvers.gram import GAP_TOL

        D = p.dim if dim_given else k  # NC holds at the repaired optimum: features = class means (k of them)
        cands = res.geometry.get("candidates") or {}
        att = attain_in_dimension(res.G, D, res.form.value, res.dual_bound, GAP_TOL, nonneg=p.relu,
                                  of_candidate=cands.get("OF"), k=k)
        _apply_dimension(out, summ, att, D, np.arange(k), k, False, cands, dim_given, p.relu)
    else:
        out.update(summ)
        out["certified"] = True
    return res


def _solve_gram(s: _CheckedProblem, out: dict):
    p, n, k, size = s.p, s.n, s.k, s.size
    from nctheory.solvers.gram import GAP_TOL, solve_gram

    form = s.form()
    fixed = fixed_idx = None
    if s.uses_w:
        W = _prototypes(p, k, p.dim)
        if W is not None:
            fixed, fixed_idx = W @ W.T, n + np.arange(k)
            out["prototypes"] = _prototypes_label(p)
    res = solve_gram(form, y=s.y, k=k, nonneg=p.relu, n_samples=n, fixed=fixed, fixed_index=fixed_idx)
    summ = res.summary()
    if p.relu and fixed is not None:
        _relaxation_only(out, summ, (
            "with fixed prototypes, H >= 0 depends on the coordinates of W, which the Gram matrix does not see: "
            "this program (G >= 0 on the sample block) is a certified LOWER BOUND on UFM+, not tight in general "
            "(measured: SCL with ETF prototypes, counts 4,2,2, tau 0.5: lower bound 14.3010 here vs 14.30429 by "
            "--method riemannian in the canonical ETF coordinates)"))
    elif (p.dim is not None and p.dim < size) or p.relu:
        # dim below the size: the program is a relaxation (rank <= D dropped); relu: the DNN program is a
        # relaxation of UFM+ (tight only where the optimum has a non-negative factorisation)
        from nctheory.solvers.dimension import attain_in_dimension

        dim_given = p.dim is not None and p.dim < size
        D = p.dim if dim_given else size
        cands = (res.geometry or {}).get("candidates") or {}
        att = attain_in_dimension(res.G, D, form.value, res.dual_bound, GAP_TOL, nonneg=p.relu,
                                  fixed=None if fixed is None else (fixed_idx, fixed),
                                  of_candidate=cands.get("OF") if size == n else None, k=k,
                                  nonneg_rows=np.arange(n), y=s.y)
        _apply_dimension(out, summ, att, D, s.y, k, size == n, cands, dim_given, p.relu)
    else:
        out.update(summ)
        out["certified"] = True
    return res


def _solve_riemannian(s: _CheckedProblem, out: dict):
    """First-order search over unit features in dimension dim (default: the size): an upper bound."""
    from nctheory.solvers.riemannian import solve_riemannian

    p, n, k = s.p, s.n, s.k
    d = p.dim if p.dim is not None else s.size
    fixed = fixed_idx = None
    if s.uses_w:
        W = _prototypes(p, k, d)
        if W is not None:
            fixed, fixed_idx = W, n + np.arange(k)
    res = solve_riemannian(s.objective(), s.size, d, nonneg=p.relu, fixed_rows=fixed_idx, fixed=fixed,
                           restarts=p.restarts, seed=p.seed, max_iter=p.max_iter, gtol=p.gtol)
    out.update(res.summary())
    _point_geometry(out, res.Z @ res.Z.T, s.y, k)
    out["gap"] = None
    out["certified"] = False
    out["certificate_note"] = ("upper bound from first-order search (not certified): the loss of the best "
                               "stationary restart, a feasible point, so an upper bound on the minimum in "
                               f"dimension {d}; stationarity (max row KKT residual <= gtol) says nothing about "
                               "global optimality (non-convex)")
    return res


# ------------------------------------------------------------------------- relaxation and dimension D
def _relaxation_only(out, summ, reason):
    """Report only the certified lower bound: the d >= n optimum is not a D-dimensional result."""
    rel = {("optimum" if kk == "value" else kk): summ.pop(kk) for kk in _RELAXATION_KEYS if kk in summ}
    out.update(summ)
    out["certified"] = False
    out["lower_bound"] = summ["dual_bound"]
    out["lower_bound_note"] = reason
    out["relaxation"] = rel


def _not_attained_reason(summ, att, D, dim_given, relu) -> str:
    what = " ".join(([f"in dimension {D}"] if dim_given else []) + (["with H >= 0"] if relu else []))
    return (f"the relaxation's optimum ({summ['value']:.10g}, Gram rank {summ['rank']}"
            + (", doubly-non-negative relaxation of UFM+" if relu else "") + f") is not shown attained {what}: "
            + ("no feasible point was found" if att["value"] is None else
               f"the best feasible point found ({att['construction']}) has loss {att['value']:.10g}, "
               f"{att['rel_excess']:.1e} relative above the lower bound")
            + "; the minimum is >= the lower bound and not determined here (--method riemannian gives an upper bound)")


def _apply_dimension(out, summ, att, D, y, k, sample_only, relaxation_candidates, dim_given=True, relu=False):
    """Certified optimum of the requested problem (att["attained"]: an explicit feasible point in dimension D,
    non-negative under relu, whose loss meets the relaxation's lower bound) or that lower bound only."""
    from nctheory.solvers.verdict import class_mean_gram, name_geometry, settle_name, within_class_min_cosine

    check = {"dim": D if dim_given else None, "relaxation_optimum": summ["value"], "relaxation_rank": summ["rank"],
             "construction": att["construction"], "rel_excess_over_lower_bound": att["rel_excess"],
             "tried": att["tried"]}
    if not att["attained"]:
        _relaxation_only(out, summ, _not_attained_reason(summ, att, D, dim_given, relu))
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
    geo = name_geometry(GM, nc)
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


def _bracket_in_dimension(s: _CheckedProblem, out: dict, method: str):
    """auto with dim D: the relaxation's optimum is not attained in dimension D. Keep its certified lower
    bound and add the first-order upper bound in dimension D (the minimum lies between the two); when the
    search fails, the lower bound alone is reported. Returns the first-order result, or None."""
    D = s.p.dim
    lower = {"lower_bound": out["lower_bound"], "method": method, "note": out["lower_bound_note"],
             "status": out.get("status"), "solver": out.get("solver"), "gap_kind": out.get("gap_kind")}
    relaxation_only = dict(out)  # what is reported (exit 1) if the first-order search fails
    need, what = _memory(s, "riemannian")
    limit, source = validate.memory_limit()
    if need > limit:
        out["note_method"] = (f"auto: the {method} program's optimum is not attained in dimension {D}, and the "
                              f"first-order search in dimension {D} would need ~{validate.format_bytes(need)} for "
                              f"{what} (limit {validate.format_bytes(limit)}, {source}); only the certified lower "
                              "bound is reported")
        return None
    for key in list(out):
        if key not in _PROBLEM_KEYS:
            del out[key]
    out["method"] = "riemannian"
    try:
        res = _solve_riemannian(s, out)
    except SolverError as exc:
        out.clear()
        out.update(relaxation_only)
        out["note_method"] = (f"auto: the {method} program's optimum is not attained in dimension {D} "
                              f"and the first-order search in dimension {D} did not converge ({exc}); "
                              "only the certified lower bound is reported")
        return None
    _bracket(out, lower, method, D)
    return res


def _bracket(out, lower, method, D):
    """After a first-order search in dimension D: a certified value when the search's point (feasible in
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

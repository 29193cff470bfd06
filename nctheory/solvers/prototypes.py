"""What geometry do fixed prototypes produce? (Gill et al. 2023, §2-3 and Fig. 3, in the UFM.)

Given fixed unit prototypes with Gram matrix G_* = W W^T (Gill Def. 2), class counts n_1..n_k of one
batch, n_w copies of each prototype and temperature tau, this module computes the UFM optimum of SCL
with prototypes (:func:`nctheory.losses.scl_with_prototypes`, Gill Eq. 1 on the augmented batch, every
member an anchor, full batch) and reports the learned class-mean Gram matrix G_M and Gill's
Delta_{G*} = || G_M/||G_M||_F - G_*/||G_*||_F ||_F (Def. 3).

Finite n_w: an exact symmetry-reduced convex program (derived here)
-----------------------------------------------------------------
The loss is a convex function of the joint Gram matrix of [Z; W] (samples, then prototypes), the
feasible set is {joint Gram PSD, unit diagonal, prototype block = G_*} (UFM with free d), and both are
invariant under permuting the samples *within* a class (the prototypes are untouched). Averaging an
optimum over that group keeps it feasible and does not increase the loss (Jensen), so an optimum
exists that is constant on class blocks:

    z_i.z_j = a_c (i != j in class c),  z_i.z_j = b_{cc'} (c != c'),  z_i.w_{c'} = P[c, c'] (i in c).

PSD of the (n + k) joint Gram of such a point, with E the n x k class indicator and N = diag(n_c):
the within-class zero-sum vectors are invariant with eigenvalue 1 - a_c (so a_c <= 1), and on
range(E) + prototype coordinates the joint Gram acts, in the basis [E N^{-1/2}, I_k], as
[[N^{1/2} G_M N^{1/2}, N^{1/2} P], [P^T N^{1/2}, G_*]], congruent to

    X = [[G_M, P], [P^T, G_*]]   (2k x 2k),   G_M[c,c] = (1 + (n_c - 1) a_c)/n_c,  G_M[c,c'] = b_{cc'}.

So the exact program is: minimise L over X PSD, X[k:, k:] = G_*, G_M[c,c] <= 1 (= 1 when n_c = 1),
with a_c = (n_c G_M[c,c] - 1)/(n_c - 1). The loss in X (counts as multiplicities; logits over tau):

  sample anchor of class c (n_c of them):  LSE( log(n_c - 1) + a_c/tau ;  log n_{c'} + b_{cc'}/tau (c' != c) ;
                                                 log n_w + P[c, c']/tau (all c') )
                                           - [ (n_c - 1) a_c + n_w P[c, c] ] / (tau (n_c - 1 + n_w)),
  the n_w copies of prototype c:           n_w * { LSE( log n_{c''} + P[c'', c]/tau (all c'') ;
                                                 log m_{cc'} + G_*[c, c']/tau )
                                           - [ n_c P[c,c] + (n_w - 1) G_*[c,c] ] / (tau (n_c + n_w - 1)) },
  with m_{cc'} = n_w (c' != c), n_w - 1 (c' = c). Anchors without positives contribute 0 (n_w = 0, n_c = 1).

:func:`reduced_form` builds this as an :class:`~nctheory.losses.gram.LSEForm` over X, tested equal to
:func:`nctheory.losses.gram.scl_with_prototypes_form` on the block expansion (tests/test_prototype_geometry.py),
and the optimum is cross-checked against :func:`nctheory.solvers.solve_gram` on the full joint Gram.
Counts enter only as log-offsets and weights, so real batch compositions (hundreds per class) cost
the same as small ones. The program is the form's own canonicalisation
(:meth:`~nctheory.losses.gram.LSEForm.canonicalise`: an exponential-cone epigraph with readable duals)
solved by the project's driver (:func:`nctheory.solvers.conic.solve`: Clarabel, tighter Clarabel, then SCS). The certificate is
rigorous and does not trust the solver's dual objective (which is not a guaranteed bound: on these
programs it was up to 3e-8 relative *above* the loss at the repaired optimum): with X_feasible the
solver's X repaired to exact feasibility (:func:`_repair`) and LB the weak-duality lower bound of
:mod:`nctheory.solvers.certificate` built from the solver's multipliers (:func:`_reduced_lower_bound`),

    gap = L(X_feasible) - LB >= (L(X_feasible) - min L) >= 0,

and gap / max(1, |L - constant|) <= 1e-6, else the next attempt, else SolverError.

The limit n_w -> oo
-------------------
:func:`nctheory.losses.prototype_limit.limit_loss` (the derived limit, up to a z-independent constant) and
Gill's Prop. 1 as printed (:func:`~nctheory.losses.prototype_limit.paper_limit_loss`) are sums over samples
of a function f(h_i, y_i) of p = W h_i only (:class:`~nctheory.losses.prototype_limit.PerSampleLimit`, whose
value, gradient and cvxpy views the per-class programs use):

    derived:  f(p, y) = LSE(p/tau) - 2 p_y/tau + sum_c exp(p_c/tau)/Z_c,   Z_c = sum_c' exp(G_*[c,c']/tau)
    printed:  f(p, y) = LSE(p/tau) - 2 p_y/tau.

So the samples decouple: every sample of class c sits at the same minimiser h_c (the objective is
convex; the set {W h : |h| = 1} is exactly {p : [[1, p^T], [p, G_*]] PSD} when d > rank G_*), and
**the counts (imbalance) do not affect the limit geometry at all**. Each class is a (k+1) x (k+1)
Gram program (:func:`limit_class_solution`, certified by the convexity bound over the unit ball,
f(a) >= f(a0) - g.a0 - |g| with g the gradient at the feasible a0). The minimiser lies in span(W)
(checked: p^T G_*^+ p = 1; the gradient of f cannot vanish on range(G_*), see :func:`limit_geometry`), so
G_M[c, c'] = p_c^T G_*^+ p_{c'} is determined.

Memory: :func:`learned_geometry` (and ``nctheory prototypes``, before G_* is built) refuses a problem whose
estimate (:func:`memory_estimate`) exceeds the memory limit (:func:`nctheory.validate.check_budget`).
Finite n_w: the facially reduced program has a (k + rank G_*) x (k + rank G_*) PSD cone and ~3 k^2
logits, costed by the conic models of :mod:`nctheory.solvers.ufm` (``PSD_BYTES`` m^4 + ``LOGIT_BYTES`` per
logit; measured for the ETF target with 3 samples a class: 3.3 MB at k = 10, 45 MB at k = 20, 218 MB at
k = 30, i.e. 17-18 m^4 with m = 2k). n_w = inf: k per-class programs of k logits each and the dense
k x k matrices G_*, V (``LIMIT_BYTES_PER_K2`` k^2; measured 0.24 MB at k = 50).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from nctheory._json import jsonable
from nctheory.counts import parse_counts, step_counts
from nctheory.errors import InputError, SolverError
from nctheory.geometry import check_gram, prototype_gram
from nctheory.losses._inputs import check_tau
from nctheory.losses.gram import LSEBuilder, LSEForm
from nctheory.solvers import conic
from nctheory.solvers.certificate import best_lower_bound, kkt_nu, lower_models
from nctheory.solvers.gram import GAP_TOL  # the relative duality gap of a certified optimum

# Interior-point optima are accurate to ~sqrt(gap) in the entries where the optimum is degenerate;
# statements about G_M entries ("equal to G_*", "collapsed") are made at 1e-3 (as solvers.verdict does).
ENTRY_TOL = 1e-3
PINV_RTOL = 1e-9    # eigenvalues of G_* below PINV_RTOL * max count as zero (range of W)
# The repaired X (at which the certified value is evaluated) must be feasible up to this: its PSD and
# diagonal residuals come from float64 rounding of an eigendecomposition and products of 2k x 2k
# matrices (~1e-15 here), so 1e-9 is generous yet far below the solver's own residuals (~1e-8); it moves
# the loss by O(1e-9 |grad L|), three orders below the 1e-6 certificate threshold.
FEAS_TOL = 1e-9

GILL_GEOMETRIES = ("etf", "minority-angles", "majority-collapse")
LIMIT_BYTES_PER_K2 = 500  # n_w = inf: bytes per k^2 (dense G_*, V, the per-class cvxpy programs; measured ~100)


# --------------------------------------------------------------------------------------------- inputs
def parse_nw(n_w):
    """A non-negative integer or math.inf."""
    if isinstance(n_w, str):
        if n_w.strip().lower() in ("inf", "infinity", "oo"):
            return math.inf
        try:
            n_w = float(n_w)
        except ValueError:
            raise InputError(f"n_w must be a non-negative integer or 'inf', got {n_w!r}") from None
    if isinstance(n_w, bool):
        raise InputError(f"n_w must be a non-negative integer or 'inf', got {n_w!r}")
    if n_w == math.inf:
        return math.inf
    if not float(n_w).is_integer() or n_w < 0:
        raise InputError(f"n_w must be a non-negative integer or 'inf', got {n_w!r}")
    return int(n_w)


def gill_batch_counts(k: int = 10, R: float = 1.0, batch: int = 2048, n_major: int = 5000,
                      n_major_classes: int | None = None) -> list[int]:
    """Expected class counts of one batch of Gill et al.'s experiments: a batch of ``batch`` samples
    (2048 with batch doubling) drawn from STEP-imbalanced CIFAR-10 (:func:`nctheory.counts.step_counts`:
    ``n_major_classes`` (default k//2) classes of n_major = 5000 samples, the others 5000/R), i.e.
    n_c = round(batch * N_c / N), at least 1. R must be finite and >= 1 (InputError otherwise)."""
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise InputError(f"the batch size must be a positive integer, got {batch!r}")
    N = step_counts(k, n_major, R, n_major_classes=n_major_classes)
    tot = float(sum(N))
    return [max(1, int(round(batch * c / tot))) for c in N]


def target_gram(geometry, k: int, n_major: int | None = None, **params) -> np.ndarray:
    """G_*: a Gill Fig. 3 name (nctheory.geometry.prototype_gram) or a k x k unit-diagonal PSD matrix."""
    if isinstance(geometry, str):
        return prototype_gram(geometry, k, n_major, **params)
    G = check_gram(geometry, unit_diagonal=True, name="prototype Gram matrix")
    if G.shape[0] != k:
        raise InputError(f"prototype Gram matrix is {G.shape[0]} x {G.shape[0]} but k = {k}")
    return G


def memory_estimate(k: int, n_w) -> tuple[int, str]:
    """(bytes, what) the program for k classes and n_w copies (an integer or math.inf) needs (module
    docstring, "Memory"); arithmetic only. For finite n_w the cone side is taken as 2k (rank G_* <= k)."""
    from nctheory.solvers.ufm import LOGIT_BYTES, PSD_BYTES

    k = int(k)
    if parse_nw(n_w) == math.inf:
        return LIMIT_BYTES_PER_K2 * k * k, f"the n_w = inf per-class programs of {k} classes"
    m = 2 * k
    return (PSD_BYTES * m ** 4 + LOGIT_BYTES * 3 * k * k,
            f"the reduced prototype program of {k} classes ({m} x {m} PSD cone)")


def check_memory(k: int, n_ws) -> None:
    """Refuse (InputError, one line) when the largest program among ``n_ws`` exceeds the memory limit;
    the suggestion names n_w = inf when only that fits."""
    from nctheory import validate

    k = validate.integer(k, "k", lo=2)
    ests = [(memory_estimate(k, nw), nw) for nw in n_ws]
    (need, what), nw = max(ests, key=lambda e: e[0][0])
    limit, _ = validate.memory_limit()
    if need > limit:
        inf_need = memory_estimate(k, math.inf)[0]
        tip = ("n_w = inf fits (~" + validate.format_bytes(inf_need) + ")" if nw != math.inf and inf_need <= limit
               else "use fewer classes (or raise --max-memory)")
        validate.check_budget(need, what, tip)


# ---------------------------------------------------------------------------------- reduced form
def reduced_form(counts, G_star, n_w: int, tau: float = 1.0) -> LSEForm:
    """SCL with n_w copies of fixed prototypes (Gram G_*), full batch with class counts ``counts``, at a
    class-block-constant point, as an LSEForm over X = [[G_M, P], [P^T, G_*]] (module docstring)."""
    n = parse_counts(counts, min_count=1, min_classes=2)
    G_star = np.asarray(G_star, dtype=np.float64)
    k = n.size
    if G_star.shape != (k, k):
        raise InputError(f"G_* must be {k} x {k}")
    tau = check_tau(tau)
    n_w = parse_nw(n_w)
    if n_w == math.inf:
        raise InputError("reduced_form needs a finite n_w (use limit_geometry for n_w = inf)")
    bld = LSEBuilder((2 * k, 2 * k))
    for c in range(k):
        _add_sample_anchors(bld, n, c, n_w, tau)
    if n_w > 0:
        for c in range(k):
            _add_prototype_anchors(bld, n, c, n_w, tau, G_star)
    return bld.build(description=f"SCL with {n_w} copies of {k} fixed prototypes, class-block reduced, tau={tau}")


def _add_sample_anchors(bld: LSEBuilder, n: np.ndarray, c: int, n_w: int, tau: float) -> None:
    """The n_c sample anchors of class c (module docstring): logits a_c/tau (positives), b_{cc'}/tau,
    P[c, c']/tau (the prototype copies), linear part -[(n_c - 1) a_c + n_w P[c, c]] / (tau cnt)."""
    k, nc = n.size, int(n[c])
    cnt = nc - 1 + n_w
    if cnt == 0:
        return  # a one-sample class without prototypes: no positive, contributes 0
    others = np.flatnonzero(np.arange(k) != c)
    cols, coef, offs = [], [], []
    if nc >= 2:  # a_c / tau = n_c G_M[c,c] / ((n_c-1) tau) - 1/((n_c-1) tau)
        cols.append([c]); coef.append([nc / ((nc - 1) * tau)]); offs.append([math.log(nc - 1) - 1.0 / ((nc - 1) * tau)])
    cols.append(others); coef.append(np.full(others.size, 1.0 / tau)); offs.append(np.log(n[others].astype(np.float64)))
    log_nw = math.log(n_w) if n_w > 0 else None
    if n_w > 0:
        cols.append(k + np.arange(k)); coef.append(np.full(k, 1.0 / tau)); offs.append(np.full(k, log_nw))
    # z-independent shift (exact: LSE(x - s) + s): divide the denominator by n_w, so the term's value is
    # O(1) whatever n_w is, and the solver's tolerance applies to the z-dependent part.
    shift = log_nw if n_w > 0 else 0.0
    cols = np.concatenate(cols)
    bld.add_term(nc, np.concatenate(offs) - shift, (np.full(cols.size, c), cols), np.concatenate(coef))
    bld.add_constant(nc * shift)
    if nc >= 2:  # the linear part times the n_c anchors
        bld.add_linear(([c], [c]), -nc * nc / (tau * cnt))
        bld.add_constant(nc / (tau * cnt))
    if n_w > 0:
        bld.add_linear(([c], [k + c]), -nc * n_w / (tau * cnt))


def _add_prototype_anchors(bld: LSEBuilder, n: np.ndarray, c: int, n_w: int, tau: float, G_star: np.ndarray) -> None:
    """The n_w copies of prototype c as anchors (module docstring): logits P[c'', c]/tau over the samples and
    the constants log m_{cc'} + G_*[c, c']/tau over the other prototype copies."""
    k, nc = n.size, int(n[c])
    cnt = nc + n_w - 1
    if cnt == 0:
        return
    mult = np.full(k, n_w, dtype=np.float64)
    mult[c] -= 1
    keep = mult > 0
    cst = np.log(mult[keep]) + G_star[c, keep] / tau  # logits without entries: the prototype copies
    # shift by log D_c, D_c = the (constant) prototype part of the denominator: the term's value becomes
    # log(1 + samples/D_c) = O(n / n_w) and n_w log D_c moves into the constant.
    shift = float(np.log(np.exp(cst - cst.max()).sum()) + cst.max()) if cst.size else 0.0
    bld.add_term(n_w, np.r_[np.log(n.astype(np.float64)), cst] - shift, (np.arange(k), np.full(k, k + c)), 1.0 / tau)
    bld.add_constant(n_w * shift)
    bld.add_linear(([c], [k + c]), -n_w * nc / (tau * cnt))
    bld.add_constant(-n_w * (n_w - 1) * G_star[c, c] / (tau * cnt))


def expand_block_gram(X: np.ndarray, counts) -> tuple[np.ndarray, np.ndarray]:
    """The (n + k) joint Gram matrix of the block-constant point X (and the labels y)."""
    n = parse_counts(counts, min_count=1, min_classes=2)
    k = n.size
    y = np.repeat(np.arange(k), n)
    GM, P, Gs = X[:k, :k], X[:k, k:], X[k:, k:]
    a = np.where(n >= 2, (n * np.diag(GM) - 1.0) / np.maximum(n - 1, 1), 1.0)
    S = GM[np.ix_(y, y)].copy()
    same = y[:, None] == y[None, :]
    S[same] = a[y][np.nonzero(same)[0]]
    np.fill_diagonal(S, 1.0)
    N = y.size
    G = np.zeros((N + k, N + k))
    G[:N, :N] = S
    G[:N, N:] = P[y]
    G[N:, :N] = P[y].T
    G[N:, N:] = Gs
    return G, y


# ------------------------------------------------------------------------------------ results
@dataclass
class GeometryResult:
    """One learned geometry: G_M and how far it is from the target G_*."""

    n_w: object                # int or math.inf
    counts: list
    tau: float
    G_star: np.ndarray
    G_M: np.ndarray
    delta: float               # Gill Def. 3, Delta_{G*}(G_M)
    max_entry_error: float     # max |G_M - G_*|
    within_cosine: list        # a_c (1 = within-class collapse); 1 for the n_w = inf limit by construction
    alignment: list            # mu_c . w_c / ||mu_c||
    value: float               # loss at the certified optimum (finite n_w: the exact loss; inf: sum_c n_c f_c*)
    certificate: dict
    method: str
    seconds: float
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return jsonable({
            "n_w": "inf" if self.n_w == math.inf else self.n_w, "counts": self.counts, "tau": self.tau,
            "G_M": self.G_M, "G_star": self.G_star, "delta_to_target": self.delta,
            "max_entry_error": self.max_entry_error, "within_class_cosine": self.within_cosine,
            "alignment_mu_w": self.alignment, "value": self.value, "certificate": self.certificate,
            "method": self.method, "seconds": self.seconds, **self.extra})


def _delta(GM, Gs) -> float:
    from nctheory.metrics import delta_to_gram

    return float(delta_to_gram(GM, Gs))


def _range_factor(G_star: np.ndarray) -> np.ndarray:
    """V (k x r) with V V^T = G_* restricted to its range (eigenvalues above PINV_RTOL * max)."""
    w, U = np.linalg.eigh(G_star)
    keep = w > PINV_RTOL * max(w.max(), 1e-300)
    return U[:, keep] * np.sqrt(w[keep])


def _repair(X: np.ndarray, k: int, G_star: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Exactly feasible X from a solver's X: prototype block set to G_*; P projected onto the range
    condition P = C V^T (V V^T = G_*); G_M = C C^T + PSD part of (G_M - C C^T) (Schur complement);
    then the feature rows rescaled (a congruence, PSD kept) to G_M[c,c] <= 1 (= 1 where ``unit``)."""
    X = 0.5 * (X + X.T)
    w, U = np.linalg.eigh(G_star)
    keep = w > PINV_RTOL * max(w.max(), 1e-300)
    V = U[:, keep] * np.sqrt(w[keep])            # G_* = V V^T
    Vp = U[:, keep] / np.sqrt(w[keep])           # V (V^T V)^{-1}: V^T Vp = I
    Cm = X[:k, k:] @ Vp                          # P V (V^T V)^{-1}
    P = Cm @ V.T
    S = X[:k, :k] - Cm @ Cm.T
    s, Q = np.linalg.eigh(0.5 * (S + S.T))
    GM = Cm @ Cm.T + (Q * np.clip(s, 0, None)) @ Q.T
    d = np.clip(np.diag(GM), 1e-300, None)
    target = np.where(unit, 1.0, np.minimum(d, 1.0))
    sc = np.sqrt(target / d)
    GM = GM * sc[:, None] * sc[None, :]
    P = P * sc[:, None]
    out = np.zeros_like(X)
    out[:k, :k] = GM
    out[:k, k:] = P
    out[k:, :k] = P.T
    out[k:, k:] = G_star
    return out


def facially_reduced_form(form: LSEForm, G_star: np.ndarray):
    """The reduced loss over Y (module docstring, finite_geometry): with G_* = V V^T (V = :func:`_range_factor`,
    k x r) and L = blockdiag(I_k, V), every feasible X is L Y L^T with Y = [[G_M, C], [C^T, I_r]] PSD; returns
    (formY, L, V, Vp) with formY(Y) = form(L Y L^T) - form.const (the exact constant left out;
    :meth:`LSEForm.pullback` with vec(L Y L^T) = (L kron L) vec(Y)) and Vp = V (V^T V)^{-1} (so C = P Vp
    recovers Y from X)."""
    k = form.size // 2
    V = _range_factor(G_star)
    r = V.shape[1]
    Vp = V @ np.linalg.inv(V.T @ V)
    L = np.zeros((2 * k, k + r))
    L[:k, :k] = np.eye(k)
    L[k:, k:] = V
    formY = form.pullback(sp.csr_matrix(np.kron(L, L)), (k + r, k + r), description="reduced program over Y")
    return replace(formY, const=0.0), L, V, Vp


def _reduced_lower_bound(formY, Y0, p, lo, hi, fixed_idx, Lam, Phi_dual) -> dict:
    """Best rigorous lower bound on min formY(Y) over {Y PSD, lo <= diag Y <= hi, Y[F, F] = I} (F =
    ``fixed_idx``) from a few multiplier candidates, by weak duality (:mod:`nctheory.solvers.certificate`):

        min formY >= offset + sum_i min(nu_i lo_i, nu_i hi_i) + <Phi, I>
                     + sum(hi) * min(0, lambda_min(D - diag nu - Phi)),

    (D, offset) one of the lower models of formY (:func:`~nctheory.solvers.certificate.lower_models`: the
    tangent plane at Y0, first-order accurate, or Gibbs' minorant from log-sum-exp weights p >= 0 with group
    sums = weight, the solver's exponential-cone duals, second-order accurate). Phi lives on the fixed block
    off its diagonal (so <Phi, I> = 0; its diagonal is nu's, with lo = hi = 1). Multipliers: diagonal from
    the KKT condition, or nu, Phi read off the stationarity D = diag(nu) + Phi + Lambda with the solver's
    PSD dual Lambda, or Phi = +-(the solver's dual of Y[F, F] = I). Any multipliers give a valid bound;
    these make it tight. Returns {"bound", "kind", "linear_part", "lambda_min"}."""
    m = formY.size
    Fm = np.zeros((m, m), dtype=bool)
    Fm[np.ix_(fixed_idx, fixed_idx)] = True
    Fm[np.diag_indices(m)] = False
    phis = [None]
    if Phi_dual is not None:
        P0 = np.zeros((m, m))
        P0[np.ix_(fixed_idx, fixed_idx)] = 0.5 * (Phi_dual + Phi_dual.T)
        P0 = np.where(Fm, P0, 0.0)
        phis += [P0, -P0]

    def multipliers(D):
        cands = [(kkt_nu(D, Y0, None, Phi), Phi) for Phi in phis]
        if Lam is not None:
            R0 = D - Lam
            P2 = np.where(Fm, R0, 0.0)
            cands += [(np.diag(R0).copy(), P2), (kkt_nu(D, Y0, None, P2), P2)]
        return [(nu, None, Phi, 0.0) for nu, Phi in cands]  # <Phi, I> = 0: Phi has zero diagonal

    return best_lower_bound(lower_models(formY, Y0, p), multipliers, lo, hi)


class _FaciallyReducedProgram:
    """The reduced prototype program over Y = [[G_M, C], [C^T, I_r]] (finite_geometry's docstring) as a cvxpy
    problem: the form over Y scaled by 1/n, Y PSD, Y[k:, k:] = I_r, G_M[c, c] <= 1 (= 1 where ``unit``)."""

    def __init__(self, form: LSEForm, G_star: np.ndarray, unit: np.ndarray, scale: float):
        k = form.size // 2
        self.form, self.k, self.unit, self.scale = form, k, unit, scale
        self.formY, self.L, self.V, self.Vp = facially_reduced_form(form, G_star)
        r = self.V.shape[1]
        self.Y = Y = cp.Variable((k + r, k + r), symmetric=True)
        obj, cons, self.cone = self.formY.canonicalise(Y, scale)
        self.c_psd = Y >> 0
        self.c_fix = Y[k:, k:] == np.eye(r)
        cons += [self.c_psd, self.c_fix]
        if (~unit).any():
            cons.append(cp.diag(Y[:k, :k])[np.flatnonzero(~unit)] <= 1)
        if unit.any():
            cons.append(cp.diag(Y[:k, :k])[np.flatnonzero(unit)] == 1)
        self.problem = cp.Problem(cp.Minimize(obj + form.const / scale), cons)
        self.lo = np.r_[np.where(unit, 1.0, 0.0), np.ones(r)]   # bounds on diag(Y) over the feasible set
        self.hi = np.ones(k + r)
        self.fixed_idx = np.arange(k, k + r)

    def point_in_Y(self, Xf: np.ndarray) -> np.ndarray:
        """The feasible X as Y (P = C V^T, C = P Vp)."""
        k, r = self.k, self.V.shape[1]
        Yf = np.eye(k + r)
        Yf[:k, :k] = Xf[:k, :k]
        Yf[:k, k:] = Xf[:k, k:] @ self.Vp
        Yf[k:, :k] = Yf[:k, k:].T
        return Yf

    def lower_bound(self, Yf: np.ndarray) -> dict:
        """:func:`_reduced_lower_bound` at Yf with the solver's duals (rescaled to the unscaled loss)."""
        sc = self.scale
        Lam = None if self.c_psd.dual_value is None else sc * np.asarray(self.c_psd.dual_value, dtype=np.float64)
        Phd = None if self.c_fix.dual_value is None else sc * np.asarray(self.c_fix.dual_value, dtype=np.float64)
        return _reduced_lower_bound(self.formY, Yf, self.formY.dual_weights(self.cone), self.lo, self.hi,
                                    self.fixed_idx, None if Lam is None else 0.5 * (Lam + Lam.T), Phd)

    def certify(self, res, Gs: np.ndarray, gap_tol: float, state: dict):
        """Rigorous gap of this solve: L at the repaired solver point minus the weak-duality lower bound."""
        k, unit, form = self.k, self.unit, self.form
        Yv = np.asarray(self.Y.value, dtype=np.float64)
        Xs = self.L @ (0.5 * (Yv + Yv.T)) @ self.L.T
        Xf = _repair(Xs, k, Gs, unit)
        d = np.diag(Xf)[:k]
        feas = {"min_eig_X": float(np.linalg.eigvalsh(Xf).min()),
                "max_diag_excess": float(np.max(np.where(unit, np.abs(d - 1.0), d - 1.0)))}
        state["feasibility"] = feas
        worst = max(-feas["min_eig_X"], feas["max_diag_excess"])
        if worst > FEAS_TOL:  # value must be at a feasible point
            return f"repaired X violates a constraint by {worst:.1e} > {FEAS_TOL:.0e}"
        value = form.value(Xf)
        Yf = self.point_in_Y(Xf)
        # formY at Yf differs from value - const only by V V^T != G_* (rounding, target_factor_error): the
        # larger of the two is used, conservatively
        value_z = max(value - form.const, self.formY.value(Yf))
        lb = self.lower_bound(Yf)
        gap = value_z - lb["bound"]
        # relative to the z-dependent part (the loss minus the exact constant moved out of the log-sum-exps),
        # which is O(n) for every n_w; relative to the whole loss (O(k n_w log n_w)) the gap would say little
        rel_gap = gap / max(1.0, abs(value - form.const))
        state.update(Xs=Xs, Xf=Xf, value=value, lb=lb, gap=gap, rel_gap=rel_gap,
                     form_check=abs(form.value(Xs) - res.primal * self.scale))
        # gap >= 0 up to rounding (both sides are rigorous); |rel_gap| is what is bounded
        return None if abs(rel_gap) <= gap_tol else f"rigorous relative gap {rel_gap:.1e} > {gap_tol:.0e}"


def finite_geometry(G_star, counts, n_w: int, tau: float = 1.0, gap_tol: float = GAP_TOL,
                    solvers=("CLARABEL", "SCS"), collapsed: bool = False) -> GeometryResult:
    """Certified UFM optimum of full-batch SCL with n_w copies of fixed prototypes (Gram G_*), by the exact
    class-block-reduced program (module docstring). Raises SolverError if not certified.

    Facial reduction: G_* = V V^T (V k x r, r = rank) is singular for the ETF and majority-collapse targets,
    so no X with X[k:, k:] = G_* is positive definite (no Slater point; interior-point solvers then stop at
    'optimal_inaccurate'). Every feasible X is L Y L^T with L = blockdiag(I_k, V) and Y = [[G_M, C], [C^T, I_r]]
    PSD (P = C V^T), which has interior points: the program is solved over Y (:class:`_FaciallyReducedProgram`).

    Certificate (``certificate``): ``value`` = L at the solver's X repaired to exact feasibility
    (:func:`_repair`; an upper bound on the optimum), ``dual_bound`` = a rigorous weak-duality lower bound
    (:func:`_reduced_lower_bound`, built from the solver's multipliers; the solver's own dual objective,
    which is not a guaranteed bound, is kept as ``solver_dual_objective`` for information only), and
    rel_gap = (value - dual_bound) / max(1, |value - constant_part|) <= gap_tol, else the solve is retried
    (Clarabel tighter, then SCS) and finally SolverError is raised.

    collapsed=True restricts to within-class collapse (G_M[c,c] = 1, i.e. a_c = 1 for every class): its
    certified lower bound above the unrestricted optimum's value proves that no optimum is collapsed."""
    t0 = time.perf_counter()
    n = parse_counts(counts, min_count=1, min_classes=2)
    k = n.size
    Gs = target_gram(G_star, k)
    tau = check_tau(tau)
    n_w = parse_nw(n_w)
    if n_w == math.inf:
        raise InputError("finite_geometry needs a finite n_w; use limit_geometry")
    form = reduced_form(n, Gs, n_w, tau)
    # objective scaled to O(1) per sample for conditioning (constants moved out)
    prog = _FaciallyReducedProgram(form, Gs, (n == 1) | bool(collapsed), float(n.sum()))
    state = {}
    res = conic.solve(prog.problem, solvers, what="reduced prototype SCL program",
                      accept=lambda r: prog.certify(r, Gs, gap_tol, state))
    Xs, Xf, value, lb = (state[kk] for kk in ("Xs", "Xf", "value", "lb"))
    GM, P = Xf[:k, :k], Xf[:k, k:]
    a = np.where(n >= 2, (n * np.diag(GM) - 1.0) / np.maximum(n - 1, 1), 1.0)
    align = np.diag(P) / np.sqrt(np.clip(np.diag(GM), 1e-300, None))
    cert = {"status": res.status, "solver": res.solver, "value": value, "dual_bound": lb["bound"] + form.const,
            "gap": state["gap"], "rel_gap": state["rel_gap"], "gap_tol": gap_tol, "constant_part": form.const,
            "rel_gap_to": "max(1, |value - constant_part|), the z-dependent part of the loss",
            "lower_bound_kind": lb["kind"], "lower_bound_lambda_min": lb["lambda_min"],
            "solver_dual_objective": res.dual * prog.scale, "solver_value": res.primal * prog.scale,
            "form_check": state["form_check"], "repair_change": float(np.abs(Xf - Xs).max()),
            "target_factor_error": float(np.abs(prog.V @ prog.V.T - Gs).max()),
            **state["feasibility"], "feas_tol": FEAS_TOL, "r_prim": res.r_prim, "r_dual": res.r_dual,
            "attempts": res.attempts,
            "gap_kind": ("rigorous: L(X repaired to exact feasibility) - weak-duality lower bound from the solver's "
                         "multipliers (nctheory.solvers.certificate), over the facially reduced program; "
                         "solver_dual_objective is for information only")}
    return GeometryResult(n_w=n_w, counts=n.tolist(), tau=tau, G_star=Gs, G_M=GM, delta=_delta(GM, Gs),
                          max_entry_error=float(np.abs(GM - Gs).max()), within_cosine=a.tolist(),
                          alignment=align.tolist(), value=value, certificate=cert, method="reduced-gram",
                          seconds=time.perf_counter() - t0, extra={"P": P})


# ---------------------------------------------------------------------------------------- limit
def limit_class_solution(G_star, y: int, tau: float = 1.0, form: str = "derived", gap_tol: float = GAP_TOL,
                         solvers=("CLARABEL", "SCS")) -> dict:
    """min f(p, y) over p = W h, |h| <= 1, f = :class:`nctheory.losses.prototype_limit.PerSampleLimit` (the
    n_w -> oo limit per sample, module docstring): with G_* = V V^T (V k x r on the range of G_*) this is
    exactly p = V alpha, |alpha| <= 1 (the Gram condition [[1, p^T], [p, G_*]] PSD after facial reduction),
    where alpha holds the coordinates of the projection of h on span(W).

    Certificate (rigorous, independent of the solver's dual): alpha0 = the solver's alpha projected into
    the unit ball (feasible, so value = f(V alpha0) >= min), and, f being convex in alpha with gradient
    g = V^T grad_p f(V alpha0), f(alpha) >= f(alpha0) + g.(alpha - alpha0) >= f(alpha0) - g.alpha0 - |g|
    for every |alpha| <= 1 (the minimum of a linear function over the ball). That bound is second-order
    accurate when the minimiser is on the sphere (the case here, see :func:`limit_geometry`). Relative gap
    (value - bound) / max(1, |value|) <= gap_tol, else the next solver attempt, else SolverError.
    Returns p, alpha (|alpha|^2 = 1 means h in span(W))."""
    from nctheory.losses.prototype_limit import PerSampleLimit

    Gs = np.asarray(G_star, dtype=np.float64)
    f = PerSampleLimit(Gs, tau, form)
    V = _range_factor(Gs)
    alpha = cp.Variable(V.shape[1])
    prob = cp.Problem(cp.Minimize(f.cvxpy(V @ alpha, y)), [cp.norm(alpha, 2) <= 1])
    state = {}

    def certify(res):
        av = np.asarray(alpha.value, dtype=np.float64)
        nrm = float(np.linalg.norm(av))
        if nrm > 1:
            av = av / nrm
        pf = V @ av
        value = f.value(pf, y)
        g = V.T @ f.gradient(pf, y)
        bound = value - float(g @ av) - float(np.linalg.norm(g))
        gap = value - bound
        rel = gap / max(1.0, abs(value))
        state.update(av=av, pf=pf, value=value, bound=bound, gap=gap, rel=rel)
        return None if abs(rel) <= gap_tol else f"rigorous relative gap {rel:.1e} > {gap_tol:.0e}"

    # conic.solve: the project's solver driver (Clarabel, tighter Clarabel, SCS) with an accept() hook for the
    # rigorous gap; only its retry policy is used here, not its dual objective.
    res = conic.solve(prob, solvers, what=f"n_w -> inf per-class program (class {y})", accept=certify)
    av = state["av"]
    return {"p": state["pf"], "alpha": av, "span_norm2": float(av @ av), "value": state["value"],
            "dual_bound": state["bound"], "gap": state["gap"], "rel_gap": state["rel"], "solver": res.solver,
            "status": res.status, "solver_dual_objective": res.dual,
            "gap_kind": "rigorous: f(alpha0) - (f(alpha0) - g.alpha0 - |g|), the convexity bound over the unit ball"}


def limit_geometry(G_star, counts, tau: float = 1.0, form: str = "derived",
                   gap_tol: float = GAP_TOL) -> GeometryResult:
    """The n_w -> oo geometry: each class's samples at the minimiser of f(., y) (module docstring).

    G_M[c, c'] = alpha_c . alpha_{c'} (= p_c^T G_*^+ p_{c'}), exact when every minimiser lies in span(W)
    (||h_c||^2 = p^T G_*^+ p = 1;
    checked, ``span_norm2``; SolverError otherwise). Why it does: the gradient of f in p is
    g = (softmax(p/tau) + exp(p/tau)/Z - 2 e_y)/tau, with g_y <= (1 + 1 - 2)/tau = 0 < g_c (c != y); a
    minimiser strictly inside the ball needs W^T g = 0, impossible when G_* is invertible (g != 0) or the
    ETF (g would be a multiple of the all-ones vector);
    for other singular G_* it is checked. The value is sum_c n_c f_c^* (z-independent
    constants dropped), so counts only weight classes: the limit geometry does not depend on imbalance."""
    t0 = time.perf_counter()
    n = parse_counts(counts, min_count=1, min_classes=2)
    k = n.size
    Gs = target_gram(G_star, k)
    tau = check_tau(tau)
    sols = [limit_class_solution(Gs, c, tau, form, gap_tol) for c in range(k)]
    Pm = np.stack([s["p"] for s in sols])          # row c = W h_c
    Al = np.stack([s["alpha"] for s in sols])      # row c = coordinates of h_c in span(W)
    GM = Al @ Al.T
    span = np.array([s["span_norm2"] for s in sols])
    if np.any(span < 1 - ENTRY_TOL):
        raise SolverError(f"n_w -> inf: a class minimiser leaves span(W) (|proj h|^2 = {span.min():.4f} < 1): "
                          "G_M is then not determined by the prototypes")
    value = float(sum(n[c] * sols[c]["value"] for c in range(k)))
    cert = {"per_class_rel_gap_max": float(max(abs(s["rel_gap"]) for s in sols)),
            "per_class_gap_max": float(max(abs(s["gap"]) for s in sols)), "gap_tol": gap_tol,
            "span_norm2_min": float(span.min()), "solvers": sorted({s["solver"] for s in sols}),
            "status": "optimal", "form": form,
            "gap_kind": ("rigorous, per class: f(p repaired into {W h : |h| <= 1}) - the convexity lower bound "
                         "f(alpha0) - g.alpha0 - |g| over the unit ball (limit_class_solution)")}
    align = np.diag(Pm) / np.sqrt(np.clip(np.diag(GM), 1e-300, None))
    return GeometryResult(n_w=math.inf, counts=n.tolist(), tau=tau, G_star=Gs, G_M=GM, delta=_delta(GM, Gs),
                          max_entry_error=float(np.abs(GM - Gs).max()), within_cosine=[1.0] * k,
                          alignment=align.tolist(), value=value, certificate=cert,
                          method=f"limit ({form} form), per-class Gram programs",
                          seconds=time.perf_counter() - t0, extra={"P": Pm, "form": form})


def learned_geometry(G_star, counts, n_w, tau: float = 1.0, form: str = "derived") -> GeometryResult:
    """:func:`finite_geometry` for finite n_w, :func:`limit_geometry` for n_w = inf; refused (InputError)
    when the program's memory estimate exceeds the limit (:func:`check_memory`)."""
    n_w = parse_nw(n_w)
    check_memory(parse_counts(counts, min_count=1, min_classes=2).size, [n_w])
    if n_w == math.inf:
        return limit_geometry(G_star, counts, tau, form)
    return finite_geometry(G_star, counts, n_w, tau)

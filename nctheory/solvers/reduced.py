"""Symmetry-reduced full-batch SCL program on the k x k class-mean Gram matrix (counts up to ~1e6).

Reduction
---------
Full-batch SCL (Kini et al. Eq. 2, temperature tau, sum form, anchors of one-sample classes contribute
0) is a convex function of G = H^T H that is invariant under permuting samples within a class, and the
feasible set {G PSD, diag G = 1} (and its DNN version G >= 0) is invariant too. Averaging an optimum
over that group keeps it feasible and does not increase the loss (Jensen), so an optimum exists that is
constant on class blocks:

    G_ii = 1,   G_ij = a_c (i != j both in class c),   G_ij = b_{cc'} (i in c, j in c').

PSD condition (derived here; it is *not* "the k x k matrix [a_c; b] is PSD", which is only sufficient).
Let E (n x k) be the class indicator, N = diag(n_c), B_k the k x k matrix with a_c on the diagonal and
b_{cc'} off it. Then G = blockdiag((1 - a_c) I_{n_c}) + E B_k E^T. The subspaces range(E) and its
orthogonal complement (vectors summing to zero inside each class) are both G-invariant:
  * on the complement, G acts as (1 - a_c) on the (n_c - 1)-dimensional piece of class c
    -> need a_c <= 1 for every class with n_c >= 2;
  * on range(E), in the orthonormal basis E N^{-1/2}, G acts as
        diag(1 - a_c) + N^{1/2} B_k N^{1/2} = N^{1/2} G_M N^{1/2},
    where G_M = diag((1 - a_c)/n_c) + B_k is exactly the class-mean Gram matrix
    (G_M[c,c] = (1 + (n_c - 1) a_c)/n_c = ||mu_c||^2, G_M[c,c'] = b_{cc'} = mu_c . mu_c').
So G PSD  <=>  G_M PSD and G_M[c,c] <= 1 (a_c <= 1), with G_M[c,c] = 1 for one-sample classes.
The program's variable is therefore G_M itself (entries O(1) whatever the counts: well conditioned),
with a_c = (n_c G_M[c,c] - 1)/(n_c - 1). DNN (UFM+ relaxation, G >= 0): a_c >= 0 <=> G_M[c,c] >= 1/n_c,
and G_M[c,c'] >= 0.

Loss with counts as multiplicities. For an anchor of class c (n_c >= 2), its n_c - 1 positives and
the n_{c'} members of other classes give
    LSE_{l != i}(G_il/tau) - a_c/tau = log( (n_c - 1) + sum_{c' != c} n_{c'} exp((b_{cc'} - a_c)/tau) ),
so   L = sum_{c: n_c >= 2} n_c * LSE( log(n_c - 1);  log n_{c'} + (b_{cc'} - a_c)/tau, c' != c ).
The counts enter only as log-offsets and weights (no exp(1/tau)-sized coefficients); the objective is
scaled by 1/n inside the solver so its magnitude is O(log n) for any n. At a_c = 1, b = 0 this is
Kini Thm 1's bound sum_c n_c log(n_c - 1 + (n - n_c) e^{-1/tau}).

That loss is :func:`class_mean_form`, an LSEForm of G_M (tested equal to the full
:func:`nctheory.losses.gram.scl_form` on block expansions). Orbits: classes of equal size are
exchangeable, so the program may also take G_M constant on orbits (:func:`orbit_form`, the class-mean
form composed with the orbit parametrisation and merged by :meth:`LSEForm.merged`: identical logits
and terms aggregate into log-multiplicities and weights).

The DNN relaxation is a certified lower bound on UFM+, tight when the optimal block G is completely
positive (the 0/1 NC+OF matrix is: it is H^T H for the one-hot H).
"""

from __future__ import annotations

import time

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from nctheory.counts import parse_counts
from nctheory.errors import InputError
from nctheory.losses._inputs import check_tau
from nctheory.losses.gram import LSEBuilder, LSEForm
from nctheory.solvers import conic
from nctheory.solvers.certificate import best_lower_bound, kkt_nu, lower_models
from nctheory.solvers.gram import GAP_TOL, SolveResult, factor
from nctheory.solvers.verdict import certify_candidates, name_geometry, settle_name


def _orbits(n: np.ndarray, orbits: str):
    """Partition of the classes into orbits: "counts" groups classes of equal size (they are exchangeable),
    "classes" keeps every class alone. Returns (group id per class, sizes m_g, count n_g per group)."""
    if orbits == "classes":
        gid = np.arange(n.size)
    elif orbits == "counts":
        _, gid = np.unique(n, return_inverse=True)
    else:
        raise InputError(f"orbits must be 'counts' or 'classes', got {orbits!r}")
    m = np.bincount(gid)
    ng = np.zeros(m.size, dtype=np.int64)
    ng[gid] = n
    return gid, m, ng


def class_mean_form(counts, tau: float = 1.0) -> LSEForm:
    """Full-batch SCL (Kini Eq. 2 with tau) of the class-block-constant G whose class-mean Gram is G_M, as an
    LSEForm of G_M (module docstring): for each class c with n_c >= 2, weight n_c and the logits
    log(n_c - 1) (the positives) and log n_{c'} + (G_M[c, c'] - a_c)/tau for c' != c, where
    a_c/tau = (n_c G_M[c, c] - 1)/((n_c - 1) tau). Classes with one sample contribute 0."""
    n = parse_counts(counts, min_count=1, min_classes=2)
    tau = check_tau(tau)
    k = n.size
    bld = LSEBuilder((k, k))
    for c in np.flatnonzero(n >= 2):
        others = np.flatnonzero(np.arange(k) != c)
        coef_d = -n[c] / ((n[c] - 1.0) * tau)   # -a_c/tau = coef_d * G_M[c, c] + const_a
        const_a = 1.0 / ((n[c] - 1.0) * tau)
        j = np.arange(others.size)
        bld.add_term(float(n[c]), np.r_[np.log(n[c] - 1.0), np.log(n[others].astype(np.float64)) + const_a],
                     (np.full(2 * others.size, c), np.r_[others, np.full(others.size, c)]),
                     np.r_[np.full(others.size, 1.0 / tau), np.full(others.size, coef_d)], np.r_[j, j] + 1)
    return bld.build(description=f"full-batch SCL on the class-mean Gram matrix, counts {n.tolist()}, tau={tau}")


def orbit_form(counts, tau: float = 1.0, orbits: str = "counts"):
    """:func:`class_mean_form` restricted to G_M constant on orbits, over theta = [vec(Q) row-major; d]:
    Q[g, g] = e_g (inner product of the means of two distinct classes of orbit g), Q[g, h] = f_gh,
    d_g = ||mu_c||^2 for c in orbit g. Returns (form, expand, (gid, m, ng)): the merged form of theta (an
    anchor of orbit g sees n_g - 1 positives, (m_g - 1) n_g same-orbit negatives and m_h n_h negatives of
    orbit h, and there are m_g n_g such anchors), expand (:meth:`LSEForm.merged`: its dual weights as
    weights of the class-mean form) and the orbits (:func:`_orbits`)."""
    n = parse_counts(counts, min_count=1, min_classes=2)
    gid, m, ng = _orbits(n, orbits)
    k, G = n.size, m.size
    same = np.arange(k)[:, None] == np.arange(k)[None, :]
    cols = np.where(same, G * G + gid[:, None], gid[:, None] * G + gid[None, :])  # theta entry of G_M[c, c']
    T = sp.csr_matrix((np.ones(k * k), (np.arange(k * k), cols.ravel())), shape=(k * k, G * G + G))
    form, expand = class_mean_form(n, tau).pullback(T, (G * G + G,)).merged(
        description=f"full-batch SCL on {G} orbits of classes, counts {n.tolist()}, tau={tau}")
    return form, expand, (gid, m, ng)


def reduced_scl_value(GM, counts, tau: float = 1.0) -> float:
    """Full-batch SCL (Kini Eq. 2 with tau) of the class-block-constant G whose class-mean Gram is GM."""
    return class_mean_form(counts, tau).value(GM)


def sample_gram_from_class_gram(GM, counts) -> np.ndarray:
    """The n x n class-block-constant sample Gram matrix with class-mean Gram GM (for small n; tests)."""
    n = parse_counts(counts, min_count=1, min_classes=2)
    GM = np.asarray(GM, dtype=np.float64)
    y = np.repeat(np.arange(n.size), n)
    a = np.where(n >= 2, (n * np.diag(GM) - 1.0) / np.maximum(n - 1.0, 1.0), 1.0)
    G = GM[np.ix_(y, y)].copy()
    same = y[:, None] == y[None, :]
    G[same] = a[y][np.nonzero(same)[0]]
    np.fill_diagonal(G, 1.0)
    return G


def _repair(GM, n, nonneg):
    """Exact feasibility and exact NC: PSD projection; rows/columns with diagonal > 1 scaled down to 1;
    then the diagonal raised to 1 (adding a non-negative diagonal keeps PSD). Raising G_M[c,c] raises
    a_c, and the loss is strictly decreasing in a_c (its derivative is -(n_c/tau) * (1 - p_pos) * n_c/(n_c-1)
    < 0), so this never increases the loss: every optimum has a_c = 1 (NC), and the solver's a_c < 1 at
    small tau only reflect how flat the loss is in a_c. Non-negativity: clip, then mix with the diagonal
    just enough to restore PSD (the diagonal stays 1)."""
    GM = 0.5 * (GM + GM.T)
    w, V = np.linalg.eigh(GM)
    GM = (V * np.clip(w, 0, None)) @ V.T
    d = np.clip(np.diag(GM), 1e-300, None)
    s = np.sqrt(np.minimum(1.0, 1.0 / d))
    GM = GM * s[:, None] * s[None, :]
    GM = GM + np.diag(1.0 - np.diag(GM))
    if nonneg:
        GM = np.where(GM < 0, 0.0, GM)
        lam = np.linalg.eigvalsh(GM).min()
        if lam < 0:
            t = -lam / (1.0 - lam)
            GM = (1 - t) * GM + t * np.eye(GM.shape[0])
    return GM


def _class_level_bound(form_n: LSEForm, M0: np.ndarray, n: np.ndarray, nonneg: bool, p=None) -> dict:
    """Rigorous lower bound on the k x k class-mean program
        min f(M)  s.t.  M PSD, lo_c <= M_cc <= hi_c, [M >= 0],
    f = ``form_n`` (the class-mean form in units of loss / n), by nctheory.solvers.certificate: the lower
    models at M0 and from the LSE weights p (the solver's orbit-level duals spread over the classes of each
    orbit), diagonal multipliers from KKT, N >= 0 on the entries where M0 vanishes (non-negative case)."""
    k = n.size
    off = ~np.eye(k, dtype=bool)

    def multipliers(D):
        cands = [(kkt_nu(D, M0, None), None)]
        if nonneg:
            for thr in (1e-6, 1e-3):
                N = np.where((M0 < thr) & off, np.clip(D, 0, None), 0.0)
                cands.append((kkt_nu(D, M0, N), N))
            # Lambda = 0 (M0 of full rank, e.g. the OF): D = diag(nu) + N exactly when D is >= 0 off the diagonal
            N = np.where(off, np.clip(D, 0, None), 0.0)
            cands.append((np.diag(D).copy(), N))
        return [(nu, N, None, 0.0) for nu, N in cands]

    lo = np.where(n >= 2, (1.0 / n) if nonneg else 0.0, 1.0)
    return best_lower_bound(lower_models(form_n, M0, p), multipliers, lo, np.ones(k))


class _OrbitProgram:
    """The orbit-reduced program as a cvxpy problem over Q (G x G symmetric) and d (G): the orbit form
    (:func:`orbit_form`) scaled by 1/n, PSD of the block G (module docstring), diagonal bounds, DNN; and the
    certificate of a solve on the class level (:meth:`certify`)."""

    def __init__(self, counts: np.ndarray, tau: float, nonneg: bool, orbits: str):
        self.n, self.nonneg, self.ntot = counts, nonneg, float(counts.sum())
        self.form = class_mean_form(counts, tau)
        self.form_n = self.form.scaled(1.0 / self.ntot)   # loss / n: the program's units, O(log n) for any n
        self.oform, self.expand, (self.gid, m, ng) = orbit_form(counts, tau, orbits)
        self.n_orbits = G = m.size
        self.Q = Q = cp.Variable((G, G), symmetric=True)
        self.d = d = cp.Variable(G)
        obj, cons, self.cone = self.oform.canonicalise(cp.hstack([cp.vec(Q, order="C"), d]), scale=self.ntot)
        sq = np.sqrt(m.astype(np.float64))
        K = cp.diag(d - cp.diag(Q)) + cp.multiply(np.outer(sq, sq), Q)
        cons += [0.5 * (K + K.T) >> 0]
        single = np.flatnonzero(m == 1)
        if single.size:
            cons.append(cp.diag(Q)[single] == d[single])
        if (m >= 2).any():
            cons.append(d[m >= 2] >= cp.diag(Q)[m >= 2])
        multi_g = ng >= 2
        if multi_g.any():
            cons.append(d[multi_g] <= 1)
        if (~multi_g).any():
            cons.append(d[~multi_g] == 1)
        if nonneg:
            cons.append(Q >= 0)
            if multi_g.any():
                cons.append(d[multi_g] >= 1.0 / ng[multi_g])
        self.problem = cp.Problem(cp.Minimize(obj), cons)

    def class_mean_gram(self) -> np.ndarray:
        """The solver's point as a k x k class-mean Gram matrix (constant on orbits)."""
        Qv, dv = np.asarray(self.Q.value, dtype=np.float64), np.asarray(self.d.value, dtype=np.float64)
        Ms = 0.5 * (Qv + Qv.T)[np.ix_(self.gid, self.gid)]
        np.fill_diagonal(Ms, dv[self.gid])
        return Ms

    def certify(self, res, gap_tol: float, state: dict):
        """Honest gap: the class-mean loss at the repaired solver point minus the rigorous class-level lower
        bound (the orbit duals spread over the classes by ``expand``); the reason to reject, else None."""
        Ms = self.class_mean_gram()
        GM = _repair(Ms, self.n, self.nonneg)
        value = self.form.value(GM)
        p_orb = self.oform.dual_weights(self.cone)
        lb = _class_level_bound(self.form_n, GM, self.n, self.nonneg,
                                None if p_orb is None else self.expand(p_orb) / self.ntot)
        dual = lb["bound"] * self.ntot
        gap = value - dual
        rel_gap = gap / max(1.0, abs(value))
        state.update(GM=GM, value=value, dual=dual, gap=gap, rel_gap=rel_gap, lb=lb,
                     solver_value=res.primal * self.ntot, form_check=abs(self.form.value(Ms) - res.primal * self.ntot))
        return None if abs(rel_gap) <= gap_tol else f"relative gap {rel_gap:.1e} > {gap_tol:.0e}"


def solve_reduced(counts, tau: float = 1.0, nonneg: bool = False, gap_tol: float = GAP_TOL,
                  orbits: str = "counts", solvers=("CLARABEL", "SCS")) -> SolveResult:
    """Solve full-batch SCL in the UFM (nonneg=False) or its DNN relaxation of UFM+ (nonneg=True)
    for class sizes ``counts``; returns a SolveResult whose G is the k x k class-mean Gram matrix.

    orbits="counts" (default) also uses that classes of equal size are exchangeable: G_M is taken
    constant on the orbits (d_g on the diagonal, e_g between two classes of orbit g, f_gh across),
    which is exact by the same averaging argument (loss and constraints are invariant under permuting
    equal-size classes). PSD of such a G_M, by the derivation of the module docstring one level up:
    d_g - e_g >= 0 when m_g >= 2 and diag(d_g - e_g) + M^{1/2} Q M^{1/2} PSD (M = diag(m_g)).
    STEP imbalance has two orbits, so k = 100 costs as little as k = 2. orbits="classes" solves over
    the full k x k G_M (a k x k PSD cone; ~1-3 min at k = 100 on one core).
    """
    t0 = time.perf_counter()
    n = parse_counts(counts, min_count=1, min_classes=2)
    tau = check_tau(tau)
    k = n.size
    if np.all(n < 2):
        raise InputError("every class has one sample: full-batch SCL is identically 0")
    prog = _OrbitProgram(n, tau, nonneg, orbits)
    form = prog.form
    state = {}
    res = conic.solve(prog.problem, solvers, what="reduced SCL program",
                      accept=lambda r: prog.certify(r, gap_tol, state))
    GM, value, dual = state["GM"], state["value"], state["dual"]
    multi = n >= 2
    a = np.where(multi, (n * np.diag(GM) - 1.0) / np.maximum(n - 1.0, 1.0), 1.0)
    feas = {"min_eig_class_mean_gram": float(np.linalg.eigvalsh(GM).min()), "max_within_cosine": float(a.max()),
            "min_within_cosine": float(a.min()), "min_cross": float((GM - np.diag(np.diag(GM))).min()),
            "solver_r_prim": res.r_prim, "solver_r_dual": res.r_dual}
    Z, r, w = factor(GM)
    geo = name_geometry(GM, float(a[multi].min()) if multi.any() else None)
    geo["candidates"] = certify_candidates(form.value, dual, k, nonneg, gap_tol, value)
    settle_name(geo)
    return SolveResult(
        value=value, dual_bound=dual, gap=state["gap"], rel_gap=state["rel_gap"],
        gap_kind=("rigorous: L(G_feasible) - Lagrangian lower bound on the k x k class-mean program (nctheory."
                  "solvers.certificate; multipliers from the solver's exponential-cone duals and KKT); G_feasible = "
                  "block G of the solver's class-mean Gram repaired to exact feasibility"),
        status=res.status, solver=res.solver, G=GM, Z=Z, rank=r, eigenvalues=w, class_mean_gram=GM,
        geometry=geo, solver_value=state["solver_value"], form_check=state["form_check"], feasibility=feas,
        seconds=time.perf_counter() - t0, method="reduced", form=form,
        extra={"within_class_cosine": a.tolist(), "counts": n.tolist(), "tau": tau, "nonneg": nonneg,
               "orbits": orbits, "n_orbits": int(prog.n_orbits), "iterations": res.iterations,
               "attempts": res.attempts,
               "solver_dual_objective": res.dual * prog.ntot, "lower_bound_detail": state["lb"],
               "note": "G, Z and rank refer to the k x k class-mean Gram matrix (the sample Gram is its block expansion)"},
    )

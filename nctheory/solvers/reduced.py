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

The DNN relaxation is a certified lower bound on UFM+, tight when the optimal block G is completely
positive (the 0/1 NC+OF matrix is: it is H^T H for the one-hot H).
"""

from __future__ import annotations

import time

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from nctheory.counts import parse_counts
from nctheory.errors import InputError
from nctheory.losses._inputs import check_tau
from nctheory.solvers import conic
from nctheory.solvers.certificate import kkt_nu, linear_lower_bound, lse_conjugate_part
from nctheory.solvers.gram import GAP_TOL, SolveResult, factor
from nctheory.solvers.verdict import settle_name, certify_candidates, geometry


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


def _logit_structure(m: np.ndarray, ng: np.ndarray, tau: float):
    """Sparse (A, b, group, weight) of the orbit-reduced loss over theta = [vec(Q) row-major; d].

    Q[g, g] = e_g (inner product of the means of two distinct classes of orbit g; = d_g when m_g = 1),
    Q[g, h] = f_gh, d_g = ||mu_c||^2 for c in orbit g, a_g = (n_g d_g - 1)/(n_g - 1). An anchor of orbit g
    sees n_g - 1 positives (logit 0), (m_g - 1) n_g same-orbit negatives (logit (e_g - a_g)/tau) and
    m_h n_h negatives of orbit h (logit (f_gh - a_g)/tau); there are m_g n_g such anchors.
    """
    G = m.size
    rows, cols, vals, b, group, weight = [], [], [], [], [], []
    R = t = 0
    for g in range(G):
        if ng[g] < 2:
            continue
        b.append(np.log(ng[g] - 1.0)); group.append(t); R += 1
        coef_d = -ng[g] / ((ng[g] - 1.0) * tau)   # -a_g/tau = coef_d * d_g + const_a
        const_a = 1.0 / ((ng[g] - 1.0) * tau)
        for h in range(G):
            mult = (m[h] - 1) * ng[h] if h == g else m[h] * ng[h]
            if mult == 0:
                continue
            rows += [R, R]; cols += [g * G + h, G * G + g]; vals += [1.0 / tau, coef_d]
            b.append(np.log(float(mult)) + const_a); group.append(t); R += 1
        weight.append(float(m[g] * ng[g]))
        t += 1
    A = sp.csr_matrix((vals, (rows, cols)), shape=(R, G * G + G))
    return A, np.asarray(b), np.asarray(group, dtype=np.int64), np.asarray(weight)


def reduced_scl_value(GM, counts, tau: float = 1.0) -> float:
    """Full-batch SCL (Kini Eq. 2 with tau) of the class-block-constant G whose class-mean Gram is GM."""
    n = parse_counts(counts, min_count=1, min_classes=2)
    tau = check_tau(tau)
    GM = np.asarray(GM, dtype=np.float64)
    total = 0.0
    for c in range(n.size):
        if n[c] < 2:
            continue
        a = (n[c] * GM[c, c] - 1.0) / (n[c] - 1.0)
        others = np.arange(n.size) != c
        x = np.concatenate([[np.log(n[c] - 1.0)], np.log(n[others]) + (GM[c, others] - a) / tau])
        total += n[c] * logsumexp(x)
    return float(total)


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


def _class_level_bound(M0, n, tau, nonneg, gid, m, ng, p_orb):
    """Rigorous lower bound (in units of loss / n) on the k x k class-mean program
        min f(M)  s.t.  M PSD, lo_c <= M_cc <= hi_c, [M >= 0],
    f(M) = (1/n) sum_c n_c LSE(...) (module docstring), by nctheory.solvers.certificate: LSE weights from
    the solver's orbit-level duals spread evenly over the classes of each orbit (or the softmax at M0),
    diagonal multipliers from KKT, N >= 0 on the entries where M0 vanishes (non-negative case)."""
    k = n.size
    ntot = float(n.sum())
    mc, ngc = np.ones(k, dtype=np.int64), n
    A, b, group, weight = _logit_structure(mc, ngc, tau)
    weight = weight / ntot

    def to_matrix(gvec):  # gradient over theta = [vec(Q); d] -> symmetric k x k matrix over M
        Sq = gvec[: k * k].reshape(k, k)
        np.fill_diagonal(Sq, 0.0)
        return 0.5 * (Sq + Sq.T) + np.diag(gvec[k * k:])

    theta0 = np.concatenate([M0.ravel(), np.diag(M0)])
    x0 = A @ theta0 + b
    starts = np.flatnonzero(np.r_[True, np.diff(group) != 0])
    mx = np.maximum.reduceat(x0, starts)
    e = np.exp(x0 - mx[group])
    ssum = np.add.reduceat(e, starts)
    f0 = float(weight @ (mx + np.log(ssum)))
    p_soft = weight[group] * e / ssum[group]
    D0 = to_matrix(A.T @ p_soft)
    bases = [("frank-wolfe", f0 - float(np.sum(D0 * M0)), D0)]
    if p_orb is not None:
        # orbit-level rows: per orbit g with ng >= 2: [positive, then each h with multiplicity > 0]
        p_cls = np.zeros(group.size)
        orb_rows = {}
        r = 0
        for g in range(m.size):
            if ng[g] < 2:
                continue
            orb_rows[(g, "pos")] = r
            r += 1
            for h in range(m.size):
                mult = (m[h] - 1) * ng[h] if h == g else m[h] * ng[h]
                if mult == 0:
                    continue
                orb_rows[(g, h)] = r
                r += 1
        r = 0
        for c in range(k):
            if n[c] < 2:
                continue
            g = gid[c]
            p_cls[r] = p_orb[orb_rows[(g, "pos")]] / m[g]
            r += 1
            for c2 in range(k):
                if c2 == c:
                    continue
                h = gid[c2]
                m_h = m[h] - (1 if h == g else 0)
                p_cls[r] = p_orb[orb_rows[(g, h)]] / (m[g] * m_h)
                r += 1
        tot = np.bincount(group, weights=p_cls, minlength=weight.size)
        p_cls = p_cls * (weight / tot)[group]
        S = to_matrix(A.T @ p_cls)
        bases.append(("solver-dual", lse_conjugate_part(b, group, weight, p_cls), S))
    lo = np.where(n >= 2, (1.0 / n) if nonneg else 0.0, 1.0)
    hi = np.ones(k)
    best = None
    for kind, base, D in bases:
        cands = [(None, kkt_nu(D, M0, None))]
        if nonneg:
            off = ~np.eye(k, dtype=bool)
            for thr in (1e-6, 1e-3):
                N = np.where((M0 < thr) & off, np.clip(D, 0, None), 0.0)
                cands.append((N, kkt_nu(D, M0, N)))
            # Lambda = 0 (M0 of full rank, e.g. the OF): D = diag(nu) + N exactly when D is >= 0 off the diagonal
            N = np.where(off, np.clip(D, 0, None), 0.0)
            cands.append((N, np.diag(D).copy()))
        for N, nu in cands:
            lb = linear_lower_bound(D, lo, hi, nu, N)
            lb["bound"] = base + lb["linear_part"]
            lb["kind"] = kind
            if best is None or lb["bound"] > best["bound"]:
                best = lb
    return best


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
    ntot = float(n.sum())
    if np.all(n < 2):
        raise InputError("every class has one sample: full-batch SCL is identically 0")
    gid, m, ng = _orbits(n, orbits)
    G = m.size
    A, b, group, weight = _logit_structure(m, ng, tau)
    Q = cp.Variable((G, G), symmetric=True)
    d = cp.Variable(G)
    theta = cp.hstack([cp.vec(Q, order="C"), d])
    obj, cons, cone = conic.lse_epigraph(A @ theta + b, group, weight / ntot)
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
    prob = cp.Problem(cp.Minimize(obj), cons)
    multi = n >= 2
    state = {}

    def certify(res):
        """Honest gap: the reduced loss at the repaired class-mean Gram minus the solver's dual objective."""
        Qv, dv = np.asarray(Q.value, dtype=np.float64), np.asarray(d.value, dtype=np.float64)
        Ms = 0.5 * (Qv + Qv.T)[np.ix_(gid, gid)]
        np.fill_diagonal(Ms, dv[gid])
        GM = _repair(Ms, n, nonneg)
        value = reduced_scl_value(GM, n, tau)
        p_orb = conic.lse_dual(cone, group, weight / ntot)
        lb = _class_level_bound(GM, n, tau, nonneg, gid, m, ng, p_orb)
        state["lb"] = lb
        dual = lb["bound"] * ntot
        gap = value - dual
        rel_gap = gap / max(1.0, abs(value))
        state.update(GM=GM, value=value, dual=dual, gap=gap, rel_gap=rel_gap,
                     solver_value=res.primal * ntot,
                     form_check=abs(reduced_scl_value(Ms, n, tau) - res.primal * ntot))
        return None if abs(rel_gap) <= gap_tol else f"relative gap {rel_gap:.1e} > {gap_tol:.0e}"

    res = conic.solve(prob, solvers, what="reduced SCL program", accept=certify)
    GM, value, dual, gap, rel_gap = (state[kk] for kk in ("GM", "value", "dual", "gap", "rel_gap"))
    solver_value, form_check = state["solver_value"], state["form_check"]
    a = np.where(multi, (n * np.diag(GM) - 1.0) / np.maximum(n - 1.0, 1.0), 1.0)
    lam = np.linalg.eigvalsh(GM)
    feas = {"min_eig_class_mean_gram": float(lam.min()), "max_within_cosine": float(a.max()),
            "min_within_cosine": float(a.min()), "min_cross": float((GM - np.diag(np.diag(GM))).min()),
            "solver_r_prim": res.r_prim, "solver_r_dual": res.r_dual}
    Z, r, w = factor(GM)
    geo = geometry(GM, float(a[multi].min()) if multi.any() else None)
    geo["candidates"] = certify_candidates(lambda T: reduced_scl_value(T, n, tau), dual, k, nonneg, gap_tol, value)
    settle_name(geo)
    return SolveResult(
        value=value, dual_bound=dual, gap=gap, rel_gap=rel_gap,
        gap_kind=("rigorous: L(G_feasible) - Lagrangian lower bound on the k x k class-mean program (nctheory."
                  "solvers.certificate; multipliers from the solver's exponential-cone duals and KKT); G_feasible = "
                  "block G of the solver's class-mean Gram repaired to exact feasibility"),
        status=res.status, solver=res.solver, G=GM, Z=Z, rank=r, eigenvalues=w, class_mean_gram=GM,
        geometry=geo, solver_value=solver_value, form_check=form_check, feasibility=feas,
        seconds=time.perf_counter() - t0, method="reduced",
        extra={"within_class_cosine": a.tolist(), "counts": n.tolist(), "tau": tau, "nonneg": nonneg,
               "orbits": orbits, "n_orbits": int(G), "iterations": res.iterations, "attempts": res.attempts,
               "solver_dual_objective": res.dual * ntot, "lower_bound_detail": state["lb"],
               "note": "G, Z and rank refer to the k x k class-mean Gram matrix (the sample Gram is its block expansion)"},
    )

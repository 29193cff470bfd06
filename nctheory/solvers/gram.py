"""Exact convex UFM solver over the Gram matrix, with a duality-gap certificate.

Every loss of :mod:`nctheory.losses.gram` is an :class:`~nctheory.losses.gram.LSEForm`

    L(G) = sum_t w_t log sum_{r in t} exp((A vec G)_r + b_r) + <C, G> + const,

convex in G. With free unit features in dimension d >= size (UFM), min_H L(H^T H) over unit rows is
*exactly* the convex program

    (P)   min L(G)  s.t.  G PSD,  diag(G) = 1,  [G_{FF} = F  for a fixed prototype/classifier block]

(any feasible G factors as H^T H with unit columns in dimension rank(G) <= size). For UFM+ (features
entrywise >= 0) we add G >= 0 on the sample block: the doubly-non-negative (DNN) relaxation. Its value
is a certified *lower bound* on UFM+; it is tight whenever the optimal G is completely positive, e.g.
a 0/1 block matrix (NC + OF), which is what Kini et al. Thm 1 predicts for full-batch SCL.

Certificate reported (``SolveResult``):
- ``value``: L evaluated (by :meth:`LSEForm.value`, independent of the solver) at the solver's G
  repaired to exact feasibility (PSD projection, unit diagonal, non-negativity; with a fixed prototype
  block: :func:`repair_fixed_block`, which sets the block exactly and keeps PSD through the Schur
  complement) -- an upper bound on the optimum of (P). The repaired G's constraint residuals
  (``feasibility``) must be <= FEAS_TOL (1e-9, rounding level), else the solve is rejected like an
  uncertified one (retry, then SolverError): a slightly infeasible G can sit below the optimum, and
  then ``value - dual_bound`` would certify nothing.
- ``dual_bound``: a *rigorous* lower bound on (P) by weak duality (nctheory.solvers.certificate): the
  log-sum-exp weights p from the solver's exponential-cone duals give L(X) >= <C + A^T p, X> + phi(p),
  and min over the feasible set of that linear function is bounded below with the solver's diagonal /
  non-negativity / fixed-block multipliers and one eigenvalue (any multipliers give a valid bound; the
  Frank-Wolfe bound at G is also tried, the best is kept). ``solver_dual_objective`` is Clarabel's own
  dual objective, for information only: it is not a guaranteed bound (on one instance, SCL with fixed
  ETF prototypes and G >= 0, it was 2e-5 above the loss at the solver's own G, whose feasibility
  residuals were ~1e-8).
- ``gap = value - dual_bound`` and ``rel_gap = gap / max(1, |value|)`` must be <= ``gap_tol`` (1e-6);
  otherwise the solve is retried (Clarabel tighter, then SCS) and finally SolverError is raised.
- ``form_check`` = |L(G_solver) - solver primal objective|: agreement of the conic model with the
  LSEForm (it also shows the epigraph slack the interior point leaves).
- ``geometry``: distances of the class-mean Gram to OF / ETF and, for sample-only Gram matrices, the
  loss of the ideal NC+OF / NC+ETF configurations against the certified bounds (``candidates``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from nctheory.errors import InputError
from nctheory.solvers import conic
from nctheory.solvers.certificate import best_lower_bound, kkt_nu, lower_models
from nctheory.solvers.verdict import certify_candidates, class_mean_gram, name_geometry, settle_name, within_class_min_cosine

GAP_TOL = 1e-6          # relative duality gap required of a certified optimum (issue 3, "Done when")
RANK_TOL = 1e-6         # eigenvalues below RANK_TOL * max eigenvalue count as zero in the factor Z
# Feasibility required of the (repaired) G at which ``value`` is evaluated: max of |diag - 1|, the fixed
# block error, -lambda_min and (UFM+) -min entry of the sample block. A repaired G is feasible up to
# float64 rounding of one eigendecomposition and a product, ~ m^2 * 2.2e-16 <= 4e-11 at the largest
# size the CLI accepts (m = 400); 1e-9 leaves a margin of 25 over that, sits below the solver's own
# residuals (~1e-8: an unrepaired solver G does not pass), and moves the loss by O(1e-9 * ||grad L||),
# three orders below the 1e-6 certificate threshold.
FEAS_TOL = 1e-9


@dataclass
class SolveResult:
    value: float
    dual_bound: float
    gap: float
    rel_gap: float
    gap_kind: str
    status: str
    solver: str
    G: np.ndarray
    Z: np.ndarray
    rank: int
    eigenvalues: np.ndarray
    class_mean_gram: np.ndarray | None
    geometry: dict | None
    solver_value: float
    form_check: float
    feasibility: dict
    seconds: float
    method: str = "gram"
    form: object = field(default=None, repr=False)   # the LSEForm whose optimum G is (not in summary())
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able dict of the certificate and geometry (no n x n matrices)."""
        return {
            "method": self.method, "value": self.value, "status": self.status, "solver": self.solver,
            "gap": self.gap, "rel_gap": self.rel_gap, "dual_bound": self.dual_bound, "gap_kind": self.gap_kind,
            "solver_value": self.solver_value, "form_check": self.form_check, "rank": self.rank,
            "feasibility": self.feasibility, "seconds": self.seconds,
            "class_mean_gram": None if self.class_mean_gram is None else self.class_mean_gram.tolist(),
            "geometry": self.geometry, **self.extra,
        }


def factor(G: np.ndarray, rank_tol: float = RANK_TOL):
    """Z (size x r) with Z Z^T = G restricted to eigenvalues > rank_tol * max: returns (Z, r, eigenvalues)."""
    w, V = np.linalg.eigh(0.5 * (G + G.T))
    w, V = w[::-1], V[:, ::-1]
    r = int(np.sum(w > rank_tol * max(w[0], 1e-300)))
    Z = V[:, :r] * np.sqrt(np.clip(w[:r], 0, None))
    return Z, r, w


def repair_fixed_block(G: np.ndarray, idx: np.ndarray, F: np.ndarray, nonneg_mask: np.ndarray | None = None,
                       eig_tol: float = 1e-12) -> np.ndarray:
    """An exactly feasible G' near the solver's G for the program with a fixed block:
    G' PSD, diag(G') = 1, G'[idx, idx] = F exactly, and G' >= 0 where ``nonneg_mask`` (rows/cols outside idx).

    Construction (an explicit factor, so PSD holds by construction up to rounding). Write F = W W^T with
    W = U_r Lambda_r^{1/2} (eigenvalues > eig_tol * max). For the free rows f, the cross block G[f, idx]
    is projected onto range(F) and written as C W^T with C = G[f, idx] U_r Lambda_r^{-1/2}; the Schur
    complement S = G[f, f] - C C^T is projected onto the PSD cone, S+ = E E^T. Then z_i = [C_i, E_i] / ||.||
    (rows of unit norm) and w_c = [W_c, 0] give G' = [Z; W'] [Z; W']^T with W' W'^T = F. Non-negativity:
    clip the masked negative entries of G'[f, f] to 0 (A_c), then with lambda = max(0, -lambda_min(A_c -
    C' C'^T)) and t = lambda / (1 + lambda) take G'[f, f] = (1 - t) A_c + t I and G'[f, idx] scaled by
    sqrt(1 - t): its Schur complement is (1 - t)(A_c - C' C'^T) + t I >= 0 and its diagonal stays 1."""
    G = 0.5 * (np.asarray(G, dtype=np.float64) + np.asarray(G, dtype=np.float64).T)
    m = G.shape[0]
    idx = np.asarray(idx, dtype=np.int64)
    F = 0.5 * (np.asarray(F, dtype=np.float64) + np.asarray(F, dtype=np.float64).T)
    free = np.setdiff1d(np.arange(m), idx)
    lam, U = np.linalg.eigh(F)
    keep = lam > eig_tol * max(lam.max(), 1e-300)
    Ur, lr = U[:, keep], lam[keep]
    W = Ur * np.sqrt(lr)                                   # k x r, W W^T = F (up to rounding)
    C = G[np.ix_(free, idx)] @ Ur / np.sqrt(lr)            # f x r
    S = G[np.ix_(free, free)] - C @ C.T
    w, V = np.linalg.eigh(0.5 * (S + S.T))
    E = V * np.sqrt(np.clip(w, 0, None))                  # f x f, E E^T = PSD part of S
    Zf = np.hstack([C, E])
    nrm = np.linalg.norm(Zf, axis=1)
    zero = nrm < 1e-150
    if zero.any():  # no information left for this row: any unit vector is feasible; take W's first axis
        Zf[zero] = 0.0
        Zf[zero, 0] = 1.0
        nrm[zero] = 1.0
    Zf = Zf / nrm[:, None]
    Wp = np.hstack([W, np.zeros((idx.size, Zf.shape[1] - W.shape[1]))])
    Y = np.zeros((m, Zf.shape[1]))
    Y[free], Y[idx] = Zf, Wp
    Gp = Y @ Y.T
    if nonneg_mask is not None and np.any(nonneg_mask[np.ix_(free, free)]):
        msk = nonneg_mask[np.ix_(free, free)]
        A = Gp[np.ix_(free, free)]
        A = np.where(msk & (A < 0), 0.0, A)
        Cp = Zf[:, : W.shape[1]]
        lam_min = float(np.linalg.eigvalsh(A - Cp @ Cp.T).min())
        t = max(0.0, -lam_min) / (1.0 + max(0.0, -lam_min))
        Gp[np.ix_(free, free)] = (1.0 - t) * A + t * np.eye(free.size)
        Gp[np.ix_(free, idx)] *= np.sqrt(1.0 - t)
        Gp[np.ix_(idx, free)] *= np.sqrt(1.0 - t)
    Gp = 0.5 * (Gp + Gp.T)
    Gp[np.ix_(idx, idx)] = F
    np.fill_diagonal(Gp, 1.0)
    return Gp


def feasibility_residuals(G: np.ndarray, nonneg_mask: np.ndarray | None = None, fixed=None) -> dict:
    """Residuals of the constraints of (P) at G: min_eig, max_diag_error, fixed_block_error (if a fixed
    block (idx, F) is given), min_entry_nonneg (if a mask is given) and ``worst`` = the largest violation."""
    out = {"min_eig": float(np.linalg.eigvalsh(0.5 * (G + G.T)).min()),
           "max_diag_error": float(np.abs(np.diag(G) - 1).max())}
    worst = max(out["max_diag_error"], -out["min_eig"])
    if fixed is not None:
        idx, F = fixed
        out["fixed_block_error"] = float(np.abs(G[np.ix_(idx, idx)] - F).max())
        worst = max(worst, out["fixed_block_error"])
    if nonneg_mask is not None and nonneg_mask.any():
        out["min_entry_nonneg"] = float(G[nonneg_mask].min())
        worst = max(worst, -out["min_entry_nonneg"])
    out["worst"] = float(max(worst, 0.0))
    return out


def _fixed_block(fixed, fixed_index):
    """(idx, F) of a fixed block G[idx, idx] = F, validated (unit diagonal, PSD), or None."""
    if fixed is None:
        return None
    idx = np.asarray(fixed_index, dtype=np.int64)
    F = np.asarray(fixed, dtype=np.float64)
    if F.shape != (idx.size, idx.size):
        raise InputError(f"fixed block must be {idx.size} x {idx.size}, got {F.shape}")
    if not np.allclose(np.diag(F), 1.0, atol=1e-9):
        raise InputError("fixed prototype/classifier rows must have unit norm (diag of W W^T = 1)")
    if np.linalg.eigvalsh(0.5 * (F + F.T)).min() < -1e-9:
        raise InputError("fixed block is not a Gram matrix (not PSD)")
    return idx, F


class _GramProgram:
    """(P) for one LSEForm as a cvxpy problem: the variable G, the constraints whose duals the certificate
    reads (PSD, unit diagonal, G >= 0 on the sample block, the fixed block), and the repair of a solver G."""

    def __init__(self, form, n: int, nonneg: bool, fixed):
        m = form.size
        self.form, self.n, self.fixed = form, n, fixed
        self.G = G = cp.Variable((m, m), symmetric=True)
        obj, cons, self.cone = form.canonicalise(G)
        self.c_diag = cp.diag(G) == 1
        self.c_psd = G >> 0
        cons = cons + [self.c_psd, self.c_diag]
        self.c_nonneg = self.c_fixed = self.nonneg_mask = None
        if nonneg:
            self.c_nonneg = G[:n, :n] >= 0
            cons.append(self.c_nonneg)
            self.nonneg_mask = np.zeros((m, m), bool)
            self.nonneg_mask[:n, :n] = True
        if fixed is not None:
            idx, F = fixed
            self.c_fixed = G[idx][:, idx] == F
            cons.append(self.c_fixed)
        self.problem = cp.Problem(cp.Minimize(obj), cons)

    def repaired(self, Gs: np.ndarray) -> np.ndarray:
        """The solver's G repaired to exact feasibility (PSD, unit diagonal, G >= 0, the fixed block)."""
        if self.fixed is None:
            return conic.psd_repair(Gs, self.nonneg_mask)[0]
        return repair_fixed_block(Gs, *self.fixed, self.nonneg_mask)

    def certify(self, res, gap_tol: float, state: dict):
        """Rigorous gap of this solve: L at the (repaired) solver G minus the Lagrangian lower bound; the
        reason to reject it (a constraint violated after repair, or the gap above gap_tol), else None."""
        Gs = np.asarray(self.G.value, dtype=np.float64)
        Gs = 0.5 * (Gs + Gs.T)
        Gf = self.repaired(Gs)
        res_f = feasibility_residuals(Gf, self.nonneg_mask, self.fixed)
        state["residuals"] = res_f
        if res_f["worst"] > FEAS_TOL:  # value must be the loss at a feasible point (an upper bound)
            return f"repaired G violates a constraint by {res_f['worst']:.1e} > {FEAS_TOL:.0e}"
        value = self.form.value(Gf)
        lb = self.lower_bound(Gf)
        gap = value - lb["bound"]
        rel_gap = gap / max(1.0, abs(value))
        state.update(Gf=Gf, value=value, min_eig=res_f["min_eig"], gap=gap, rel_gap=rel_gap, lb=lb,
                     form_check=abs(self.form.value(Gs) - res.primal))
        # gap >= 0 up to rounding (the bound is rigorous); |rel_gap| is what is bounded.
        return None if abs(rel_gap) <= gap_tol else f"relative gap {rel_gap:.1e} > {gap_tol:.0e}"

    def lower_bound(self, X0: np.ndarray) -> dict:
        """Best rigorous Lagrangian bound over a few multiplier candidates (nctheory.solvers.certificate): the
        lower models at X0 and from the solver's exponential-cone duals; diagonal multipliers from the solver
        (either sign convention) or from the KKT condition; N, Phi from the solver's duals, or read off the
        stationarity D = diag(nu) + N + Phi + Lambda with the solver's PSD dual Lambda."""
        m, n = self.form.size, self.n
        N = None
        if self.c_nonneg is not None and self.c_nonneg.dual_value is not None:
            Nn = np.clip(np.asarray(self.c_nonneg.dual_value, dtype=np.float64), 0, None)
            N = np.zeros((m, m))
            N[:n, :n] = 0.5 * (Nn + Nn.T)
        phis, fblock = [None], (lambda P: 0.0)
        if self.fixed is not None:
            idx, F = self.fixed
            P0 = np.zeros((m, m))
            if self.c_fixed.dual_value is not None:
                Pv = np.asarray(self.c_fixed.dual_value, dtype=np.float64)
                P0[np.ix_(idx, idx)] = 0.5 * (Pv + Pv.T)
                np.fill_diagonal(P0, 0.0)
            phis, fblock = [P0, -P0], (lambda P: float(np.sum(P[np.ix_(idx, idx)] * F)))
        nus = []
        if self.c_diag.dual_value is not None:
            nv = np.asarray(self.c_diag.dual_value, dtype=np.float64).ravel()
            nus = [nv, -nv]
        Lam = None
        if self.c_psd.dual_value is not None:
            Lam = np.asarray(self.c_psd.dual_value, dtype=np.float64)
            Lam = 0.5 * (Lam + Lam.T)

        def multipliers(D):
            cands = [(nu, N, Phi) for Phi in phis for nu in nus + [kkt_nu(D, X0, N, Phi)]]
            if Lam is not None:
                cands += self._stationarity_multipliers(D - Lam, N, X0, D)
            return [(nu, Nc, Phi, fblock(Phi) if Phi is not None else 0.0) for nu, Nc, Phi in cands]

        models = lower_models(self.form, X0, self.form.dual_weights(self.cone))
        return best_lower_bound(models, multipliers, np.ones(m), np.ones(m))

    def _stationarity_multipliers(self, R0, N, X0, D):
        """(nu, N, Phi) read off D - Lambda = diag(nu) + N + Phi: the diagonal, the clipped sample block, the
        fixed block; and the KKT diagonal with those N, Phi."""
        m, n = R0.shape[0], self.n
        offd = R0 - np.diag(np.diag(R0))
        N2 = P2 = None
        if N is not None:
            N2 = np.zeros((m, m))
            N2[:n, :n] = np.clip(offd[:n, :n], 0, None)
        if self.fixed is not None:
            idx = self.fixed[0]
            P2 = np.zeros((m, m))
            P2[np.ix_(idx, idx)] = offd[np.ix_(idx, idx)]
        return [(np.diag(R0).copy(), N2, P2), (kkt_nu(D, X0, N2, P2), N2, P2)]


def solve_gram(form, *, y=None, k: int | None = None, nonneg: bool = False, n_samples: int | None = None,
               fixed: np.ndarray | None = None, fixed_index: np.ndarray | None = None,
               gap_tol: float = GAP_TOL, solvers=("CLARABEL", "SCS")) -> SolveResult:
    """Solve (P) for ``form`` (an LSEForm over a size x size Gram matrix).

    y, k: labels of the first n samples (for the class-mean Gram matrix and the verdict).
    nonneg: add G >= 0 on the sample block (indices < n_samples; default all) -- the DNN relaxation of UFM+.
    fixed, fixed_index: impose G[fixed_index][:, fixed_index] = fixed (e.g. W W^T of fixed prototypes
      at indices n..n+k-1); the fixed matrix must have unit diagonal.
    """
    t0 = time.perf_counter()
    m = int(form.size)
    n = m if n_samples is None else int(n_samples)
    block = _fixed_block(fixed, fixed_index)
    prog = _GramProgram(form, n, nonneg, block)
    state = {}
    res = conic.solve(prog.problem, solvers, what="Gram program", accept=lambda r: prog.certify(r, gap_tol, state))
    Gf, value = state["Gf"], state["value"]
    gap_kind = ("rigorous: L(G_feasible) - Lagrangian lower bound (nctheory.solvers.certificate, built from "
                "the solver's multipliers); G_feasible = solver G repaired to exact feasibility"
                + ("" if block is None else " with the fixed block set exactly (Schur-complement repair)")
                + f", residuals <= {FEAS_TOL:.0e}")
    rf = state["residuals"]
    feas = {
        "min_eig": state["min_eig"],
        "max_diag_error": rf["max_diag_error"],
        "min_entry_sample_block": float(Gf[:n, :n].min()),
        "max_violation": rf["worst"], "feasibility_tol": FEAS_TOL,
        "solver_r_prim": res.r_prim, "solver_r_dual": res.r_dual,
    }
    if block is not None:
        feas["fixed_block_error"] = rf["fixed_block_error"]
    Z, r, w = factor(Gf)
    GM, geo = _class_geometry(form, Gf, y, k, nonneg, gap_tol, state["lb"]["bound"], value)
    return SolveResult(value=value, dual_bound=state["lb"]["bound"], gap=state["gap"], rel_gap=state["rel_gap"],
                       gap_kind=gap_kind, status=res.status, solver=res.solver, G=Gf, Z=Z, rank=r, eigenvalues=w,
                       class_mean_gram=GM, geometry=geo, solver_value=res.primal, form_check=state["form_check"],
                       feasibility=feas, seconds=time.perf_counter() - t0, form=form,
                       extra={"iterations": res.iterations, "attempts": res.attempts, "nonneg": nonneg,
                              "solver_dual_objective": res.dual, "lower_bound_detail": state["lb"]})


def _class_geometry(form, Gf, y, k, nonneg, gap_tol, dual_bound, value):
    """(class-mean Gram, geometry verdict) of the certified G (None, None without labels); for a sample-only
    Gram matrix also the loss of the ideal geometries against the certified bounds."""
    if y is None:
        return None, None
    y = np.asarray(y, dtype=np.int64)
    GM = class_mean_gram(Gf, y, k)
    geo = name_geometry(GM, within_class_min_cosine(Gf, y))
    if form.size == y.size and np.bincount(y).min() >= 1:  # sample-only Gram: evaluate the ideal geometries
        geo["candidates"] = certify_candidates(lambda T: form.value(T[np.ix_(y, y)]), dual_bound, GM.shape[0],
                                               nonneg, gap_tol, value)
        settle_name(geo)
    return GM, geo

"""Shared conic machinery: a solve driver that returns the solver's primal *and dual* objective (the
duality-gap certificate), the solver options, and the nearest-feasible repair of a solver's Gram matrix.

The log-sum-exp objectives are written by the form itself (:meth:`nctheory.losses.gram.LSEForm.canonicalise`:
an exponential-cone epigraph with explicit cones, whose duals :meth:`~nctheory.losses.gram.LSEForm.dual_weights`
reads back). Clarabel (interior point) solves those programs to ~1e-8..1e-9 relative; SCS is the
first-order fallback.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from nctheory.errors import SolverError

# Clarabel's default tolerances (1e-8 on gap and feasibility) leave two orders of margin to the
# project's certificate threshold (relative gap 1e-6). Tighter settings (1e-9) were tried and make
# Clarabel stop at 'optimal_inaccurate' on degenerate DNN optima (0/1 block G) without a better gap.
CLARABEL_OPTS = dict(tol_gap_abs=1e-8, tol_gap_rel=1e-8, tol_feas=1e-8, max_iter=400)
SCS_OPTS = dict(eps_abs=1e-9, eps_rel=1e-9, max_iters=200000)


@dataclass
class ConicResult:
    status: str          # cvxpy status of the accepted solve ("optimal")
    solver: str          # CLARABEL or SCS
    primal: float        # solver's primal objective (incl. cvxpy's constant offset)
    dual: float          # solver's dual objective (incl. the same offset): a lower bound up to r_dual
    r_prim: float | None
    r_dual: float | None
    iterations: int | None
    seconds: float
    attempts: list       # [(solver, status)] of every try, for the error message


# Attempts in order: Clarabel at its default 1e-8 tolerances, Clarabel tightened to 1e-10 (for the
# occasional problem where the exponential-cone slack leaves the epigraph variables ~1e-6 above the
# log-sum-exps it bounds, so the honest gap exceeds 1e-6), then SCS.
ATTEMPTS = (
    ("CLARABEL", CLARABEL_OPTS),
    ("CLARABEL", dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, max_iter=400)),
    ("SCS", SCS_OPTS),
)


def solve(prob: cp.Problem, solvers=("CLARABEL", "SCS"), what: str = "program", accept=None) -> ConicResult:
    """Solve ``prob`` with the first attempt (solver, options) that reaches status 'optimal' and that
    ``accept(result) -> str | None`` (a reason to reject, e.g. an honest gap above tolerance) accepts.

    Runs each solver through ``get_problem_data`` / ``solve_via_data`` so that the raw solution's dual
    objective is available (cvxpy's ``solve`` discards it). Raises SolverError (one line) when none does.
    """
    attempts = []
    for name, opts in ATTEMPTS:
        if name not in solvers:
            continue
        if name not in cp.installed_solvers():
            attempts.append((name, "not installed"))
            continue
        t0 = time.perf_counter()
        try:
            data, chain, inv = prob.get_problem_data(name)
            raw = chain.solver.solve_via_data(data, False, False, dict(opts))
            if getattr(inv[-1], "solver_options", {}) is None:  # get_problem_data leaves it None
                inv[-1].solver_options = dict(opts)
            with warnings.catch_warnings():  # an inaccurate status is handled below, not warned
                warnings.simplefilter("ignore")
                prob.unpack_results(raw, chain, inv)
        except (cp.error.SolverError, ValueError, ArithmeticError) as exc:
            attempts.append((name, f"error: {str(exc).splitlines()[0][:80]}"))
            continue
        secs = time.perf_counter() - t0
        status = prob.status
        if status != cp.OPTIMAL:
            attempts.append((name, status))
            continue
        if name == "CLARABEL":
            p_raw, d_raw = float(raw.obj_val), float(raw.obj_val_dual)
            r_prim, r_dual, it = float(raw.r_prim), float(raw.r_dual), int(raw.iterations)
        else:
            info = raw["info"]
            p_raw, d_raw = float(info["pobj"]), float(info["dobj"])
            r_prim, r_dual, it = float(info.get("res_pri", np.nan)), float(info.get("res_dual", np.nan)), int(info.get("iter", -1))
        offset = float(prob.value) - p_raw
        res = ConicResult(status, name, p_raw + offset, d_raw + offset, r_prim, r_dual, it, secs, attempts)
        why = accept(res) if accept is not None else None
        if why:
            attempts.append((name, f"optimal but {why}"))
            continue
        attempts.append((name, status))
        return res
    tried = "; ".join(f"{n}: {s}" for n, s in attempts)
    raise SolverError(f"the {what} was not solved to a certified optimum ({tried})")


def psd_repair(G: np.ndarray, nonneg_mask: np.ndarray | None = None, unit_diag: np.ndarray | None = None):
    """Nearest-feasible repair of a solver's G: symmetrise, clip eigenvalues at 0, rescale the rows/cols
    listed in ``unit_diag`` (bool mask; default all) to unit diagonal, and, where ``nonneg_mask`` is set,
    clip negative entries then mix with the identity just enough to restore PSD. Returns (G, min_eig)."""
    G = 0.5 * (G + G.T)
    w, V = np.linalg.eigh(G)
    G = (V * np.clip(w, 0, None)) @ V.T
    m = G.shape[0]
    ud = np.ones(m, bool) if unit_diag is None else unit_diag
    d = np.ones(m)
    d[ud] = np.sqrt(np.clip(np.diag(G)[ud], 1e-300, None))
    G = G / d[:, None] / d[None, :]
    if nonneg_mask is not None and nonneg_mask.any():
        G = np.where(nonneg_mask & (G < 0), 0.0, G)
        lam = np.linalg.eigvalsh(G).min()
        if lam < 0:
            t = -lam / (1.0 - lam)
            G = (1 - t) * G + t * np.diag(np.diag(G))
    return G, float(np.linalg.eigvalsh(G).min())

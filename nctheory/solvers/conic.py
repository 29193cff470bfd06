"""Shared conic machinery: a solve driver that returns the solver's primal *and dual* objective (the
duality-gap certificate), the solver options, and the nearest-feasible repair of a solver's Gram matrix.

The log-sum-exp objectives are written by the form itself (:meth:`nctheory.losses.gram.LSEForm.canonicalise`:
an exponential-cone epigraph with explicit cones, whose duals :meth:`~nctheory.losses.gram.LSEForm.dual_weights`
reads back). Clarabel (interior point) solves those programs to ~1e-8..1e-9 relative; SCS is the
first-order fallback.

Solver output: the solvers are C/Rust libraries that may print to the process's file descriptors 1
and 2 themselves (SCS at tau = 1e-300: "KKT matrix has < n positive eigenvalues. P not PSD.ERROR:
init_lin_sys_work failure" on stdout, which mixed into `--json` output). Every solver call runs with
descriptors 1 and 2 redirected to a temporary file and sys.stdout / sys.stderr to a buffer
(:func:`captured_output`); what a failing attempt printed is quoted (first line) in its SolverError, what
a successful one printed is dropped.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
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


def _flush_all() -> None:
    """Flush Python's sys.stdout / sys.stderr and every C stdio stream (fflush(NULL)): a C library's printf
    to a file or pipe is block-buffered and would otherwise reach the descriptor after it is restored."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def captured_output():
    """Within the block, file descriptors 1 and 2 (any C library's printf) write to a temporary file and
    sys.stdout / sys.stderr (Python's, which SCS's wrapper prints through: PySys_WriteStdout) to a buffer;
    yields a list that holds the captured text after the block. Every stream is flushed on entry (earlier
    output goes where it was going) and before the descriptors are restored (the block's output, buffered
    by C stdio, lands in the file)."""
    out: list[str] = []
    _flush_all()
    py = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with contextlib.redirect_stdout(py), contextlib.redirect_stderr(py):
                yield out
        finally:
            _flush_all()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out.append(py.getvalue() + tmp.read().decode("utf-8", "replace"))


def _first_line(text: str, width: int = 80) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:width] if lines else ""


def solve(prob: cp.Problem, solvers=("CLARABEL", "SCS"), what: str = "program", accept=None) -> ConicResult:
    """Solve ``prob`` with the first attempt (solver, options) that reaches status 'optimal' and that
    ``accept(result) -> str | None`` (a reason to reject, e.g. an honest gap above tolerance) accepts.

    Runs each solver through ``get_problem_data`` / ``solve_via_data`` so that the raw solution's dual
    objective is available (cvxpy's ``solve`` discards it), with the solver's own printing captured
    (:func:`captured_output`; quoted in the error of a failed attempt). Raises SolverError (one line)
    when none does.
    """
    attempts = []
    for name, opts in ATTEMPTS:
        if name not in solvers:
            continue
        if name not in cp.installed_solvers():
            attempts.append((name, "not installed"))
            continue
        t0 = time.perf_counter()
        failed = None
        with captured_output() as printed:
            try:
                data, chain, inv = prob.get_problem_data(name)
                raw = chain.solver.solve_via_data(data, False, False, dict(opts))
                if getattr(inv[-1], "solver_options", {}) is None:  # get_problem_data leaves it None
                    inv[-1].solver_options = dict(opts)
                with warnings.catch_warnings():  # an inaccurate status is handled below, not warned
                    warnings.simplefilter("ignore")
                    prob.unpack_results(raw, chain, inv)
            except (cp.error.SolverError, ValueError, ArithmeticError) as exc:
                failed = f"error: {(str(exc).splitlines() or [type(exc).__name__])[0][:80]}"
        said = _first_line(printed[0])
        if failed is not None:
            attempts.append((name, failed + (f" (it printed: {said})" if said else "")))
            continue
        secs = time.perf_counter() - t0
        status = prob.status
        if status != cp.OPTIMAL:
            attempts.append((name, status + (f" (it printed: {said})" if said else "")))
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

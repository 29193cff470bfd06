"""A rigorous lower bound on a convex Gram program from any multipliers (weak duality), used as the
dual side of every certificate the conic solvers report.

Setting: f convex and differentiable on symmetric m x m matrices, and a feasible set
    K subset of {X : X PSD, lo_i <= X_ii <= hi_i, X_ij >= 0 on a mask S, X[F, F] = Fblock}.
For any point X0 (feasible or not), convexity gives f(X) >= f(X0) + <D, X - X0> with D = sym grad f(X0),
so  min_K f >= f(X0) - <D, X0> + min_K <D, X>.  For any multipliers nu (diagonal), N >= 0 (on S, zero
elsewhere) and Phi (symmetric, on the F block, zero diagonal):
    <D, X> = <D - diag(nu) - N - Phi, X> + sum_i nu_i X_ii + <N, X> + <Phi, Fblock>
           >= min(0, lambda_min(D - diag(nu) - N - Phi)) * sum_i hi_i + sum_i min(nu_i lo_i, nu_i hi_i) + 0 + <Phi, Fblock>
(tr X <= sum hi_i; <N, X> >= 0 on K). Hence the lower bound (Frank-Wolfe / Lagrangian)

    LB = f(X0) - <D, X0> + sum_i min(nu_i lo_i, nu_i hi_i) + <Phi, Fblock> + sum(hi) * min(0, lambda_min(D - diag nu - N - Phi))

(first-order accurate in the distance of X0 to the optimum: the Frank-Wolfe bound). Second-order
accurate: for an LSEForm f = sum_t w_t LSE_t(A X + b) + <C, X> + const and any p >= 0 with group sums
w_t (the solver's dual of the exponential cones), Gibbs' inequality gives f(X) >= <S, X> + phi(p) + const
with S = C + A^T p, so f* >= phi(p) + const + min_K <S, X>, bounded below the same way with D = S.
Both lower models are methods of the form (:meth:`LSEForm.tangent`, :meth:`LSEForm.minorant`);
:func:`lower_models` lists them and :func:`best_lower_bound` keeps the best bound over the models and a
few multiplier candidates.

holds for *any* multipliers: the solver's multipliers only make it tight; a wrong or inaccurate one
can only loosen it. It is rigorous up to floating-point rounding of f, D and one symmetric eigenvalue
(O(1e-13) relative here). Good multipliers: at an exact optimum X*, KKT gives
D = diag(nu) + N + Phi + Lambda with Lambda PSD and Lambda X* = 0, so nu_i = ((D - N - Phi) X*)_ii / X*_ii.
"""

from __future__ import annotations

import numpy as np


def kkt_nu(D: np.ndarray, X0: np.ndarray, N=None, Phi=None) -> np.ndarray:
    """Diagonal multipliers from the KKT condition (D - diag nu - N - Phi) X* = 0 read on the diagonal."""
    R = D - (0 if N is None else N) - (0 if Phi is None else Phi)
    d = np.diag(X0).copy()
    d[np.abs(d) < 1e-12] = 1e-12
    return np.einsum("ij,ji->i", R, X0) / d


def linear_lower_bound(D: np.ndarray, lo: np.ndarray, hi: np.ndarray, nu: np.ndarray, N: np.ndarray | None = None,
                       Phi: np.ndarray | None = None, Fblock_inner: float = 0.0) -> dict:
    """A rigorous lower bound on min_K <D, X> (module docstring): returns {"linear_part", "lambda_min"}.
    ``Fblock_inner`` = <Phi, Fblock>. N must be >= 0 and supported where K has X >= 0; Phi supported on the
    fixed block with zero diagonal."""
    if N is not None and np.any(N < 0):
        raise ValueError("N must be entrywise non-negative")
    R = D - np.diag(nu) - (0 if N is None else N) - (0 if Phi is None else Phi)
    lam = float(np.linalg.eigvalsh(0.5 * (R + R.T)).min())
    lin = float(np.sum(np.minimum(nu * lo, nu * hi))) + float(Fblock_inner) + float(np.sum(hi)) * min(0.0, lam)
    return {"linear_part": lin, "lambda_min": lam}


def lower_models(form, X0: np.ndarray, p=None) -> list:
    """The linear lower models (kind, D, offset) of ``form`` used by the certificates, f(X) >= <D, X> + offset:
    the tangent plane at X0 ("frank-wolfe", first-order accurate) and, when dual weights p are given (the
    solver's exponential-cone duals, :meth:`LSEForm.dual_weights`), Gibbs' minorant ("solver-dual",
    second-order accurate)."""
    models = [("frank-wolfe", *form.tangent(X0))]
    if p is not None:
        models.append(("solver-dual", *form.minorant(p)))
    return models


def best_lower_bound(models, multipliers, lo: np.ndarray, hi: np.ndarray) -> dict:
    """max over the lower models (kind, D, offset) and the multiplier candidates ``multipliers(D)`` -> iterable
    of (nu, N, Phi, <Phi, Fblock>) of offset + :func:`linear_lower_bound` (module docstring). Every candidate
    gives a rigorous bound; the best is returned as {"bound", "kind", "linear_part", "lambda_min"}."""
    best = None
    for kind, D, offset in models:
        for nu, N, Phi, fblock_inner in multipliers(D):
            lb = linear_lower_bound(D, lo, hi, nu, N, Phi, fblock_inner)
            lb["bound"] = offset + lb["linear_part"]
            lb["kind"] = kind
            if best is None or lb["bound"] > best["bound"]:
                best = lb
    return best

"""Is the certified optimum of the Gram program attained in a given feature dimension D?

The Gram program (P) of :mod:`nctheory.solvers.gram` (and its class-level reduction) is the UFM with
d >= size: in dimension D < size it is a *relaxation* (rank(G) <= D is dropped), so its certified lower
bound (``dual_bound``) is a rigorous lower bound on the D-dimensional minimum, and its optimum value is
the D-dimensional minimum only if some optimum is realisable in dimension D.

:func:`attain_in_dimension` looks for an explicit feasible point in dimension D (unit rows; rows >= 0
for UFM+; the fixed block kept exactly) whose loss is within the certificate tolerance of the lower
bound. If it finds one, that loss is a certified D-dimensional optimum (upper bound = loss of a
feasible D-dimensional point, lower bound = dual bound of the relaxation). Otherwise nothing is
claimed about the D-dimensional minimum except the lower bound. Constructions tried:

1. the top-D eigen-factor Z_D of the (repaired) optimal G, rows renormalised to unit length (with a
   fixed block: the free rows' coordinates in range(F) kept, the Schur complement truncated to its top
   D - rank(F) eigenpairs, so the block stays exactly F); UFM+ additionally needs Z_D >= 0 after
   flipping the sign of columns with negative sum (a sign flip of a coordinate keeps the Gram matrix);
2. UFM+ (no fixed block, labels given, D >= k): the factor rotated (orthogonal Procrustes) so that the
   class means become e_1..e_k, every sample then set exactly to e_{y_i} (non-negative), other rows
   (free prototypes) rotated with it -- an exact NC + OF point, evaluated as built;
3. (sample-only Gram of SCL-type losses) the ideal NC + OF configuration H = one-hot labels, which
   lives in dimension k and is non-negative, when the certificate already found its loss optimal.
"""

from __future__ import annotations

import numpy as np


def _unit_rows(Z):
    nrm = np.linalg.norm(Z, axis=1)
    if np.any(nrm < 1e-12):
        return None
    return Z / nrm[:, None]


def top_factor(G: np.ndarray, D: int) -> np.ndarray:
    """Z (m x D) from the D largest eigenpairs of G (negative eigenvalues clipped)."""
    w, V = np.linalg.eigh(0.5 * (G + G.T))
    w, V = w[::-1][:D], V[:, ::-1][:, :D]
    Z = V * np.sqrt(np.clip(w, 0, None))
    if Z.shape[1] < D:
        Z = np.hstack([Z, np.zeros((Z.shape[0], D - Z.shape[1]))])
    return Z


def factor_fixed(G: np.ndarray, D: int, idx, F, eig_tol: float = 1e-12):
    """Rows (m x D) realising G approximately in dimension D with the rows ``idx`` exactly a factor of F.
    None when rank(F) > D (no D-dimensional point has that fixed block)."""
    m = G.shape[0]
    idx = np.asarray(idx, dtype=np.int64)
    free = np.setdiff1d(np.arange(m), idx)
    lam, U = np.linalg.eigh(0.5 * (F + F.T))
    keep = lam > eig_tol * max(lam.max(), 1e-300)
    r = int(keep.sum())
    if r > D:
        return None
    W = U[:, keep] * np.sqrt(lam[keep])
    C = G[np.ix_(free, idx)] @ U[:, keep] / np.sqrt(lam[keep])
    S = G[np.ix_(free, free)] - C @ C.T
    E = top_factor(S, D - r) if D > r else np.zeros((free.size, 0))
    Zf = _unit_rows(np.hstack([C, E]))
    if Zf is None:
        return None
    Y = np.zeros((m, D))
    Y[free] = Zf
    Y[idx, :r] = W
    return Y


def _eigen_factor_point(G, D, nonneg, fixed, nonneg_rows, tried) -> np.ndarray | None:
    """Construction 1 (module docstring): the Gram matrix of the unit-row top-D eigen-factor of G (the fixed
    block kept exactly), sign-flipped towards the non-negative orthant under nonneg; None (with the reason
    appended to ``tried``) when it does not exist or is not feasible."""
    Z = _unit_rows(top_factor(G, D)) if fixed is None else factor_fixed(G, D, *fixed)
    if Z is not None and nonneg:
        rows = np.arange(Z.shape[0]) if nonneg_rows is None else np.asarray(nonneg_rows, dtype=np.int64)
        Z = Z * np.where(Z[rows].sum(0) < 0, -1.0, 1.0)[None, :]
        if fixed is not None:
            Z = None  # with fixed prototypes H >= 0 depends on W's coordinates, which G does not determine
            tried.append({"construction": "top-D eigen-factor", "rejected": "--relu with fixed prototypes"})
        elif Z[rows].min() < 0:
            tried.append({"construction": "top-D eigen-factor",
                          "rejected": f"has negative entries (min {Z[rows].min():.2e})"})
            Z = None
    if Z is None:
        return None
    Gd = Z @ Z.T
    if fixed is not None:
        Gd[np.ix_(fixed[0], fixed[0])] = fixed[1]
    np.fill_diagonal(Gd, 1.0)
    return Gd


def _nc_of_rotation_point(G, D, y, k) -> np.ndarray | None:
    """Construction 2: NC + OF up to a rotation. The unit-row factor is rotated so that the class means become
    e_1..e_k (orthogonal Procrustes), then every sample is put exactly on e_{y_i}; rows after the samples (free
    prototypes) keep their rotated coordinates. None when a factor row vanishes."""
    y = np.asarray(y, dtype=np.int64)
    Zu = _unit_rows(top_factor(G, D))
    if Zu is None:
        return None
    E = np.zeros((k, D))
    E[np.arange(k), np.arange(k)] = 1.0
    Mu = np.zeros((k, D))
    np.add.at(Mu, y, Zu[: y.size])
    U, _, Vt = np.linalg.svd(Mu.T @ E)
    H = Zu @ (U @ Vt)
    H[: y.size] = E[y]
    Gd = H @ H.T
    np.fill_diagonal(Gd, 1.0)
    return Gd


def attain_in_dimension(G: np.ndarray, D: int, evaluate, dual_bound: float, gap_tol: float, *,
                        nonneg: bool = False, fixed=None, of_candidate: dict | None = None, k: int | None = None,
                        nonneg_rows=None, y=None) -> dict:
    """Search a D-dimensional feasible point whose loss certifies the relaxation's optimum (module docstring).

    G: the relaxation's (repaired) optimal Gram matrix; evaluate(G') -> loss of a Gram matrix of the same
    size; fixed: (idx, F) or None; of_candidate: the certificate's entry for the ideal NC + OF (with
    "value", "optimal_within_tol", "beaten_by_feasible") and k its dimension, or None.
    nonneg_rows: the rows that must be >= 0 under nonneg (default all; the sample rows when prototypes are
    free in sign). y: labels of the first rows (samples), for the NC + OF rotation construction.
    Returns {"attained": bool, "value", "gram", "construction", "rel_excess", "tried"}: "value" and "gram"
    are the best D-dimensional feasible point found (None if none), attained iff its loss is within
    gap_tol * max(1, |value|) of dual_bound.
    """
    tried = []
    best = None

    def consider(name, Gd, value):
        nonlocal best
        rel = (value - dual_bound) / max(1.0, abs(value))
        tried.append({"construction": name, "value": value, "rel_excess_over_lower_bound": rel})
        if best is None or value < best["value"]:
            best = {"construction": name, "value": value, "gram": Gd, "rel_excess": rel}

    Gd = _eigen_factor_point(G, D, nonneg, fixed, nonneg_rows, tried)
    if Gd is not None:
        consider("top-D eigen-factor, unit rows" + (" (fixed block exact)" if fixed is not None else ""), Gd,
                 float(evaluate(Gd)))
    if nonneg and fixed is None and y is not None and k is not None and D >= k:
        Gd = _nc_of_rotation_point(G, D, y, k)
        if Gd is not None:
            consider("NC + OF after a rotation (samples one-hot, other rows rotated)", Gd, float(evaluate(Gd)))
    if of_candidate is not None and k is not None and D >= k and of_candidate.get("feasible", True) \
            and of_candidate.get("optimal_within_tol") and not of_candidate.get("beaten_by_feasible", False):
        consider(f"ideal NC + OF (one-hot features, dimension k = {k})", None, float(of_candidate["value"]))
    if best is None:
        return {"attained": False, "value": None, "gram": None, "construction": None, "rel_excess": None,
                "tried": tried}
    best["attained"] = bool(best["rel_excess"] <= gap_tol)
    best["tried"] = tried
    return best

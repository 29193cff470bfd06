"""Exact UFM / UFM+ minimum in dimension d = 1 by enumerating sign patterns.

In d = 1 the unit sphere S^0 is the two points {-1, +1}: every feature is z_i = s_i in {-1, +1}, the
feasible set is finite, and every point of it is first-order stationary (the tangent space of S^0 is
{0}, so the Riemannian gradient g_i - (g_i z_i) z_i vanishes identically). A gradient method therefore
certifies nothing in d = 1 and returns whatever start it drew; the minimum is found here exactly:

    min_{s in {-1,+1}^m, s_F = fixed}  f(s)          (UFM+: s_i = +1 for every free row, one point)

- For an LSEForm f(s) = L(s s^T) (every loss of nctheory.losses.gram) the patterns are evaluated in
  batches (:meth:`LSEForm.sign_values`), and the global flip s -> -s (which leaves G unchanged) is used when
  no row is fixed: 2^(m-1) patterns.
- For any other torch objective f(Z) (Z an m x 1 tensor) all 2^(m_free) patterns are evaluated one by
  one (no invariance is assumed).

The value is exact up to float64 evaluation of f: a certificate by exhaustion, so the result has
``certified = True`` and ``gap = 0``. At most ``MAX_PATTERNS`` patterns are evaluated; larger inputs
raise InputError (no heuristic value is returned in their place).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nctheory.errors import InputError
from nctheory.losses.gram import LSEForm

# 2^16 patterns: the batched LSEForm evaluation takes ~1-3 s for n = 17 on one core; the one-by-one
# torch path ~5-10 s. Beyond that the cost doubles per sample and no exact answer is practical.
MAX_PATTERNS = 2 ** 16
_CHUNK = 2048  # patterns per batched LSEForm evaluation (an m^2 x 2048 float64 block, ~5 MB at m = 17)


@dataclass
class SignResult:
    """Exact minimum over sign patterns (d = 1). Attribute names follow RiemannianResult where they
    overlap (value, Z, converged, restarts, spread, seconds) so callers of solve_riemannian keep working;
    ``stationarity`` is None: stationarity is vacuous in d = 1 and is not claimed."""

    value: float
    Z: np.ndarray
    patterns: int
    ties: int
    seconds: float
    symmetry: str
    stationarity: None = None
    converged: int = 1
    restarts: int = 1
    spread: float = 0.0
    values: list = field(default_factory=list)
    iterations: list = field(default_factory=list)
    stop_reasons: list = field(default_factory=lambda: ["exact: all sign patterns enumerated"])
    device: str = "cpu"
    gtol: float | None = None
    exact: bool = True
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"method": "enumerate", "value": self.value, "certified": True, "status": "exact",
                "solver": "exhaustive enumeration",
                "gap": 0.0, "rel_gap": 0.0, "dual_bound": self.value,
                "gap_kind": (f"exact: minimum over all {self.patterns} sign patterns (d = 1: the unit sphere is "
                             f"{{-1, +1}}){'; ' + self.symmetry if self.symmetry else ''}"),
                "patterns": self.patterns, "minimisers_found": self.ties, "seconds": self.seconds, **self.extra}


def _free_rows(m: int, fixed_rows, fixed):
    free = np.ones(m, dtype=bool)
    fv = np.zeros(m)
    if fixed_rows is not None:
        idx = np.asarray(fixed_rows, dtype=np.int64).ravel()
        F = np.asarray(fixed, dtype=np.float64).reshape(idx.size, -1)
        if F.shape[1] != 1:
            raise InputError(f"fixed rows must be {idx.size} x 1 in d = 1, got {F.shape}")
        if not np.allclose(np.abs(F[:, 0]), 1.0, atol=1e-9):
            raise InputError("fixed rows must have unit norm (entries +-1 in d = 1)")
        free[idx] = False
        fv[idx] = np.sign(F[:, 0])
    return free, fv


def _patterns(n_free: int, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of the 2^n_free sign patterns (bit j of the row number -> sign of free row j)."""
    t = np.arange(start, stop, dtype=np.int64)[:, None]
    bits = (t >> np.arange(n_free, dtype=np.int64)[None, :]) & 1
    return 1.0 - 2.0 * bits


def _enumerated_rows(m: int, free: np.ndarray, fv: np.ndarray, nonneg: bool, is_form: bool):
    """(rows whose sign is enumerated, the symmetry used): UFM+ fixes every free row at +1 (the only
    non-negative unit vector in R^1); an LSEForm without fixed rows fixes s_0 = +1 (s and -s give the same
    G = s s^T). fv is updated in place with the signs so fixed."""
    fidx = np.flatnonzero(free)
    if nonneg:
        fv[fidx] = 1.0
        return fidx[:0], ""
    if is_form and fidx.size == m:
        fv[0] = 1.0
        return fidx[1:], "s and -s give the same Gram matrix: s_0 = +1 fixed"
    return fidx, ""


def _pattern_values(objective, is_form: bool, fv: np.ndarray, fidx: np.ndarray, total: int) -> np.ndarray:
    """f at every one of the ``total`` sign patterns of the rows fidx (the others at fv): batched
    (:meth:`LSEForm.sign_values`, _CHUNK patterns at a time) or one torch call per pattern."""
    n_enum = fidx.size
    if is_form:
        vals = []
        for start in range(0, total, _CHUNK):
            stop = min(total, start + _CHUNK)
            S = np.tile(fv, (stop - start, 1))
            if n_enum:
                S[:, fidx] = _patterns(n_enum, start, stop)
            vals.append(objective.sign_values(S))
        return np.concatenate(vals)
    import torch

    v = np.empty(total)
    with torch.no_grad():
        for t in range(total):
            s = fv.copy()
            if n_enum:
                s[fidx] = _patterns(n_enum, t, t + 1)[0]
            v[t] = float(objective(torch.as_tensor(s[:, None], dtype=torch.float64)))
    return v


def solve_signs(objective, m: int, *, nonneg: bool = False, fixed_rows=None, fixed=None,
                max_patterns: int = MAX_PATTERNS) -> SignResult:
    """Exact minimum of ``objective`` over Z in {-1, +1}^{m x 1} (module docstring).

    objective: an LSEForm of size m (batched, flip symmetry used) or a callable torch objective Z -> scalar.
    nonneg: UFM+ (free rows = +1: a single pattern). fixed_rows / fixed: rows held at the given +-1 values.
    """
    t0 = time.perf_counter()
    m = int(m)
    if m < 1:
        raise InputError("need at least one row")
    free, fv = _free_rows(m, fixed_rows, fixed)
    is_form = isinstance(objective, LSEForm)
    if is_form and int(objective.size) != m:
        raise InputError(f"the loss has {objective.size} rows, not {m}")
    fidx, symmetry = _enumerated_rows(m, free, fv, nonneg, is_form)
    total = 2 ** fidx.size
    if total > max_patterns:
        raise InputError(f"d = 1 is solved exactly by enumerating sign patterns, but {total} patterns "
                         f"(> {max_patterns}) are too many; use d >= 2 or fewer samples")
    vals = _pattern_values(objective, is_form, fv, fidx, total)
    if not np.all(np.isfinite(vals)):
        raise InputError("the loss is not finite at some sign pattern")
    best_t = int(np.argmin(vals))
    best_v = float(vals[best_t])
    # patterns whose value equals the minimum up to float64 evaluation error (1e-12 relative)
    ties = int(np.sum(vals <= best_v + 1e-12 * max(1.0, abs(best_v))))
    s = fv.copy()
    if fidx.size:
        s[fidx] = _patterns(fidx.size, best_t, best_t + 1)[0]
    return SignResult(value=best_v, Z=s[:, None], patterns=total, ties=ties, seconds=time.perf_counter() - t0,
                      symmetry=symmetry, values=[best_v])

"""Class counts: parsing, and the imbalance profiles of the papers (one definition each).

STEP (Kini et al. §3, Gill et al. §2): the first ``n_major_classes`` (default k//2) classes have
n_major samples, the rest round(n_major / R). Long-tail (Kini et al. §3): n_c = n_1 R^{-(c-1)/(k-1)}
for c = 1..k, rounded. ``min_count`` clamps from below (2 where a statement needs n_c >= 2).
"""

from __future__ import annotations

import math

import numpy as np

from nctheory.errors import InputError


def parse_counts(counts, *, min_count: int = 0, min_classes: int = 1) -> np.ndarray:
    """Class sizes as an int64 array: 1-D, at least ``min_classes`` entries, each an integer >= min_count."""
    try:
        c = np.asarray(counts)
    except (TypeError, ValueError):
        raise InputError(f"counts must be a list of class sizes, got {counts!r}") from None
    if c.ndim != 1 or c.size < min_classes:
        raise InputError(f"counts must list at least {min_classes} class size{'s' if min_classes > 1 else ''}")
    if c.dtype.kind == "f" and np.all(np.isfinite(c)) and np.all(c == np.round(c)):
        c = c.astype(np.int64)
    if c.dtype.kind not in "iu" or c.min() < min_count:
        raise InputError(f"class counts must be integers >= {min_count}, got {c.tolist()}")
    return c.astype(np.int64)


def _check_profile(k, n, R):
    if int(k) != k or k < 1:
        raise InputError(f"the number of classes must be a positive integer, got {k}")
    if int(n) != n or n < 1:
        raise InputError(f"the largest class size must be a positive integer, got {n}")
    if not (isinstance(R, (int, float)) and math.isfinite(R) and R >= 1):
        raise InputError(f"the imbalance ratio R must be a finite number >= 1, got {R}")


def step_counts(k: int, n_major: int, R: float, *, min_count: int = 1, n_major_classes: int | None = None) -> list[int]:
    """R-STEP: ``n_major_classes`` (default k//2) classes of n_major, the others round(n_major / R)."""
    _check_profile(k, n_major, R)
    m = k // 2 if n_major_classes is None else int(n_major_classes)
    if not 0 <= m <= k:
        raise InputError(f"the number of majority classes must be in [0, {k}], got {m}")
    return [int(n_major)] * m + [max(min_count, int(round(n_major / R)))] * (k - m)


def longtail_counts(k: int, n_1: int, R: float, *, min_count: int = 1) -> list[int]:
    """R-long-tail: n_c = round(n_1 R^{-(c-1)/(k-1)}) for c = 1..k (k = 1: [n_1])."""
    _check_profile(k, n_1, R)
    if k == 1:
        return [int(n_1)]
    return [max(min_count, int(round(n_1 * R ** (-c / (k - 1))))) for c in range(k)]


def counts_from_text(text: str, *, min_count: int = 0, min_classes: int = 1, option: str = "--counts") -> np.ndarray:
    """Class sizes from a command-line list "N1,N2,...", checked as :func:`parse_counts` does."""
    try:
        vals = [int(t) for t in str(text).split(",") if t.strip() != ""]
    except ValueError:
        raise InputError(f"{option} must be comma-separated integers, got {text!r}") from None
    try:
        return parse_counts(vals, min_count=min_count, min_classes=min_classes)
    except InputError as exc:
        raise InputError(f"{option}: {exc}") from None

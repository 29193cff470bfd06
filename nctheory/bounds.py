"""Lower bounds of SCL in UFM+ (unit, entrywise non-negative features): Kini et al. 2023 Thm 1 and 2.

With temperature tau the logits are inner products over tau, and the bound's e^{-1} becomes
e^{-1/tau} (inner products of non-negative unit vectors lie in [0, 1]).

Thm 1 (full batch):   L_full(H) >= sum_c n_c log(n_c - 1 + (n - n_c) e^{-1/tau}).
Thm 2 (mini-batches): L_batch(H) >= sum_B sum_c n_{B,c} log(n_{B,c} - 1 + (n_B - n_{B,c}) e^{-1/tau}).

The papers assume n_c >= 2 (and n_{B,c} >= 2). Outside that assumption a class appearing once
contributes nothing to the loss (our no-positive convention), while the stated formula would add
log(n_B - 1) - 1/tau for it, which is positive once n_B - 1 > e^{1/tau}: the stated formula is then
*not* a lower bound. The functions here therefore sum only over classes with at least two members
(``stated=False``, the default, the corrected bound); ``stated=True`` evaluates the paper's formula
as written, over every class present.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from nctheory.counts import parse_counts
from nctheory.errors import InputError
from nctheory.losses._inputs import as_batches, check_tau


def full_batch_bound(counts, tau: float = 1.0, stated: bool = False) -> float:
    """Kini et al. Thm 1's lower bound on full-batch SCL for class sizes ``counts`` (float64).

    stated=False (default): classes with fewer than two samples are left out (see module docstring).
    stated=True: the formula as printed, over every class with n_c >= 1.
    """
    c = parse_counts(counts)
    tau = check_tau(tau)
    n = int(c.sum())
    e = math.exp(-1.0 / tau)
    total = 0.0
    for nc in c:
        if nc == 0 or (nc == 1 and not stated):
            continue
        inner = (nc - 1) + (n - nc) * e
        if inner <= 0:  # n_c = 1 and a single class: log 0
            return float("-inf")
        total += nc * math.log(inner)
    return total


def batch_bound(labels, batches: Iterable, tau: float = 1.0, stated: bool = False) -> float:
    """Kini et al. Thm 2's lower bound: :func:`full_batch_bound` of each batch's class counts, summed."""
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise InputError("labels must be a 1-dimensional integer array")
    total = 0.0
    for B in as_batches(batches, y.size):
        total += full_batch_bound(np.bincount(y[B.numpy()]), tau, stated)
    return total

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

Multiset batches and views (:func:`batch_bound` with ``multiset=True`` / ``views=V``): n_{B,c} and
n_B count *positions* -- every copy of a repeated sample, and every view -- so the same formula holds
with those counts; a class present as one sample drawn twice has n_{B,c} = 2 and contributes. The
derivation (which steps of App. A/B change, and the equality conditions) is section 4 of
:mod:`nctheory.batching.interaction`. The bound is attained by every OF, so it is the minimum.

Labels are class ids of any size: they are ranked (``np.unique``) before anything is counted, so no
array is sized by a label's value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from nctheory.counts import parse_counts
from nctheory.errors import InputError
from nctheory.validate import batch_indices, temperature as check_tau  # torch-free: `nctheory bound` needs no torch


def class_terms(n_c, n_b, tau: float, stated: bool = False) -> np.ndarray:
    """The one definition of a class's term: n_c log(n_c - 1 + (n_b - n_c) e^{-1/tau}) for arrays of
    class counts n_c >= 1 and the sizes n_b of their batches (float64). stated=False: 0 where n_c < 2.
    -inf where the argument of the log is 0 (n_c = 1 alone in its batch, stated=True)."""
    n_c = np.asarray(n_c, dtype=np.float64)
    n_b = np.asarray(n_b, dtype=np.float64)
    e = math.exp(-1.0 / tau)
    inner = (n_c - 1.0) + (n_b - n_c) * e
    keep = n_c >= (1 if stated else 2)
    out = np.zeros(n_c.shape)
    with np.errstate(divide="ignore"):
        out[keep] = n_c[keep] * np.log(inner[keep])
    return out


def _total(terms: np.ndarray) -> float:
    if terms.size and np.isneginf(terms).any():
        return float("-inf")
    return math.fsum(terms.tolist())  # correctly rounded: independent of the order of batches and classes


def full_batch_bound(counts, tau: float = 1.0, stated: bool = False) -> float:
    """Kini et al. Thm 1's lower bound on full-batch SCL for class sizes ``counts`` (float64).

    stated=False (default): classes with fewer than two samples are left out (see module docstring).
    stated=True: the formula as printed, over every class with n_c >= 1.
    """
    c = parse_counts(counts)
    tau = check_tau(tau)
    nc = c[c > 0]
    return _total(class_terms(nc, int(c.sum()), tau, stated))


def batch_bound(labels, batches: Iterable, tau: float = 1.0, stated: bool = False, multiset: bool = False,
                views: int = 1) -> float:
    """Kini et al. Thm 2's lower bound: :func:`full_batch_bound` of each batch's class counts, summed.

    multiset: batches may repeat a sample (each occurrence is a copy and counts in n_{B,c} and n_B);
    views: every batch holds each of its samples in ``views`` views (counts multiplied by views; equal to
    the bound of the expanded batches, tested). Labels may be any integer ids (ranked first).
    """
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise InputError("labels must be a 1-dimensional integer array")
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 1:
        raise InputError(f"views must be a positive integer, got {views!r}")
    tau = check_tau(tau)
    _, cls = np.unique(y, return_inverse=True)
    cls = cls.reshape(-1).astype(np.int64)
    k = int(cls.max()) + 1 if cls.size else 1
    bs = batch_indices(batches, y.size, multiset=multiset)
    sizes = np.fromiter((b.size for b in bs), dtype=np.int64, count=len(bs))
    idx = np.concatenate(bs)
    bid = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    key, cnt = np.unique(bid * k + cls[idx], return_counts=True)
    return _total(class_terms(cnt * views, sizes[key // k] * views, tau, stated))

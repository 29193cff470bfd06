"""Every loss as a function of a Gram matrix, in one structured form (for the convex solvers).

An :class:`LSEForm` represents

    L(G) = sum_t weight[t] * log( sum_{r: group[r] = t} exp( (A @ vec(G))[r] + b[r] ) ) + <C, G> + const

with vec row-major. Each logit r is a linear function of G's entries (usually one entry over tau;
for L_proto a class mean's inner products), b[r] holds log-multiplicities (n_w copies of a
prototype enter as log n_w), and the linear part collects the positives' terms. Such an L is convex
in G (a non-negative combination of log-sum-exps of affine maps plus a linear map), which is what
makes the UFM with d >= n an exact convex program over {G PSD, diag(G) = 1}.

Each builder mirrors one torch loss of :mod:`nctheory.losses` and is tested equal to it on
G = X X^T (tests/test_losses.py); the torch loss stays the one definition, this is its other view.
Joint Gram matrices put the n samples first and the k prototypes/classifier rows after them:
index n + c is prototype c.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from nctheory.errors import InputError
from nctheory.losses._inputs import check_tau


@dataclass
class LSEForm:
    size: int
    A: sp.csr_matrix
    b: np.ndarray
    group: np.ndarray
    weight: np.ndarray
    C: np.ndarray
    const: float = 0.0
    description: str = ""

    @property
    def n_terms(self) -> int:
        return int(self.weight.size)

    def logits(self, G) -> np.ndarray:
        G = np.asarray(G, dtype=np.float64)
        if G.shape != (self.size, self.size):
            raise InputError(f"Gram matrix must be {self.size} x {self.size}, got {G.shape}")
        return self.A @ G.ravel() + self.b

    def evaluate(self, G) -> float:
        """L(G) in float64 (a stable grouped log-sum-exp)."""
        G = np.asarray(G, dtype=np.float64)
        x = self.logits(G)
        linear = float(np.sum(self.C * G) + self.const)
        if x.size == 0:  # no anchor has a positive: only the linear part (zero) remains
            return linear
        starts = np.flatnonzero(np.r_[True, np.diff(self.group) != 0])
        m = np.maximum.reduceat(x, starts)
        lse = m + np.log(np.add.reduceat(np.exp(x - m[self.group]), starts))
        return float(self.weight @ lse) + linear


class _Builder:
    """Accumulates LSE groups; each group is a list of logits, each logit a sparse row over vec(G)."""

    def __init__(self, size: int):
        self.size = size
        self.rows, self.cols, self.vals = [], [], []
        self.b, self.group, self.weight = [], [], []
        self.C = np.zeros((size, size))
        self.R = 0

    def add_group(self, weight: float, entries_i, entries_j, coef, offsets, logit_of_entry=None):
        """One LSE term. Logit r (r = 0..len(offsets)-1) is sum over its entries of coef * G[i, j];
        ``logit_of_entry`` maps each entry to its logit (default: one entry per logit)."""
        entries_i = np.asarray(entries_i, dtype=np.int64)
        entries_j = np.asarray(entries_j, dtype=np.int64)
        offsets = np.asarray(offsets, dtype=np.float64)
        if logit_of_entry is None:
            logit_of_entry = np.arange(entries_i.size)
        coef = np.broadcast_to(np.asarray(coef, dtype=np.float64), entries_i.shape)
        t = len(self.weight)
        self.rows.append(self.R + np.asarray(logit_of_entry, dtype=np.int64))
        self.cols.append(entries_i * self.size + entries_j)
        self.vals.append(coef)
        self.b.append(offsets)
        self.group.append(np.full(offsets.size, t, dtype=np.int64))
        self.weight.append(float(weight))
        self.R += offsets.size

    def add_linear(self, i, j, coef):
        np.add.at(self.C, (np.asarray(i), np.asarray(j)), coef)

    def build(self, const: float = 0.0, description: str = "") -> LSEForm:
        if not self.weight:
            A = sp.csr_matrix((0, self.size * self.size))
            return LSEForm(self.size, A, np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0), self.C, const, description)
        rows, cols, vals = (np.concatenate(v) for v in (self.rows, self.cols, self.vals))
        A = sp.csr_matrix((vals, (rows, cols)), shape=(self.R, self.size * self.size))
        return LSEForm(self.size, A, np.concatenate(self.b), np.concatenate(self.group),
                       np.asarray(self.weight), self.C, const, description)


def _labels(y, k=None) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise InputError("labels must be a 1-dimensional integer array")
    if y.size and y.min() < 0:
        raise InputError("labels must be non-negative")
    if k is not None and y.size and y.max() >= k:
        raise InputError(f"label {int(y.max())} but only {k} classes")
    return y.astype(np.int64)


def _batches(batches, n):
    from nctheory.losses._inputs import as_batches

    return [b.numpy() for b in as_batches(batches, n)]


def scl_form(y, tau: float = 1.0, batches=None) -> LSEForm:
    """Gram form of :func:`nctheory.losses.scl` (batches=None) / :func:`scl_batches`:
    per anchor with positives, LSE_{l in B, l != i}(G_il/tau) - mean_{j in P(i)} G_ij / tau."""
    y = _labels(y)
    tau = check_tau(tau)
    n = y.size
    bld = _Builder(n)
    for B in _batches(batches, n):
        yb = y[B]
        for a, i in enumerate(B):
            pos = B[(yb == yb[a]) & (B != i)]
            if pos.size == 0:
                continue
            others = B[B != i]
            bld.add_group(1.0, np.full(others.size, i), others, 1.0 / tau, np.zeros(others.size))
            bld.add_linear(np.full(pos.size, i), pos, -1.0 / (tau * pos.size))
    return bld.build(description=f"SCL sum form, tau={tau}, {'full batch' if batches is None else 'mini-batches'}")


def scl_with_prototypes_form(y, k: int, n_w: int, tau: float = 1.0, batches=None) -> LSEForm:
    """Gram form of :func:`nctheory.losses.scl_with_prototypes` over the joint Gram matrix of [Z; W]
    (samples 0..n-1, prototype c at n + c); the W block is fixed by the caller (the solver)."""
    y = _labels(y, k)
    tau = check_tau(tau)
    n_w = int(n_w)
    if n_w < 0:
        raise InputError("n_w must be non-negative")
    n = y.size
    bld = _Builder(n + k)
    protos = n + np.arange(k)
    log_nw = math.log(n_w) if n_w > 0 else None
    for B in _batches(batches, n):
        yb = y[B]
        for a, i in enumerate(B):
            same = B[(yb == yb[a]) & (B != i)]
            cnt = same.size + n_w
            if cnt == 0:
                continue
            others = B[B != i]
            if n_w > 0:
                cols = np.concatenate([others, protos])
                offs = np.concatenate([np.zeros(others.size), np.full(k, log_nw)])
            else:
                cols, offs = others, np.zeros(others.size)
            bld.add_group(1.0, np.full(cols.size, i), cols, 1.0 / tau, offs)
            bld.add_linear(np.full(same.size, i), same, -1.0 / (tau * cnt))
            if n_w > 0:
                bld.add_linear([i], [n + y[i]], -n_w / (tau * cnt))
        if n_w == 0:
            continue
        for c in range(k):
            members = B[yb == c]
            cnt = members.size + n_w - 1
            if cnt == 0:
                continue
            mult = np.full(k, n_w, dtype=np.float64)
            mult[c] -= 1
            keep = mult > 0
            cols = np.concatenate([B, protos[keep]])
            offs = np.concatenate([np.zeros(B.size), np.log(mult[keep])])
            bld.add_group(float(n_w), np.full(cols.size, n + c), cols, 1.0 / tau, offs)
            bld.add_linear(np.full(members.size, n + c), members, -n_w / (tau * cnt))
            bld.add_linear([n + c], [n + c], -n_w * (n_w - 1) / (tau * cnt))
    return bld.build(description=f"SCL with {n_w} copies of {k} fixed prototypes, tau={tau}")


def _check_k(y, k):
    y = _labels(y, k)
    if y.size == 0:
        raise InputError("no samples")
    return y


def normface_form(y, k: int, tau: float = 1.0) -> LSEForm:
    """Gram form of NormFace over the joint Gram of [U; Ŵ] (unit rows: diag(G) = 1 is the normalisation)."""
    y = _check_k(y, k)
    tau = check_tau(tau)
    n = y.size
    bld = _Builder(n + k)
    for i in range(n):
        bld.add_group(1.0 / n, np.full(k, i), n + np.arange(k), 1.0 / tau, np.zeros(k))
        bld.add_linear([i], [n + y[i]], -1.0 / (n * tau))
    return bld.build(description=f"NormFace, tau={tau}")


def ce_fixed_classifier_form(y, k: int, tau: float = 1.0) -> LSEForm:
    """Gram form of :func:`ce_fixed_classifier` (mean reduction) over the joint Gram of [Z; W].
    As a function of the joint Gram it coincides with NormFace's; the two losses differ only in
    whether the rows are normalised, which in the Gram program is the constraint diag(G) = 1."""
    form = normface_form(y, k, tau)
    form.description = f"CE with fixed classifier, tau={tau}"
    return form


def ntce_form(y, k: int, tau: float = 1.0) -> LSEForm:
    """Gram form of NTCE over the joint Gram of [U; Ŵ]: anchor ŵ_{y_i}, denominator over all M instances."""
    y = _check_k(y, k)
    tau = check_tau(tau)
    n = y.size
    bld = _Builder(n + k)
    for i in range(n):
        bld.add_group(1.0 / n, np.full(n, n + y[i]), np.arange(n), 1.0 / tau, np.zeros(n))
        bld.add_linear([n + y[i]], [i], -1.0 / (n * tau))
    return bld.build(description=f"NTCE, tau={tau}")


def nonl_form(y, k: int, tau: float = 1.0) -> LSEForm:
    """Gram form of NONL (Eq. 9) over the joint Gram of [U; Ŵ]: denominator over other-class instances."""
    y = _check_k(y, k)
    tau = check_tau(tau)
    n = y.size
    bld = _Builder(n + k)
    for i in range(n):
        neg = np.flatnonzero(y != y[i])
        if neg.size == 0:
            raise InputError("NONL is undefined on a batch with a single class (empty negatives-only denominator)")
        bld.add_group(1.0 / n, np.full(neg.size, n + y[i]), neg, 1.0 / tau, np.zeros(neg.size))
        bld.add_linear([n + y[i]], [i], -1.0 / (n * tau))
    return bld.build(description=f"NONL (Eq. 9), tau={tau}")


def proto_loss_form(y, tau: float = 1.0) -> LSEForm:
    """Gram form of L_proto (Koromilas Eq. 6) over the Gram of the N anchors: the logit of class c is
    a_i.μ_c/tau = (1/(n_c tau)) sum_{j in c} G_ij, with log-weight log n_c (log(n_c - 1) for c = y_i)."""
    y = _labels(y)
    tau = check_tau(tau)
    N = y.size
    classes = np.unique(y)
    members = {c: np.flatnonzero(y == c) for c in classes}
    bld = _Builder(N)
    for i in range(N):
        ei, ej, coef, lg, offs = [], [], [], [], []
        for c in classes:
            w = members[c].size - (1 if c == y[i] else 0)
            if w == 0:
                continue
            m = members[c]
            ei.append(np.full(m.size, i)); ej.append(m)
            coef.append(np.full(m.size, 1.0 / (m.size * tau)))
            lg.append(np.full(m.size, len(offs)))
            offs.append(math.log(w))
        if not offs:
            raise InputError("L_proto is undefined: an anchor's denominator is empty (a single one-sample class)")
        bld.add_group(1.0 / N, np.concatenate(ei), np.concatenate(ej), np.concatenate(coef), np.array(offs),
                      logit_of_entry=np.concatenate(lg))
        m = members[y[i]]
        bld.add_linear(np.full(m.size, i), m, -1.0 / (N * m.size * tau))
    return bld.build(description=f"L_proto, tau={tau}")

"""Every loss as a function of a Gram matrix, in one structured form (for the convex solvers).

An :class:`LSEForm` represents

    L(X) = sum_t weight[t] * log( sum_{r: group[r] = t} exp( (A @ vec(X))[r] + b[r] ) ) + <C, X> + const

with vec row-major. For every loss of this module X is the (joint) Gram matrix G; each logit r is a
linear function of G's entries (usually one entry over tau; for L_proto a class mean's inner
products), b[r] holds log-multiplicities (n_w copies of a prototype enter as log n_w), and the linear
part collects the positives' terms. Such an L is convex in G (a non-negative combination of
log-sum-exps of affine maps plus a linear map), which is what makes the UFM with d >= n an exact
convex program over {G PSD, diag(G) = 1}. The symmetry-reduced programs of :mod:`nctheory.solvers`
use the same object over their reduced variables (a class-mean Gram matrix, or a parameter vector).

LSEForm is one mathematical object with several views, as cvxpy's atoms carry value, gradient and
canonicalisation: :meth:`LSEForm.value` is its definition in float64, and every other method
(batched values, gradient, softmax weights and conjugate part for the certificates, torch, sympy, the
cvxpy canonicalisation with readable duals, affine substitution, symmetry merging) is tested equal to
it (tests/test_lse_form.py). Every form is assembled by one :class:`LSEBuilder`.

Each builder below mirrors one torch loss of :mod:`nctheory.losses` and is tested equal to it on
G = X X^T (tests/test_losses.py); the torch loss stays the one definition, this is its other view.
Joint Gram matrices put the n samples first and the k prototypes/classifier rows after them:
index n + c is prototype c. numpy and scipy only at import: cvxpy, sympy and torch are imported by
the methods that need them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from nctheory.errors import InputError
from nctheory.losses._inputs import check_tau


@dataclass
class LSEForm:
    """L(X) = sum_t weight[t] LSE_{r in t}((A vec X)_r + b_r) + <C, X> + const (module docstring).

    shape: the shape of the variable X, (m, m) for a Gram matrix (then X is symmetric and ``size`` = m)
    or (N,) for a parameter vector; A: sparse (R, prod(shape)) over vec(X) row-major; b: (R,);
    group: (R,) sorted term ids 0..T-1, every term non-empty; weight: (T,) >= 0; C: an array of shape
    ``shape``; const: a float. Build it with :class:`LSEBuilder`.
    """

    shape: tuple
    A: sp.csr_matrix
    b: np.ndarray
    group: np.ndarray
    weight: np.ndarray
    C: np.ndarray
    const: float = 0.0
    description: str = ""

    # ------------------------------------------------------------------------------ structure
    @property
    def n_terms(self) -> int:
        return int(self.weight.size)

    @property
    def is_gram(self) -> bool:
        """True when the variable is a square (symmetric) matrix."""
        return len(self.shape) == 2 and self.shape[0] == self.shape[1]

    @property
    def size(self) -> int:
        """m for a form of an m x m Gram matrix."""
        if not self.is_gram:
            raise TypeError(f"the form's variable has shape {self.shape}, not a square Gram matrix")
        return int(self.shape[0])

    def _variable(self, X, batch: bool = False) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        want = self.shape if not batch else (X.shape[0] if X.ndim else 0, *self.shape)
        if X.shape != tuple(want):
            what = "Gram matrix" if self.is_gram else "variable"
            raise InputError(f"{what} must have shape {tuple(want)}, got {X.shape}")
        return X

    def _lse(self, x: np.ndarray) -> np.ndarray:
        """The T grouped log-sum-exps of logits x, (R,) -> (T,) or (R, B) -> (T, B); stable (max shifted)."""
        starts = np.flatnonzero(np.r_[True, np.diff(self.group) != 0])
        m = np.maximum.reduceat(x, starts, axis=0)
        return m + np.log(np.add.reduceat(np.exp(x - m[self.group]), starts, axis=0))

    def _slope(self, p: np.ndarray) -> np.ndarray:
        """A^T p + C as an array of the variable's shape (symmetrised for a Gram matrix)."""
        g = np.array(self.C, dtype=np.float64)
        if self.n_terms:
            g = (self.A.T @ p).reshape(self.shape) + self.C
        return 0.5 * (g + g.T) if self.is_gram else g

    # ------------------------------------------------------------------------------ values
    def logits(self, X) -> np.ndarray:
        return self.A @ self._variable(X).ravel() + self.b

    def value(self, X) -> float:
        """L(X) in float64 (a stable grouped log-sum-exp): the definition every other view is tested against."""
        X = self._variable(X)
        linear = float(np.sum(self.C * X) + self.const)
        if self.n_terms == 0:  # no anchor has a positive: only the linear part (zero) remains
            return linear
        return float(self.weight @ self._lse(self.logits(X))) + linear

    def values(self, Xs) -> np.ndarray:
        """L at each of a batch of variables Xs (B, *shape), in one sparse product."""
        Xs = self._variable(Xs, batch=True)
        lin = Xs.reshape(Xs.shape[0], -1) @ self.C.ravel() + float(self.const)
        if self.n_terms == 0:
            return lin
        X = np.asarray(self.A @ Xs.reshape(Xs.shape[0], -1).T) + self.b[:, None]
        return self.weight @ self._lse(X) + lin

    def sign_values(self, S) -> np.ndarray:
        """L(s s^T) for every row s of S (B x m): the loss of d = 1 features s_i in {-1, +1}."""
        S = np.asarray(S, dtype=np.float64)
        return self.values(S[:, :, None] * S[:, None, :])

    # ------------------------------------------------------------------------------ first order
    def lse_weights(self, X) -> np.ndarray:
        """p_r = weight[t] softmax_t(logits)_r (R,): the gradient's weights, each term summing to its weight."""
        x = self.logits(X)
        if self.n_terms == 0:
            return x
        starts = np.flatnonzero(np.r_[True, np.diff(self.group) != 0])
        mx = np.maximum.reduceat(x, starts)
        e = np.exp(x - mx[self.group])
        s = np.add.reduceat(e, starts)
        return self.weight[self.group] * e / s[self.group]

    def gradient(self, X) -> np.ndarray:
        """dL/dX = A^T p + C with p = :meth:`lse_weights` (symmetrised for a Gram matrix: the gradient on
        symmetric matrices)."""
        return self._slope(self.lse_weights(X))

    def conjugate_part(self, p) -> float:
        """phi(p) = sum_r p_r b_r - sum_r p_r log(p_r / w_t)  (p >= 0, term sums = w_t). By Gibbs' inequality
        sum_t w_t LSE_t(x) >= p.x - sum_r p_r log(p_r / w_t), so L(X) - <C + A^T p, X> >= phi(p) + const."""
        p = np.asarray(p, dtype=np.float64)
        wt = self.weight[self.group]
        pos = p > 0
        return float(p @ self.b - np.sum(p[pos] * np.log(p[pos] / wt[pos])))

    def minorant(self, p) -> tuple[np.ndarray, float]:
        """(S, offset) with L(X) >= <S, X> + offset for every X, from weights p >= 0 with term sums = weight
        (Gibbs' inequality, :meth:`conjugate_part`): S = A^T p + C, offset = phi(p) + const. Equality at X
        when p = lse_weights(X): a second-order accurate lower model when p is a solver's dual."""
        return self._slope(np.asarray(p, dtype=np.float64)), self.conjugate_part(p) + float(self.const)

    def tangent(self, X0) -> tuple[np.ndarray, float]:
        """(D, offset) of the tangent plane at X0, L(X) >= <D, X> + offset (convexity): D = gradient(X0),
        offset = L(X0) - <D, X0> (the Frank-Wolfe lower model, first-order accurate)."""
        D = self.gradient(X0)
        return D, self.value(X0) - float(np.sum(D * self._variable(X0)))

    # ------------------------------------------------------------------------------ other libraries
    def torch(self, device=None):
        """A differentiable torch function X -> L(X) (float64 on ``device``; default CUDA when available)."""
        import torch

        device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        A = self.A.tocoo()
        At = torch.sparse_coo_tensor(np.vstack([A.row, A.col]), A.data, A.shape, dtype=torch.float64,
                                     device=device, check_invariants=False)
        b = torch.as_tensor(self.b, dtype=torch.float64, device=device)
        grp = torch.as_tensor(self.group, dtype=torch.int64, device=device)
        w = torch.as_tensor(self.weight, dtype=torch.float64, device=device)
        C = torch.as_tensor(self.C, dtype=torch.float64, device=device)
        T, const = self.n_terms, float(self.const)

        def f(X):
            out = (C * X).sum() + const
            if T:
                x = torch.sparse.mm(At, X.reshape(-1, 1))[:, 0] + b
                mx = torch.full((T,), -torch.inf, dtype=x.dtype, device=x.device).scatter_reduce(
                    0, grp, x.detach(), "amax")
                s = torch.zeros(T, dtype=x.dtype, device=x.device).index_add(0, grp, torch.exp(x - mx[grp]))
                out = out + w @ (mx + torch.log(s))
            return out

        return f

    def sympy(self, X, tau=None):
        """L(X) exactly, for a sympy matrix (or vector) X: every coefficient is made rational (nsimplify)
        and exp(b_r) a rational multiplicity. tau (a sympy expression): read the form as built at
        temperature 1 and evaluate it at temperature tau, i.e. logits (A vec X)/tau + b and linear part
        (<C, X> + const)/tau. That holds for the builders of this module, whose logits are inner products
        over tau plus log-multiplicities; it is not a property of every LSEForm."""
        import sympy

        def rat(v):
            return sympy.nsimplify(float(v), rational=True)

        tau = sympy.Integer(1) if tau is None else tau
        A = self.A.tocsr()
        entry = (lambda c: X[np.unravel_index(c, self.shape)]) if len(self.shape) > 1 else (lambda c: X[int(c)])
        terms = []
        for r in range(A.shape[0]):
            lo, hi = A.indptr[r], A.indptr[r + 1]
            s = sum((rat(v) * entry(c) for c, v in zip(A.indices[lo:hi], A.data[lo:hi])), sympy.Integer(0))
            mult = rat(math.exp(self.b[r])) if self.b[r] != 0 else sympy.Integer(1)
            terms.append(mult * sympy.exp(s / tau))
        out = sympy.Integer(0)
        for t in range(self.n_terms):
            out += rat(self.weight[t]) * sympy.log(sum((terms[r] for r in np.flatnonzero(self.group == t)),
                                                       sympy.Integer(0)))
        for idx in zip(*np.nonzero(self.C)):
            out += rat(self.C[idx]) * entry(np.ravel_multi_index(idx, self.shape)) / tau
        return out + rat(self.const) / tau

    def canonicalise(self, X, scale: float = 1.0):
        """(objective, constraints, cone): L(X)/scale for a cvxpy expression X of the variable's shape
        (affine in the problem's variables), in the exponential-cone epigraph form

            sum_t w_t LSE_{r in t}(x_r) = min_{s, u} sum_t w_t s_t  s.t.  exp(x - E s) <= u (R cones),  E^T u <= 1,

        E (R x T) the sparse indicator "logit r belongs to term t". The cones are explicit so that their
        duals, the optimal softmax weights, can be read back after a solve with :meth:`dual_weights`.
        For a symmetric matrix expression row- and column-major vec coincide. ``scale`` divides the
        objective (conditioning: the solvers keep it O(1) per sample)."""
        import cvxpy as cp

        vec = cp.vec(X, order="C") if len(self.shape) == 2 else X
        obj, cons, cone = _exp_cone_epigraph(self.A @ vec + self.b, self.group, self.weight / scale)
        lin = cp.sum(cp.multiply(self.C / scale, X)) if np.any(self.C) else 0.0
        return obj + lin + float(self.const) / scale, cons, cone

    def dual_weights(self, cone) -> np.ndarray | None:
        """The solver's dual weights p >= 0 of the log-sum-exp terms after solving a program built by
        :meth:`canonicalise`, rescaled so that each term sums to its weight exactly (a perturbation of the
        order of the dual residual; independent of ``scale``). None if unavailable."""
        if cone is None or cone.dual_value is None:
            return None
        p = np.clip(-np.asarray(cone.dual_value[0], dtype=np.float64), 0, None)
        tot = np.bincount(self.group, weights=p, minlength=self.n_terms)
        if np.any(tot <= 0):
            return None
        return p * (self.weight / tot)[self.group]

    # ------------------------------------------------------------------------------ transformations
    def scaled(self, factor: float, description: str | None = None) -> LSEForm:
        """factor * L (factor > 0): weights, linear part and constant scaled."""
        factor = float(factor)
        if not factor > 0:
            raise InputError(f"an LSE form can only be scaled by a positive factor, got {factor}")
        return replace(self, weight=self.weight * factor, C=self.C * factor, const=self.const * factor,
                       description=self.description if description is None else description)

    def pullback(self, T, shape, offset=None, description: str | None = None) -> LSEForm:
        """The form of theta (shape ``shape``) given by L(X) with vec(X) = T vec(theta) + offset: T sparse or
        dense (prod(self.shape), prod(shape)), offset (prod(self.shape),) or None. Logits A T theta + (b + A
        offset), linear part T^T vec(C), constant const + <C, offset>."""
        T = sp.csr_matrix(T)
        shape = tuple(int(s) for s in shape)
        if T.shape != (int(np.prod(self.shape)), int(np.prod(shape))):
            raise InputError(f"the substitution must be {int(np.prod(self.shape))} x {int(np.prod(shape))}, "
                             f"got {T.shape}")
        b, const = self.b, float(self.const)
        if offset is not None:
            offset = np.asarray(offset, dtype=np.float64).ravel()
            b = b + self.A @ offset
            const = const + float(self.C.ravel() @ offset)
        C = np.asarray(T.T @ self.C.ravel()).reshape(shape)
        return LSEForm(shape, (self.A @ T).tocsr(), b, self.group, self.weight, C, const,
                       self.description if description is None else description)

    def merged(self, description: str | None = None):
        """Exact aggregation of repeated structure (symmetry reduction). Logits of one term with the same
        coefficient row are one logit with offset log sum exp(b) (LSE(x + b1, x + b2) = x + LSE(b1, b2)), and
        terms with the same logits (rows and offsets) are one term with the summed weight. Returns
        (form, expand): the merged form, equal to this one everywhere, and expand(p) mapping weights of the
        merged form (term sums = its weights) to weights of this form (term sums = weight): logit r of term
        t, merged into logit o of term u, gets p_o (w_t / w_u) exp(b_r - b_o), which is the softmax of this
        form when p is the merged form's softmax (so both give the same :meth:`minorant`)."""
        A = self.A.tocsr(copy=True)
        A.sum_duplicates()
        A.sort_indices()
        key = [A.indices[A.indptr[r]:A.indptr[r + 1]].tobytes() + b"|" + A.data[A.indptr[r]:A.indptr[r + 1]].tobytes()
               for r in range(A.shape[0])]
        # 1. one logit per (term, coefficient row); its offset the log-sum-exp of the merged offsets
        logit_of, first = _first_occurrence(list(zip(self.group.tolist(), key)))
        mx = np.full(first.size, -np.inf)
        np.maximum.at(mx, logit_of, self.b)
        tot = np.zeros(first.size)
        np.add.at(tot, logit_of, np.exp(self.b - mx[logit_of]))
        b_m = mx + np.log(tot)
        # 2. one term per set of (coefficient row, offset); its weight the sum of the merged weights
        logits_of_term = [[] for _ in range(self.n_terms)]
        for o, r in enumerate(first):
            logits_of_term[self.group[r]].append(o)
        term_of, term_first = _first_occurrence(
            [frozenset((key[first[o]], b_m[o].tobytes()) for o in logits) for logits in logits_of_term])
        weight = np.bincount(term_of, weights=self.weight, minlength=term_first.size)
        rows = np.asarray([o for t in term_first for o in logits_of_term[t]], dtype=np.int64)
        group = np.repeat(np.arange(term_first.size), [len(logits_of_term[t]) for t in term_first]).astype(np.int64)
        form = LSEForm(self.shape, A[first[rows]], b_m[rows], group, weight, self.C, self.const,
                       self.description if description is None else description)
        # the merged row that each logit of step 1 went into
        where = {(int(group[i]), key[first[o]]): i for i, o in enumerate(rows)}
        target = np.array([where[(int(term_of[self.group[r]]), key[r])] for r in first], dtype=np.int64)
        u_of_row = term_of[self.group]

        def expand(p):
            p = np.asarray(p, dtype=np.float64)
            q = p[target[logit_of]] * (self.weight[self.group] / weight[u_of_row]) * np.exp(self.b - b_m[logit_of])
            tot = np.bincount(self.group, weights=q, minlength=self.n_terms)  # = weight up to rounding: made exact
            return q * np.where(tot > 0, self.weight / np.where(tot > 0, tot, 1.0), 0.0)[self.group]

        return form, expand


def _first_occurrence(keys):
    """(class of each key, position of each class's first key): equal keys form one class, classes numbered
    in order of first occurrence."""
    ids, first = {}, []
    cls = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        c = ids.setdefault(key, len(first))
        if c == len(first):
            first.append(i)
        cls[i] = c
    return cls, np.asarray(first, dtype=np.int64)


def _exp_cone_epigraph(x, group: np.ndarray, weight: np.ndarray):
    """(objective, constraints, cone) for sum_t weight[t] LSE_{r in t}(x_r), x an affine (R,) cvxpy expression
    (:meth:`LSEForm.canonicalise`): explicit cones exp(x_r - s_t) <= u_r, sum_{r in t} u_r <= 1."""
    import cvxpy as cp

    group = np.asarray(group, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    T = weight.size
    if T == 0:
        return cp.Constant(0.0), [], None
    if np.any(weight < 0):
        raise InputError("a log-sum-exp term with negative weight makes the program non-convex")
    counts = np.bincount(group, minlength=T)
    if counts.size != T or np.any(counts == 0):
        raise InputError("LSE groups must be numbered 0..T-1 with every group non-empty")
    R = group.size
    E = sp.csr_matrix((np.ones(R), (np.arange(R), group)), shape=(R, T))
    s = cp.Variable(T)
    u = cp.Variable(R)
    cone = cp.constraints.ExpCone(x - E @ s, np.ones(R), u)
    return weight @ s, [cone, E.T @ u <= 1], cone


class LSEBuilder:
    """Assembles an :class:`LSEForm` over a variable of shape ``shape`` ((m, m) for a Gram matrix), term by
    term: every form in nctheory (the losses below and the solvers' reduced programs) is built here."""

    def __init__(self, shape):
        self.shape = (int(shape),) * 2 if np.isscalar(shape) else tuple(int(s) for s in shape)
        self.rows, self.cols, self.vals = [], [], []
        self.b, self.group, self.weight = [], [], []
        self.C = np.zeros(self.shape)
        self.const = 0.0
        self.R = 0

    def add_term(self, weight: float, offsets, index, coef=1.0, logit=None) -> None:
        """One term weight * LSE_r(x_r), x_r = offsets[r] + sum over the entries e of logit r of coef_e X[index_e].

        index: a tuple of integer arrays, one per axis of X ((i, j) for a Gram matrix), one element per
        entry; coef: a scalar or one per entry; logit: the logit of each entry (default: entry e is logit
        e). A logit with no entry is the constant offsets[r]."""
        offsets = np.atleast_1d(np.asarray(offsets, dtype=np.float64))
        if offsets.size == 0:
            raise ValueError("a log-sum-exp term needs at least one logit")
        flat = np.ravel_multi_index(tuple(np.asarray(a, dtype=np.int64) for a in index), self.shape)
        logit = np.arange(flat.size) if logit is None else np.asarray(logit, dtype=np.int64)
        t = len(self.weight)
        self.rows.append(self.R + logit)
        self.cols.append(flat)
        self.vals.append(np.broadcast_to(np.asarray(coef, dtype=np.float64), flat.shape))
        self.b.append(offsets)
        self.group.append(np.full(offsets.size, t, dtype=np.int64))
        self.weight.append(float(weight))
        self.R += offsets.size

    def add_linear(self, index, coef) -> None:
        """Adds coef * X[index] (entries accumulate) to the linear part <C, X>."""
        np.add.at(self.C, tuple(np.asarray(a, dtype=np.int64) for a in index), coef)

    def add_constant(self, c: float) -> None:
        self.const += float(c)

    def build(self, description: str = "") -> LSEForm:
        N = int(np.prod(self.shape))
        if not self.weight:
            return LSEForm(self.shape, sp.csr_matrix((0, N)), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0),
                           self.C, self.const, description)
        rows, cols, vals = (np.concatenate(v) for v in (self.rows, self.cols, self.vals))
        A = sp.csr_matrix((vals, (rows, cols)), shape=(self.R, N))
        return LSEForm(self.shape, A, np.concatenate(self.b), np.concatenate(self.group), np.asarray(self.weight),
                       self.C, self.const, description)


def _labels(y, k=None) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise InputError("labels must be a 1-dimensional integer array")
    if y.size and y.min() < 0:
        raise InputError("labels must be non-negative")
    if k is not None and y.size and y.max() >= k:
        raise InputError(f"label {int(y.max())} but only {k} classes")
    return y.astype(np.int64)


def _batches(batches, n, multiset: bool = False):
    from nctheory.losses._inputs import as_batches

    return [b.numpy() for b in as_batches(batches, n, multiset=multiset)]


def scl_form(y, tau: float = 1.0, batches=None, multiset: bool = False) -> LSEForm:
    """Gram form of :func:`nctheory.losses.scl` (batches=None) / :func:`scl_batches`:
    per anchor with positives, LSE_{l in B, l != i}(G_il/tau) - mean_{j in P(i)} G_ij / tau.

    multiset=True: batches may repeat a sample (as ``scl_batches(..., multiset=True)``): the anchors are
    the batch's positions, and "l != i" means another position, so a copy of the anchor's own sample
    enters its denominator and its positives through the diagonal entry G_ii (1 on unit rows)."""
    y = _labels(y)
    tau = check_tau(tau)
    n = y.size
    bld = LSEBuilder(n)
    for B in _batches(batches, n, multiset):
        yb = y[B]
        for a, i in enumerate(B):
            other = np.arange(B.size) != a  # the other positions (= the other samples when B is a set)
            pos = B[(yb == yb[a]) & other]
            if pos.size == 0:
                continue
            others = B[other]
            bld.add_term(1.0, np.zeros(others.size), (np.full(others.size, i), others), 1.0 / tau)
            bld.add_linear((np.full(pos.size, i), pos), -1.0 / (tau * pos.size))
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
    bld = LSEBuilder(n + k)
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
            bld.add_term(1.0, offs, (np.full(cols.size, i), cols), 1.0 / tau)
            bld.add_linear((np.full(same.size, i), same), -1.0 / (tau * cnt))
            if n_w > 0:
                bld.add_linear(([i], [n + y[i]]), -n_w / (tau * cnt))
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
            bld.add_term(float(n_w), offs, (np.full(cols.size, n + c), cols), 1.0 / tau)
            bld.add_linear((np.full(members.size, n + c), members), -n_w / (tau * cnt))
            bld.add_linear(([n + c], [n + c]), -n_w * (n_w - 1) / (tau * cnt))
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
    bld = LSEBuilder(n + k)
    for i in range(n):
        bld.add_term(1.0 / n, np.zeros(k), (np.full(k, i), n + np.arange(k)), 1.0 / tau)
        bld.add_linear(([i], [n + y[i]]), -1.0 / (n * tau))
    return bld.build(description=f"NormFace, tau={tau}")


def ce_fixed_classifier_form(y, k: int, tau: float = 1.0) -> LSEForm:
    """Gram form of :func:`ce_fixed_classifier` (mean reduction) over the joint Gram of [Z; W].
    As a function of the joint Gram it coincides with NormFace's; the two losses differ only in
    whether the rows are normalised, which in the Gram program is the constraint diag(G) = 1."""
    return replace(normface_form(y, k, tau), description=f"CE with fixed classifier, tau={tau}")


def ntce_form(y, k: int, tau: float = 1.0) -> LSEForm:
    """Gram form of NTCE over the joint Gram of [U; Ŵ]: anchor ŵ_{y_i}, denominator over all M instances."""
    y = _check_k(y, k)
    tau = check_tau(tau)
    n = y.size
    bld = LSEBuilder(n + k)
    for i in range(n):
        bld.add_term(1.0 / n, np.zeros(n), (np.full(n, n + y[i]), np.arange(n)), 1.0 / tau)
        bld.add_linear(([n + y[i]], [i]), -1.0 / (n * tau))
    return bld.build(description=f"NTCE, tau={tau}")


def nonl_form(y, k: int, tau: float = 1.0) -> LSEForm:
    """Gram form of NONL (Eq. 9) over the joint Gram of [U; Ŵ]: denominator over other-class instances."""
    y = _check_k(y, k)
    tau = check_tau(tau)
    n = y.size
    bld = LSEBuilder(n + k)
    for i in range(n):
        neg = np.flatnonzero(y != y[i])
        if neg.size == 0:
            raise InputError("NONL is undefined on a batch with a single class (empty negatives-only denominator)")
        bld.add_term(1.0 / n, np.zeros(neg.size), (np.full(neg.size, n + y[i]), neg), 1.0 / tau)
        bld.add_linear(([n + y[i]], [i]), -1.0 / (n * tau))
    return bld.build(description=f"NONL (Eq. 9), tau={tau}")


def proto_loss_form(y, tau: float = 1.0) -> LSEForm:
    """Gram form of L_proto (Koromilas Eq. 6) over the Gram of the N anchors: the logit of class c is
    a_i.μ_c/tau = (1/(n_c tau)) sum_{j in c} G_ij, with log-weight log n_c (log(n_c - 1) for c = y_i)."""
    y = _labels(y)
    tau = check_tau(tau)
    N = y.size
    classes = np.unique(y)
    members = {c: np.flatnonzero(y == c) for c in classes}
    bld = LSEBuilder(N)
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
        bld.add_term(1.0 / N, np.array(offs), (np.concatenate(ei), np.concatenate(ej)), np.concatenate(coef),
                     logit=np.concatenate(lg))
        m = members[y[i]]
        bld.add_linear((np.full(m.size, i), m), -1.0 / (N * m.size * tau))
    return bld.build(description=f"L_proto, tau={tau}")

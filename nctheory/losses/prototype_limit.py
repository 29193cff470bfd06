"""SCL with many fixed prototypes (Gill et al. 2023, Prop. 1 and 2): the n_w -> oo limit, defined once.

The exact loss is :func:`nctheory.losses.scl_with_prototypes` (every member of the augmented batch is an
anchor, the n_w copies of each prototype included). Its expansion as n_w -> oo is derived symbolically in
:mod:`nctheory.symbolic.prototypes`; with logits over tau, q_{cc'} = w_c.w_{c'}/tau and
Z_c = sum_{c'} exp(q_{cc'}), per batch B (m_c = number of samples of class c in B):

    L_B(n_w) = O_B(n_w) + sum_{i in B} f(W h_i, y_i) + O(1/n_w),

    f(p, y) = log sum_c exp(p_c/tau) - 2 p_y/tau + sum_c r_c exp(p_c/tau),   p = W h,         (limit)

    O_B(n_w) = n_B log n_w + sum_c [ n_w log n_w + n_w (log Z_c - q_cc) + m_c q_cc - exp(q_cc)/Z_c ].

with the repulsion coefficients r_c = 1/Z_c ("derived" form). The first two terms of f are Gill's
Prop. 1 (CE with the fixed classifier W/tau plus the alignment -w_y.h/tau); the third comes from the
prototype anchors (Gill's L_p): the (n_w - 1) log(... + sum_l exp(w_c.h_l/tau)) terms that the paper's
proof approximates by dropping the samples from the denominator contribute n_w * T_c / (n_w Z_c) -> T_c / Z_c,
an order-1 term that depends on the embeddings. Prop. 1 as printed omits it: the "paper" form is f with
r = 0.

One definition: :class:`PerSampleLimit` holds the coefficients of f (the alignment weight -2 and
log r_c = -log Z_c, a stable log-sum-exp in float64, so tau down to 1e-3 and below is exact), and every
view of f reads them: the float64 value and gradient (numpy), the cvxpy expression (for the certified
per-class programs of the prototype-geometry solver) and the per-sample torch values, on which
:func:`limit_loss` and :func:`paper_limit_loss` are built. tests/test_prototypes_limit.py and
tests/test_loss_catalogue.py check them equal.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nctheory import validate
from nctheory.errors import InputError
from nctheory.losses._inputs import as_batches, as_features, as_labels, check_tau, like
from nctheory.losses._precision import at_least_float32, outside_autocast

FORMS = ("derived", "paper")
ALIGNMENT = -2.0  # the weight of p_y/tau in f: -1 from the sample anchors' CE, -1 from the prototype anchors


class PerSampleLimit:
    """f(p, y) = LSE(p/tau) - 2 p_y/tau + sum_c r_c exp(p_c/tau) for p = W h (module docstring, Eq. "limit").

    G_star: the (k, k) prototype Gram matrix W W^T (numpy or torch; the coefficients are computed from it
    in float64 on its device). form "derived" (r_c = 1/Z_c, Z_c = sum_c' exp(G*_{cc'}/tau), the true
    n_w -> oo limit) or "paper" (r = 0, Gill's Prop. 1 as printed); anything else is an InputError.
    """

    def __init__(self, G_star, tau: float = 1.0, form: str = "derived"):
        if form not in FORMS:
            raise InputError(f"form must be 'derived' or 'paper', got {form!r}")
        G_star = validate.real_array(G_star, "G_star", finite=False)  # complex / bool refused, not cast
        G = G_star.detach() if isinstance(G_star, torch.Tensor) else torch.as_tensor(
            np.asarray(G_star, dtype=np.float64))
        G = G.to(torch.float64)
        if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] == 0:
            raise InputError(f"G_star must be a non-empty square (k, k) matrix, got shape {tuple(G.shape)}")
        if not torch.isfinite(G).all():
            raise InputError("G_star contains NaN or infinite entries")
        self.k, self.tau, self.form = int(G.shape[0]), check_tau(tau), form
        self.alignment = ALIGNMENT
        # log r_c = -log Z_c (derived) as a stable log-sum-exp; None for the paper's form (r = 0)
        self.log_r = -torch.logsumexp(G / self.tau, dim=1) if form == "derived" else None
        self._log_r_np = None

    @property
    def log_r_numpy(self) -> np.ndarray | None:
        """log r_c as a float64 numpy array (None for the paper's form); read from the device once."""
        if self._log_r_np is None and self.log_r is not None:
            self._log_r_np = self.log_r.cpu().numpy()
        return self._log_r_np

    def _label(self, y) -> int:
        if isinstance(y, bool) or not isinstance(y, (int, np.integer)) or not 0 <= int(y) < self.k:
            raise InputError(f"y must be a class label in [0, {self.k}), got {y!r}")
        return int(y)

    # ------------------------------------------------------------------ numpy views (float64)
    def _point(self, p, y) -> tuple[np.ndarray, int]:
        x = np.asarray(p, dtype=np.float64) / self.tau
        if x.shape != (self.k,):
            raise InputError(f"p must have shape ({self.k},), got {x.shape}")
        return x, self._label(y)

    def value(self, p, y) -> float:
        """f(p, y) in float64 (stable log-sum-exp)."""
        x, y = self._point(p, y)
        m = x.max()
        val = m + math.log(np.exp(x - m).sum()) + self.alignment * x[y]
        if self.log_r is not None:
            val += float(np.exp(x + self.log_r_numpy).sum())
        return float(val)

    def gradient(self, p, y) -> np.ndarray:
        """grad_p f(p, y) = (softmax(p/tau) - 2 e_y + r * exp(p/tau)) / tau, float64 (k,)."""
        x, y = self._point(p, y)
        e = np.exp(x - x.max())
        g = e / e.sum()
        g[y] += self.alignment
        if self.log_r is not None:
            g = g + np.exp(x + self.log_r_numpy)
        return g / self.tau

    # ------------------------------------------------------------------ cvxpy view
    def cvxpy(self, p, y):
        """f(p, y) as a DCP-convex cvxpy expression of an affine expression p of shape (k,)."""
        import cvxpy as cp  # optional heavy dependency, needed only by the convex solvers

        y = self._label(y)
        expr = cp.log_sum_exp(p / self.tau) + self.alignment * p[y] / self.tau
        if self.log_r is not None:
            expr = expr + cp.sum(cp.exp(p / self.tau + self.log_r_numpy))
        return expr

    # ------------------------------------------------------------------ torch view
    def torch(self, P: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample values f(P_i, y_i), shape (n,), for rows P = Z W^T (n, k) and labels y (n,), in P's
        dtype (float32 for half precision) and on its device (differentiable in P). An integer label
        tensor is used as given (the losses have validated it); other label input is checked
        (nctheory.losses._inputs.as_labels)."""
        if not isinstance(P, torch.Tensor) or P.ndim != 2 or P.shape[1] != self.k:
            raise InputError(f"P must be an (n, {self.k}) tensor, got {getattr(P, 'shape', type(P))}")
        if (isinstance(y, torch.Tensor) and not (y.is_floating_point() or y.is_complex()) and y.dtype != torch.bool
                and y.shape == P.shape[:1]):
            y = y.to(device=P.device, dtype=torch.long)
        else:
            y = as_labels(y, P.shape[0], P.device, k=self.k)
        X = at_least_float32(P) / self.tau  # half-precision P: float32 (nctheory.losses._precision)
        rows = torch.arange(P.shape[0], device=P.device)
        per = torch.logsumexp(X, dim=1) + self.alignment * X[rows, y]
        if self.log_r is not None:
            per = per + torch.exp(X + self.log_r.to(device=X.device, dtype=X.dtype)).sum(1)
        return per


def _prep(z, y, W, tau):
    z = as_features(z, min_rows=1)
    W = like(as_features(W, "W", min_rows=1), z).detach()
    y = as_labels(y, z.shape[0], z.device, k=W.shape[0])
    return z, y, W, check_tau(tau)


def _limit_sum(z, y, W, tau, batches, form) -> torch.Tensor:
    """sum_B sum_{i in B} f(W h_i, y_i) with f = PerSampleLimit(W W^T, tau, form)."""
    z, y, W, tau = _prep(z, y, W, tau)
    f = PerSampleLimit(W.to(torch.float64) @ W.to(torch.float64).T, tau, form)
    total = z.new_zeros(())
    for b in as_batches(batches, z.shape[0]):
        b = b.to(z.device)
        total = total + f.torch(z[b] @ W.T, y[b]).sum()
    return total


@outside_autocast
def limit_loss(z, y, W, tau: float = 1.0, batches=None) -> torch.Tensor:
    """The n_w -> oo limit of SCL with n_w copies of each prototype, up to an additive constant
    independent of z (module docstring, Eq. "limit"):

        sum_B sum_{i in B} [ CE(W h_i / tau, y_i) - w_{y_i}.h_i / tau + sum_c exp(w_c.h_i/tau) / Z_c ]

    with CE(W h/tau, y) = log sum_c exp(w_c.h/tau) - w_y.h/tau. z (n, d), y (n,), W (k, d) fixed
    prototypes (constant: no gradient flows into W); batches as in scl_with_prototypes (None: one batch).
    """
    return _limit_sum(z, y, W, tau, batches, "derived")


@outside_autocast
def paper_limit_loss(z, y, W, tau: float = 1.0, batches=None) -> torch.Tensor:
    """Gill et al. Prop. 1 as printed (tau = 1 there; logits over tau here):
    - sum_i [ log softmax(W h_i/tau)[y_i] + w_{y_i}.h_i/tau ]  (CE with fixed classifier + alignment),
    i.e. :func:`limit_loss` without the repulsion term (r = 0)."""
    return _limit_sum(z, y, W, tau, batches, "paper")


def asymptotic_offset(y, W, n_w: int, tau: float = 1.0, batches=None) -> float:
    """O(n_w): the z-independent part of the expansion (module docstring), so that
    scl_with_prototypes(z, y, W, n_w, tau, batches) = asymptotic_offset(...) + limit_loss(...) + O(1/n_w).
    float64; log Z_c = -log r_c from :class:`PerSampleLimit`."""
    W = as_features(W, "W", min_rows=1).to(torch.float64)
    tau = check_tau(tau)
    if isinstance(n_w, bool) or not float(n_w).is_integer() or n_w < 1:
        raise InputError(f"n_w must be a positive integer, got {n_w!r}")
    k = W.shape[0]
    yt = as_labels(y, len(y), "cpu", k=k)
    G = W @ W.T
    log_r = PerSampleLimit(G, tau, "derived").log_r
    q = torch.diagonal(G) / tau
    per_class = n_w * math.log(n_w) + n_w * (-log_r - q) - torch.exp(q + log_r)
    total = 0.0
    for b in as_batches(batches, yt.numel()):
        m = torch.bincount(yt[b], minlength=k).to(torch.float64)
        total += b.numel() * math.log(n_w) + float(per_class.sum()) + float((m * q).sum())
    return total

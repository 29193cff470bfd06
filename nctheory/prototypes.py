"""SCL with many fixed prototypes (Gill et al. 2023, Prop. 1 and 2): the n_w -> oo limit, numerically.

The exact loss is :func:`nctheory.losses.scl_with_prototypes` (every member of the augmented batch is an
anchor, the n_w copies of each prototype included). Its expansion as n_w -> oo is derived symbolically in
:mod:`nctheory.symbolic.prototypes`; with logits over tau, q_{cc'} = w_c.w_{c'}/tau and
Z_c = sum_{c'} exp(q_{cc'}), per batch B (m_c = number of samples of class c in B):

    L_B(n_w) = O_B(n_w) + sum_{i in B} f(h_i, y_i) + O(1/n_w),

    f(h, y) = log sum_c exp(w_c.h/tau) - 2 w_y.h/tau + sum_c exp(w_c.h/tau) / Z_c,           (limit)

    O_B(n_w) = n_B log n_w + sum_c [ n_w log n_w + n_w (log Z_c - q_cc) + m_c q_cc - exp(q_cc)/Z_c ].

The first two terms of f are Gill's Prop. 1 (CE with the fixed classifier W/tau plus the alignment
-w_y.h/tau); the third, sum_c exp(w_c.h/tau)/Z_c, comes from the prototype anchors (Gill's L_p): the
(n_w - 1) log(... + sum_l exp(w_c.h_l/tau)) terms that the paper's proof approximates by dropping the
samples from the denominator contribute n_w * T_c / (n_w Z_c) -> T_c / Z_c, an order-1 term that
depends on the embeddings. Prop. 1 as printed omits it.
"""

from __future__ import annotations

import math

import torch

from nctheory.errors import InputError
from nctheory.losses import ce_fixed_classifier
from nctheory.losses._inputs import as_batches, as_features, as_labels, check_tau, like


def _prep(z, y, W, tau):
    z = as_features(z)
    W = like(W, z).detach()
    y = as_labels(y, z.shape[0], z.device, k=W.shape[0])
    return z, y, W, check_tau(tau)


def _logZ(W: torch.Tensor, tau: float) -> torch.Tensor:
    """log Z_c = log sum_{c'} exp(w_c.w_c'/tau), shape (k,)."""
    return torch.logsumexp(W @ W.T / tau, dim=1)


def limit_loss(z, y, W, tau: float = 1.0, batches=None) -> torch.Tensor:
    """The n_w -> oo limit of SCL with n_w copies of each prototype, up to an additive constant
    independent of z (module docstring, Eq. "limit"):

        sum_B sum_{i in B} [ CE(W h_i / tau, y_i) - w_{y_i}.h_i / tau + sum_c exp(w_c.h_i/tau) / Z_c ]

    with CE(W h/tau, y) = log sum_c exp(w_c.h/tau) - w_y.h/tau (nctheory.losses.ce_fixed_classifier,
    reduction="sum"). z (n, d), y (n,), W (k, d) fixed prototypes; batches as in scl_with_prototypes.
    """
    z, y, W, tau = _prep(z, y, W, tau)
    logZ = _logZ(W, tau)
    total = z.new_zeros(())
    for b in as_batches(batches, z.shape[0]):
        b = b.to(z.device)
        zb, yb = z[b], y[b]
        P = zb @ W.T / tau
        ce = ce_fixed_classifier(zb, yb, W, tau, reduction="sum")
        align = P[torch.arange(zb.shape[0], device=z.device), yb].sum()
        repulse = torch.exp(P - logZ[None, :]).sum()
        total = total + ce - align + repulse
    return total


def paper_limit_loss(z, y, W, tau: float = 1.0, batches=None) -> torch.Tensor:
    """Gill et al. Prop. 1 as printed (tau = 1 there; logits over tau here):
    - sum_i [ log softmax(W h_i/tau)[y_i] + w_{y_i}.h_i/tau ]  (CE with fixed classifier + alignment)."""
    z, y, W, tau = _prep(z, y, W, tau)
    total = z.new_zeros(())
    for b in as_batches(batches, z.shape[0]):
        b = b.to(z.device)
        zb, yb = z[b], y[b]
        P = zb @ W.T / tau
        total = total + ce_fixed_classifier(zb, yb, W, tau, reduction="sum") - P[torch.arange(zb.shape[0], device=z.device), yb].sum()
    return total


def asymptotic_offset(y, W, n_w: int, tau: float = 1.0, batches=None) -> float:
    """O(n_w): the z-independent part of the expansion (module docstring), so that
    scl_with_prototypes(z, y, W, n_w, tau, batches) = asymptotic_offset(...) + limit_loss(...) + O(1/n_w)."""
    W = as_features(W, "W").to(torch.float64)
    tau = check_tau(tau)
    if isinstance(n_w, bool) or not float(n_w).is_integer() or n_w < 1:
        raise InputError(f"n_w must be a positive integer, got {n_w!r}")
    k = W.shape[0]
    yt = as_labels(y, len(y), "cpu", k=k)
    logZ = _logZ(W, tau)
    q = torch.diagonal(W @ W.T) / tau
    per_class = n_w * math.log(n_w) + n_w * (logZ - q) - torch.exp(q - logZ)
    total = 0.0
    for b in as_batches(batches, yt.numel()):
        m = torch.bincount(yt[b], minlength=k).to(torch.float64)
        total += b.numel() * math.log(n_w) + float(per_class.sum()) + float((m * q).sum())
    return total

"""Cross-entropy-type losses: CE, CE with a fixed classifier, and the normalised losses of
Koromilas et al. 2026 (NormFace, NTCE, NONL) and their prototype loss L_proto.

Definitions follow Koromilas et al. 2026, Eq. (1) (§3.1), Eqs. (3)-(5) (§4.1), Eq. (6) (§4.3) and
Eqs. (7)-(9) (App. A): all of them are averaged over the M anchors of the batch (``reduction="mean"``, the papers'
convention) unless ``reduction="sum"`` is asked for. Features z are (M, d) rows, classifiers /
prototypes W are (K, d) rows, labels y are integers in [0, K).

Convention for anchors without a positive: CE, NormFace, NTCE and L_proto always have one (the
class weight, the sample itself, or the class mean that includes the anchor). NONL's denominator
runs over samples of *other* classes only; a batch with a single class has an empty denominator and
the loss is undefined (+inf): that is refused with an InputError rather than returned as a number.

Inputs (issue 15): features, classifiers and labels are checked by :mod:`nctheory.losses._inputs`
(complex, boolean and string arrays refused, tau a real number > 0, never a string or a bool); a batch
without samples, or a classifier without rows, is refused (InputError: a mean over no anchors is not a
number). Half-precision input computes in float32, and no loss runs under autocast
(:mod:`nctheory.losses._precision`; the value is returned in float32). Rows are normalised after scaling each by its largest entry, so rows of any
finite size (1e-30 or 1e30 in float32) normalise without underflow or overflow.
"""

from __future__ import annotations

import torch

from nctheory import validate
from nctheory.errors import InputError
from nctheory.losses._inputs import as_features, as_labels, check_tau, like
from nctheory.losses._precision import outside_autocast


def _reduce(per_anchor: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_anchor.mean()
    if reduction == "sum":
        return per_anchor.sum()
    raise InputError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _unit_rows(x: torch.Tensor, name: str) -> torch.Tensor:
    """x_i / ||x_i||, computed as u_i / ||u_i|| with u_i = x_i / max_j |x_ij| (no underflow or overflow
    of the squares); a zero row is refused."""
    scale = x.detach().abs().amax(dim=1, keepdim=True) if x.shape[1] else x.new_zeros((x.shape[0], 1))
    if (scale == 0).any():
        raise InputError(f"{name} has a zero row, which cannot be normalised")
    u = x / scale
    return u / u.norm(dim=1, keepdim=True)


def _batch(z, W, name: str = "z"):
    """Features (at least one row) and the classifier / prototypes W (at least one row) on z's device
    and dtype, with z's dimension."""
    z = as_features(z, name, min_rows=1)
    return z, like(as_features(W, "W", min_rows=1), z)


@outside_autocast
def ce(z, y, W, b=None, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy, Koromilas Eq. (1): (1/M) sum_i -log softmax(z_i W^T + b)[y_i]. No normalisation,
    no temperature. W (K, d) and b (K,) are trainable here (gradients flow into them)."""
    z, W = _batch(z, W)
    y = as_labels(y, z.shape[0], z.device, k=W.shape[0])
    logits = z @ W.T
    if b is not None:
        validate.real_array(b, "bias")
        b = torch.as_tensor(b, device=z.device).to(z.dtype)
        if b.shape != (W.shape[0],):
            raise InputError(f"bias must have shape ({W.shape[0]},), got {tuple(b.shape)}")
        logits = logits + b
    per = torch.logsumexp(logits, dim=1) - logits[torch.arange(z.shape[0], device=z.device), y]
    return _reduce(per, reduction)


@outside_autocast
def ce_fixed_classifier(z, y, W, tau: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """CE with a fixed classifier (Gill et al. Remark 1; Yang et al. 2022): :func:`ce` with logits
    z_i.w_c / tau and W a constant (no gradient flows into W, no bias). Features are used as given
    (Gill et al. normalise them; pass unit rows for that setting)."""
    z, W = _batch(z, W)
    return ce(z, y, W.detach() / check_tau(tau), reduction=reduction)


@outside_autocast
def normface(z, y, W, tau: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """NormFace, Koromilas Eq. (3)=(7): (1/M) sum_i -log [exp(u_i.ŵ_{y_i}/tau) / sum_c exp(u_i.ŵ_c/tau)]
    with u_i = z_i/||z_i||, ŵ_c = w_c/||w_c||. The anchor is the instance; the denominator runs over
    the K prototypes, positive included."""
    z, W = _batch(z, W)
    tau = check_tau(tau)
    return ce(_unit_rows(z, "z"), y, _unit_rows(W, "W") / tau, reduction=reduction)


def _prototype_anchored_logits(z, y, W, tau):
    z, W = _batch(z, W)
    y = as_labels(y, z.shape[0], z.device, k=W.shape[0])
    tau = check_tau(tau)
    u, w = _unit_rows(z, "z"), _unit_rows(W, "W")
    S = w[y] @ u.T / tau  # S[i, j] = ŵ_{y_i}.u_j / tau
    return S, y


@outside_autocast
def ntce(z, y, W, tau: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """NTCE, Koromilas Eq. (4)=(8): (1/M) sum_i -log [exp(ŵ_{y_i}.u_i/tau) / sum_{j=1}^M exp(ŵ_{y_i}.u_j/tau)].
    The anchor is the prototype of y_i; the denominator runs over all M instances (i itself and its
    classmates included)."""
    S, _ = _prototype_anchored_logits(z, y, W, tau)
    per = torch.logsumexp(S, dim=1) - torch.diagonal(S)
    return _reduce(per, reduction)


@outside_autocast
def nonl(z, y, W, tau: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """NONL, Koromilas Eq. (9) (the reading the proofs (Lemma A.4) and the authors' code use; Eq. (5)
    with C(i) as App. B defines it would keep j = i in the denominator):
    (1/M) sum_i -log [exp(ŵ_{y_i}.u_i/tau) / sum_{j: y_j != y_i} exp(ŵ_{y_i}.u_j/tau)].
    The denominator holds only instances of other classes (i and its classmates excluded). A batch in
    which some anchor has no other-class instance (a single-class batch) is refused (InputError)."""
    S, y = _prototype_anchored_logits(z, y, W, tau)
    other = y[:, None] != y[None, :]
    if not other.any(dim=1).all():
        raise InputError("NONL is undefined on a batch with a single class (empty negatives-only denominator)")
    per = torch.logsumexp(S.masked_fill(~other, float("-inf")), dim=1) - torch.diagonal(S)
    return _reduce(per, reduction)


@outside_autocast
def proto_loss(a, y, tau: float = 1.0, k: int | None = None, reduction: str = "mean") -> torch.Tensor:
    """Prototype loss L_proto, Koromilas Eq. (6):

        (1/N) sum_i -log [ exp(a_i.μ_{y_i}/tau) / ( -exp(a_i.μ_{y_i}/tau) + sum_c n_c exp(a_i.μ_c/tau) ) ]

    with μ_c = (1/n_c) sum_{j: y_j = c} a_j the *raw* batch mean (not renormalised, anchor included)
    and n_c the batch count of class c; classes absent from the batch are left out of the sum (nothing
    is sized by k or by the largest label: k, when given, only bounds the labels). The
    rows a_i are used as given (unit rows in the paper: stacked views). A batch where some anchor's
    denominator is empty (one class with a single sample and nothing else) is refused."""
    a = as_features(a, "a", min_rows=1)
    k = validate.integer(k, "k", lo=1, allow_none=True)
    y = as_labels(y, a.shape[0], a.device, k=k)
    tau = check_tau(tau)
    # the classes present in the batch, in increasing order, and each anchor's column among them: nothing
    # is sized by the largest label (a label 1e9 with k=None costs what label 1 does)
    _, col = torch.unique(y, sorted=True, return_inverse=True)
    onehot = torch.nn.functional.one_hot(col).to(a.dtype)  # (N, K_present)
    n_c = onehot.sum(0)
    mu = (onehot.T @ a) / n_c[:, None]
    L = a @ mu.T / tau  # (N, K_present)
    rows = torch.arange(a.shape[0], device=a.device)
    pos = L[rows, col]
    weights = n_c[None, :].expand_as(L).clone()
    weights[rows, col] -= 1  # one copy of the positive removed: weight n_{y_i} - 1
    if (weights.sum(1) == 0).any():
        raise InputError("L_proto is undefined: an anchor's denominator is empty (a single one-sample class)")
    logw = torch.where(weights > 0, weights.clamp(min=1).log(), torch.full_like(weights, float("-inf")))
    per = torch.logsumexp(L + logw, dim=1) - pos
    return _reduce(per, reduction)

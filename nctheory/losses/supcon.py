"""The reference SupCon loss in every call form: :func:`supcon` and the drop-in module :class:`SupConLoss`.

The object (Khosla et al. 2020, Eq. 2, L^sup_out, as the reference SupContrast ``SupConLoss`` computes
it): features f of shape (bsz, n_views, ...) (trailing dimensions flattened), stacked view-major into
N = n_views * bsz contrast rows (row v * bsz + i is view v of sample i). A positive mask M (bsz, bsz):
M_ij = [y_i == y_j] from labels, a given mask (0/1 or real weights, possibly asymmetric; a constant),
or the identity when labels and mask are both None (SimCLR: a sample's other views are its positives).
Anchors: every contrast row (``contrast_mode="all"``) or the first view of each sample (``"one"``).
For anchor a (sample i) with s_ac = f_a.f_c / tau and lse_a = LSE_{c != a} s_ac over all N rows,

    l_a = (tau / base_tau) * (mpp_a lse_a - sum_{c != a} M_{i j(c)} s_ac) / mpp'_a            (S1)
        = -(tau / base_tau) * (1/mpp'_a) sum_{c != a} M_{i j(c)} log( exp(s_ac) / sum_{c' != a} exp(s_ac') )

with mpp_a = sum_{c != a} M_{i j(c)} the anchor's positive mass and mpp'_a = 1 where mpp_a < 1e-6 (the
reference's guard: an anchor without positives has l_a = 0 and no NaN; it remains a negative of the
others). The reductions, named explicitly:

- ``"all_anchors"``: mean of l_a over all anchors, those without positives included (SupContrast's
  value; with labels and "all" it is ``losses.supcon_mean``);
- ``"anchors_with_positives"``: sum of l_a over the anchors with mpp_a >= 1e-6, divided by their number
  (pytorch-metric-learning's averaging over the anchors that have positives; 0 when none has one.
  PML's AvgNonZeroReducer also leaves out an anchor whose loss is exactly 0, e.g. one whose only
  contrast row is its positive: here that anchor is counted);
- ``"sum"``: sum of l_a over the anchors, the papers' sum form: with labels, "all" and
  base_tau = tau it is ``losses.scl`` (Kini et al. 2023 Eq. 2) of the stacked views.

Implementations: the dense code below (the N x N logits of the reference, float64-exact; the
reference the tiled kernel is tested against) and the tiled kernel
(:func:`nctheory.losses.tiled.supcon_terms_tiled`, O(N d) memory); ``impl="auto"`` takes the tiled
kernel for N >= :data:`nctheory.losses.scl.TILED_MIN_ROWS` contrast rows.

Precision: float32 at least. float16 / bfloat16 features, and any call under ``torch.autocast``, are
computed in float32 with autocast switched off (:mod:`nctheory.losses._precision`); the value is
returned in float32 and the gradient reaches a half-precision input in its own dtype. float64 input
is computed in float64.
"""

from __future__ import annotations

import torch

from nctheory import validate
from nctheory.errors import InputError
from nctheory.losses import tiled
from nctheory.losses._inputs import check_impl, check_tau, supcon_inputs, use_tiled
from nctheory.losses._precision import outside_autocast
from nctheory.losses.scl import TILED_MIN_ROWS

NEG_INF = float("-inf")
REDUCTIONS = ("all_anchors", "anchors_with_positives", "sum")
#: the reference's guard: an anchor whose positive mass is below this divides by 1 (and has no positive)
POSITIVE_MASS_EPS = 1e-6


def _supcon_terms_dense(f: torch.Tensor, y, mask, tau: float, contrast_mode: str):
    """(terms, mpp) of (S1) without the factor tau/base_tau, from the dense N x N (or bsz x N) logits."""
    bsz, views, _ = f.shape
    C = torch.cat(torch.unbind(f, dim=1), dim=0)
    dt = C.dtype
    if y is not None:
        M = (y[:, None] == y[None, :]).to(dt)
    elif mask is not None:
        M = mask.to(dt)
    else:
        M = torch.eye(bsz, dtype=dt, device=C.device)
    reps = views if contrast_mode == "all" else 1
    A = C[: reps * bsz]
    m = A.shape[0]
    S = A @ C.T / tau  # (m, N)
    own = torch.zeros_like(S, dtype=torch.bool)
    own[torch.arange(m), torch.arange(m)] = True  # anchor a is contrast row a
    P = M.repeat(reps, views).masked_fill(own, 0.0)  # positive weights, self excluded
    mpp = P.sum(1)
    if C.shape[0] < 2:  # one row: no positive, no denominator (a logsumexp over nothing has a NaN gradient)
        return (S * 0.0).sum(1), mpp
    lse = torch.logsumexp(S.masked_fill(own, NEG_INF), dim=1)
    lse_part = torch.where(mpp != 0, mpp * lse, torch.zeros_like(lse))
    mpp_g = torch.where(mpp < POSITIVE_MASS_EPS, torch.ones_like(mpp), mpp)
    return (lse_part - (P * S).sum(1)) / mpp_g, mpp


@outside_autocast
def supcon(features, labels=None, *, mask=None, tau: float = 0.07, base_tau: float = 0.07,
           contrast_mode: str = "all", reduction: str = "all_anchors", impl: str = "auto") -> torch.Tensor:
    """The SupCon loss (S1) of the module docstring, reduced as ``reduction`` says; a 0-dim tensor.

    features (bsz, n_views, ...), labels (bsz,) or None, mask (bsz, bsz) or None (not both; both None
    is SimCLR), tau the temperature, base_tau the reference's scale (l_a carries tau / base_tau),
    contrast_mode "all" | "one", reduction "all_anchors" | "anchors_with_positives" | "sum",
    impl "auto" | "dense" | "tiled". Bad input raises nctheory.errors.InputError.
    """
    validate.text(reduction, "reduction", choices=REDUCTIONS)
    impl = check_impl(impl)
    f, y, m = supcon_inputs(features, labels, mask, contrast_mode)
    tau, base_tau = check_tau(tau), check_tau(base_tau, "base_tau")
    N = f.shape[0] * f.shape[1]
    if use_tiled(impl, N, TILED_MIN_ROWS):
        terms, mpp = tiled.supcon_terms_tiled(f, y, m, tau, contrast_mode, tiled.DEFAULT_TILE)
    else:
        terms, mpp = _supcon_terms_dense(f, y, m, tau, contrast_mode)
    terms = (tau / base_tau) * terms
    if reduction == "all_anchors":
        return terms.mean()
    if reduction == "sum":
        return terms.sum()
    has = mpp >= POSITIVE_MASS_EPS
    return torch.where(has, terms, torch.zeros_like(terms)).sum() / has.sum().clamp(min=1).to(terms.dtype)


class SupConLoss(torch.nn.Module):
    """Drop-in supervised contrastive loss: the reference SupContrast call and the PML call, one object.

    ``SupConLoss(temperature=0.07, contrast_mode="all", base_temperature=0.07, *,
    reduction="all_anchors", normalize=False, impl="auto")``; then

    - ``loss(features, labels=None, mask=None)`` with features (bsz, n_views, ...) -- the reference
      SupContrast call (trailing dimensions flattened after dim 2; labels=None and mask=None is SimCLR;
      labels and mask together are refused, as the reference refuses them);
    - ``loss(embeddings, labels)`` with embeddings (n, d) -- the pytorch-metric-learning call: one view
      per sample (labels or a mask is needed: an (n, d) SimCLR batch has no positive).

    The value is (S1) of :mod:`nctheory.losses.supcon` reduced by ``reduction``: "all_anchors"
    (SupContrast's mean over every anchor; anchors without positives count with l_a = 0),
    "anchors_with_positives" (PML's average over the anchors that have a positive) or "sum" (the papers'
    sum form, Kini et al. 2023 Eq. 2 when base_temperature = temperature). Each l_a carries the
    reference's factor temperature / base_temperature (1 by default; PML has no such factor: pass
    base_temperature=temperature to get PML's numbers).

    normalize: False (default: the features are used as given, as SupContrast does -- its networks
    normalise their output -- and as the papers assume unit rows) or True (each feature row, after the
    flattening, divided by its norm first, as PML's cosine similarity does; a zero row stays zero).

    Precision: computes in float32 at least. float16 / bfloat16 features and calls under
    ``torch.autocast`` are computed in float32 with autocast switched off, and the loss is returned in
    float32 (the gradient reaches half-precision features in their dtype); float64 stays float64.
    Memory: the tiled exact kernel (O(N d)) for N = n_views * bsz >= TILED_MIN_ROWS contrast rows,
    the dense reference code below (``impl`` forces one).
    """

    def __init__(self, temperature: float = 0.07, contrast_mode: str = "all", base_temperature: float = 0.07, *,
                 reduction: str = "all_anchors", normalize: bool = False, impl: str = "auto"):
        super().__init__()
        self.temperature = check_tau(temperature, "temperature")
        self.base_temperature = check_tau(base_temperature, "base_temperature")
        self.contrast_mode = validate.text(contrast_mode, "contrast_mode", choices=("all", "one"))
        self.reduction = validate.text(reduction, "reduction", choices=REDUCTIONS)
        self.normalize = validate.boolean(normalize, "normalize")
        self.impl = check_impl(impl)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, contrast_mode={self.contrast_mode!r}, "
                f"base_temperature={self.base_temperature}, reduction={self.reduction!r}, "
                f"normalize={self.normalize}, impl={self.impl!r}")

    @outside_autocast
    def forward(self, features, labels=None, mask=None) -> torch.Tensor:
        if not isinstance(features, torch.Tensor):  # numpy / lists: real numbers only (complex, bool refused)
            features = validate.real_array(features, "features", finite=False)
        if features.ndim == 2:  # the PML call: (n, d) embeddings, one view each
            if labels is None and mask is None:
                raise InputError("(n, d) embeddings (the PML call) need labels or a mask; for SimCLR pass "
                                 "features of shape (bsz, n_views, d)")
            features = features[:, None]
        if self.normalize:
            f, _, _ = supcon_inputs(features, labels, mask, self.contrast_mode)  # checked before dividing
            features = f / f.norm(dim=2, keepdim=True).clamp(min=torch.finfo(f.dtype).tiny)
        return supcon(features, labels, mask=mask, tau=self.temperature, base_tau=self.base_temperature,
                      contrast_mode=self.contrast_mode, reduction=self.reduction, impl=self.impl)

"""The reference SupCon loss's semantics, computed densely: the comparator of tests and benchmarks.

Khosla et al. 2020 (Supervised Contrastive Learning, Eq. 2, L^sup_out) as its reference implementation
(SupContrast, ``losses.py``) computes it: features ``(bsz, n_views, ...)`` stacked view-major (row
``v * bsz + i`` is view v of sample i), one ``n_anchor x n_contrast`` logit matrix, a positive mask, the
mean of the log-probabilities over each anchor's positives, scaled by ``temperature / base_temperature``,
then the mean over every anchor. Written here from that description, as one dense computation with the
same memory behaviour (several n x n matrices), so that the library's losses
(:func:`nctheory.losses.supcon_mean`, the tiled kernels, :class:`nctheory.losses.SupConLoss`) and its
benchmarks have one independent comparator. It is not a training loss of the library: the catalogue's
losses are.

Two conventions are switches, because the reference changed between versions:

- ``guard=True`` (the later reference): an anchor without positives divides by 1 instead of 0, so it
  contributes 0 and still counts in the mean over anchors. ``guard=False``: 0 / 0 = NaN, as the file
  was stored (SupContrast issues #50 and #141 report it).
- ``log_eps``: the stored file adds 1e-9 inside the log of the (max-shifted) denominator; 0 is the
  exact loss.
"""
from __future__ import annotations

import torch


def supcon_dense(features: torch.Tensor, labels: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                 temperature: float = 0.07, base_temperature: float = 0.07, contrast_mode: str = "all",
                 guard: bool = True, log_eps: float = 0.0) -> torch.Tensor:
    """Mean-form SupCon of ``features`` (bsz, n_views, ...) flattened after dim 2. ``labels`` (bsz,) or a
    ``mask`` (bsz, bsz) with mask[i, j] = 1 when j is a positive of i (not both); neither: SimCLR (a sample's
    other views are its positives). ``contrast_mode="one"``: only view 0 anchors; "all": every view."""
    if labels is not None and mask is not None:
        raise ValueError("give labels or mask, not both")
    if contrast_mode not in ("all", "one"):
        raise ValueError(f"contrast_mode must be 'all' or 'one', got {contrast_mode!r}")
    bsz, n_views = features.shape[0], features.shape[1]
    rows = features.reshape(bsz, n_views, -1).transpose(0, 1).reshape(n_views * bsz, -1)
    if mask is not None:
        same = mask.to(features.dtype)
    elif labels is not None:
        lab = labels.reshape(-1)
        same = (lab[:, None] == lab[None, :]).to(features.dtype)
    else:
        same = torch.eye(bsz, dtype=features.dtype, device=features.device)
    anchors = rows[:bsz] if contrast_mode == "one" else rows
    n_anchor = anchors.shape[0]
    logits = anchors @ rows.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()  # the reference's shift
    others = torch.ones_like(logits)
    others[torch.arange(n_anchor), torch.arange(n_anchor)] = 0.0  # anchor a is row a of the contrast set
    positive = same.repeat(n_anchor // bsz, n_views) * others
    log_denominator = torch.log((torch.exp(logits) * others).sum(dim=1) + log_eps)
    n_positive = positive.sum(dim=1)
    if guard:
        n_positive = torch.where(n_positive < 1e-6, torch.ones_like(n_positive), n_positive)
    # sum over positives of (logit - log denominator), divided by their number
    mean_log_prob = ((positive * logits).sum(dim=1) - positive.sum(dim=1) * log_denominator) / n_positive
    return -(temperature / base_temperature) * mean_log_prob.mean()

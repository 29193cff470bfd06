"""Supervised contrastive loss (SCL), defined once.

Sum form (Kini et al. 2023, Eq. 1/2/4; Gill et al. 2023, Eq. 1), for a batch B with temperature tau:

    L_B(H) = sum_{i in B} 1/(n_{B,y_i} - 1) sum_{j in B, j != i, y_j = y_i}
                 log( sum_{l in B, l != i} exp((h_i.h_l - h_i.h_j)/tau) )

which equals  sum_{i in B} [ LSE_{l != i}(h_i.h_l/tau) - mean_{j in P(i)} h_i.h_j/tau ]  over anchors
with a non-empty positive set P(i) = {j in B: j != i, y_j = y_i}.

Convention for anchors without a positive (the class appears once in the batch): the anchor
contributes 0 (the empty sum times 1/(n_{B,y}-1) = 1/0 is taken as 0); it is still a negative (a
term in the denominator) of every other anchor of the batch. Every SCL-type loss here follows it.

The features are used as given: the papers assume unit rows (normalisation is part of the network);
nothing here renormalises.

Two implementations of each loss, one definition: the dense code below (every logit of a batch as one
matrix; the reference) and the tiled exact kernel of :mod:`nctheory.losses.tiled` (O(n d) memory,
custom autograd; tested equal to the dense code in value and gradient, tests/test_tiled.py and
tests/test_loss_catalogue.py). ``impl="auto"`` (the default) takes the tiled kernel for a batch of at
least :data:`TILED_MIN_ROWS` rows (contrast rows: the batch's samples, for SupCon its views) and the
dense code below it; ``impl="dense"`` / ``"tiled"`` force one. The tiled kernel is first-order only
(no double backward): force ``"dense"`` for Hessian-vector products at any size.

Precision: float32 at least (float16 / bfloat16 input is computed in float32, the loss returned in
float32) and never under autocast (:mod:`nctheory.losses._precision`).
"""

from __future__ import annotations

import math

import torch

from nctheory.errors import InputError
from nctheory.losses import tiled
from nctheory.losses._inputs import (as_batches, as_features, as_labels, check_impl, check_tau, prototype_inputs,
                                     use_tiled)
from nctheory.losses._precision import outside_autocast

NEG_INF = float("-inf")

#: ``impl="auto"`` takes the tiled kernel for a batch of at least this many (contrast) rows. Where it
#: comes from (benchmarks/RESULTS-loss.md, "Crossover"; 2-core shared CPU, float32, d = 128, SupCon
#: forward + backward, round-robin fresh processes): at 512 rows the dense code was the faster one; at
#: 1024 the two took the same time; at 2048 the same or less for the tiled kernel (tile 512: 0.40 s
#: both, best of 2 rounds) with 1/4.5 of the memory (43 MB against 193 MB); at 4096 the tiled kernel
#: took 1/4 to 1/2 of the dense CPU time. Below 2048 the dense code (the reference) is kept: it is not
#: slower there and its n x n temporaries are small.
TILED_MIN_ROWS = 2048


def _anchor_terms(S: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-anchor SCL terms for one batch from its logit matrix S = Z Z^T / tau (0 for no-positive anchors)."""
    n = S.shape[0]
    if n < 2:  # a one-sample batch: no positives and no denominator; avoid logsumexp over nothing
        return S.diagonal() * 0.0  # zero, but still a function of z: .backward() works on one sample
    eye = torch.eye(n, dtype=torch.bool, device=S.device)
    lse = torch.logsumexp(S.masked_fill(eye, NEG_INF), dim=1)
    pos = (y[:, None] == y[None, :]) & ~eye
    npos = pos.sum(1)
    mean_pos = (S * pos).sum(1) / npos.clamp(min=1)
    return torch.where(npos > 0, lse - mean_pos, torch.zeros_like(lse))


@outside_autocast
def scl(z, y, tau: float = 1.0, *, impl: str = "auto") -> torch.Tensor:
    """Full-batch SCL in the papers' sum form (Kini et al. Eq. 2 with temperature tau).

    z: (n, d) features (unit rows in the papers), y: (n,) integer labels. Anchors whose class has a
    single sample contribute 0 (see module docstring). Returns a 0-dim tensor. impl: "auto" (tiled
    for n >= TILED_MIN_ROWS), "dense" or "tiled" (module docstring).
    """
    z = as_features(z)
    y = as_labels(y, z.shape[0], z.device)
    tau = check_tau(tau)
    impl = check_impl(impl)
    if z.shape[0] == 0:
        raise InputError("scl needs at least one sample")
    if use_tiled(impl, z.shape[0], TILED_MIN_ROWS):
        inv, counts = tiled._compact_labels(y)
        return tiled._scl_core(z, inv, counts, tau, tiled.DEFAULT_TILE)
    return _anchor_terms(z @ z.T / tau, y).sum()


@outside_autocast
def scl_batches(z, y, batches, tau: float = 1.0, multiset: bool = False, *, impl: str = "auto") -> torch.Tensor:
    """Mini-batch SCL (Kini et al. Eq. 4): sum over the batches B of the batch loss L_B.

    batches: iterable of index lists (indices in [0, n); a sample may appear in several batches).
    Within a batch the indices are distinct unless ``multiset=True``: then a batch is a multiset
    (a sampler with replacement) and every occurrence of a sample is a *copy* with the same feature.
    Eq. 4 is then read over the batch's positions p (|B| counts copies): anchor p's positives are the
    other positions of its class, including the other copies of its own sample (similarity
    h_i.h_i, 1 for unit rows), and its denominator runs over every other position, copies included.
    That is exactly L_B on the expanded batch whose rows are the copies, constrained equal (tested);
    the bound and the uniqueness condition for such batches are derived in
    :mod:`nctheory.batching.interaction` (section 4). Same no-positive convention as :func:`scl`.
    impl: per batch, "auto" (tiled for a batch of |B| >= TILED_MIN_ROWS positions), "dense" or "tiled".
    """
    z = as_features(z)
    y = as_labels(y, z.shape[0], z.device)
    tau = check_tau(tau)
    impl = check_impl(impl)
    total = z.new_zeros(())
    for b in as_batches(batches, z.shape[0], multiset=multiset):
        b = b.to(z.device)
        zb = z[b]
        if use_tiled(impl, b.numel(), TILED_MIN_ROWS):
            inv, counts = tiled._compact_labels(y[b])
            total = total + tiled._scl_core(zb, inv, counts, tau, tiled.DEFAULT_TILE)
        else:
            total = total + _anchor_terms(zb @ zb.T / tau, y[b]).sum()
    return total


@outside_autocast
def supcon_mean(features, labels, tau: float = 0.07, base_tau: float = 0.07, *, impl: str = "auto") -> torch.Tensor:
    """The mean form of the reference SupCon implementation (Khosla et al., contrast_mode "all").

    features: (bsz, n_views, d), labels: (bsz,). The views are stacked view-major (all first views,
    then all second views, ...), every view is an anchor, and

        supcon_mean = (tau / base_tau) * scl(stacked, labels repeated, tau) / (n_views * bsz)

    i.e. the reference divides by *all* anchors, including anchors without a positive, which
    contribute 0 (the reference's current behaviour; its early versions returned NaN there).
    impl: "auto" (tiled for n_views * bsz >= TILED_MIN_ROWS), "dense" or "tiled"; for masks, SimCLR,
    contrast_mode "one" and the other reductions see :func:`nctheory.losses.supcon`.
    """
    f = features if isinstance(features, torch.Tensor) else torch.as_tensor(features, dtype=torch.float64)
    if f.ndim != 3:
        raise InputError(f"features must be (batch, views, dim), got shape {tuple(f.shape)}")
    bsz, views, _ = f.shape
    stacked = torch.cat(torch.unbind(f, dim=1), dim=0)
    y = as_labels(labels, bsz, stacked.device, name="labels").repeat(views)
    tau, base_tau = check_tau(tau), check_tau(base_tau, "base_tau")
    return (tau / base_tau) * scl(stacked, y, tau, impl=impl) / (views * bsz)


@outside_autocast
def scl_with_prototypes(z, y, W, n_w: int, tau: float = 1.0, batches=None, *, impl: str = "auto") -> torch.Tensor:
    """SCL on batches augmented with n_w copies of each fixed prototype (Gill et al. 2023, §2 and Eq. 1).

    Each batch B becomes B ∪ W_rep with W_rep = n_w copies of {w_1, ..., w_k} (class c for w_c), and
    the sum-form SCL is taken over the augmented batch: every member is an anchor, the n_w copies of
    a prototype included (Gill et al. App. A.1 writes these as L_p). It is computed with
    multiplicities, never by concatenation: the logits needed are the n_B^2 sample pairs, the
    n_B k sample-prototype pairs and the k^2 prototype pairs, for any n_w; identical prototype
    anchors are counted n_w times, and a prototype's copies enter a denominator as log(n_w) offsets.

    Anchor counts: a sample i of class c has n_{B,c} - 1 + n_w positives; a copy of w_c has
    n_{B,c} + n_w - 1. Anchors with no positive contribute 0 (module convention), e.g. a copy of w_c
    when n_w = 1 and class c is absent from B. With n_w = 0 this is exactly :func:`scl_batches`.

    z: (n, d), y: (n,) labels in [0, k), W: (k, d) prototypes (rows; unit norm in the paper),
    batches: None for the full batch. W is a constant (no gradient flows into it). impl: per batch,
    "auto" (tiled for a batch of n_B >= TILED_MIN_ROWS samples), "dense" or "tiled".
    """
    z, y, W, n_w, tau = prototype_inputs(z, y, W, n_w, tau)
    impl = check_impl(impl)
    total = z.new_zeros(())
    Q = W @ W.T / tau  # prototype-prototype logits
    for b in as_batches(batches, z.shape[0]):
        b = b.to(z.device)
        zb, yb = z[b], y[b]
        batch = tiled._prototype_batch_tiled if use_tiled(impl, b.numel(), TILED_MIN_ROWS) else _prototype_batch
        total = total + batch(zb, yb, W, Q, n_w, tau)
    return total


def _prototype_batch(zb, yb, W, Q, n_w: int, tau: float) -> torch.Tensor:
    n, k = zb.shape[0], W.shape[0]
    S = zb @ zb.T / tau
    if n_w == 0:
        return _anchor_terms(S, yb).sum()
    P = zb @ W.T / tau  # (n, k) sample-prototype logits
    log_nw = math.log(n_w)
    rows = torch.arange(n, device=zb.device)
    eye = torch.eye(n, dtype=torch.bool, device=zb.device)

    # sample anchors: denominator = other samples + n_w copies of every prototype
    # two log-sum-exps joined by logaddexp: no (n, n + k) concatenated copy of the logits
    lse_s = torch.logaddexp(torch.logsumexp(S.masked_fill(eye, NEG_INF), dim=1),
                            torch.logsumexp(P, dim=1) + log_nw)
    same = (yb[:, None] == yb[None, :]) & ~eye
    cnt_s = same.sum(1) + n_w
    pos_s = (S * same).sum(1) + n_w * P[rows, yb]
    sample_part = (lse_s - pos_s / cnt_s).sum()  # cnt_s >= n_w >= 1

    # prototype anchors (class c, n_w identical copies): denominator = all samples + the other copies
    eye_k = torch.eye(k, dtype=torch.bool, device=zb.device)
    mult = torch.full((k, k), float(n_w), dtype=zb.dtype, device=zb.device) - eye_k.to(zb.dtype)
    log_mult = torch.where(mult > 0, mult.clamp(min=1).log(), torch.full_like(mult, NEG_INF))
    lse_p = torch.logsumexp(torch.cat([P.T, Q + log_mult], dim=1), dim=1)
    onehot = torch.nn.functional.one_hot(yb, k).to(zb.dtype)  # (n, k)
    n_c = onehot.sum(0)
    cnt_p = n_c + (n_w - 1)
    pos_p = (onehot * P).sum(0) + (n_w - 1) * torch.diagonal(Q)
    proto_terms = torch.where(cnt_p > 0, lse_p - pos_p / cnt_p.clamp(min=1), torch.zeros_like(lse_p))
    return sample_part + n_w * proto_terms.sum()

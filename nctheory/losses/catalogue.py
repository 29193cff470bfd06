"""The loss catalogue: one entry per loss of the three papers, which the trainer and `measure` read
instead of their own name lists and dispatch (issue 11: `solve` and the claims are to read it too).

    from nctheory.losses.catalogue import LOSSES, LossSpec, get_loss
    spec = get_loss("scl-prototypes")          # '-' may replace '_'; unknown name: InputError
    spec(z, y, W=W, tau=0.1, n_w=10)           # the torch loss (0-dim tensor), sum form by default
    spec.gram_form(y, k=3, tau=0.1, n_w=10)    # the same loss as an LSEForm of the joint Gram matrix

An entry *refers* to the one torch definition of its loss (:mod:`nctheory.losses.scl`,
:mod:`~nctheory.losses.classifier`, :mod:`~nctheory.losses.prototype_limit`) and to its Gram builder in
:mod:`nctheory.losses.gram`; nothing here computes a loss. tests/test_loss_catalogue.py checks every
entry against a loop transcription of its paper formula, its Gram form and its numpy form.

The uniform call ``spec(z, y, *, W=None, b=None, tau=1.0, n_w=0, k=None, batches=None, reduction="sum",
multiset=False, impl="auto")``
- z (n, d) features, one row per sample (numpy: float64; torch: its dtype and device, float16 / bfloat16
  computed in float32), y (n,) labels;
- W (k, d): the fixed prototypes / classifier (``classifier`` "fixed" or "learned"; refused for "none"),
  b (k,): CE's bias (ce only); tau: the temperature (refused != 1 for ce, which has none);
  n_w: prototype copies (scl_prototypes only; refused != 0 elsewhere); k: number of classes (checked
  against W, passed to L_proto); batches: a mini-batch plan (only where ``batches`` is True; None = one
  batch of all n samples);
  A keyword the loss does not take must keep its default (else InputError): pass n_w only where
  ``takes_n_w``, tau only where ``takes_tau``, batches only where ``batches``;
- reduction "sum": the papers' sum form (Kini Eq. 2/4, Gill Eq. 1; for the CE family Koromilas' mean
  times the number of anchors); "mean": that sum divided by the number of anchors of all the batches,
  sum_B ``anchors(n_B, k, n_w)`` (the mean form: what the reference SupCon code and the trainer optimise,
  and Koromilas' own averaging for the CE family);
- impl "auto" | "dense" | "tiled" (``tiled`` entries: the SCL family, whose batches couple every pair of
  rows): "auto" takes the tiled exact kernel (nctheory.losses.tiled, O(n d) memory) for a batch of at
  least ``nctheory.losses.scl.TILED_MIN_ROWS`` rows, the dense definition below that; the other entries
  have one implementation (O(n k) or O(n d)) and refuse "tiled".

``supcon_mean`` (the reference SupCon implementation, Khosla et al., contrast_mode "all") enters the
uniform call with z holding every view as a row (the reference stacks views view-major; the loss does
not depend on the order of the rows) and y their labels, and with base_tau = tau: the reference's
factor tau/base_tau rescales the objective, which the trainer applies to every loss
(``TrainConfig.base_tau``); it is not part of the loss. Its mean form is the reference's value.

Anchors without a positive contribute 0 and stay negatives (DEVELOPERS.md); each torch function's
docstring states its formula, equation number and conventions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from nctheory.errors import InputError
from nctheory.losses import gram
from nctheory.losses.classifier import ce, ce_fixed_classifier, nonl, normface, ntce, proto_loss
from nctheory.losses.prototype_limit import limit_loss, paper_limit_loss
from nctheory.losses.scl import scl, scl_batches, scl_with_prototypes, supcon_mean
from nctheory.losses._inputs import as_batches, as_features, as_labels, check_impl, check_tau

CLASSIFIERS = ("none", "fixed", "learned")
REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True)
class LossSpec:
    """One loss: its name, what it takes, its torch definition and its Gram form.

    name: snake_case; classifier: "none" | "fixed" (a constant W, no gradient) | "learned" (W trained with
    the features); unit_rows: the loss normalises rows itself and refuses a zero row; batches: accepts a
    mini-batch plan; has_gram: has a Gram/LSE form in nctheory.losses.gram; takes_tau / takes_n_w /
    takes_bias: uses a temperature / prototype copies / a classifier bias b (ce); native_reduction: the
    reduction of the paper's definition, which ``gram_form`` returns by default ("sum" for the SCL family and Gill's limits, "mean" for Koromilas'
    losses, CE and the reference SupCon); multiset: batches may repeat a sample (samplers with replacement;
    ``multiset=True`` in the call and the Gram form, see nctheory.losses.scl_batches); tiled: has the tiled
    exact kernel besides its dense definition (``impl`` in the call); trains: offered by ``nctheory train`` (False for supcon_mean,
    which is the trainer's own ``scl`` objective in the reference's convention: ``scl`` with
    ``base_tau``); source: where the formula is; summary: one line for help texts.
    """

    name: str
    classifier: str
    source: str
    summary: str
    torch_sum: Callable = dataclasses.field(repr=False)  # (z, y, W, b, tau, n_w, k, batches) -> the sum form
    native_reduction: str = "sum"
    unit_rows: bool = False
    batches: bool = False
    takes_tau: bool = True
    takes_n_w: bool = False
    takes_bias: bool = False
    multiset: bool = False             # its batches may repeat a sample (a copy with the same feature)
    tiled: bool = False                # offers impl="tiled" (nctheory.losses.tiled) beside the dense code
    trains: bool = True
    # (y, k, tau, n_w, batches) -> LSEForm in the reduction gram_reduction (default: native_reduction)
    gram_builder: Callable | None = dataclasses.field(default=None, repr=False)
    gram_reduction: str | None = None

    def __post_init__(self):
        if self.classifier not in CLASSIFIERS or self.native_reduction not in REDUCTIONS:
            raise ValueError(f"catalogue entry {self.name}: bad classifier or native_reduction")

    @property
    def has_gram(self) -> bool:
        return self.gram_builder is not None

    # ---------------------------------------------------------------------------------- the loss
    def __call__(self, z, y, *, W=None, b=None, tau: float = 1.0, n_w: int = 0, k: int | None = None,
                 batches=None, reduction: str = "sum", multiset: bool = False, impl: str = "auto") -> torch.Tensor:
        """The loss of features z (n, d) with labels y (module docstring: the uniform call), 0-dim tensor.

        Inputs are checked first (:mod:`nctheory.losses._inputs`): z and W real (complex, bool and
        strings refused) with at least one row, y labels, tau a real number > 0 (a string or a bool is
        refused). Half-precision z / W compute in float32 and the loss is float32
        (:mod:`nctheory.losses._precision`), for every entry, the SCL family included. impl: "auto",
        "dense" or "tiled" (only entries with ``tiled``; module docstring)."""
        tau = check_tau(tau)
        z = as_features(z, min_rows=1)
        y = as_labels(y, z.shape[0], z.device)
        if W is not None:
            W = as_features(W, "W", min_rows=1)
        self._check_params(tau, n_w, k, batches, reduction, multiset)
        self._check_classifier(W, b, k)
        impl = check_impl(impl)
        if impl == "tiled" and not self.tiled:
            raise InputError(f"loss {self.name} has no tiled implementation (impl='tiled'); only "
                             f"{', '.join(n for n, s in LOSSES.items() if s.tiled)} do")
        extra = {**self._multiset_kw(multiset), **({"impl": impl} if self.tiled else {})}
        value = self.torch_sum(z, y, W, b, tau, n_w, k, batches, **extra)
        if reduction == "sum":
            return value
        return value / self._total_anchors(len(y), len(W) if W is not None else k, n_w, batches, multiset)

    def anchors(self, n: int, k: int | None = None, n_w: int = 0) -> int:
        """Anchors of one batch of n samples (the mean form divides by it): every sample, and for
        scl_prototypes also the n_w copies of each of the k prototypes (Gill et al. App. A.1)."""
        if self.takes_n_w and n_w:
            if k is None:
                raise InputError(f"{self.name}: the anchor count with n_w > 0 needs k")
            return int(n) + int(k) * int(n_w)
        return int(n)

    def gram_form(self, y, *, k: int | None = None, tau: float = 1.0, n_w: int = 0, batches=None,
                  reduction: str | None = None, multiset: bool = False) -> gram.LSEForm:
        """This loss as an :class:`~nctheory.losses.gram.LSEForm` of the joint Gram matrix (samples first,
        then the k prototype / classifier rows: index n + c is row c of W; samples only for the losses
        without W), in ``native_reduction`` unless ``reduction`` is given. For unit_rows losses it is the
        Gram matrix of the normalised rows; for ce, CE without bias. InputError if has_gram is False."""
        if not self.has_gram:
            raise InputError(f"loss {self.name} has no Gram (log-sum-exp) form in nctheory.losses.gram")
        reduction = reduction or self.native_reduction
        self._check_params(tau, n_w, k, batches, reduction, multiset)
        if self.classifier != "none" and k is None:
            raise InputError(f"loss {self.name}: the Gram form needs k, the number of classifier / prototype rows")
        form = self.gram_builder(y, k, tau, n_w, batches, **self._multiset_kw(multiset))
        built = self.gram_reduction or self.native_reduction
        if reduction == built:
            return form
        anchors = self._total_anchors(len(y), k, n_w, batches, multiset)
        s = 1.0 / anchors if reduction == "mean" else float(anchors)
        return dataclasses.replace(form, weight=form.weight * s, C=form.C * s, const=form.const * s,
                                   description=f"{form.description} ({reduction} form)")

    # ---------------------------------------------------------------------------------- checks
    def _total_anchors(self, n: int, k, n_w: int, batches, multiset: bool = False) -> int:
        sizes = [n] if batches is None else [b.numel() for b in as_batches(batches, n, multiset=multiset)]
        return sum(self.anchors(s, k, n_w) for s in sizes)

    @staticmethod
    def _multiset_kw(multiset: bool) -> dict:
        return {"multiset": True} if multiset else {}

    def _check_params(self, tau, n_w, k, batches, reduction, multiset: bool = False) -> None:
        if multiset and not self.multiset:
            raise InputError(f"loss {self.name} takes no batches with repeated samples (multiset); "
                             f"only {', '.join(n for n, s in LOSSES.items() if s.multiset)} do")
        if reduction not in REDUCTIONS:
            raise InputError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if not self.takes_tau and tau != 1.0:
            raise InputError(f"loss {self.name} has no temperature (got tau={tau!r})")
        if not self.takes_n_w and n_w != 0:
            raise InputError(f"loss {self.name} takes no prototype copies (got n_w={n_w!r}); use scl_prototypes")
        if batches is not None and not self.batches:
            raise InputError(f"loss {self.name} takes no mini-batch plan (batches): it is one batch's loss")
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise InputError(f"k must be a positive integer, got {k!r}")

    def _check_classifier(self, W, b, k) -> None:
        if self.classifier == "none" and W is not None:
            raise InputError(f"loss {self.name} takes no classifier / prototypes W")
        if self.classifier != "none" and W is None:
            raise InputError(f"loss {self.name} needs W, the {self.classifier} (k, d) classifier / prototypes")
        if b is not None and not self.takes_bias:
            raise InputError(f"loss {self.name} takes no bias (only ce does)")
        if W is not None and k is not None and len(W) != k:
            raise InputError(f"W has {len(W)} rows but k = {k}")


# ------------------------------------------------------------------------------------------ adapters
# Each adapter calls the one torch definition in its sum form; LossSpec has checked what it may take.
def _check_labels(y, k):
    """Labels checked against k where the loss itself does not take k (a label >= k is an InputError)."""
    if k is not None:
        as_labels(y, len(y), y.device if isinstance(y, torch.Tensor) else "cpu", k=k)
    return y


def _scl(z, y, W, b, tau, n_w, k, batches, multiset=False, impl="auto"):
    y = _check_labels(y, k)
    if batches is None:
        return scl(z, y, tau, impl=impl)
    return scl_batches(z, y, batches, tau, multiset=multiset, impl=impl)


def _supcon_mean(z, y, W, b, tau, n_w, k, batches, impl="auto"):
    z = as_features(z)
    y = _check_labels(y, k)
    return supcon_mean(z[:, None, :], y, tau, base_tau=tau, impl=impl) * z.shape[0]


def _scl_prototypes(z, y, W, b, tau, n_w, k, batches, impl="auto"):
    return scl_with_prototypes(z, y, W, n_w, tau, batches, impl=impl)


def _limit(z, y, W, b, tau, n_w, k, batches):
    return limit_loss(z, y, W, tau, batches)


def _paper_limit(z, y, W, b, tau, n_w, k, batches):
    return paper_limit_loss(z, y, W, tau, batches)


def _ce(z, y, W, b, tau, n_w, k, batches):
    return ce(z, y, W, b, reduction="sum")


def _ce_fixed(z, y, W, b, tau, n_w, k, batches):
    return ce_fixed_classifier(z, y, W, tau, reduction="sum")


def _normalised(fn):
    """NormFace / NTCE / NONL: (z, y, W, tau) in the sum form."""
    def call(z, y, W, b, tau, n_w, k, batches):
        return fn(z, y, W, tau, reduction="sum")
    return call


def _proto(z, y, W, b, tau, n_w, k, batches):
    return proto_loss(z, y, tau, k=k, reduction="sum")


def _labels_np(y, k):
    """Labels for a Gram builder, checked against k when it is given."""
    return as_labels(y, len(y), "cpu", k=k).numpy()


def _gram_scl(y, k, tau, n_w, batches, multiset=False):
    return gram.scl_form(_labels_np(y, k), tau, batches, multiset=multiset)


def _gram_ce(y, k, tau, n_w, batches):
    """CE (no temperature, without bias) as a function of the joint Gram of [Z; W]: NormFace's form at tau = 1
    (the two differ only in normalising the rows, i.e. in the constraint diag(G) = 1)."""
    return gram.normface_form(_labels_np(y, k), k, 1.0)


def _gram_with_k(builder):
    """A Koromilas-type builder (y, k, tau)."""
    def build(y, k, tau, n_w, batches):
        return builder(_labels_np(y, k), k, tau)
    return build


_ENTRIES = [
    LossSpec("scl", "none", "Kini et al. 2023 Eq. 2 (full batch) / Eq. 4 (mini-batches)",
             "supervised contrastive loss, the papers' sum form", _scl, batches=True, multiset=True, tiled=True,
             gram_builder=_gram_scl),
    LossSpec("scl_prototypes", "fixed",
             "Gill et al. 2023 §2 and Eq. 1 on the batch augmented with n_w copies of each prototype",
             "SCL with n_w copies of each fixed prototype in every batch, every member an anchor",
             _scl_prototypes, batches=True, takes_n_w=True, tiled=True,
             gram_builder=lambda y, k, tau, n_w, batches: gram.scl_with_prototypes_form(
                 _labels_np(y, k), k, n_w, tau, batches)),
    # no Gram form: the repulsion term sum_c r_c exp(p_c/tau) is not a log-sum-exp; the numpy / cvxpy views
    # are nctheory.losses.prototype_limit.PerSampleLimit
    LossSpec("scl_prototypes_limit", "fixed",
             "Gill et al. 2023 Prop. 1, the n_w -> oo limit as derived in nctheory.symbolic.prototypes",
             "the n_w -> oo limit of scl_prototypes: CE(W h/tau) - w_y.h/tau + sum_c exp(w_c.h/tau)/Z_c",
             _limit, batches=True),
    LossSpec("gill_prop1", "fixed", "Gill et al. 2023 Prop. 1 as printed",
             "Prop. 1 as printed: CE(W h/tau) - w_y.h/tau per sample", _paper_limit, batches=True),
    LossSpec("ce", "learned", "Koromilas et al. 2026 Eq. 1",
             "cross-entropy with a learned classifier and bias, no temperature", _ce, native_reduction="mean",
             takes_tau=False, takes_bias=True, gram_builder=_gram_ce),
    LossSpec("ce_fixed", "fixed", "Gill et al. 2023 Remark 1; Yang et al. 2022",
             "CE with the fixed classifier W/tau", _ce_fixed, native_reduction="mean",
             gram_builder=_gram_with_k(gram.ce_fixed_classifier_form)),
    LossSpec("normface", "learned", "Koromilas et al. 2026 Eq. 3 = Eq. 7",
             "NormFace: normalised features and classifier", _normalised(normface),
             native_reduction="mean", unit_rows=True, gram_builder=_gram_with_k(gram.normface_form)),
    LossSpec("ntce", "learned", "Koromilas et al. 2026 Eq. 4 = Eq. 8",
             "NTCE: the class prototype as anchor, all instances in the denominator", _normalised(ntce),
             native_reduction="mean", unit_rows=True, gram_builder=_gram_with_k(gram.ntce_form)),
    LossSpec("nonl", "learned", "Koromilas et al. 2026 Eq. 9",
             "NONL: the class prototype as anchor, other-class instances only", _normalised(nonl),
             native_reduction="mean", unit_rows=True, gram_builder=_gram_with_k(gram.nonl_form)),
    LossSpec("proto", "none", "Koromilas et al. 2026 Eq. 6",
             "L_proto: the batch's class means as prototypes", _proto, native_reduction="mean",
             gram_builder=lambda y, k, tau, n_w, batches: gram.proto_loss_form(_labels_np(y, k), tau)),
    LossSpec("supcon_mean", "none", "Khosla et al. 2020, the reference SupCon code (contrast_mode 'all')",
             "the reference SupCon mean form: SCL divided by all anchors (base_tau = tau)", _supcon_mean,
             native_reduction="mean", trains=False, tiled=True, gram_builder=_gram_scl, gram_reduction="sum"),
]

LOSSES: dict[str, LossSpec] = {s.name: s for s in _ENTRIES}


def get_loss(name: str) -> LossSpec:
    """The catalogue entry of ``name`` ('-' may replace '_'); InputError naming the valid names otherwise."""
    key = str(name).strip().replace("-", "_")
    if key not in LOSSES:
        raise InputError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)} ('-' may replace '_')")
    return LOSSES[key]

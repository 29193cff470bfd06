"""Every loss of the three papers, defined once in torch (exact in float64 on CPU, usable on GPU).

Conventions (each function's docstring repeats the part that concerns it):
- features (n, d), one row per sample; prototypes / classifiers (k, d), one row per class;
  labels integers in [0, k). numpy input is computed in float64; torch input in its own dtype, except
  that float16 / bfloat16 input (e.g. under autocast) is computed in float32 and the loss is returned in
  float32 (nctheory.losses._precision: a float16 logit overflows above 65504).
- SCL-type losses use the papers' *sum* form (Kini et al. Eq. 2/4, Gill et al. Eq. 1) with
  temperature tau; CE-type losses (Koromilas et al.) average over the anchors.
- An anchor without a positive in its batch contributes 0 and remains a negative for the others.
- ``nctheory.losses.gram`` gives each loss as a function of the Gram matrix (tested equal).
- SCL-type losses (scl, scl_batches, supcon_mean, scl_with_prototypes, supcon / SupConLoss) take
  ``impl="auto" | "dense" | "tiled"``: "auto" uses the tiled exact kernel (nctheory.losses.tiled, O(n d)
  memory) for batches of at least ``nctheory.losses.scl.TILED_MIN_ROWS`` rows and the dense reference
  code below that size.
- ``SupConLoss`` (nn.Module) takes the reference SupContrast call and the pytorch-metric-learning call
  (nctheory.losses.supcon).
"""

from nctheory.losses.classifier import ce, ce_fixed_classifier, nonl, normface, ntce, proto_loss
from nctheory.losses.scl import scl, scl_batches, scl_with_prototypes, supcon_mean
from nctheory.losses.supcon import SupConLoss, supcon

__all__ = [
    "scl",
    "scl_batches",
    "supcon_mean",
    "supcon",
    "SupConLoss",
    "scl_with_prototypes",
    "ce",
    "ce_fixed_classifier",
    "normface",
    "ntce",
    "nonl",
    "proto_loss",
]

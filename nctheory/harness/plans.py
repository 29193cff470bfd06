"""Per-epoch batch plans for the training loop, from :mod:`nctheory.batching` (one definition).

The loop asks :class:`nctheory.batching.PlanBatchSampler` (the torch BatchSampler that users plug
into a DataLoader) for epoch e's batches: 1-D index arrays into the training set, the *images* of
each batch (the loop applies view duplication afterwards; the sampler leaves views to the dataset).
The same batches go to :func:`nctheory.bounds.batch_bound`, so the bound the harness reports is Kini
et al.'s Thm 2 for exactly the batches trained on. Epoch e's batches are a deterministic function of
(labels, scheme, batch size, seed, e), which is what makes a resumed run identical to an
uninterrupted one, and ``nctheory make-plan`` with the same arguments writes the same plan.
"""

from __future__ import annotations

import numpy as np
import torch

from nctheory.batching import SCHEMES, Plan, PlanBatchSampler, check_plan, duplicate_views  # noqa: F401  (SCHEMES re-exported for the config)
from nctheory.errors import InputError


def epoch_seed(seed: int, epoch: int) -> int:
    """A per-epoch seed for the augmentation generator (a fixed odd-multiplier hash, in [0, 2^31))."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 12345) % (2**31 - 1)


class EpochPlans:
    """Epoch -> list of LongTensor batches, from a PlanBatchSampler built once per run."""

    def __init__(self, labels, scheme: str, batch_size: int, seed: int = 0, bind: bool = False,
                 drop_last: bool = False):
        labels = np.asarray(labels, dtype=np.int64)
        self.sampler = PlanBatchSampler(labels, scheme=scheme, batch_size=batch_size if scheme != "full" else None,
                                        seed=seed, bind=bind, drop_last=drop_last)
        self.binding_examples = getattr(self.sampler, "binding_examples", None)

    def __call__(self, epoch: int) -> list[torch.Tensor]:
        return [torch.as_tensor(np.asarray(b, dtype=np.int64)) for b in self.sampler.batches(int(epoch))]


def plan_uniqueness(plans: EpochPlans, labels, views: int, epochs: int, dim: int | None) -> dict:
    """Is the OF the unique UFM+ optimum for the batches this run trained on? (Kini et al. Thm 2 /
    Cor. 2.1 as decided by :func:`nctheory.batching.check_plan`, with each batch's view duplication:
    image i's views are samples i, i + n, ...).

    Two plans are checked: the first epoch's batches alone (for a fixed partition, the plan of every
    epoch), and the union of all epochs' batches (Kini et al.'s formalisation of reshuffling, App. E.6:
    the loss summed over epochs, whose optimum is unique when the union's interaction graph meets the
    conditions). The answer is about the UFM+ optimum of that loss, the theory's prediction; a trained
    network is compared with it, not judged by it."""

    lab, per_epoch = duplicate_views(labels, [[b.numpy() for b in plans(e)] for e in range(epochs)], views)
    out = {"views": views, "dim": dim, "epochs": epochs}
    for key, plan in (("first_epoch", Plan.from_batches(lab, per_epoch[0])),
                      ("all_epochs", Plan.from_epochs(lab, per_epoch))):
        try:
            r = check_plan(plan, dim=dim, with_fix=False)
        except InputError as exc:  # e.g. d < k: no OF exists, nothing to decide
            out[key] = {"unique": None, "reason": str(exc)}
            continue
        out[key] = {"unique": r.unique, "reason": r.reason,
                    "disconnected_classes": [c["class"] for c in r.disconnected_classes],
                    "missing_class_pairs": len(r.missing_class_pairs),
                    "batches": plan.num_batches}
    return out

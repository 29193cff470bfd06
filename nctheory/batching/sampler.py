"""A torch BatchSampler that yields exactly the batches of :func:`nctheory.batching.epoch_batches`."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from nctheory.batching.plan import Plan
from nctheory.batching.schemes import (
    MULTISET_SCHEMES,
    _bind,
    _check,
    _positive_int,
    check_seed,
    choose_binding_examples,
    epoch_batches,
)


class PlanBatchSampler(Sampler):
    """The batches of a batching scheme (or of a stored plan), epoch by epoch, for a torch DataLoader.

        sampler = PlanBatchSampler(labels, scheme="fixed", batch_size=128, bind=True, seed=0, views=2)
        loader = DataLoader(dataset, batch_sampler=sampler)
        for epoch in range(E):
            sampler.set_epoch(epoch)   # as with DistributedSampler; without it, each pass advances one epoch
            for batch in loader: ...
        sampler.to_plan(E).save("plan.npz")   # the plan trained on, for `nctheory check-batches`

    Arguments: labels (n integer class ids of the dataset, in dataset order), and the scheme's options
    as in :func:`nctheory.batching.make_plan`: scheme (full, fixed, reshuffle, class_balanced, weighted),
    batch_size, seed (a non-negative integer), bind (Kini et al. Alg. 1: one binding example per class
    added to every batch), drop_last, m_per_class (class_balanced), views.

    Batches. Epoch e's batches are lists of *sample* indices, equal to
    ``make_plan(labels, scheme, batch_size, epochs=E, seed, bind, drop_last, views, m_per_class).epochs[e]``
    (tested), a deterministic function of (labels, options, e): a resumed run sees the batches an
    uninterrupted one would, and the plan checked with ``nctheory check-batches`` is the plan trained on.
    With scheme ``weighted`` batches repeat samples (drawn with replacement) and the plan is a multiset.

    views: how many views the dataset returns per sample (SupCon's two-crop transform: 2). Producing
    the views stays the dataset's job, so the sampler still yields sample indices; ``views`` is recorded
    in :meth:`to_plan`, whose batches then hold every view of their samples (``Plan.views``), so that
    ``check-batches`` and ``bound`` see the batches as the loss sees them. It does not change what
    the sampler yields.

    :meth:`from_plan` replays a stored plan's epochs cyclically (its views and multiset flag kept).
    """

    def __init__(self, labels=None, scheme: str = "reshuffle", batch_size: int | None = 256, seed: int = 0,
                 bind: bool = False, drop_last: bool = False, m_per_class: int = 2, views: int = 1, *,
                 plan: Plan | None = None):
        self.plan = plan
        self.epoch = 0
        self._explicit = False
        if plan is None:
            self.labels = _check(labels, scheme, batch_size, m_per_class, seed)
            self.scheme, self.batch_size, self.seed = scheme, batch_size, check_seed(seed)
            self.drop_last, self.m_per_class = bool(drop_last), int(m_per_class)
            self.views = _positive_int(views, "views")
            self.extra = None
            if bind:
                be = choose_binding_examples(self.labels, seed=self.seed)
                self.extra = np.asarray(sorted(set(be.values())), dtype=np.int64)
                self.binding_examples = be
        else:
            self.views = plan.views

    @classmethod
    def from_plan(cls, plan: Plan) -> "PlanBatchSampler":
        return cls(plan=plan)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._explicit = True

    def batches(self, epoch: int) -> list[np.ndarray]:
        if self.plan is not None:
            eps = self.plan.epochs
            return eps[epoch % len(eps)]
        bs = epoch_batches(self.labels, self.scheme, self.batch_size, epoch, self.seed, self.drop_last,
                           self.m_per_class)
        return _bind(bs, self.extra) if self.extra is not None else bs

    def to_plan(self, epochs: int = 1) -> Plan:
        """The :class:`Plan` of epochs 0..epochs-1 (with this sampler's views)."""
        epochs = _positive_int(epochs, "epochs")
        if self.plan is not None:
            p = self.plan
            return Plan.from_epochs(p.original_labels(), [self.batches(e) for e in range(epochs)], dict(p.meta),
                                    views=p.views, multiset=p.multiset)
        return Plan.from_epochs(self.labels, [self.batches(e) for e in range(epochs)],
                                {"name": f"PlanBatchSampler {self.scheme} b={self.batch_size} seed={self.seed}"},
                                views=self.views, multiset=self.scheme in MULTISET_SCHEMES)

    def __iter__(self):
        e = self.epoch
        if not self._explicit:
            self.epoch += 1  # each pass is the next epoch unless set_epoch is used
        self._explicit = False
        for b in self.batches(e):
            yield b.tolist()

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

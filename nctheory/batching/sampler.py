"""A torch BatchSampler that yields exactly the batches of :func:`nctheory.batching.epoch_batches`.

    sampler = PlanBatchSampler(labels, scheme="fixed", batch_size=128, bind=True, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    for epoch in range(E):
        sampler.set_epoch(epoch)      # as with DistributedSampler; without it, each pass advances one epoch
        for batch in loader: ...

Epoch e's batches equal ``make_plan(labels, scheme, batch_size, epochs=E, seed, bind, drop_last).epochs[e]``
(tested), so a plan checked with ``nctheory check-batches`` is the plan trained on. Two-view
duplication is the dataset's job in a DataLoader (it returns both views of a sample), so the sampler
has no ``views`` option; ``PlanBatchSampler.from_plan`` replays a stored plan's epochs (cyclically).
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from nctheory.batching.plan import Plan
from nctheory.batching.schemes import _bind, _check, choose_binding_examples, epoch_batches


class PlanBatchSampler(Sampler):
    def __init__(self, labels=None, scheme: str = "reshuffle", batch_size: int | None = 256, seed: int = 0,
                 bind: bool = False, drop_last: bool = False, m_per_class: int = 2, *, plan: Plan | None = None):
        self.plan = plan
        self.epoch = 0
        self._explicit = False
        if plan is None:
            self.labels = _check(labels, scheme, batch_size, m_per_class)
            self.scheme, self.batch_size, self.seed = scheme, batch_size, int(seed)
            self.drop_last, self.m_per_class = bool(drop_last), int(m_per_class)
            self.extra = None
            if bind:
                be = choose_binding_examples(self.labels, seed=self.seed)
                self.extra = np.asarray(sorted(set(be.values())), dtype=np.int64)
                self.binding_examples = be

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

    def __iter__(self):
        e = self.epoch
        if not self._explicit:
            self.epoch += 1  # each pass is the next epoch unless set_epoch is used
        self._explicit = False
        for b in self.batches(e):
            yield b.tolist()

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

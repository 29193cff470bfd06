"""Plans from the samplers people train with: record the batches of any torch sampler or DataLoader.

Two ways, one result (a :class:`~nctheory.batching.plan.Plan`, saved with ``plan.save(path)``):

``record_plan(loader_or_sampler, labels, epochs=E, views=V)``
    iterates the batches of E epochs *before* (or instead of) training, loading no data: a DataLoader's
    ``batch_sampler``, a BatchSampler (anything yielding lists of indices) or a sampler yielding single
    indices (RandomSampler, WeightedRandomSampler, a metric-learning m-per-class sampler, ...) grouped
    into batches of ``batch_size`` as a DataLoader would (``drop_last`` likewise). ``set_epoch(e)`` is
    called before epoch e where the sampler (or the loader's sampler) has it.
    Caveat: iterating a sampler consumes its randomness. A sampler whose order comes from a global or
    shared generator gives different batches when training iterates it again; record such a run with
    :class:`RecordingSampler`, which records the batches as training draws them.

``RecordingSampler(sampler_or_batch_sampler, batch_size=None)``
    a batch sampler to pass to ``DataLoader(dataset, batch_sampler=...)``: it yields the wrapped
    sampler's batches unchanged and records each pass (one pass = one epoch); ``.plan(labels)`` /
    ``.save(path, labels)`` at any time. Batches handed to the DataLoader are recorded, including ones
    prefetched by its workers but not yet consumed when a loop breaks early.

Batches that repeat a sample (a sampler drawing with replacement) give a *multiset* plan: each
occurrence is a copy of the sample with the same feature, which ``check-batches`` and ``bound``
handle with the multiplicity semantics (:mod:`nctheory.batching.interaction`, section 4). A plan is
also marked multiset when the sampler declares ``replacement=True``, even if no repeat was drawn.
``views``: the number of views the dataset returns per sample (a plan attribute; see plan.py).
"""

from __future__ import annotations

import numpy as np

from nctheory.batching.plan import MAX_INDEX_ENTRIES, Plan
from nctheory.batching.schemes import _positive_int
from nctheory.errors import InputError


def _labels(labels) -> np.ndarray:
    if labels is None:
        raise InputError("labels are needed: the class of every sample of the dataset, in dataset order")
    if hasattr(labels, "detach"):  # a torch tensor
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"labels must be a non-empty 1-D array of class ids, got shape {arr.shape}")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iu":
        raise InputError(f"labels must be integer class ids, got {arr.dtype}")
    return arr.astype(np.int64)


def _as_batch(item, what: str) -> np.ndarray:
    """A batch yielded by a batch sampler, as int64 indices."""
    if hasattr(item, "detach"):
        item = item.detach().cpu().numpy()
    arr = np.asarray(item)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise InputError(f"{what} yielded {type(item).__name__} {str(item)[:40]!r}, not a non-empty list of "
                         f"sample indices")
    return arr.astype(np.int64)


def _is_index(item) -> bool:
    if isinstance(item, bool):
        return False
    if isinstance(item, (int, np.integer)):
        return True
    return hasattr(item, "ndim") and item.ndim == 0 and str(getattr(item, "dtype", "")).find("int") >= 0


def _declares_replacement(*objs) -> bool:
    return any(bool(getattr(o, "replacement", False)) for o in objs if o is not None)


def _batches_of(source, batch_size, drop_last, what: str, limit: int):
    """Iterate one epoch of ``source`` as int64 batches (grouping single indices by batch_size)."""
    buf = []
    total = 0
    for item in source:
        if _is_index(item):
            if batch_size is None:
                raise InputError(f"{what} yields single sample indices: give batch_size (as the DataLoader "
                                 f"has) to group them into batches")
            buf.append(int(item))
            if len(buf) == batch_size:
                yield np.asarray(buf, dtype=np.int64)
                total += len(buf)
                buf = []
        else:
            b = _as_batch(item, what)
            total += b.size
            yield b
        if total > limit:
            raise InputError(f"{what} yielded more than {limit:.3g} batch entries (an infinite sampler?)")
    if buf and not drop_last:
        yield np.asarray(buf, dtype=np.int64)


def _source_of(obj):
    """(what to iterate, the objects that may carry set_epoch / replacement)."""
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(obj, DataLoader):
        if isinstance(obj.dataset, IterableDataset):
            raise InputError("a DataLoader over an IterableDataset has no sample indices to record")
        if obj.batch_sampler is None:
            raise InputError("this DataLoader does not batch (batch_size=None): it has no batches to record")
        bs = obj.batch_sampler
        return bs, [bs, getattr(bs, "sampler", None), obj.sampler]
    if not hasattr(obj, "__iter__"):
        raise InputError(f"cannot record batches from a {type(obj).__name__}: give a DataLoader, a batch "
                         f"sampler or a sampler")
    return obj, [obj, getattr(obj, "sampler", None)]


def _estimate(source, epochs: int, limit: int) -> None:
    """Refuse before iterating when len(source) says the plan is too big (a batch sampler's batch_size
    attribute gives its batch entries; a sampler's items are entries)."""
    try:
        per = len(source)
    except TypeError:
        return  # no length: the running count in _batches_of enforces the limit
    size = getattr(source, "batch_size", None)
    entries = epochs * per * (size if isinstance(size, int) and size > 0 else 1)
    if entries > limit:
        raise InputError(f"{epochs} epoch(s) of {per} items make about {entries:.3g} batch entries; "
                         f"the limit is {limit:.3g}")


def record_plan(loader_or_sampler, labels, epochs: int = 1, views: int = 1, batch_size: int | None = None,
                drop_last: bool = False, max_entries: int = MAX_INDEX_ENTRIES) -> Plan:
    """The :class:`Plan` of ``epochs`` epochs of a DataLoader's batches, a BatchSampler's, or a sampler's
    (single indices grouped by ``batch_size``, ``drop_last`` as a DataLoader), for a dataset whose sample
    i has class ``labels[i]``. No data is loaded. See the module docstring (randomness caveat)."""
    y = _labels(labels)
    epochs = _positive_int(epochs, "epochs")
    views = _positive_int(views, "views")
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
    source, carriers = _source_of(loader_or_sampler)
    what = type(loader_or_sampler).__name__
    _estimate(source, epochs, max_entries)
    eps, total, repeats = [], 0, False
    for e in range(epochs):
        for o in carriers:
            if o is not None and hasattr(o, "set_epoch"):
                o.set_epoch(e)
        ep = list(_batches_of(source, batch_size, drop_last, what, max_entries - total))
        if not ep:
            raise InputError(f"{what} yielded no batch in epoch {e}")
        total += sum(b.size for b in ep)
        repeats = repeats or any(np.unique(b).size < b.size for b in ep)
        eps.append(ep)
    _check_indices(eps, y.size)
    return Plan.from_epochs(y, eps, {"name": f"recorded from {what}, {epochs} epoch(s)"}, views=views,
                            multiset=repeats or _declares_replacement(*carriers))


def _check_indices(eps, n: int) -> None:
    hi = max(int(b.max()) for ep in eps for b in ep)
    lo = min(int(b.min()) for ep in eps for b in ep)
    if lo < 0 or hi >= n:
        raise InputError(f"the sampler yielded sample index {lo if lo < 0 else hi}, outside the {n} labels "
                         f"given (labels must cover the whole dataset)")


class RecordingSampler:
    """A batch sampler that yields ``source``'s batches and records them (module docstring).

        rec = RecordingSampler(WeightedRandomSampler(w, len(w)), batch_size=64)
        loader = DataLoader(dataset, batch_sampler=rec)
        for epoch in range(E):
            rec.set_epoch(epoch)           # forwarded to the wrapped sampler if it has set_epoch
            for x, y in loader: ...
        rec.save("plan.npz", labels)       # or rec.plan(labels)

    source: a BatchSampler (yields lists of indices) or a sampler (yields indices; then ``batch_size``
    and ``drop_last`` group them as a DataLoader would). labels and views may be given here or to
    :meth:`plan`. Recording stops (the batches still flow) beyond ``max_entries``; :meth:`plan` then
    refuses rather than return a truncated plan."""

    def __init__(self, source, batch_size: int | None = None, drop_last: bool = False, labels=None,
                 views: int = 1, max_entries: int = MAX_INDEX_ENTRIES):
        self.source = source
        self.batch_size = None if batch_size is None else _positive_int(batch_size, "batch_size")
        self.drop_last = bool(drop_last)
        self.labels = labels
        self.views = _positive_int(views, "views")
        self.max_entries = int(max_entries)
        self.epochs: list[list[np.ndarray]] = []
        self.recorded_entries = 0
        self.truncated = False
        self.repeats = False

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(epoch)

    def __iter__(self):
        ep: list[np.ndarray] = []
        self.epochs.append(ep)
        what = type(self.source).__name__
        for b in _batches_of(self.source, self.batch_size, self.drop_last, what, float("inf")):
            if not self.truncated:
                if self.recorded_entries + b.size > self.max_entries:
                    self.truncated = True
                else:
                    ep.append(b)
                    self.recorded_entries += b.size
                    self.repeats = self.repeats or np.unique(b).size < b.size
            yield b.tolist()

    def __len__(self) -> int:
        n = len(self.source)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def plan(self, labels=None, views: int | None = None) -> Plan:
        """The recorded epochs as a :class:`Plan` (epochs that yielded no batch are left out)."""
        if self.truncated:
            raise InputError(f"recording stopped after {self.recorded_entries} batch entries (max_entries = "
                             f"{self.max_entries}); the plan would be truncated")
        y = _labels(self.labels if labels is None else labels)
        eps = [ep for ep in self.epochs if ep]
        if not eps:
            raise InputError("nothing recorded yet: iterate the DataLoader first")
        _check_indices(eps, y.size)
        return Plan.from_epochs(y, eps, {"name": f"recorded by RecordingSampler({type(self.source).__name__}), "
                                                 f"{len(eps)} epoch(s)"},
                                views=self.views if views is None else _positive_int(views, "views"),
                                multiset=self.repeats or _declares_replacement(self.source,
                                                                                getattr(self.source, "sampler", None)))

    def save(self, path, labels=None, views: int | None = None):
        return self.plan(labels, views).save(path)

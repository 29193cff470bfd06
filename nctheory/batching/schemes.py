"""The batching schemes people run, and Kini et al.'s batch-binding (Alg. 1).

Every epoch's batches are a deterministic function of (labels, scheme, batch size, seed, epoch):
:func:`epoch_batches` is the one definition; :func:`make_plan` stacks epochs into a :class:`Plan`
and :class:`nctheory.batching.sampler.PlanBatchSampler` yields the same batches to a DataLoader.

Schemes
-------
``full``            one batch holding every sample, every epoch (full-batch SCL, Kini Eq. 2).
``fixed``           one random partition into batches of ``batch_size`` (drawn from ``seed``), reused
                    every epoch ("no batch-shuffling").
``reshuffle``       a fresh random permutation each epoch, cut into batches ("batch-shuffling",
                    Kini App. E.6).
``class_balanced``  each epoch every class is shuffled and cut into groups of ``m_per_class``
                    samples; each batch takes one group from each of ``batch_size // m_per_class``
                    distinct classes (those with most groups left first), so a class present in a
                    batch has m_per_class members (fewer only for a class's last group; the last
                    batches may hold fewer classes).
Options
-------
``drop_last``  drop each epoch's last batch when it is smaller than ``batch_size``.
``bind``       batch-binding (Kini Alg. 1): one example of every class (chosen once from ``seed``,
               or given as ``binding_examples``) is added to every batch (not twice if present).
``views``      two-view (or v-view) batch duplication: the plan has views * n samples, sample
               i's view v is index v * n + i with label y_i (view-major, as SupCon stacks them), and
               every batch holds all views of its samples. Applied after binding.
"""

from __future__ import annotations

import numpy as np

from nctheory.batching.plan import Plan, _int_array
from nctheory.errors import InputError

SCHEMES = ("full", "fixed", "reshuffle", "class_balanced")
_BIND_STREAM = 2**31 - 1


def _check(labels, scheme, batch_size, m_per_class=2):
    y = _int_array(labels, "labels")
    if y.size == 0 or y.min() < 0:
        raise InputError("labels must be a non-empty list of integers >= 0")
    if scheme not in SCHEMES:
        raise InputError(f"unknown batching scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if scheme != "full":
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(m_per_class, bool) or not isinstance(m_per_class, (int, np.integer)) or m_per_class < 1:
        raise InputError(f"m_per_class must be a positive integer, got {m_per_class!r}")
    return y


def epoch_batches(labels, scheme: str, batch_size: int | None, epoch: int, seed: int = 0,
                  drop_last: bool = False, m_per_class: int = 2) -> list[np.ndarray]:
    """The batches (int64 arrays of sample indices) of one epoch, before binding and views."""
    y = _check(labels, scheme, batch_size, m_per_class)
    n = y.size
    if scheme == "full":
        return [np.arange(n, dtype=np.int64)]
    if scheme == "fixed":
        order = np.random.default_rng([int(seed)]).permutation(n)
    elif scheme == "reshuffle":
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    else:
        return _class_balanced(y, batch_size, np.random.default_rng([int(seed), int(epoch)]), drop_last,
                               m_per_class)
    out = [order[i:i + batch_size].astype(np.int64) for i in range(0, n, batch_size)]
    if drop_last and len(out) > 1 and out[-1].size < batch_size:
        out.pop()
    return out


def _class_balanced(y, batch_size, rng, drop_last, m):
    """Groups of m same-class samples, batch_size // m groups of *distinct* classes per batch (the
    classes with most groups left first, ties in random order) while enough classes remain."""
    pools = {}
    for c in np.unique(y).tolist():
        idx = rng.permutation(np.flatnonzero(y == c))
        pools[c] = [idx[i:i + m] for i in range(0, idx.size, m)]
    g = max(1, batch_size // m)
    out = []
    while pools:
        avail = list(pools)
        order = rng.permutation(len(avail))
        avail = sorted((avail[i] for i in order), key=lambda c: -len(pools[c]))[:g]
        parts = []
        for c in avail:
            parts.append(pools[c].pop())
            if not pools[c]:
                del pools[c]
        out.append(np.concatenate(parts).astype(np.int64))
    if drop_last and len(out) > 1 and out[-1].size < batch_size:
        out.pop()
    return out


def choose_binding_examples(labels, classes=None, seed: int = 0, comp: np.ndarray | None = None) -> dict:
    """One example per class (Alg. 1's binding set): {class label: sample index}.

    Without ``comp`` the example is drawn uniformly from the class (rng seeded by ``seed``); with
    ``comp`` (component labels from the check) it is a member of the class's largest component."""
    y = _int_array(labels, "labels")
    classes = np.unique(y) if classes is None else np.asarray(classes, dtype=np.int64)
    rng = np.random.default_rng([int(seed), _BIND_STREAM])
    out = {}
    for c in classes.tolist():
        members = np.flatnonzero(y == c)
        if members.size == 0:
            raise InputError(f"class {c} has no samples to bind")
        if comp is None:
            out[int(c)] = int(members[rng.integers(members.size)])
        else:
            u, inv, cnt = np.unique(comp[members], return_inverse=True, return_counts=True)
            out[int(c)] = int(members[np.flatnonzero(inv == np.argmax(cnt))[0]])
    return out


def _bind(batches: list[np.ndarray], extra: np.ndarray) -> list[np.ndarray]:
    return [np.concatenate([b, extra[~np.isin(extra, b)]]) for b in batches]


def batch_binding(plan: Plan, binding_examples: dict | None = None, seed: int = 0) -> Plan:
    """Kini et al. Alg. 1: add the binding examples (one per class, or the given dict) to every batch."""
    if binding_examples is None:
        binding_examples = choose_binding_examples(plan.labels, seed=seed)
    extra = np.asarray(sorted(set(int(v) for v in binding_examples.values())), dtype=np.int64)
    if extra.size and (extra.min() < 0 or extra.max() >= plan.n):
        raise InputError("binding example index outside [0, n)")
    eps = [_bind(ep, extra) for ep in plan.epochs]
    meta = dict(plan.meta)
    meta["binding_examples"] = {str(c): int(i) for c, i in binding_examples.items()}
    if plan.epoch_offsets is None:
        return Plan.from_batches(plan.labels, eps[0], meta)
    return Plan.from_epochs(plan.labels, eps, meta)


def duplicate_views(labels, epochs: list[list[np.ndarray]], views: int):
    """(labels of the views * n samples, epochs with every batch holding all views of its samples)."""
    y = _int_array(labels, "labels")
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 1:
        raise InputError(f"views must be a positive integer, got {views!r}")
    n = y.size
    ys = np.tile(y, views)
    eps = [[np.concatenate([b + v * n for v in range(views)]) for b in ep] for ep in epochs]
    return ys, eps


def make_plan(labels, scheme: str = "reshuffle", batch_size: int | None = 256, epochs: int = 1, seed: int = 0,
              bind: bool = False, drop_last: bool = False, views: int = 1, m_per_class: int = 2,
              binding_examples: dict | None = None) -> Plan:
    """A :class:`Plan` of ``epochs`` epochs of ``scheme`` (see module docstring), epochs grouped."""
    y = _check(labels, scheme, batch_size, m_per_class)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise InputError(f"epochs must be a positive integer, got {epochs!r}")
    eps = [epoch_batches(y, scheme, batch_size, e, seed, drop_last, m_per_class) for e in range(epochs)]
    meta = {"name": f"{scheme} b={batch_size} epochs={epochs} seed={seed}" + (" +binding" if bind else "")
            + (f" views={views}" if views != 1 else "")}
    if bind or binding_examples is not None:
        be = binding_examples if binding_examples is not None else choose_binding_examples(y, seed=seed)
        extra = np.asarray(sorted(set(int(v) for v in be.values())), dtype=np.int64)
        if extra.size and (extra.min() < 0 or extra.max() >= y.size):
            raise InputError("binding example index outside [0, n)")
        eps = [_bind(ep, extra) for ep in eps]
        meta["description"] = f"binding examples {dict(sorted(be.items()))}"
    if views != 1:
        y, eps = duplicate_views(y, eps, views)
    return Plan.from_epochs(y, eps, meta)

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
                    batches may hold fewer classes, and every batch at most k classes).
                    ``batch_size`` must be a multiple of ``m_per_class`` (otherwise no batch could
                    have the size asked for: 2 with m_per_class = 4 used to give batches of 4).
``weighted``        (plans only, not in :data:`SCHEMES`) each epoch draws n samples with replacement,
                    sample i with probability proportional to 1 / n_{y_i} (every class equally
                    likely: the ``WeightedRandomSampler`` recipe for class imbalance), cut into
                    batches: a *multiset* plan (``Plan.multiset``; see plan.py).
Options
-------
``drop_last``  drop each epoch's last batch when it is smaller than ``batch_size``.
``bind``       batch-binding (Kini Alg. 1): one example of every class (chosen once from ``seed``,
               or given as ``binding_examples``) is added to every batch (not twice if present).
``views``      two-view (or v-view) batch duplication, as a plan attribute (``Plan.views``): every
               batch holds all views of its samples; the expanded form, in which sample i's view v
               is row v * n + i with label y_i (view-major, as SupCon stacks them), is
               :meth:`Plan.expanded` / :func:`duplicate_views` (one definition,
               :func:`nctheory.batching.plan.expand_views`). Binding adds samples, with all their views.
``seed``       a non-negative integer.

Size. :func:`plan_size` estimates a plan's entries, batches and memory before anything is drawn;
:func:`make_plan` refuses (InputError, with the estimate) plans beyond :data:`MAX_INDEX_ENTRIES` entries
or :data:`MAX_BATCHES` batches, or beyond ``max_memory`` bytes.
"""

from __future__ import annotations

import numpy as np

from nctheory.batching.plan import MAX_INDEX_ENTRIES, Plan, _int_array, expand_views
from nctheory.errors import InputError
from nctheory.validate import SEED_MAX, check_budget, format_bytes, integer

SCHEMES = ("full", "fixed", "reshuffle", "class_balanced")   # the schemes a training run may use
PLAN_SCHEMES = SCHEMES + ("weighted",)                      # make-plan: also with-replacement plans
MULTISET_SCHEMES = ("weighted",)
MAX_BATCHES = 10_000_000     # batches in one generated plan (each costs Python-level work downstream)
# peak bytes (tracemalloc) while building and saving, measured for 3e6 entries in batches of 32-256:
# npz 38-42 per entry, json 69-71; batches of one entry: 217 (npz) / 248 (json) per batch
BYTES_PER_ENTRY = {"npz": 48, "json": 80}
BYTES_PER_BATCH = 200
_BIND_STREAM = 2**31 - 1


def _positive_int(v, what):
    return integer(v, what, lo=1)


def check_seed(seed) -> int:
    return integer(seed, "seed", lo=0, hi=SEED_MAX)


def _check(labels, scheme, batch_size, m_per_class=2, seed=0):
    y = _int_array(labels, "labels")
    if y.size == 0 or y.min() < 0:
        raise InputError("labels must be a non-empty list of integers >= 0")
    if scheme not in PLAN_SCHEMES:
        raise InputError(f"unknown batching scheme {scheme!r}; choose one of {', '.join(PLAN_SCHEMES)}")
    if scheme != "full":
        _positive_int(batch_size, "batch_size")
    _positive_int(m_per_class, "m_per_class")
    if scheme == "class_balanced" and batch_size % m_per_class:
        raise InputError(f"class_balanced: batch_size {batch_size} is not a multiple of m_per_class "
                         f"{m_per_class} (batches would have {max(1, batch_size // m_per_class) * m_per_class} "
                         f"samples, not {batch_size})")
    check_seed(seed)
    return y


def epoch_batches(labels, scheme: str, batch_size: int | None, epoch: int, seed: int = 0,
                  drop_last: bool = False, m_per_class: int = 2) -> list[np.ndarray]:
    """The batches (int64 arrays of sample indices) of one epoch, before binding and views."""
    y = _check(labels, scheme, batch_size, m_per_class, seed)
    n = y.size
    if scheme == "full":
        return [np.arange(n, dtype=np.int64)]
    if scheme == "fixed":
        order = np.random.default_rng([int(seed)]).permutation(n)
    elif scheme == "reshuffle":
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    elif scheme == "weighted":
        _, inv, cnt = np.unique(y, return_inverse=True, return_counts=True)
        w = 1.0 / cnt[inv.reshape(-1)]
        order = np.random.default_rng([int(seed), int(epoch)]).choice(n, size=n, replace=True, p=w / w.sum())
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
    order = np.argsort(y, kind="stable")   # samples by class, increasing index within a class
    classes, start = np.unique(y[order], return_index=True)
    for c, a, b in zip(classes.tolist(), start.tolist(), np.r_[start[1:], y.size].tolist()):
        idx = rng.permutation(order[a:b])
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

    Without ``comp`` the example is drawn uniformly from the class (rng seeded by ``seed``, one draw per
    class in increasing order); with ``comp`` (component labels from the check) it is the first member
    of the class's largest component (ties: the component with the smallest label)."""
    y = _int_array(labels, "labels")
    classes = np.unique(y) if classes is None else np.asarray(classes, dtype=np.int64)
    rng = np.random.default_rng([check_seed(seed), _BIND_STREAM])
    order = np.argsort(y, kind="stable")   # samples by class, increasing index within a class
    ys = y[order]
    lo = np.searchsorted(ys, classes, side="left")
    hi = np.searchsorted(ys, classes, side="right")
    if np.any(hi == lo):
        raise InputError(f"class {int(classes[np.flatnonzero(hi == lo)[0]])} has no samples to bind")
    if comp is None:
        return {int(c): int(order[a + rng.integers(b - a)]) for c, a, b in zip(classes.tolist(), lo.tolist(),
                                                                              hi.tolist())}
    # vectorised: per class, the (component, size) groups of its members; the largest (ties: smallest label)
    lens = hi - lo
    pos = np.repeat(lo - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(int(lens.sum()))
    m = order[pos]
    m_cls = np.repeat(np.arange(classes.size), lens)
    m_comp = np.asarray(comp)[m]
    o = np.lexsort((m, m_comp, m_cls))
    m, m_comp, m_cls = m[o], m_comp[o], m_cls[o]
    gstart = np.flatnonzero(np.r_[True, (m_cls[1:] != m_cls[:-1]) | (m_comp[1:] != m_comp[:-1])])
    gsize = np.diff(np.r_[gstart, m.size])
    best = np.lexsort((m_comp[gstart], -gsize, m_cls[gstart]))     # per class: largest group first
    first = best[np.r_[True, m_cls[gstart][best][1:] != m_cls[gstart][best][:-1]]]
    return {int(c): int(i) for c, i in zip(classes.tolist(), m[gstart[first]].tolist())}


def _bind(batches: list[np.ndarray], extra: np.ndarray) -> list[np.ndarray]:
    return [np.concatenate([b, extra[~np.isin(extra, b)]]) for b in batches]


def batch_binding(plan: Plan, binding_examples: dict | None = None, seed: int = 0) -> Plan:
    """Kini et al. Alg. 1: add the binding examples (one per class, or the given dict {class id as given:
    sample index}) to every batch (not twice if present; with all its views when the plan has views)."""
    if binding_examples is None:
        binding_examples = choose_binding_examples(plan.original_labels(), seed=seed)
    extra = np.asarray(sorted(set(int(v) for v in binding_examples.values())), dtype=np.int64)
    if extra.size and (extra.min() < 0 or extra.max() >= plan.n):
        raise InputError("binding example index outside [0, n)")
    bs = _bind(plan.batches, extra)
    meta = dict(plan.meta)
    meta["binding_examples"] = {str(c): int(i) for c, i in binding_examples.items()}
    sizes = np.fromiter((b.size for b in bs), dtype=np.int64, count=len(bs))
    return plan.with_batches(np.concatenate(bs), np.r_[0, np.cumsum(sizes)].astype(np.int64),
                             plan.epoch_offsets, meta)


def duplicate_views(labels, epochs: list[list[np.ndarray]], views: int):
    """(labels of the views * n samples, epochs with every batch holding all views of its samples):
    the expanded form of a plan with ``views`` (:func:`nctheory.batching.plan.expand_views`), for lists
    of batches."""
    y = _int_array(labels, "labels")
    views = _positive_int(views, "views")
    n = y.size
    flat = [np.asarray(b, dtype=np.int64) for ep in epochs for b in ep]
    sizes = np.fromiter((b.size for b in flat), dtype=np.int64, count=len(flat))
    idx, off = expand_views(np.concatenate(flat) if flat else np.zeros(0, np.int64),
                            np.r_[0, np.cumsum(sizes)].astype(np.int64), n, views)
    out, b = [], 0
    for ep in epochs:
        out.append([idx[off[b + j]:off[b + j + 1]] for j in range(len(ep))])
        b += len(ep)
    return np.tile(y, views), out


def plan_size(labels, scheme: str = "reshuffle", batch_size: int | None = 256, epochs: int = 1,
              bind: bool = False, views: int = 1, m_per_class: int = 2, fmt: str = "npz") -> dict:
    """An estimate of the plan :func:`make_plan` would build, computed from the counts alone:
    batch entries (views not expanded: they are an attribute), batches, and peak bytes while building and
    saving it in ``fmt`` (BYTES_PER_ENTRY, measured). An upper bound for class_balanced (groups per class
    rounded up)."""
    y = _int_array(labels, "labels")
    n = y.size
    _, cnt = np.unique(y, return_counts=True)
    k = cnt.size
    if scheme == "full":
        per_epoch = 1
    elif scheme == "class_balanced":
        groups = int(np.sum(-(-cnt // m_per_class)))
        per_epoch = -(-groups // max(1, batch_size // m_per_class))
        per_epoch = max(per_epoch, int(np.max(-(-cnt // m_per_class))))  # a class's groups go to distinct batches
    else:
        per_epoch = -(-n // batch_size)
    batches = int(epochs) * int(per_epoch)
    entries = int(epochs) * n + (batches * k if bind else 0)
    return {"entries": entries, "batches": batches, "views": int(views),
            "bytes": entries * BYTES_PER_ENTRY.get(fmt, BYTES_PER_ENTRY["json"]) + BYTES_PER_BATCH * batches}


def make_plan(labels, scheme: str = "reshuffle", batch_size: int | None = 256, epochs: int = 1, seed: int = 0,
              bind: bool = False, drop_last: bool = False, views: int = 1, m_per_class: int = 2,
              binding_examples: dict | None = None, max_memory: float | None = None, fmt: str = "npz") -> Plan:
    """A :class:`Plan` of ``epochs`` epochs of ``scheme`` (see module docstring), epochs grouped; views as a
    plan attribute; a multiset plan for the with-replacement schemes. Refuses, before drawing anything,
    a plan whose estimate (:func:`plan_size`) exceeds the entry or batch limits or the memory limit
    (``max_memory``: bytes or '8G'; default :func:`nctheory.validate.memory_limit`)."""
    y = _check(labels, scheme, batch_size, m_per_class, seed)
    epochs = _positive_int(epochs, "epochs")
    views = _positive_int(views, "views")
    est = plan_size(y, scheme, batch_size, epochs, bind or binding_examples is not None, views, m_per_class, fmt)
    what = f"{epochs} epoch(s) of {scheme} on n = {y.size}"
    if est["entries"] > MAX_INDEX_ENTRIES:
        raise InputError(f"{what} make {est['entries']:.3g} batch entries (~{format_bytes(est['bytes'])}); "
                         f"the limit is {MAX_INDEX_ENTRIES:.3g} entries")
    if est["batches"] > MAX_BATCHES:
        raise InputError(f"{what} make {est['batches']:.3g} batches; the limit is {MAX_BATCHES:.3g}")
    check_budget(est["bytes"], f"building and saving {what} ({est['entries']:.3g} batch entries)",
                 limit=max_memory)
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
    return Plan.from_epochs(y, eps, meta, views=views, multiset=scheme in MULTISET_SCHEMES)

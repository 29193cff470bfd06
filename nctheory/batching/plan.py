"""Batching plans: the labels of n samples and the batches (sample-index lists) a training run uses.

Format
------
A plan is ``labels`` (n integers >= 0, one per sample) and a list of batches, each a non-empty list of
sample indices in [0, n); the batches may be grouped by epoch. A sample may appear in many batches
(across epochs, or as a binding example in every batch). Two optional attributes:

``views`` (an integer V >= 1, default 1)
    every sample of a batch appears in it in V views (SupCon's multi-view batches, Kini et al.
    footnote 3). In the UFM each view is a feature row of its own: sample i's view v is row
    ``v * n + i`` of the expanded plan (view-major, as SupCon stacks them), whose batches hold every
    view of their samples (:meth:`Plan.expanded`; :func:`nctheory.batching.duplicate_views` is the same
    expansion for lists of batches). A plan file names V once instead of spelling out those indices.
``multiset`` (a boolean, default false)
    batches are multisets: a sample index may occur several times in one batch (a sampler drawing
    with replacement, e.g. torch's ``WeightedRandomSampler``). Every occurrence is a *copy* of the
    sample, with the same feature: it is an anchor, a positive of the sample's other copies and of its
    class, and a term of every other anchor's denominator (see :mod:`nctheory.batching.interaction`,
    section 4, for what Thm 2's bound and the uniqueness condition become). Without ``multiset`` a
    repeated index within a batch is an error (a typo must not silently change a verdict).

Labels (one rule wherever a plan is loaded or built)
---------------------------------------------------
Labels are class ids: any integers in [0, 2^63). A plan relabels them to class indices 0..k-1 by the
rank of their value (``np.unique``): :attr:`Plan.labels` holds those indices (the project convention:
labels are integers in [0, k)) and :attr:`Plan.label_values` the ids as written (class c is
``label_values[c]``), which is what files are saved with and what ``check-batches`` reports. So a
label such as 10^15 costs nothing: no array is ever sized by a label's value (before this rule
``bound`` took 90 s and 4.0 GiB on a plan with the label 5e8, and stopped with a traceback allocating
7.11 PiB for the labels 10^15; benchmarks/RESULTS-check-batches.md).
:meth:`Plan.label_note` says when a relabelling happened, with the mapping.

JSON (hand-written plans)::

    {"labels": [0, 0, 1, 1], "batches": [[0, 1, 2], [1, 2, 3]]}
    {"labels": [0, 0, 1, 1], "epochs": [[[0, 1], [2, 3]], [[0, 2], [1, 3]]]}
    {"labels": [0, 1, 2], "views": 2, "batches": [[0, 1], [0, 2], [1, 2]]}
    {"labels": [0, 0, 1], "multiset": true, "batches": [[0, 0, 2], [1, 2, 2]]}

  optional keys: "name", "description" (strings), "dim" (the embedding dimension the plan is meant
  for, an integer; ``check-batches --dim`` overrides it), "views", "multiset". Any other key is an
  error (a typo must not silently change a verdict).

npz (real plans: CIFAR-100 has 50,000 samples and hundreds of epochs) holds integer arrays::

    labels   (n,)            class of each sample
    indices  (total,)        all batches concatenated
    offsets  (num_batches+1) batch b is indices[offsets[b]:offsets[b+1]]  (offsets[0] = 0)
    epoch_offsets (num_epochs+1), optional: epoch e is batches epoch_offsets[e]:epoch_offsets[e+1]
    views    (), optional    V
    multiset (), optional    1 if batches may repeat a sample, else 0

Loading validates strictly and raises :class:`~nctheory.errors.InputError` (CLI exit 2, one line) on:
unknown or negative indices, an index >= n (labels shorter than the indices), duplicate indices in
a batch of a plan that is not a multiset, empty batches or plans, non-integer (or boolean) labels or
indices, negative labels, malformed JSON/npz, unknown keys, and files larger than
:data:`MAX_JSON_BYTES` / :data:`MAX_NPZ_BYTES` (checked before anything is parsed or decompressed).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nctheory.errors import InputError

MAX_JSON_BYTES = 64 * 2**20     # a hand-written plan is kilobytes; 64 MiB of JSON is ~10M indices
MAX_NPZ_BYTES = 768 * 2**20     # uncompressed array bytes: keeps a check within the 1 GiB budget
MAX_INDEX_ENTRIES = 100_000_000  # total batch entries accepted from any source
JSON_KEYS = {"labels", "batches", "epochs", "name", "description", "dim", "views", "multiset"}
LABEL_MAX = 2**63 - 1   # class ids are int64; their values size nothing (the plan relabels them by rank)


@dataclass
class Plan:
    """Labels and batches, stored flat: batch b is ``indices[offsets[b]:offsets[b+1]]``.

    labels: (n,) class indices 0..k-1 (relabelled by rank when built from other ids; see the module
    docstring); label_values: (k,) the class ids as given, increasing. epoch_offsets (optional) groups
    batches into epochs; views: every batch holds each of its samples in ``views`` views; multiset:
    batches may repeat a sample (each occurrence a copy with the same feature). Use
    :meth:`from_batches` / :meth:`from_epochs` to build one from lists (they validate),
    :attr:`batches` / :attr:`epochs` to read it back as lists of int64 arrays (views, no copies).
    """

    labels: np.ndarray
    indices: np.ndarray
    offsets: np.ndarray
    epoch_offsets: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    views: int = 1
    multiset: bool = False
    label_values: np.ndarray | None = None

    def __post_init__(self):
        validate(self)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_batches(cls, labels, batches, meta: dict | None = None, *, views: int = 1,
                     multiset: bool = False) -> "Plan":
        labels = _int_array(labels, "labels")
        idx, off = _flatten(batches, "batch")
        return cls(labels, idx, off, None, dict(meta or {}), views, multiset)

    @classmethod
    def from_epochs(cls, labels, epochs, meta: dict | None = None, *, views: int = 1,
                    multiset: bool = False) -> "Plan":
        labels = _int_array(labels, "labels")
        if isinstance(epochs, (str, bytes)) or not hasattr(epochs, "__len__"):
            raise InputError("epochs must be a list of epochs, each a list of batches")
        flat, ep_off = [], [0]
        for e, ep in enumerate(epochs):
            if isinstance(ep, (str, bytes, int, float)) or not hasattr(ep, "__len__"):
                raise InputError(f"epoch {e} must be a list of batches")
            if len(ep) == 0:
                raise InputError(f"epoch {e} has no batches")
            flat.extend(ep)
            ep_off.append(len(flat))
        idx, off = _flatten(flat, "batch")
        return cls(labels, idx, off, np.asarray(ep_off, dtype=np.int64), dict(meta or {}), views, multiset)

    def with_batches(self, indices, offsets, epoch_offsets=None, meta: dict | None = None,
                     multiset: bool | None = None) -> "Plan":
        """The same samples (labels, label values, views) with other batches (validated)."""
        return Plan(self.labels, indices, offsets, epoch_offsets, dict(self.meta if meta is None else meta),
                    self.views, self.multiset if multiset is None else multiset, self.label_values)

    # ---- views ----------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Samples (before views)."""
        return int(self.labels.size)

    @property
    def k(self) -> int:
        return int(self.label_values.size)

    @property
    def n_rows(self) -> int:
        """Feature rows in the UFM: n samples x views."""
        return self.n * self.views

    @property
    def num_batches(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def num_epochs(self) -> int:
        return 1 if self.epoch_offsets is None else int(self.epoch_offsets.size - 1)

    @property
    def classes(self) -> np.ndarray:
        """The distinct labels present, as given (sorted): class c is ``classes[c]``; k = len(classes)."""
        return self.label_values

    @property
    def batches(self) -> list[np.ndarray]:
        o = self.offsets
        return [self.indices[o[b]:o[b + 1]] for b in range(self.num_batches)]

    @property
    def epochs(self) -> list[list[np.ndarray]]:
        """Batches grouped by epoch (one epoch holding every batch when the plan has no grouping)."""
        bs = self.batches
        if self.epoch_offsets is None:
            return [bs]
        e = self.epoch_offsets
        return [bs[e[i]:e[i + 1]] for i in range(self.num_epochs)]

    def batch_sizes(self) -> np.ndarray:
        """Entries per batch (copies counted, views not)."""
        return np.diff(self.offsets)

    def batch_ids(self) -> np.ndarray:
        """(total,) the batch of every entry of ``indices``."""
        return np.repeat(np.arange(self.num_batches, dtype=np.int64), self.batch_sizes())

    def original_labels(self) -> np.ndarray:
        """(n,) each sample's class id as given (``label_values[labels]``)."""
        return self.label_values[self.labels]

    def label_note(self, shown: int = 5) -> str | None:
        """None when the class ids are already 0..k-1; else one line giving the relabelling."""
        k = self.k
        if int(self.label_values[-1]) == k - 1:  # increasing, >= 0, k values: exactly 0..k-1
            return None
        pairs = ", ".join(f"{int(v)} -> {c}" for c, v in enumerate(self.label_values[:shown].tolist()))
        more = "" if k <= shown else f", ... ({k} classes)"
        return f"class ids relabelled to 0..{k - 1} by rank: {pairs}{more}"

    def num_repeated_entries(self) -> int:
        """Entries that repeat a sample already in their batch (0 unless the plan is a multiset)."""
        if not self.multiset:
            return 0
        return int(self.indices.size - _distinct_pairs(self.indices, self.offsets, self.n))

    def expanded(self, max_entries: int | None = None) -> "Plan":
        """The plan on n * views feature rows: sample i's view v is row v * n + i (labels tiled), every
        batch holding every view of its samples (with the samples' multiplicities), views = 1. The plan
        itself when views = 1. Refuses (InputError, with the size) beyond ``max_entries`` entries
        (default :data:`MAX_INDEX_ENTRIES`)."""
        if self.views == 1:
            return self
        limit = MAX_INDEX_ENTRIES if max_entries is None else int(max_entries)
        total = self.views * int(self.indices.size)
        if total > limit:
            raise InputError(f"the plan's {self.views} views make {total:.3g} batch entries "
                             f"(~{total * 24 / 2**30:.3g} GiB to expand); the limit is {limit:.3g}")
        idx, off = expand_views(self.indices, self.offsets, self.n, self.views)
        return Plan(np.tile(self.labels, self.views), idx, off, self.epoch_offsets, dict(self.meta), 1,
                    self.multiset, self.label_values)

    def summary(self) -> dict:
        sizes = self.batch_sizes()
        return {"n": self.n, "k": self.k, "num_batches": self.num_batches,
                "num_epochs": self.num_epochs, "total_entries": int(self.indices.size),
                "batch_size_min": int(sizes.min()), "batch_size_max": int(sizes.max()),
                "views": self.views, "multiset": self.multiset}

    def save(self, path) -> Path:
        """Write the plan as .json or .npz (by suffix): :func:`save_plan`."""
        return save_plan(self, path)


def expand_views(indices: np.ndarray, offsets: np.ndarray, n: int, views: int) -> tuple[np.ndarray, np.ndarray]:
    """The one definition of view expansion: batch b = [i_1, ..., i_s] becomes
    [i_1, ..., i_s, i_1 + n, ..., i_s + n, ..., i_s + (views - 1) n] (view-major within the batch).
    Returns (indices, offsets) of the expanded batches."""
    indices = np.asarray(indices, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    sizes = np.diff(offsets)
    new_off = offsets * views
    bid = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    pos = np.arange(indices.size, dtype=np.int64) - offsets[bid]
    out = np.empty(indices.size * views, dtype=np.int64)
    for v in range(views):
        out[new_off[bid] + v * sizes[bid] + pos] = indices + v * n
    return out, new_off


# ---- validation ------------------------------------------------------------------------------------
def _int_array(x, what: str) -> np.ndarray:
    """A 1-D int64 array from a list/array of integers; refuses floats, booleans, strings, nesting."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
            raise InputError(f"{what} must be a list of integers")
        if any(isinstance(v, bool) for v in x):
            raise InputError(f"{what} must hold integers, found a boolean")
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError):
            raise InputError(f"{what} must be a flat list of integers") from None
    if arr.ndim != 1:
        raise InputError(f"{what} must be a flat list of integers (got shape {arr.shape})")
    if arr.size and arr.dtype.kind not in "iu":
        raise InputError(f"{what} must hold integers (found {arr.dtype.name} values)")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise InputError(f"{what} holds an integer too large")
    return arr.astype(np.int64, copy=False)


def _flatten(batches, what: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(batches, (str, bytes)) or not hasattr(batches, "__len__"):
        raise InputError("batches must be a list of lists of sample indices")
    parts, off = [], [0]
    total = 0
    for b, batch in enumerate(batches):
        if isinstance(batch, (int, float, str, bytes)) or not hasattr(batch, "__len__"):
            raise InputError(f"{what} {b} must be a list of sample indices, got {type(batch).__name__}")
        arr = _int_array(batch, f"{what} {b}")
        total += arr.size
        if total > MAX_INDEX_ENTRIES:
            raise InputError(f"plan has more than {MAX_INDEX_ENTRIES} batch entries")
        parts.append(arr)
        off.append(total)
    idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return idx, np.asarray(off, dtype=np.int64)


def validate(plan: Plan) -> None:
    """Raise InputError unless ``plan`` is well formed (see module docstring); relabel its labels."""
    y = _int_array(plan.labels, "labels")
    idx = plan.indices = _int_array(plan.indices, "indices")
    off = plan.offsets = _int_array(plan.offsets, "offsets")
    n = y.size
    if n == 0:
        raise InputError("plan has no labels")
    if plan.label_values is None:
        if y.min() < 0:
            raise InputError(f"labels must be >= 0, found {int(y.min())}")
        vals, inv = np.unique(y, return_inverse=True)
        plan.label_values, plan.labels = vals.astype(np.int64), inv.astype(np.int64).reshape(-1)
    else:
        vals = plan.label_values = _int_array(plan.label_values, "label_values")
        if vals.size == 0 or vals[0] < 0 or np.any(np.diff(vals) <= 0):
            raise InputError("label_values must be increasing integers >= 0")
        if y.min() < 0 or y.max() >= vals.size or np.unique(y).size != vals.size:
            raise InputError(f"labels must be class indices covering 0..{vals.size - 1}")
        plan.labels = y
    v = plan.views
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise InputError(f"views must be a positive integer, got {v!r}")
    plan.views = int(v)
    if not isinstance(plan.multiset, (bool, np.bool_)):
        raise InputError(f"multiset must be true or false, got {plan.multiset!r}")
    plan.multiset = bool(plan.multiset)
    if off.size < 2:
        raise InputError("plan has no batches")
    if off[0] != 0 or off[-1] != idx.size or np.any(np.diff(off) < 0):
        raise InputError("offsets must start at 0, be non-decreasing and end at len(indices)")
    sizes = np.diff(off)
    if np.any(sizes == 0):
        raise InputError(f"batch {int(np.flatnonzero(sizes == 0)[0])} is empty")
    if idx.min() < 0:
        b = int(np.searchsorted(off, np.flatnonzero(idx < 0)[0], side="right") - 1)
        raise InputError(f"batch {b} has a negative sample index ({int(idx.min())})")
    if idx.max() >= n:
        bad = int(np.flatnonzero(idx >= n)[0])
        b = int(np.searchsorted(off, bad, side="right") - 1)
        raise InputError(f"batch {b} has sample index {int(idx[bad])} but there are only {n} labels "
                         f"(indices must be in [0, {n}))")
    if not plan.multiset:
        _check_duplicates(idx, off, n)
    if plan.epoch_offsets is not None:
        eo = plan.epoch_offsets = _int_array(plan.epoch_offsets, "epoch_offsets")
        if eo.size < 2 or eo[0] != 0 or eo[-1] != sizes.size or np.any(np.diff(eo) <= 0):
            raise InputError("epoch_offsets must start at 0, increase strictly and end at the number of batches")


def _sorted_keys(idx: np.ndarray, off: np.ndarray, n: int):
    """Chunks of sorted (batch * n + index) keys (vectorised; bounded memory)."""
    nb = off.size - 1
    step = max(1, 2_000_000 // max(1, int(np.diff(off).mean())))
    for b0 in range(0, nb, step):
        b1 = min(nb, b0 + step)
        seg = idx[off[b0]:off[b1]]
        bid = np.repeat(np.arange(b0, b1, dtype=np.int64), np.diff(off[b0:b1 + 1]))
        yield np.sort(bid * n + seg)


def _check_duplicates(idx: np.ndarray, off: np.ndarray, n: int) -> None:
    """No index twice within a batch (plans that are not multisets)."""
    for key in _sorted_keys(idx, off, n):
        dup = np.flatnonzero(key[1:] == key[:-1])
        if dup.size:
            k0 = int(key[dup[0]])
            raise InputError(f"batch {k0 // n} repeats sample index {k0 % n} (a plan whose batches repeat "
                             f"samples, e.g. drawn with replacement, must say so: \"multiset\": true)")


def _distinct_pairs(idx: np.ndarray, off: np.ndarray, n: int) -> int:
    """Number of distinct (batch, sample) pairs."""
    return int(sum(int(np.count_nonzero(np.r_[True, key[1:] != key[:-1]])) for key in _sorted_keys(idx, off, n)))


# ---- load / save ----------------------------------------------------------------------------------
def load_plan(path) -> Plan:
    """Read a plan from .json or .npz (by content: npz files are zip archives), validating strictly."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"plan file {str(p)!r} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read plan file {str(p)!r}: {exc.strerror}") from None
    except ValueError as exc:  # e.g. an embedded NUL byte
        raise InputError(f"cannot read plan file {str(p)!r}: {exc}") from None
    if not p.is_file():
        raise InputError(f"plan {str(p)!r} is not a file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(f"cannot read plan file {str(p)!r}: {exc.strerror}") from None
    if head.startswith(b"PK"):
        return _load_npz(p)
    if st.st_size > MAX_JSON_BYTES:
        raise InputError(f"plan file is {st.st_size / 2**20:.0f} MiB; JSON plans are limited to "
                         f"{MAX_JSON_BYTES // 2**20} MiB (use the npz format for large plans)")
    try:
        text = p.read_text(encoding="utf-8")
        obj = json.loads(text)
    except UnicodeDecodeError:
        raise InputError(f"plan file {str(p)!r} is neither JSON (UTF-8) nor npz") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in {str(p)!r}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"malformed JSON in {str(p)!r}: nested too deeply") from None
    return plan_from_json(obj)


def plan_from_json(obj) -> Plan:
    if not isinstance(obj, dict):
        raise InputError("a JSON plan must be an object with keys 'labels' and 'batches' (or 'epochs')")
    unknown = set(obj) - JSON_KEYS
    if unknown:
        raise InputError(f"unknown key(s) in plan: {sorted(unknown)}; allowed: {sorted(JSON_KEYS)}")
    if "labels" not in obj:
        raise InputError("plan has no 'labels'")
    if ("batches" in obj) == ("epochs" in obj):
        raise InputError("plan needs exactly one of 'batches' and 'epochs'")
    meta = {}
    for key in ("name", "description"):
        if key in obj:
            if not isinstance(obj[key], str):
                raise InputError(f"plan key {key!r} must be a string")
            meta[key] = obj[key]
    if "dim" in obj:
        d = obj["dim"]
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise InputError("plan key 'dim' must be a positive integer")
        meta["dim"] = d
    views = obj.get("views", 1)
    if isinstance(views, bool) or not isinstance(views, int) or views < 1:
        raise InputError("plan key 'views' must be a positive integer")
    multiset = obj.get("multiset", False)
    if not isinstance(multiset, bool):
        raise InputError("plan key 'multiset' must be true or false")
    labels = obj["labels"]
    if not isinstance(labels, list):
        raise InputError("'labels' must be a list of integers")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in labels):
        bad = next(v for v in labels if isinstance(v, bool) or not isinstance(v, int))
        raise InputError(f"labels must be integers, found {bad!r}")
    if any(v > LABEL_MAX for v in labels):
        raise InputError(f"label {max(labels)} is beyond the int64 range (class ids must be < 2^63)")
    if "batches" in obj:
        bs = obj["batches"]
        if not isinstance(bs, list):
            raise InputError("'batches' must be a list of lists of sample indices")
        _check_json_batches(bs, "batch")
        return Plan.from_batches(labels, bs, meta, views=views, multiset=multiset)
    eps = obj["epochs"]
    if not isinstance(eps, list) or not eps:
        raise InputError("'epochs' must be a non-empty list of epochs (lists of batches)")
    for e, ep in enumerate(eps):
        if not isinstance(ep, list):
            raise InputError(f"epoch {e} must be a list of batches")
        _check_json_batches(ep, f"epoch {e} batch")
    return Plan.from_epochs(labels, eps, meta, views=views, multiset=multiset)


def _check_json_batches(bs, what):
    for b, batch in enumerate(bs):
        if not isinstance(batch, list):
            raise InputError(f"{what} {b} must be a list of sample indices")
        for v in batch:
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputError(f"{what} {b} holds a non-integer index {v!r}")


def _load_npz(p: Path) -> Plan:
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"malformed npz plan {str(p)!r}: {exc}") from None
    if total > MAX_NPZ_BYTES:
        raise InputError(f"npz plan holds {total / 2**20:.0f} MiB of arrays; the limit is "
                         f"{MAX_NPZ_BYTES // 2**20} MiB")
    names = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in infos}
    allowed = {"labels", "indices", "offsets", "epoch_offsets", "views", "multiset"}
    if not {"labels", "indices", "offsets"} <= names:
        raise InputError(f"npz plan needs arrays labels, indices, offsets; found {sorted(names)}")
    if names - allowed:
        raise InputError(f"unknown array(s) in npz plan: {sorted(names - allowed)}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrs = {k: z[k] for k in names}
    except Exception as exc:  # zip/npy format errors of many kinds: one line, exit 2
        raise InputError(f"malformed npz plan {str(p)!r}: {type(exc).__name__}: {exc}") from None
    scalars = {}
    for k, a in arrs.items():
        if a.dtype.kind not in "iu":
            raise InputError(f"npz array {k!r} must hold integers, found {a.dtype}")
        if k in ("views", "multiset"):
            if a.size != 1:
                raise InputError(f"npz array {k!r} must hold one integer, found shape {a.shape}")
            scalars[k] = int(a.reshape(-1)[0])
        elif a.ndim != 1:
            raise InputError(f"npz array {k!r} must be 1-dimensional, found shape {a.shape}")
    if scalars.get("multiset", 0) not in (0, 1):
        raise InputError("npz array 'multiset' must be 0 or 1")
    return Plan(arrs["labels"], arrs["indices"], arrs["offsets"], arrs.get("epoch_offsets"),
                views=scalars.get("views", 1), multiset=bool(scalars.get("multiset", 0)))


def save_plan(plan: Plan, path) -> Path:
    """Write ``plan`` as .npz (compressed) or .json, chosen by the file name's suffix."""
    p = Path(path)
    if p.suffix == ".npz":
        arrs = dict(labels=plan.original_labels(),
                    indices=plan.indices.astype(np.int32 if plan.n < 2**31 else np.int64), offsets=plan.offsets)
        if plan.epoch_offsets is not None:
            arrs["epoch_offsets"] = plan.epoch_offsets
        if plan.views != 1:
            arrs["views"] = np.asarray(plan.views, dtype=np.int64)
        if plan.multiset:
            arrs["multiset"] = np.asarray(1, dtype=np.int64)
        try:
            np.savez_compressed(p, **arrs)
        except OSError as exc:
            raise InputError(f"cannot write {str(p)!r}: {exc.strerror}") from None
        return p
    if p.suffix != ".json":
        raise InputError(f"plan file name must end in .json or .npz, got {p.name!r}")
    obj: dict = {k: v for k, v in plan.meta.items() if k in ("name", "description", "dim")}
    if plan.views != 1:
        obj["views"] = plan.views
    if plan.multiset:
        obj["multiset"] = True
    obj["labels"] = plan.original_labels().tolist()
    if plan.epoch_offsets is None:
        obj["batches"] = [b.tolist() for b in plan.batches]
    else:
        obj["epochs"] = [[b.tolist() for b in ep] for ep in plan.epochs]
    try:
        p.write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {str(p)!r}: {exc.strerror}") from None
    return p


def read_labels(path) -> np.ndarray:
    """Labels from a .json list (or {"labels": [...]}) / .npy / .npz (array 'labels') / text file (one per line)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"labels file {str(p)!r} does not exist")
    if p.stat().st_size > MAX_NPZ_BYTES:
        raise InputError("labels file too large")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arr = np.asarray(z["labels"])
        elif p.suffix == ".npy":
            arr = np.asarray(np.load(p, allow_pickle=False))
        elif p.suffix == ".json":
            obj = json.loads(p.read_text())
            arr = obj["labels"] if isinstance(obj, dict) else obj
            if not isinstance(arr, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in arr):
                raise InputError("labels must be a JSON list of integers")
        else:
            arr = [int(t) for t in p.read_text().split()]
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read labels from {str(p)!r}: {type(exc).__name__}: {exc}") from None
    y = _int_array(arr, "labels")
    if y.size == 0 or y.min() < 0:
        raise InputError("labels must be a non-empty list of integers >= 0")
    return y

"""Batching plans: the labels of n samples and the batches (sample-index sets) a training run uses.

Format
------
A plan is ``labels`` (n integers >= 0, one per sample) and a list of batches, each a non-empty list of
distinct sample indices in [0, n); the batches may be grouped by epoch. A sample may appear in many
batches (across epochs, or as a binding example in every batch); within one batch an index appears
at most once.

JSON (hand-written plans)::

    {"labels": [0, 0, 1, 1], "batches": [[0, 1, 2], [1, 2, 3]]}
    {"labels": [0, 0, 1, 1], "epochs": [[[0, 1], [2, 3]], [[0, 2], [1, 3]]]}

  optional keys: "name", "description" (strings), "dim" (the embedding dimension the plan is meant
  for, an integer; ``check-batches --dim`` overrides it). Any other key is an error (a typo must not
  silently change a verdict).

npz (real plans: CIFAR-100 has 50,000 samples and hundreds of epochs) holds integer arrays::

    labels   (n,)            class of each sample
    indices  (total,)        all batches concatenated
    offsets  (num_batches+1) batch b is indices[offsets[b]:offsets[b+1]]  (offsets[0] = 0)
    epoch_offsets (num_epochs+1), optional: epoch e is batches epoch_offsets[e]:epoch_offsets[e+1]

Loading validates strictly and raises :class:`~nctheory.errors.InputError` (CLI exit 2, one line) on:
unknown or negative indices, an index >= n (labels shorter than the indices), duplicate indices in
a batch, empty batches or plans, non-integer (or boolean) labels or indices, negative labels,
malformed JSON/npz, unknown keys, and files larger than :data:`MAX_JSON_BYTES` /
:data:`MAX_NPZ_BYTES` (checked before anything is parsed or decompressed).
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
JSON_KEYS = {"labels", "batches", "epochs", "name", "description", "dim"}


@dataclass
class Plan:
    """Labels and batches, stored flat: batch b is ``indices[offsets[b]:offsets[b+1]]``.

    ``epoch_offsets`` (optional) groups batches into epochs. Use :meth:`from_batches` /
    :meth:`from_epochs` to build one from lists (they validate), :attr:`batches` / :attr:`epochs`
    to read it back as lists of int64 arrays (views, no copies).
    """

    labels: np.ndarray
    indices: np.ndarray
    offsets: np.ndarray
    epoch_offsets: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        validate(self)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_batches(cls, labels, batches, meta: dict | None = None) -> "Plan":
        labels = _int_array(labels, "labels")
        idx, off = _flatten(batches, "batch")
        return cls(labels, idx, off, None, dict(meta or {}))

    @classmethod
    def from_epochs(cls, labels, epochs, meta: dict | None = None) -> "Plan":
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
        return cls(labels, idx, off, np.asarray(ep_off, dtype=np.int64), dict(meta or {}))

    # ---- views ----------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.labels.size)

    @property
    def num_batches(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def num_epochs(self) -> int:
        return 1 if self.epoch_offsets is None else int(self.epoch_offsets.size - 1)

    @property
    def classes(self) -> np.ndarray:
        """The distinct labels present (sorted); k = len(classes)."""
        return np.unique(self.labels)

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
        return np.diff(self.offsets)

    def batch_ids(self) -> np.ndarray:
        """(total,) the batch of every entry of ``indices``."""
        return np.repeat(np.arange(self.num_batches, dtype=np.int64), self.batch_sizes())

    def summary(self) -> dict:
        sizes = self.batch_sizes()
        return {"n": self.n, "k": int(self.classes.size), "num_batches": self.num_batches,
                "num_epochs": self.num_epochs, "total_entries": int(self.indices.size),
                "batch_size_min": int(sizes.min()), "batch_size_max": int(sizes.max())}


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
    """Raise InputError unless ``plan`` is well formed (see module docstring)."""
    y = plan.labels = _int_array(plan.labels, "labels")
    idx = plan.indices = _int_array(plan.indices, "indices")
    off = plan.offsets = _int_array(plan.offsets, "offsets")
    n = y.size
    if n == 0:
        raise InputError("plan has no labels")
    if y.min() < 0:
        raise InputError(f"labels must be >= 0, found {int(y.min())}")
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
    _check_duplicates(idx, off, n)
    if plan.epoch_offsets is not None:
        eo = plan.epoch_offsets = _int_array(plan.epoch_offsets, "epoch_offsets")
        if eo.size < 2 or eo[0] != 0 or eo[-1] != sizes.size or np.any(np.diff(eo) <= 0):
            raise InputError("epoch_offsets must start at 0, increase strictly and end at the number of batches")


def _check_duplicates(idx: np.ndarray, off: np.ndarray, n: int) -> None:
    """No index twice within a batch. Vectorised: sort (batch, index) keys in chunks of batches."""
    nb = off.size - 1
    step = max(1, 2_000_000 // max(1, int(np.diff(off).mean())))
    for b0 in range(0, nb, step):
        b1 = min(nb, b0 + step)
        seg = idx[off[b0]:off[b1]]
        bid = np.repeat(np.arange(b0, b1, dtype=np.int64), np.diff(off[b0:b1 + 1]))
        key = np.sort(bid * n + seg)
        dup = np.flatnonzero(key[1:] == key[:-1])
        if dup.size:
            k0 = int(key[dup[0]])
            raise InputError(f"batch {k0 // n} repeats sample index {k0 % n}")


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
    labels = obj["labels"]
    if not isinstance(labels, list):
        raise InputError("'labels' must be a list of integers")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in labels):
        bad = next(v for v in labels if isinstance(v, bool) or not isinstance(v, int))
        raise InputError(f"labels must be integers, found {bad!r}")
    if "batches" in obj:
        bs = obj["batches"]
        if not isinstance(bs, list):
            raise InputError("'batches' must be a list of lists of sample indices")
        _check_json_batches(bs, "batch")
        return Plan.from_batches(labels, bs, meta)
    eps = obj["epochs"]
    if not isinstance(eps, list) or not eps:
        raise InputError("'epochs' must be a non-empty list of epochs (lists of batches)")
    for e, ep in enumerate(eps):
        if not isinstance(ep, list):
            raise InputError(f"epoch {e} must be a list of batches")
        _check_json_batches(ep, f"epoch {e} batch")
    return Plan.from_epochs(labels, eps, meta)


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
    allowed = {"labels", "indices", "offsets", "epoch_offsets"}
    if not {"labels", "indices", "offsets"} <= names:
        raise InputError(f"npz plan needs arrays labels, indices, offsets; found {sorted(names)}")
    if names - allowed:
        raise InputError(f"unknown array(s) in npz plan: {sorted(names - allowed)}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrs = {k: z[k] for k in names}
    except Exception as exc:  # zip/npy format errors of many kinds: one line, exit 2
        raise InputError(f"malformed npz plan {str(p)!r}: {type(exc).__name__}: {exc}") from None
    for k, a in arrs.items():
        if a.dtype.kind not in "iu":
            raise InputError(f"npz array {k!r} must hold integers, found {a.dtype}")
        if a.ndim != 1:
            raise InputError(f"npz array {k!r} must be 1-dimensional, found shape {a.shape}")
    return Plan(arrs["labels"], arrs["indices"], arrs["offsets"], arrs.get("epoch_offsets"))


def save_plan(plan: Plan, path) -> Path:
    """Write ``plan`` as .npz (compressed) or .json, chosen by the file name's suffix."""
    p = Path(path)
    if p.suffix == ".npz":
        arrs = dict(labels=plan.labels, indices=plan.indices.astype(np.int32 if plan.n < 2**31 else np.int64),
                    offsets=plan.offsets)
        if plan.epoch_offsets is not None:
            arrs["epoch_offsets"] = plan.epoch_offsets
        try:
            np.savez_compressed(p, **arrs)
        except OSError as exc:
            raise InputError(f"cannot write {str(p)!r}: {exc.strerror}") from None
        return p
    if p.suffix != ".json":
        raise InputError(f"plan file name must end in .json or .npz, got {p.name!r}")
    obj: dict = {k: v for k, v in plan.meta.items() if k in ("name", "description", "dim")}
    obj["labels"] = plan.labels.tolist()
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

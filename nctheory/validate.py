"""Validation of every input, one place per kind: numbers, arrays, config fields, paths, memory budgets.

Every command-line flag, config field and library argument is checked here before any work starts.
A failure is :class:`nctheory.errors.InputError` (CLI exit 2) with ONE line that names the flag or
field (``name``) and says what was expected and what was given, e.g.

    momentum must be a number in [0, 1), got the string '0.9'
    --out x.xyz: unsupported file extension '.xyz'; use .png, .pdf or .svg
    needs ~11.2 GB for 40000 classes (dense class graph); limit 8.0 GB (--max-memory); use ...

Conventions
- Numbers: ``bool`` is never a number (``True`` is refused where a number is wanted); a string is a
  number only where ``parse_str=True`` is documented (command-line text); ``"True"`` never is. Finite
  unless ``finite=False``. Ranges are closed unless ``lo_open``/``hi_open``.
- Arrays (numpy, anything ``np.asarray`` takes, or torch tensors, which are checked in place without a
  copy to the host): complex, bool, object and string dtypes are refused; integer arrays are returned as
  int64 after checking that every value fits (a uint64 2**64 - 1 is reported as itself, not as -1);
  label arrays are checked for their largest value before anything is sized by it (a bincount).
- Paths: inputs must exist and be the right kind; an output must have a supported extension, must not
  be a directory (or a device, fifo, ...), its folder must exist and be writable (probed by creating
  and removing a temporary file, which is the only test that works for root and for /proc), it must
  stay inside ``root`` when one is given, and it must not be a run folder's own file
  (:func:`nctheory.runfolder.check_may_write`).
- Memory: :func:`check_budget` compares an estimate with the limit: the ``--max-memory`` the user set
  (:func:`memory_limit`), else the environment variable ``NCTHEORY_MAX_MEMORY``, else what is available
  now (the smallest of /proc/meminfo MemAvailable, the cgroup's memory.max headroom and the RLIMIT_AS
  headroom). Sizes are decimal (1 GB = 10**9 bytes), as the messages print them.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from nctheory.errors import InputError

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
SEED_MAX = 2**63 - 1  # seeds are non-negative int64: numpy (default_rng, seed % 2**32) and torch take them all
PLOT_SUFFIXES = (".png", ".pdf", ".svg")  # what every plotting command writes (matplotlib's Agg/PDF/SVG)


# ------------------------------------------------------------------------------------------- descriptions
def describe(value: Any) -> str:
    """A short, one-line description of a value for an error message ('the string '0.9'', 'True', ...)."""
    if isinstance(value, (bool, np.bool_)):
        return f"the boolean {bool(value)}"
    if isinstance(value, str):
        s = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {s!r}"
    if value is None:
        return "null"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, complex) or isinstance(value, np.complexfloating):
        return f"the complex number {complex(value)!r}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, dict):
        return "an object" if not value else f"an object with keys {', '.join(map(str, list(value)[:4]))}"
    return f"a {type(value).__name__}"


def _g(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def interval(lo=None, hi=None, lo_open: bool = False, hi_open: bool = False) -> str:
    """'> 0', '>= 1', '<= 5', 'in [0, 1)' (empty when unbounded)."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_g(lo)}, {_g(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_g(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_g(hi)}"
    return ""


def _in_range(v, lo, hi, lo_open, hi_open) -> bool:
    if lo is not None and (v < lo or (lo_open and v == lo)):
        return False
    if hi is not None and (v > hi or (hi_open and v == hi)):
        return False
    return True


# ------------------------------------------------------------------------------------------- numbers
def real(value, name: str, *, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False, finite: bool = True,
         allow_none: bool = False, parse_str: bool = False) -> float | None:
    """``value`` as a float: a real number (int, float, numpy real scalar; never bool, complex or, unless
    ``parse_str``, a string), finite unless ``finite=False``, within the interval given by lo/hi."""
    if value is None and allow_none:
        return None
    rng = interval(lo, hi, lo_open, hi_open)
    want = "a number" + (f" {rng}" if rng else "") + ("" if not allow_none else " or null")
    v = value
    if isinstance(v, str) and parse_str:
        try:
            v = float(v.strip())
        except ValueError:
            raise InputError(f"{name} must be {want}, got {describe(value)}") from None
    elif isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise InputError(f"{name} must be {want}, got {describe(value)}")
    try:
        v = float(v)
    except OverflowError:  # an int beyond float's range
        raise InputError(f"{name} must be {want}, got {describe(value)} (too large)") from None
    if finite and not math.isfinite(v):
        raise InputError(f"{name} must be a finite number{f' {rng}' if rng else ''}, got {v!r}")
    if math.isnan(v) or not _in_range(v, lo, hi, lo_open, hi_open):
        raise InputError(f"{name} must be {want}, got {v!r}")
    return v


def integer(value, name: str, *, lo=None, hi=None, allow_none: bool = False, parse_str: bool = False) -> int | None:
    """``value`` as an int: a Python or numpy integer (never bool, never a float: 2.0 is refused, since a
    JSON config writes whole numbers without a point), or with ``parse_str`` a string of decimal digits;
    within [lo, hi]."""
    if value is None and allow_none:
        return None
    rng = interval(lo, hi)
    want = "an integer" + (f" {rng}" if rng else "") + ("" if not allow_none else " or null")
    v = value
    if isinstance(v, str) and parse_str and re.fullmatch(r"\s*[+-]?\d+\s*", v):
        v = int(v)
    elif isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise InputError(f"{name} must be {want}, got {describe(value)}")
    v = int(v)
    if not _in_range(v, lo, hi, False, False):
        raise InputError(f"{name} must be {want}, got {v}")
    return v


def temperature(tau, name: str = "tau") -> float:
    """A temperature tau as a float: a real number > 0 and finite (a string or a bool is refused); a
    one-element torch tensor or a 0-d numpy array is read as its number (a complex or bool tensor is
    refused). The one check of tau for every loss and bound (``nctheory.losses._inputs.check_tau`` is this
    function); torch is not imported for it: a tensor exists only if torch already is."""
    if _is_tensor(tau):
        if tau.numel() != 1:
            raise InputError(f"{name} must be a number > 0, got a tensor of shape {tuple(tau.shape)}")
        real_array(tau.reshape(1), name)  # complex / bool tensors refused
        tau = tau.item()
    elif isinstance(tau, np.ndarray) and tau.ndim == 0:
        tau = tau[()]
    return real(tau, name, lo=0, lo_open=True)


def boolean(value, name: str, *, allow_none: bool = False) -> bool | None:
    """``value`` as a bool: only True/False (JSON true/false); 0, 1 and "true" are refused."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be true or false{' or null' if allow_none else ''}, got {describe(value)}")
    return bool(value)


def text(value, name: str, *, choices: Iterable[str] | None = None, allow_none: bool = False,
         nonempty: bool = False) -> str | None:
    """``value`` as a str (one of ``choices`` when given)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string{' or null' if allow_none else ''}, got {describe(value)}")
    if choices is not None:
        choices = list(choices)
        if value not in choices:
            raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    if nonempty and not value.strip():
        raise InputError(f"{name} must not be empty")
    return value


def number_list(text_value: str, name: str, *, kind: str = "int", lo=None, hi=None, lo_open: bool = False,
                hi_open: bool = False, min_len: int = 1, max_len: int | None = None) -> list:
    """A comma-separated command-line list ("10,2,2" / "0.1,0.5") of integers (kind "int") or reals."""
    parts = [t for t in str(text_value).split(",")]
    if any(not t.strip() for t in parts) and str(text_value).strip():
        raise InputError(f"{name} must be comma-separated {'integers' if kind == 'int' else 'numbers'} "
                         f"without empty entries, got {text_value!r}")
    parts = [t for t in parts if t.strip()]
    if len(parts) < min_len or (max_len is not None and len(parts) > max_len):
        size = f"at least {min_len}" if max_len is None else f"{min_len} to {max_len}"
        raise InputError(f"{name} must list {size} value(s), got {text_value!r}")
    if kind == "int":
        return [integer(t, f"{name} entry {i + 1}", lo=lo, hi=hi, parse_str=True) for i, t in enumerate(parts)]
    return [real(t, f"{name} entry {i + 1}", lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, parse_str=True)
            for i, t in enumerate(parts)]


# ------------------------------------------------------------------------------------------- arrays
def _is_tensor(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "dtype") and hasattr(x, "shape")


def _kind(x) -> str:
    """numpy's dtype kind letter for a numpy array or a torch tensor ('b', 'i', 'u', 'f', 'c', 'O', 'U', ...)."""
    if _is_tensor(x):
        dt = x.dtype
        if dt.is_complex:
            return "c"
        if dt.is_floating_point:
            return "f"
        name = str(dt)
        if name == "torch.bool":
            return "b"
        return "u" if name.startswith("torch.uint") else "i"
    return x.dtype.kind


def _as_array(x, name: str):
    if _is_tensor(x):
        return x
    if isinstance(x, (str, bytes)):
        raise InputError(f"{name} must be an array of numbers, got {describe(x)}")
    try:
        with np.errstate(all="ignore"):
            return np.asarray(x)
    except (TypeError, ValueError, OverflowError) as exc:  # ragged lists, ints beyond any dtype
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{name} must be a rectangular array of numbers ({msg})") from None


def _check_shape(a, name: str, ndim, shape) -> None:
    s = tuple(int(v) for v in a.shape)
    if ndim is not None and len(s) != ndim:
        raise InputError(f"{name} must be a {ndim}-dimensional array, got shape {s}")
    if shape is not None:
        if len(s) != len(shape) or any(w is not None and w != v for w, v in zip(shape, s)):
            want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ("," if len(shape) == 1 else "") + ")"
            raise InputError(f"{name} must have shape {want}, got {s}")


def _refuse_kind(k: str, name: str, what: str) -> None:
    if k == "c":
        raise InputError(f"{name} must be {what}, got complex values")
    if k == "b":
        raise InputError(f"{name} must be {what}, got booleans")
    if k not in "iuf":
        raise InputError(f"{name} must be {what}, got {'strings' if k in 'USa' else 'non-numeric values'}")


def real_array(x, name: str, *, ndim: int | None = None, shape: tuple | None = None, finite: bool = True,
               min_size: int = 0):
    """A real array (integer or floating dtype; complex, bool, object and strings refused), of ``ndim``
    dimensions / ``shape`` (None entries are free), every entry finite. A torch tensor is checked in
    place and returned as is; anything else is returned as a numpy array (its own dtype)."""
    a = _as_array(x, name)
    _refuse_kind(_kind(a), name, "an array of real numbers")
    _check_shape(a, name, ndim, shape)
    size = int(np.prod(a.shape)) if not _is_tensor(a) else int(a.numel())
    if size < min_size:
        raise InputError(f"{name} must have at least {min_size} entr{'y' if min_size == 1 else 'ies'}, got {size}")
    if finite and size and _kind(a) == "f":
        if _is_tensor(a):
            import torch

            bad = int((~torch.isfinite(a)).sum().item())
        else:
            bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise InputError(f"{name} must be finite, got {bad} non-finite entr{'y' if bad == 1 else 'ies'}")
    return a


def int_array(x, name: str, *, ndim: int | None = 1, lo: int | None = None, hi: int | None = None,
              min_size: int = 0) -> np.ndarray:
    """An integer array as int64 (numpy; a torch tensor is moved to the host): integer dtype (float, bool,
    complex refused), every value in [lo, hi] and within int64 (uint64 values above 2**63 - 1 are
    reported as themselves)."""
    a = _as_array(x, name)
    if _is_tensor(a):
        a = a.detach().cpu().numpy()
    k = a.dtype.kind
    if k == "f" and a.size == 0:  # np.asarray([]) is float64: an empty list holds no non-integer
        a, k = a.astype(np.int64), "i"
    if k == "f":
        raise InputError(f"{name} must hold integers, got {a.dtype.name} values")
    _refuse_kind(k, name, "an array of integers")
    _check_shape(a, name, ndim, None)
    if a.size < min_size:
        raise InputError(f"{name} must have at least {min_size} entr{'y' if min_size == 1 else 'ies'}, got {a.size}")
    if a.size:
        amax, amin = int(a.max()), int(a.min())  # Python ints: exact for uint64 as well
        if amax > INT64_MAX:
            raise InputError(f"{name} holds {amax}, beyond the int64 range (max {INT64_MAX})")
        if lo is not None and amin < lo:
            raise InputError(f"{name} must be >= {lo}, found {amin}")
        if hi is not None and amax > hi:
            raise InputError(f"{name} must be <= {hi}, found {amax}")
    return a.astype(np.int64, copy=False)


def batch_indices(batches, n: int, multiset: bool = False) -> list[np.ndarray]:
    """A set of batches as a list of non-empty int64 arrays of sample indices in [0, n), distinct within a
    batch unless ``multiset`` (then a repeated index is a copy of the sample, as in
    :func:`nctheory.losses.scl_batches`); ``None`` is the full batch [0, n). The one check of a set of
    batches (``nctheory.losses._inputs.as_batches`` returns these arrays as tensors)."""
    if batches is None:
        return [np.arange(n, dtype=np.int64)]
    out = []
    for b, batch in enumerate(batches):
        arr = np.asarray(batch)
        if arr.ndim != 1 or arr.size == 0:
            raise InputError(f"batch {b} must be a non-empty list of sample indices")
        if arr.dtype.kind not in "iu":
            raise InputError(f"batch {b} holds non-integer indices")
        if arr.min() < 0 or arr.max() >= n:
            raise InputError(f"batch {b} has index {int(arr.min() if arr.min() < 0 else arr.max())} outside [0, {n})")
        if not multiset and np.unique(arr).size != arr.size:
            raise InputError(f"batch {b} repeats a sample index (pass multiset=True if its samples are "
                             f"drawn with replacement)")
        out.append(arr.astype(np.int64))
    if not out:
        raise InputError("the set of batches is empty")
    return out


def labels(y, name: str = "labels", *, k: int | None = None, max_classes: int | None = None,
           bytes_per_class: int = 8, min_size: int = 1) -> np.ndarray:
    """Class labels: a 1-D int64 array of integers in [0, k) (or [0, max] when k is None), checked before
    anything is sized by the largest label. Labels imply k = max + 1 classes; more than ``max_classes``,
    or more than the memory budget allows at ``bytes_per_class`` each (a bincount: 8), is refused with
    the number of distinct labels, so that a file with labels 0, 0, 1e15, 1e15 is one line, not 8 PB."""
    a = int_array(y, name, ndim=1, lo=0, min_size=min_size)
    if not a.size:
        return a
    top = int(a.max())
    if k is not None:
        k = integer(k, "k", lo=1)
        if top >= k:
            raise InputError(f"{name} must be class indices in [0, {k}), found {top}")
        return a
    implied = top + 1
    if max_classes is not None and implied > max_classes:
        distinct = int(np.unique(a).size)
        raise InputError(f"{name} reach {top}, i.e. {implied} classes (at most {max_classes}); only {distinct} "
                         f"distinct label(s) occur: relabel them 0..{distinct - 1}")
    need = implied * bytes_per_class
    limit, source = memory_limit()
    if need > limit:
        distinct = int(np.unique(a).size)
        raise InputError(f"{name} reach {top}: {implied} classes need ~{format_bytes(need)}; limit "
                         f"{format_bytes(limit)} ({source}); only {distinct} distinct label(s) occur: relabel "
                         f"them 0..{distinct - 1}")
    return a


# ------------------------------------------------------------------------------------------- config fields
@dataclass(frozen=True)
class Field:
    """The declared type of one config field.

    kind: "int" | "real" | "bool" | "str" | "list" | "dict" | "any"; lo/hi/lo_open/hi_open: the range of
    a number; nullable: None allowed; choices: the allowed strings; item: the Field of every list entry;
    fields: the schema of a dict with known keys (None: any keys); finite: reals must be finite;
    increasing: list items strictly increasing; doc: what the field means."""

    kind: str
    lo: Any = None
    hi: Any = None
    lo_open: bool = False
    hi_open: bool = False
    nullable: bool = False
    choices: tuple | None = None
    item: "Field | None" = None
    fields: "Mapping[str, Field] | None" = None
    finite: bool = True
    increasing: bool = False
    doc: str = ""


_PLURAL = {"int": "integers", "real": "numbers", "bool": "booleans", "str": "strings", "dict": "objects",
           "list": "lists"}


def check_field(value, spec: Field, name: str):
    """``value`` checked against ``spec`` (InputError naming ``name``); returns it normalised (numpy scalars
    become Python numbers, dicts are checked recursively)."""
    if value is None and spec.nullable:
        return None
    k = spec.kind
    if k == "int":
        return integer(value, name, lo=spec.lo, hi=spec.hi, allow_none=spec.nullable)
    if k == "real":
        return real(value, name, lo=spec.lo, hi=spec.hi, lo_open=spec.lo_open, hi_open=spec.hi_open,
                    finite=spec.finite, allow_none=spec.nullable)
    if k == "bool":
        return boolean(value, name, allow_none=spec.nullable)
    if k == "str":
        return text(value, name, choices=spec.choices, allow_none=spec.nullable)
    if k == "list":
        if not isinstance(value, (list, tuple)):
            what = f"a list of {_PLURAL.get(spec.item.kind, 'values')}" if spec.item else "a list"
            raise InputError(f"{name} must be {what}, got {describe(value)}")
        out = [check_field(v, spec.item, f"{name}[{i}]") if spec.item else v for i, v in enumerate(value)]
        if spec.increasing and any(b <= a for a, b in zip(out, out[1:])):
            raise InputError(f"{name} must be strictly increasing, got {out}")
        return out
    if k == "dict":
        if not isinstance(value, dict):
            raise InputError(f"{name} must be an object (JSON {{...}}), got {describe(value)}")
        if spec.fields is None:
            return dict(value)
        return check_fields(value, spec.fields, where=name)
    if k == "any":
        return value
    raise ValueError(f"unknown field kind {k!r}")  # a programming error in a schema, not bad input


def check_fields(d: Mapping, schema: Mapping[str, Field], *, where: str | None = None,
                 ignore: Iterable[str] = ()) -> dict:
    """Every key of ``d`` checked against ``schema`` (unknown keys refused, listed); returns a new dict of
    normalised values (only the keys ``d`` has). ``where`` prefixes field names ("synthetic.k")."""
    if not isinstance(d, Mapping):
        raise InputError(f"{where or 'config'} must be an object (JSON {{...}}), got {describe(d)}")
    ignore = set(ignore)
    unknown = sorted(str(key) for key in d if key not in schema and key not in ignore)
    if unknown:
        allowed = ", ".join(sorted(schema))
        raise InputError(f"unknown {where + ' ' if where else 'config '}key(s): {', '.join(unknown)}"
                         + (f" (allowed: {allowed})" if len(allowed) <= 120 else ""))
    out = {}
    for key, value in d.items():
        if key in ignore:
            out[key] = value
            continue
        out[key] = check_field(value, schema[key], f"{where}.{key}" if where else str(key))
    return out


# ------------------------------------------------------------------------------------------- paths
def _path(path, flag: str) -> Path:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise InputError(f"{flag} must be a path, got {describe(path)}")
    s = os.fspath(path)
    if not s or not s.strip():
        raise InputError(f"{flag} must not be empty")
    if "\x00" in s:
        raise InputError(f"{flag} holds a NUL character")
    return Path(s)


def _stat(p: Path, flag: str):
    try:
        return p.stat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise InputError(f"{flag} {p}: a part of the path is a file, not a folder") from None
    except OSError as exc:
        raise InputError(f"{flag} {p}: {exc.strerror or type(exc).__name__}") from None


def input_file(path, flag: str, *, suffixes: Iterable[str] | None = None, max_bytes: int | None = None) -> Path:
    """An existing, readable regular file (with one of ``suffixes`` when given, at most ``max_bytes``)."""
    import stat as st_mod

    p = _path(path, flag)
    st = _stat(p, flag)
    if st is None:
        raise InputError(f"{flag} {p} does not exist")
    if st_mod.S_ISDIR(st.st_mode):
        raise InputError(f"{flag} {p} is a folder, not a file")
    if not st_mod.S_ISREG(st.st_mode):
        raise InputError(f"{flag} {p} is not a regular file")
    if suffixes is not None:
        suffixes = tuple(suffixes)
        if p.suffix.lower() not in suffixes:
            raise InputError(f"{flag} {p}: expected a {' or '.join(suffixes)} file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(f"{flag} {p} is {format_bytes(st.st_size)}; the limit is {format_bytes(max_bytes)}")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{flag} {p}: cannot read it ({exc.strerror})") from None
    return p


def input_dir(path, flag: str, *, must_contain: Iterable[str] = (), what: str = "folder") -> Path:
    """An existing, readable folder holding every name in ``must_contain``."""
    import stat as st_mod

    p = _path(path, flag)
    st = _stat(p, flag)
    if st is None:
        raise InputError(f"{flag} {p} does not exist")
    if not st_mod.S_ISDIR(st.st_mode):
        raise InputError(f"{flag} {p} is not a {what} (it is a file)")
    if not os.access(p, os.R_OK | os.X_OK):
        raise InputError(f"{flag} {p}: cannot read the folder")
    missing = [n for n in must_contain if not (p / n).exists()]
    if missing:
        raise InputError(f"{flag} {p} is not a {what} (no {', '.join(missing)})")
    return p


def probe_writable(folder: Path, flag: str, target: Path | None = None) -> None:
    """Create and remove a temporary file in ``folder``: the one test of writability that holds for root
    (os.access says yes) and for pseudo file systems such as /proc."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nctheory-probe-", dir=folder)
    except OSError as exc:
        where = target if target is not None else folder
        raise InputError(f"{flag} {where}: cannot write in {folder} ({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def inside(root, path, flag: str) -> Path:
    """``path`` (relative to ``root`` unless absolute) resolved, refused when it leaves ``root``: names such
    as ``../../escape``, absolute paths elsewhere, and symlinks pointing out of the root."""
    root_r = Path(os.path.realpath(_path(root, "root")))
    p = _path(path, flag)
    full = Path(os.path.realpath(p if p.is_absolute() else root_r / p))
    if full != root_r and root_r not in full.parents:
        raise InputError(f"{flag} {os.fspath(path)!r} leads outside {root}")
    return full


def child_name(root, name, flag: str) -> Path:
    """The folder ``root/name`` for a name given in a config (a sweep entry's "name"): one plain path
    component, not '.', '..', absolute, or containing a separator; the result is inside ``root``."""
    name = text(name, flag, nonempty=True)
    if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or os.path.isabs(name):
        raise InputError(f"{flag} must be a plain folder name (no '/', '..' or absolute path), got {name!r}")
    return inside(root, name, flag)


def output_file(path, flag: str, *, suffixes: Iterable[str] | None = PLOT_SUFFIXES, force: bool = False,
                root=None) -> Path:
    """A file a command is about to write, checked before any work: a supported extension (``suffixes``;
    None: any), not a folder or other non-regular file, its folder exists and is writable, inside ``root``
    when given, and not a run folder's own file unless ``force`` (run data never:
    :func:`nctheory.runfolder.check_may_write`). Returns the path (unchanged, not resolved)."""
    import stat as st_mod

    from nctheory import runfolder

    p = _path(path, flag)
    if suffixes is not None:
        suffixes = tuple(suffixes)
        choices = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        st_target = _stat(p, flag)
        if st_target is not None and st_mod.S_ISDIR(st_target.st_mode):
            raise InputError(f"{flag} {p} is a folder; give a file name such as {p / ('out' + suffixes[0])}")
        if not p.suffix:
            raise InputError(f"{flag} {p} has no file extension; use {choices}")
        if p.suffix.lower() not in suffixes:
            raise InputError(f"{flag} {p}: unsupported file extension {p.suffix!r}; use {choices}")
    st = _stat(p, flag)
    if st is not None:
        if st_mod.S_ISDIR(st.st_mode):
            raise InputError(f"{flag} {p} is a folder, not a file")
        if not st_mod.S_ISREG(st.st_mode):
            raise InputError(f"{flag} {p} exists and is not a regular file")
    parent = p.parent
    pst = _stat(parent, flag)
    if pst is None:
        raise InputError(f"{flag} {p}: the folder {parent} does not exist")
    if not st_mod.S_ISDIR(pst.st_mode):
        raise InputError(f"{flag} {p}: {parent} is not a folder")
    probe_writable(parent, flag, p)
    if root is not None:
        inside(root, p, flag)
    runfolder.check_may_write(p, flag, force=force)
    return p


def output_dir(path, flag: str, *, root=None) -> Path:
    """A folder a command will create or write into: not an existing file, not below a file, and its
    nearest existing ancestor writable (probed); inside ``root`` when given. Creates nothing."""
    import stat as st_mod

    p = _path(path, flag)
    st = _stat(p, flag)
    if st is not None:
        if not st_mod.S_ISDIR(st.st_mode):
            raise InputError(f"{flag} {p} is a file, not a folder")
        probe_writable(p, flag)
    else:
        anc = p.parent
        while True:
            ast = _stat(anc, flag)
            if ast is not None:
                break
            if anc == anc.parent:
                break
            anc = anc.parent
        if ast is None or not st_mod.S_ISDIR(ast.st_mode):
            raise InputError(f"{flag} {p}: {anc} is a file, not a folder")
        probe_writable(anc, flag, p)
    if root is not None:
        inside(root, p, flag)
    return p


# ------------------------------------------------------------------------------------------- memory budget
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_LIMIT: list[tuple[int, str]] = []  # the limit set by the command line (memory_limit_set), innermost last


def parse_bytes(value, flag: str = "--max-memory") -> int:
    """'8G', '8GB', '512M', '1.5GiB', '100000' (bytes) as a number of bytes > 0 (decimal units: 1 GB = 10**9)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return integer(value, flag, lo=1)
    s = text(value, flag).strip().lower().replace(" ", "")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)([a-z]*)", s)
    if not m or m.group(2) not in _UNITS:
        raise InputError(f"{flag} must be a size such as 8G, 512M or 1.5GB, got {value!r}")
    n = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(n) or n < 1:
        raise InputError(f"{flag} must be a size of at least 1 byte, got {value!r}")
    return int(n)


def format_bytes(n: float) -> str:
    """Decimal units with one decimal: 11.2 GB, 512.0 MB, 7.2 PB."""
    n = float(n)
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def _rlimit_headroom() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        return soft - vm
    except (OSError, ValueError, StopIteration, ImportError):
        return None


def available_bytes() -> int:
    """Memory this process can still take now: the smallest of /proc/meminfo MemAvailable, the cgroup
    (v2) memory.max - memory.current and RLIMIT_AS - VmSize; without any of them os.sysconf's physical
    pages."""
    cands = [v for v in (_meminfo_available(), _cgroup_headroom(), _rlimit_headroom()) if v is not None]
    if not cands:
        try:
            cands = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError, AttributeError):
            cands = [2**63 - 1]
    return max(0, min(cands))


def memory_limit(user_limit=None) -> tuple[int, str]:
    """(bytes, where the number comes from): ``user_limit`` (bytes or '8G'), else the command line's
    --max-memory (:func:`memory_limit_set`), else $NCTHEORY_MAX_MEMORY, else :func:`available_bytes`."""
    if user_limit is not None:
        return parse_bytes(user_limit), "--max-memory"
    if _LIMIT:
        return _LIMIT[-1]
    env = os.environ.get("NCTHEORY_MAX_MEMORY")
    if env:
        return parse_bytes(env, "NCTHEORY_MAX_MEMORY"), "NCTHEORY_MAX_MEMORY"
    return available_bytes(), "available memory"


@contextlib.contextmanager
def memory_limit_set(limit, source: str = "--max-memory"):
    """Within the block, :func:`memory_limit` (and so every :func:`check_budget`) uses ``limit``
    (bytes or '8G'; None: no change). The dispatcher sets the global --max-memory this way."""
    if limit is None:
        yield
        return
    _LIMIT.append((parse_bytes(limit, source), source))
    try:
        yield
    finally:
        _LIMIT.pop()


def estimate_bytes(*shapes, dtype="float64", copies: int = 1) -> int:
    """Bytes of arrays with the given shapes (tuples or ints) of ``dtype``, times ``copies``: exact
    Python integers, so that (1e15, 1e15) gives 8e30, not an overflow."""
    item = np.dtype(dtype).itemsize
    total = 0
    for s in shapes:
        dims = (s,) if isinstance(s, (int, np.integer)) else tuple(s)
        n = 1
        for v in dims:
            n *= int(v)
        total += n
    return total * item * int(copies)


def check_budget(need_bytes, what: str, suggestion: str | None = None, *, limit=None,
                 flag: str = "--max-memory") -> int:
    """Refuse (InputError, one line) work whose memory estimate ``need_bytes`` exceeds the limit
    (:func:`memory_limit`): "needs ~11.2 GB for 40000 classes (dense class graph); limit 8.0 GB
    (--max-memory); use ...". Returns the limit in bytes."""
    lim, source = memory_limit(limit)
    if source == "--max-memory" and flag != "--max-memory":
        source = flag
    need = int(need_bytes)
    if need > lim:
        raise InputError(f"needs ~{format_bytes(need)} for {what}; limit {format_bytes(lim)} ({source})"
                         + (f"; {suggestion}" if suggestion else ""))
    return lim

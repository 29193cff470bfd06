"""Input validation shared by every loss: turn arrays into tensors and refuse malformed input.

Each function first checks its argument's *type* with :mod:`nctheory.validate` (the one place where a
real array, a label array and a positive number are defined: complex, bool, object and string data
refused; a uint64 label 2**64 - 1 reported as itself; ``tau='0.1'`` or ``tau=True`` refused), then
converts it. Features are computed in at least float32
(:func:`nctheory.losses._precision.at_least_float32`: a float16 logit overflows above 65504).
"""

from __future__ import annotations

import numpy as np
import torch

from nctheory import validate
from nctheory.errors import InputError
from nctheory.losses._precision import at_least_float32


def as_features(z, name: str = "z", *, min_rows: int = 0) -> torch.Tensor:
    """An (n, d) real floating tensor with n >= ``min_rows``. numpy input becomes float64 (exact mode);
    torch keeps its device and dtype, promoted to float32 at least (half precision computes in float32)."""
    validate.real_array(z, name, ndim=2, finite=False)  # the dtype; finiteness is checked below (one pass)
    t = _as_float_tensor(z, name)
    if t.shape[0] < min_rows:
        raise InputError(f"{name} must have at least {min_rows} row{'s' if min_rows != 1 else ''} "
                         f"(one per {'sample' if name != 'W' else 'class'}), got shape {tuple(t.shape)}")
    return at_least_float32(t)


def _as_float_tensor(z, name: str) -> torch.Tensor:
    if isinstance(z, torch.Tensor):
        t = z
        if not t.is_floating_point():
            t = t.to(torch.float64)
    else:
        try:
            t = torch.as_tensor(np.asarray(z, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} must be a numeric (n, d) array: {exc}") from None
    if t.ndim != 2:
        raise InputError(f"{name} must be 2-dimensional (one row per sample), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or infinite entries")
    return t


def as_labels(y, n: int, device, k: int | None = None, name: str = "y") -> torch.Tensor:
    """Integer labels of length n, all >= 0 (and < k when k is given), as a long tensor on ``device``.
    Integral floats are accepted; booleans, complex numbers and strings are refused."""
    if not isinstance(y, (torch.Tensor, np.ndarray)):
        try:
            with np.errstate(all="ignore"):
                y = np.asarray(y)
        except (TypeError, ValueError, OverflowError):
            pass  # ragged or out of every dtype's range: validate.real_array names it
    if str(getattr(y, "dtype", "")) in ("bool", "torch.bool"):
        raise InputError(f"{name} must hold integer class labels, got booleans")
    y = validate.real_array(y, name, ndim=1)
    if not isinstance(y, torch.Tensor) and y.dtype.kind in "iu":
        y = validate.int_array(y, name, lo=0)  # uint64 beyond int64 named as itself, not wrapped
    if isinstance(y, torch.Tensor):
        if y.is_floating_point() or y.is_complex():
            raise InputError(f"{name} must hold integer labels, got dtype {y.dtype}")
        t = y.to(device=device, dtype=torch.long)
    else:
        arr = np.asarray(y)
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and arr.size and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            elif arr.size == 0:
                arr = arr.astype(np.int64)
            else:
                raise InputError(f"{name} must hold integer labels, got {arr.dtype}")
        t = torch.as_tensor(arr.astype(np.int64), device=device)
    if t.ndim != 1:
        raise InputError(f"{name} must be 1-dimensional, got shape {tuple(t.shape)}")
    if t.numel() != n:
        raise InputError(f"{name} has {t.numel()} labels for {n} feature rows")
    if n and int(t.min()) < 0:
        raise InputError(f"{name} has a negative label ({int(t.min())})")
    if k is not None and n and int(t.max()) >= k:
        raise InputError(f"{name} has label {int(t.max())} but only {k} prototypes/classes are given")
    return t


def as_batches(batches, n: int, multiset: bool = False) -> list[torch.Tensor]:
    """A list of non-empty batches of sample indices in [0, n), distinct within a batch unless
    ``multiset`` (then a repeated index is a copy of the sample: see :func:`nctheory.losses.scl_batches`):
    :func:`nctheory.validate.batch_indices` (the one check) as long tensors."""
    return [torch.as_tensor(a) for a in validate.batch_indices(batches, n, multiset=multiset)]


check_tau = validate.temperature  # tau as a float: a real number > 0 and finite (one definition, torch-free)


def like(W, z: torch.Tensor, name: str = "W") -> torch.Tensor:
    """Prototypes/classifier W as a tensor on z's device and dtype, with z's feature dimension."""
    W = as_features(W, name).to(device=z.device, dtype=z.dtype)
    if W.shape[1] != z.shape[1]:
        raise InputError(f"{name} has dimension {W.shape[1]} but features have dimension {z.shape[1]}")
    return W


#: the implementations an SCL-type loss offers: ``"auto"`` chooses by size (nctheory.losses.scl.TILED_MIN_ROWS)
IMPLS = ("auto", "dense", "tiled")


def whole_number(value, name: str, lo: int) -> int:
    """``value`` as an int >= lo: an integer, or a float / one-element tensor holding a whole number (2.0);
    a bool, a string or anything else is refused with InputError naming ``name``."""
    try:
        ok = not isinstance(value, (bool, str, bytes)) and float(value).is_integer() and int(value) >= lo
    except (TypeError, ValueError, OverflowError, RuntimeError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def as_index_array(values, name: str) -> np.ndarray:
    """``values`` (a list, array or tensor) as a numpy array; a ragged or non-numeric list is InputError."""
    try:
        return np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a rectangular array of numbers (rows of one length)") from None


def prototype_inputs(z, y, W, n_w, tau):
    """The inputs of SCL with n_w prototype copies (scl_with_prototypes, dense or tiled), checked:
    (z, y, W, n_w, tau) with z from :func:`as_features`, W (k, d) in z's dtype and detached (a constant),
    y labels in [0, k), n_w an integer >= 0 and tau a temperature."""
    z = as_features(z)
    W = like(W, z).detach()
    y = as_labels(y, z.shape[0], z.device, k=W.shape[0])
    return z, y, W, whole_number(n_w, "n_w", 0), check_tau(tau)


def check_impl(impl, name: str = "impl") -> str:
    """impl as one of :data:`IMPLS` (a string; anything else refused with the valid names)."""
    return validate.text(impl, name, choices=IMPLS)


def use_tiled(impl: str, rows: int, threshold: int) -> bool:
    """Whether a batch of ``rows`` contrast rows takes the tiled kernel: ``impl`` (checked) "tiled",
    or "auto" with rows >= threshold."""
    impl = check_impl(impl)
    return impl == "tiled" or (impl == "auto" and rows >= threshold)


def as_view_features(features, name: str = "features") -> torch.Tensor:
    """SupCon's (bsz, n_views, ...) features as a (bsz, n_views, d) tensor, the trailing dimensions
    flattened (the reference SupContrast call), at least one sample and one view; real (complex, bool,
    strings refused), finite; numpy input in float64, torch in its dtype promoted to float32 at least."""
    validate.real_array(features, name, finite=False)
    t = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features, dtype=np.float64))
    if t.ndim < 3:
        raise InputError(f"{name} must be (batch, views, dim, ...) with at least 3 dimensions, "
                         f"got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(f"{name} needs at least one sample and one view, got shape {tuple(t.shape)}")
    t = t.reshape(t.shape[0], t.shape[1], -1)
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or infinite entries")
    return at_least_float32(t)


def as_mask(mask, bsz: int, device, name: str = "mask") -> torch.Tensor:
    """SupCon's (bsz, bsz) positive mask (M_ij: weight of sample j as a positive of anchor sample i;
    booleans and real weights allowed, asymmetric allowed; complex and strings refused; finite), detached
    (a constant), on ``device``, in its own dtype (bool stays bool: the caller converts per block)."""
    if isinstance(mask, torch.Tensor):
        m = mask.detach()
        if m.dtype != torch.bool:
            validate.real_array(m, name, ndim=2)
    else:
        arr = as_index_array(mask, name)
        if arr.dtype != np.bool_:
            validate.real_array(arr, name, ndim=2)
            arr = arr.astype(np.float64)
        m = torch.as_tensor(arr)
    if tuple(m.shape) != (bsz, bsz):
        raise InputError(f"{name} must be ({bsz}, {bsz}) (one row and column per sample), got shape {tuple(m.shape)}")
    return m.to(device)


CONTRAST_MODES = ("all", "one")


def supcon_inputs(features, labels=None, mask=None, contrast_mode: str = "all"):
    """The reference SupCon call's inputs, checked: (f, y, mask) with f (bsz, n_views, d) from
    :func:`as_view_features`, y a long tensor of bsz labels or None, mask from :func:`as_mask` or None;
    labels and mask both given is refused (the reference raises there too); contrast_mode "all" | "one"."""
    validate.text(contrast_mode, "contrast_mode", choices=CONTRAST_MODES)
    if labels is not None and mask is not None:
        raise InputError("give labels or mask, not both (labels=None and mask=None is SimCLR)")
    f = as_view_features(features)
    bsz = f.shape[0]
    if getattr(labels, "ndim", 1) == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)  # (bsz, 1), which the reference also takes (it views labels as (-1, 1))
    y = None if labels is None else as_labels(labels, bsz, f.device, name="labels")
    m = None if mask is None else as_mask(mask, bsz, f.device)
    return f, y, m

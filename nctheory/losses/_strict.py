"""The checks of issue 15 in front of :mod:`nctheory.losses._inputs`: types refused before any conversion.

``_inputs.as_features`` / ``as_labels`` / ``check_tau`` convert what they are given: a complex array
lost its imaginary part (with only a ComplexWarning), boolean labels became 0/1, ``tau='0.1'`` and
``tau=True`` became numbers, and a uint64 label 2**64 - 1 was reported as "negative label (-1)". Each
function here first checks its argument with :mod:`nctheory.validate` (the one place where a real
array, a label array and a positive number are defined), then converts it with ``_inputs``, and for
features computes in :func:`nctheory.losses._precision.at_least_float32`:

- :func:`features`: a real 2-D array (numpy, nested list or torch tensor; complex, bool, object and
  string dtypes refused; finite, as ``as_features`` checks) with at least ``min_rows`` rows, returned
  as ``_inputs.as_features`` does (numpy: float64; torch: its device, dtype promoted to float32 at least).
- :func:`labels`: a 1-D real array (complex, bool and strings refused; integer dtypes checked against
  int64, so a uint64 2**64 - 1 is reported as itself), then ``_inputs.as_labels`` (integral floats
  accepted as before, negative labels and labels >= k refused).
- :func:`temperature`: a real number > 0, finite (never a string or a bool).

The losses of :mod:`nctheory.losses.classifier` and :mod:`~nctheory.losses.prototype_limit` and the
catalogue's call (:meth:`nctheory.losses.catalogue.LossSpec.__call__`, through which the trainer and
the solvers reach every loss, :mod:`~nctheory.losses.scl` included) take their inputs through these.
"""

from __future__ import annotations

import numpy as np
import torch

from nctheory import validate
from nctheory.errors import InputError
from nctheory.losses._inputs import as_features, as_labels, check_tau
from nctheory.losses._precision import at_least_float32


def features(z, name: str = "z", *, min_rows: int = 0) -> torch.Tensor:
    """An (n, d) real tensor with n >= ``min_rows`` (module docstring)."""
    validate.real_array(z, name, ndim=2, finite=False)  # the dtype; as_features checks finiteness (one pass)
    t = as_features(z, name)
    if t.shape[0] < min_rows:
        raise InputError(f"{name} must have at least {min_rows} row{'s' if min_rows != 1 else ''} "
                         f"(one per {'sample' if name != 'W' else 'class'}), got shape {tuple(t.shape)}")
    return at_least_float32(t)


def labels(y, n: int, device, k: int | None = None, name: str = "y") -> torch.Tensor:
    """Integer labels of length n in [0, k) as a long tensor on ``device`` (module docstring)."""
    if not isinstance(y, (torch.Tensor, np.ndarray)):
        try:
            with np.errstate(all="ignore"):
                y = np.asarray(y)
        except (TypeError, ValueError, OverflowError):
            pass  # ragged or out of every dtype's range: validate.real_array names it
    if str(getattr(y, "dtype", "")) in ("bool", "torch.bool"):
        raise InputError(f"{name} must hold integer class labels, got booleans")
    arr = validate.real_array(y, name, ndim=1)
    if not isinstance(arr, torch.Tensor) and arr.dtype.kind in "iu":
        arr = validate.int_array(arr, name, lo=0)  # uint64 beyond int64 named as itself, not wrapped
    return as_labels(arr, n, device, k=k, name=name)


def temperature(tau, name: str = "tau") -> float:
    """tau as a float: a real number > 0 and finite (a string or a bool is refused)."""
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise InputError(f"{name} must be a number > 0, got a tensor of shape {tuple(tau.shape)}")
        validate.real_array(tau.reshape(1), name)  # complex / bool tensors refused
        tau = tau.item()
    elif isinstance(tau, np.ndarray) and tau.ndim == 0:
        tau = tau[()]
    return check_tau(validate.real(tau, name, lo=0, lo_open=True))

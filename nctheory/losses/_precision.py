"""The precision every loss computes in: float32 at least.

Why: float16 overflows above 65504 and bfloat16 keeps 8 bits of mantissa. The logits of the SCL family
are z_i.z_j / tau, up to 1/tau for unit rows (1e5 at tau = 1e-5): in float16 they become inf, and a
log-sum-exp over them returns inf - inf = NaN, with no error (measured: SCL of unit float16 features at
tau = 1e-5 was NaN in value and gradient). So a loss given float16 / bfloat16 input (or any floating
dtype narrower than 4 bytes) computes in float32; float32 and float64 input computes in its own dtype.

The loss is returned in that compute dtype (float32 for half-precision input), as ``torch.autocast``
does for the operations it runs in float32 (log_softmax, cross_entropy, ...): casting the value back
could overflow again (an SCL sum at tau = 1e-5 exceeds 65504). The gradient flows back through the cast
and reaches a half-precision input in its own dtype; a gradient whose true size exceeds float16's range
is then inf there (which a mixed-precision GradScaler detects), never a silent NaN from the forward pass.

One definition used by every loss module: :func:`compute_dtype` and :func:`at_least_float32`.
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss computes in for input of ``dtype``: float32 for floating dtypes narrower than
    4 bytes (float16, bfloat16, float8 variants), ``dtype`` itself otherwise."""
    if dtype.is_floating_point and dtype.itemsize < 4:
        return torch.float32
    return dtype


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in :func:`compute_dtype` (a differentiable cast; ``t`` itself when nothing changes)."""
    target = compute_dtype(t.dtype)
    return t if target == t.dtype else t.to(target)

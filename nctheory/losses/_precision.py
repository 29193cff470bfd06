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

Under ``torch.autocast`` the same holds: a loss runs its matrix products outside autocast
(:func:`outside_autocast`), in float32 for half-precision or float32 input (float64 stays float64);
without that, autocast would compute a float32 ``z @ z.T`` in bfloat16 / float16.

One definition used by every loss module: :func:`compute_dtype`, :func:`at_least_float32` and
:func:`outside_autocast`.
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


#: the autocast device types a loss switches off while it computes
_AUTOCAST_DEVICES = ("cpu", "cuda")


def outside_autocast(fn):
    """Run ``fn`` with torch.autocast switched off (for the CPU and CUDA), so that its matrix products
    run in the dtype :func:`compute_dtype` chose, not autocast's bfloat16 / float16.

    Why: under ``torch.autocast`` a float32 ``z @ z.T`` is computed in bfloat16 (CPU) or float16 /
    bfloat16 (CUDA), whatever the input's dtype; the logits would then carry 8 (bf16) or 11 (fp16)
    bits, and fp16 logits overflow above 65504 (see the module docstring). Outside autocast the call
    is unchanged (nothing is entered); inside it, the loss sees its inputs as given (half-precision
    inputs are promoted by :func:`at_least_float32`) and the gradient flows back through the casts.
    """
    import functools

    @functools.wraps(fn)
    def call(*args, **kwargs):
        active = [d for d in _AUTOCAST_DEVICES if torch.is_autocast_enabled(d)]
        if not active:
            return fn(*args, **kwargs)
        import contextlib

        with contextlib.ExitStack() as stack:
            for d in active:
                stack.enter_context(torch.autocast(device_type=d, enabled=False))
            return fn(*args, **kwargs)

    return call

"""Your own model and dataset in ``nctheory train``: ``--model package.module:factory`` and
``--dataset package.module:factory``.

A spec names a callable as ``package.module:attribute`` (the attribute may be dotted, ``mod:Class.make``).
The module is imported as Python would from the current directory (which is put on ``sys.path``, as
``python -m`` does) or from any installed package. The callable is called with the keyword arguments it
declares among those the harness offers (a model factory: ``input_shape`` (C, H, W) and ``num_classes``;
a dataset factory: ``root`` (--data-root) and ``seed``), so ``def make(): ...`` works as well as
``def make(input_shape, num_classes): ...``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from nctheory.errors import InputError


def is_factory_spec(name) -> bool:
    return isinstance(name, str) and ":" in name


def resolve_factory(spec: str, what: str):
    """The callable named by ``spec`` ("package.module:attribute"); InputError naming what went wrong."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr or ":" in attr:
        raise InputError(f"{what} factory must be written package.module:callable, got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"cannot import {mod_name!r} for --{what} {spec}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise InputError(f"importing {mod_name!r} for --{what} {spec} raised {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{mod_name!r} has no attribute {attr!r} (--{what} {spec})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"--{what} {spec} is not callable")
    return obj


def call_factory(fn, spec: str, what: str, **offered):
    """fn(**the offered keyword arguments it declares); its exceptions become one-line InputErrors."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_all or k in params}
    try:
        return fn(**kwargs)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"--{what} {spec} raised {type(exc).__name__}: {exc}") from None

"""JSON-able conversion shared by every layer (claims, symbolic, harness, CLI)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    """Convert numpy/torch scalars and arrays, tuples, sets and dataclasses into JSON-able values
    (non-finite floats become their repr, e.g. 'inf', since JSON has no such numbers)."""
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else repr(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if hasattr(x, "detach") and hasattr(x, "tolist"):  # torch tensor
        return jsonable(x.detach().cpu().tolist())
    if hasattr(x, "__fspath__"):  # pathlib paths
        return str(x)
    return repr(x)

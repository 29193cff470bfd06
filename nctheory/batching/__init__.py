"""Batching plans, their constraint graphs under mini-batch SCL, and batch-binding.

- :mod:`~nctheory.batching.plan`: the plan format (JSON / npz), strict loading and saving;
- :mod:`~nctheory.batching.interaction`: ``check_plan`` -- is the OF the unique optimum geometry of
  UFM+ with mini-batch SCL on this plan (Kini et al. Thm 2 / Cor. 2.1, derived exactly; see its
  docstring), with witnesses and a fix;
- :mod:`~nctheory.batching.schemes`: ``make_plan`` (full, fixed, reshuffle, class_balanced;
  drop_last, two-view duplication, batch-binding = Kini Alg. 1);
- :mod:`~nctheory.batching.sampler`: ``PlanBatchSampler``, the same batches for a torch DataLoader;
- :mod:`~nctheory.batching.record`: ``record_plan`` / ``RecordingSampler``, the plan of any torch
  DataLoader, batch sampler or sampler (with replacement too: multiset plans);
- :mod:`~nctheory.batching.pairs`: ``ClassPairs``, the class-pair coverage in memory that follows the plan.

Plans carry ``views`` (every batch holds each sample in V views) and ``multiset`` (batches may repeat
a sample; each occurrence is a copy with the same feature) as attributes; see plan.py.
"""

from nctheory.batching.plan import Plan, expand_views, load_plan, plan_from_json, read_labels, save_plan  # noqa: F401
from nctheory.batching.schemes import (  # noqa: F401
    PLAN_SCHEMES,
    SCHEMES,
    batch_binding,
    choose_binding_examples,
    duplicate_views,
    epoch_batches,
    make_plan,
    plan_size,
)

# Loaded on first use (PEP 562), so that reading, making and binding a plan (`nctheory make-plan`,
# `nctheory bound --plan`) imports neither torch (sampler, record) nor scipy (interaction): each
# name is still ``nctheory.batching.<name>``, and ``from nctheory.batching import check_plan`` works.
_LAZY = {
    "CheckResult": "interaction", "check_plan": "interaction", "of_embedding": "interaction",
    "witness_embedding": "interaction",
    "PlanBatchSampler": "sampler",
    "RecordingSampler": "record", "record_plan": "record",
}

__all__ = ["Plan", "expand_views", "load_plan", "plan_from_json", "read_labels", "save_plan", "PLAN_SCHEMES",
           "SCHEMES", "batch_binding", "choose_binding_examples", "duplicate_views", "epoch_batches", "make_plan",
           "plan_size", *_LAZY]


def __getattr__(name):
    """The names of interaction (scipy), sampler and record (torch), imported when first asked for."""
    where = _LAZY.get(name)
    if where == "interaction":
        from nctheory.batching import interaction as mod
    elif where == "sampler":
        from nctheory.batching import sampler as mod
    elif where == "record":
        from nctheory.batching import record as mod
    else:
        raise AttributeError(f"module 'nctheory.batching' has no attribute {name!r}")
    value = getattr(mod, name)
    globals()[name] = value  # once: later look-ups are ordinary attribute reads
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

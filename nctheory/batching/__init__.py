"""Batching plans, their constraint graphs under mini-batch SCL, and batch-binding.

- :mod:`~nctheory.batching.plan`: the plan format (JSON / npz), strict loading and saving;
- :mod:`~nctheory.batching.interaction`: ``check_plan`` -- is the OF the unique optimum geometry of
  UFM+ with mini-batch SCL on this plan (Kini et al. Thm 2 / Cor. 2.1, derived exactly; see its
  docstring), with witnesses and a fix;
- :mod:`~nctheory.batching.schemes`: ``make_plan`` (full, fixed, reshuffle, class_balanced;
  drop_last, two-view duplication, batch-binding = Kini Alg. 1);
- :mod:`~nctheory.batching.sampler`: ``PlanBatchSampler``, the same batches for a torch DataLoader.
"""

from nctheory.batching.interaction import CheckResult, check_plan, of_embedding, witness_embedding  # noqa: F401
from nctheory.batching.plan import Plan, load_plan, plan_from_json, read_labels, save_plan  # noqa: F401
from nctheory.batching.schemes import (  # noqa: F401
    SCHEMES,
    batch_binding,
    choose_binding_examples,
    duplicate_views,
    epoch_batches,
    make_plan,
)
from nctheory.batching.sampler import PlanBatchSampler  # noqa: F401

"""Counterexample search with shrinking (hypothesis), for use inside claim checks.

``smallest_counterexample(strategy, holds, budget)`` returns the minimal example (after
hypothesis's shrinking) for which ``holds(example)`` is False, or None when none was found within
the budget. It is deterministic (derandomized, no example database) so verdicts are reproducible.
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample

from nctheory.claims.registry import Budget


def smallest_counterexample(strategy, holds: Callable[[Any], bool], budget: Budget | None = None) -> Any | None:
    budget = budget or Budget()
    cfg = settings(
        max_examples=budget.examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )
    try:
        return find(strategy, lambda ex: not holds(ex), settings=cfg)
    except NoSuchExample:
        return None

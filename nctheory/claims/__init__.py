"""Registered claims. Each module here declares the claims of one paper topic and attaches their checks
(:mod:`nctheory.claims.registry`, whose docstring states the verdict rule); :func:`load_all` imports them
all. The registry never imports this package, so importing it from here makes no cycle."""

from nctheory.claims.registry import (  # noqa: F401
    CHECK_KINDS,
    PAPERS,
    VERDICTS,
    Budget,
    Claim,
    Source,
    Verdict,
    Witness,
    assert_claim,
    check,
    cite,
    claim,
    declare,
    load_all,
    run_claim,
)
from nctheory.claims.search import smallest_counterexample  # noqa: F401

"""Registered claims. Each module here registers the checks of one paper topic with
:func:`nctheory.claims.registry.claim`; :func:`nctheory.claims.registry.load_all` imports them all."""

from nctheory.claims.registry import (  # noqa: F401
    VERDICTS,
    Budget,
    Claim,
    Verdict,
    assert_claim,
    claim,
    load_all,
    run_claim,
)
from nctheory.claims.search import smallest_counterexample  # noqa: F401

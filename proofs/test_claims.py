"""Executable theorems, generated from the claims registry (nctheory.claims): one test per claim id.

``test_claim[<id>]`` runs every check attached to the claim and requires the committed verdicts (the
claim's and each check's). ``test_counterexample_reevaluates[<id>]`` re-evaluates every counterexample the
claim's checks recorded, from the record alone (after a JSON round trip), with the check's witness, and
requires a violation larger than the witness's stated tolerance. Adding a claim to nctheory/claims adds
both tests; nothing here names a claim.
"""

from __future__ import annotations

import pytest

from nctheory.claims.registry import assert_claim, load_all, reevaluate, run_claim

CLAIM_IDS = list(load_all())
_RESULTS: dict = {}  # claim id -> Result of test_claim, so the re-evaluation test does not rerun the checks


@pytest.mark.parametrize("claim_id", CLAIM_IDS)
def test_claim(claim_id):
    _RESULTS[claim_id] = assert_claim(claim_id)


@pytest.mark.parametrize("claim_id", CLAIM_IDS)
def test_counterexample_reevaluates(claim_id):
    r = _RESULTS.get(claim_id) or run_claim(claim_id)
    for cr in r.checks:
        assert cr.verdict is not None, f"{claim_id}: check {cr.check.name} raised {cr.error}"
        cex = cr.verdict.counterexample
        if cex is None:
            continue
        w = cr.check.witness
        assert w is not None, f"{claim_id}: check {cr.check.name} records a counterexample without a witness"
        v = reevaluate(w, cex)
        assert v > w.tolerance, (f"{claim_id}: the counterexample of {cr.check.name} re-evaluates to {v:.3g}, "
                                 f"not above its tolerance {w.tolerance:g} ({w.reason}): {cex}")

"""Executable theorem: Kini et al. 2023, Theorem 1 (nctheory/claims/kini2023_thm1.py)."""

from nctheory.claims import assert_claim


def test_kini2023_thm1():
    assert_claim("kini2023.thm1")

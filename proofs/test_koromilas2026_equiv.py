"""Executable theorem: Koromilas et al. 2026 Thm 4.2 (nctheory/claims/koromilas2026_equiv.py)."""

from nctheory.claims import assert_claim


def test_koromilas2026_thm4_2():
    assert_claim("koromilas2026.thm4_2")

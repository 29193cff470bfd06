"""Executable theorems: Koromilas et al. 2026 (nctheory/claims/koromilas2026.py)."""

from nctheory.claims import assert_claim


def test_koromilas2026_closed_forms():
    assert_claim("koromilas2026.closed_forms")


def test_koromilas2026_thm4_1():
    assert_claim("koromilas2026.thm4_1")


def test_koromilas2026_fp_classifier():
    assert_claim("koromilas2026.fp_classifier")


def test_koromilas2026_table3_optima():
    assert_claim("koromilas2026.table3_optima")

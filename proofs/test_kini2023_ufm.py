"""Executable theorems: certified UFM / UFM+ optima of full-batch SCL (nctheory/claims/kini2023_ufm.py)."""

from nctheory.claims import assert_claim


def test_kini2023_thm1_certified():
    assert_claim("kini2023.thm1_certified")


def test_graf2021_balanced_etf():
    assert_claim("graf2021.balanced_etf")


def test_kini2023_lemma_d2():
    assert_claim("kini2023.lemma_d2")


def test_kini2023_open_ufm_imbalanced_geometry():
    assert_claim("kini2023.open.ufm_imbalanced_geometry")

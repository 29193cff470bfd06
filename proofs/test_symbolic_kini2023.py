"""Executable theorems: Kini et al. 2023, symbolic derivations (nctheory/claims/symbolic_kini2023.py)."""

from nctheory.claims import assert_claim


def test_kini2023_thm1_symbolic():
    assert_claim("kini2023.thm1_symbolic")


def test_kini2023_thm2_symbolic():
    assert_claim("kini2023.thm2_symbolic")


def test_kini2023_lemma_d1():
    assert_claim("kini2023.lemma_d1")


def test_kini2023_lemma_d2_closed_form():
    assert_claim("kini2023.lemma_d2_closed_form")


def test_kini2023_remark2():
    assert_claim("kini2023.remark2")

"""Executable theorems: Gill et al. 2023 (nctheory/claims/gill2023.py)."""

from nctheory.claims import assert_claim


def test_gill2023_prop1():
    v = assert_claim("gill2023.prop1")
    assert v.corrected_statement and "exp(w_c.h_i/tau)/Z_c" in v.corrected_statement


def test_gill2023_prop2():
    assert_claim("gill2023.prop2")


def test_gill2023_remark1():
    assert_claim("gill2023.remark1")

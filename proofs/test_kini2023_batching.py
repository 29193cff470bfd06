"""Executable theorems: Kini et al. 2023 on batching (nctheory/claims/kini2023_batching.py)."""

from nctheory.claims import assert_claim


def test_kini2023_thm2():
    assert_claim("kini2023.thm2")


def test_kini2023_cor2_1():
    assert_claim("kini2023.cor2_1")


def test_kini2023_remark1():
    assert_claim("kini2023.remark1")


def test_kini2023_fig5():
    assert_claim("kini2023.fig5")


def test_kini2023_remark3():
    assert_claim("kini2023.remark3")


def test_kini2023_batch_binding():
    assert_claim("kini2023.batch_binding")

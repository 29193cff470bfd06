"""Tests of nctheory.geometry: exact Gram matrices of the reference geometries, round trips, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nctheory.errors import InputError
from nctheory.geometry import (
    block_gram,
    check_gram,
    etf_gram,
    gram_to_vectors,
    majority_collapse_gram,
    minority_angles_gram,
    orthogonal_frame,
    prototype_vectors,
    prototype_gram,
    simplex_etf,
)

EXACT = 1e-13  # float64 constructions of k <= 12 vectors: errors are a few eps (2.2e-16) times k


# ---------------------------------------------------------------------------------------- ETF
@pytest.mark.parametrize("k", [2, 3, 4, 7, 12])
@pytest.mark.parametrize("extra", [-1, 0, 3])
def test_simplex_etf_gram(k, extra):
    V = simplex_etf(k, k + extra)
    assert V.shape == (k, k + extra) and V.dtype == np.float64
    G = V @ V.T
    assert np.allclose(np.diag(G), 1.0, atol=EXACT, rtol=0)
    off = G[~np.eye(k, dtype=bool)]
    assert np.allclose(off, -1.0 / (k - 1), atol=EXACT, rtol=0)
    assert np.allclose(V.sum(0), 0.0, atol=EXACT)  # a simplex ETF sums to zero


def test_simplex_etf_hand_values():
    # k = 2: antipodal pair; k = 3 default d = 3: sqrt(3/2) (e_c - 1/3)
    V2 = simplex_etf(2, 1)
    assert abs(abs(V2[0, 0]) - 1) < EXACT and abs(V2[0, 0] + V2[1, 0]) < EXACT
    V3 = simplex_etf(3)
    assert np.allclose(V3[0], np.sqrt(1.5) * np.array([2 / 3, -1 / 3, -1 / 3]), atol=EXACT)


def test_simplex_etf_seeded_rotation_keeps_gram():
    V = simplex_etf(5, 9, seed=4)
    assert np.allclose(V @ V.T, etf_gram(5), atol=EXACT)
    assert np.array_equal(V, simplex_etf(5, 9, seed=4))
    assert not np.allclose(V, simplex_etf(5, 9, seed=5))


@pytest.mark.parametrize("args", [(1,), (0,), (4, 2), (2.5,), (True,), (3, 1.5)])
def test_simplex_etf_bad_input(args):
    with pytest.raises(InputError):
        simplex_etf(*args)


# ---------------------------------------------------------------------------------------- OF
@pytest.mark.parametrize("k,d", [(1, 1), (3, 3), (4, 9)])
def test_orthogonal_frame_nonnegative(k, d):
    V = orthogonal_frame(k, d)
    assert V.shape == (k, d) and np.all(V >= 0)
    assert np.array_equal(V @ V.T, np.eye(k))


def test_orthogonal_frame_rotated():
    V = orthogonal_frame(4, 6, nonnegative=False, seed=1)
    assert np.allclose(V @ V.T, np.eye(4), atol=EXACT)
    assert (V < 0).any()
    assert np.array_equal(V, orthogonal_frame(4, 6, nonnegative=False, seed=1))
    assert not np.allclose(V, orthogonal_frame(4, 6, nonnegative=False, seed=2))


@pytest.mark.parametrize("args", [(3, 2), (0,), ("3",)])
def test_orthogonal_frame_bad_input(args):
    with pytest.raises(InputError):
        orthogonal_frame(*args)


# ---------------------------------------------------------------------------------------- Gram -> vectors
@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 7), r=st.integers(1, 7), extra=st.integers(0, 2), seed=st.integers(0, 2**32 - 1))
def test_gram_to_vectors_round_trip(k, r, extra, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, r))
    G = A @ A.T
    rank = np.linalg.matrix_rank(G)
    V = gram_to_vectors(G, rank + extra)
    assert V.shape == (k, rank + extra)
    assert np.allclose(V @ V.T, G, atol=1e-9 * max(1.0, np.abs(G).max() * k))


def test_gram_to_vectors_torch_and_default_d():
    G = torch.tensor(etf_gram(4))
    V = gram_to_vectors(G)
    assert V.shape == (4, 4) and np.allclose(V @ V.T, etf_gram(4), atol=EXACT)
    assert np.allclose(V[:, 3], 0, atol=1e-7)  # rank 3: the last column is padding


@pytest.mark.parametrize(
    "G,d",
    [
        (np.diag([1.0, -1e-3]), None),  # negative eigenvalue well beyond the tolerance
        (np.array([[1.0, 0.5], [0.0, 1.0]]), None),  # not symmetric
        (np.eye(3), 2),  # d < rank
        (np.ones((2, 3)), None),  # not square
        (np.array([[np.nan]]), None),
        (np.zeros((0, 0)), None),
    ],
)
def test_gram_to_vectors_bad_input(G, d):
    with pytest.raises(InputError):
        gram_to_vectors(G, d)


def test_gram_to_vectors_is_scale_free():
    # the rank cut is relative: a tiny ETF Gram keeps rank k - 1, the zero matrix gives zero vectors
    G = 1e-12 * etf_gram(4)
    V = gram_to_vectors(G, 3)
    assert np.allclose(V @ V.T, G, rtol=0, atol=1e-24)
    assert np.array_equal(gram_to_vectors(np.zeros((3, 3)), 1), np.zeros((3, 1)))


def test_check_gram_accepts_tiny_negative_eigenvalue():
    # -1e-13 is float64 round-off for a 2 x 2 matrix of norm 1: accepted (tolerance 1e-9)
    G = np.diag([1.0, -1e-13])
    assert check_gram(G).shape == (2, 2)


# ---------------------------------------------------------------------------------------- prototype geometries
def _is_psd_unit(G):
    return np.allclose(np.diag(G), 1.0, atol=EXACT) and np.linalg.eigvalsh(G)[0] > -1e-12


@pytest.mark.parametrize("k,m", [(2, 1), (5, 2), (10, 5), (10, 8)])
def test_majority_collapse_gram(k, m):
    G = majority_collapse_gram(k, m)
    r = k - m
    assert _is_psd_unit(G)
    assert np.all(G[:m, :m] == 1.0)  # majorities share one prototype
    # the r + 1 distinct prototypes (one majority + the minorities) form an ETF of r + 1 vectors
    idx = [0] + list(range(m, k))
    assert np.allclose(G[np.ix_(idx, idx)], etf_gram(r + 1), atol=EXACT)
    assert np.linalg.matrix_rank(G) == r
    V = prototype_vectors("majority-collapse", k, m, d=r)
    assert np.allclose(V @ V.T, G, atol=1e-12)
    with pytest.raises(InputError):
        prototype_vectors("majority-collapse", k, m, d=r - 1)


@pytest.mark.parametrize("k,m", [(4, 2), (10, 5), (7, 3)])
@pytest.mark.parametrize("t", [0.0, 0.2, 0.5, 1.0])
def test_minority_angles_gram(k, m, t):
    G = minority_angles_gram(k, m, t)
    assert _is_psd_unit(G)
    a, b, c = G[0, 1], G[k - 1, k - 2], G[0, k - 1]
    assert abs(a - (-(1 - t) / (k - 1) + t)) < EXACT
    assert abs(b - (-(1 - t) / (k - 1) - t / (k - m))) < EXACT
    assert abs(c - b) < EXACT
    if t == 0:
        assert np.allclose(G, etf_gram(k), atol=EXACT)
    if t == 1:
        assert np.allclose(G, majority_collapse_gram(k, m), atol=EXACT)
    if t > 0:
        # larger angles (smaller cosines) between minorities than between majorities and than in the ETF
        assert b < a and b < -1.0 / (k - 1) - 1e-3
    V = prototype_vectors("minority-angles", k, m, t=t)
    assert np.allclose(np.linalg.norm(V, axis=1), 1.0, atol=EXACT)
    assert np.allclose(V @ V.T, G, atol=1e-9)


def test_step_default_majorities():
    assert np.array_equal(prototype_gram("majority-collapse", 6), majority_collapse_gram(6, 3))
    assert np.array_equal(prototype_gram("minority-angles", 7), minority_angles_gram(7, 3, 0.5))


def test_minority_angles_explicit_cosines():
    G = prototype_gram("minority-angles", 6, 3, cos_major=0.2, cos_minor=-0.4, cos_cross=-0.1)
    assert G[0, 1] == 0.2 and G[4, 5] == -0.4 and G[0, 5] == -0.1
    V = prototype_vectors("minority-angles", 6, 3, cos_major=0.2, cos_minor=-0.4, cos_cross=-0.1)
    assert np.allclose(V @ V.T, G, atol=1e-9)
    # among 3 unit vectors the cosine cannot be below -1/2: not PSD
    with pytest.raises(InputError):
        block_gram(6, 3, cos_major=0.2, cos_minor=-0.6, cos_cross=0.0)
    with pytest.raises(InputError):  # minorities must have the larger angles
        prototype_gram("minority-angles", 6, 3, cos_major=-0.4, cos_minor=0.2, cos_cross=-0.1)
    with pytest.raises(InputError):
        prototype_gram("minority-angles", 6, 3, cos_major=0.2, cos_minor=-0.4)


@pytest.mark.parametrize("name", ["etf", "minority-angles", "majority-collapse"])
@pytest.mark.parametrize("k", [3, 6])
def test_prototype_vectors_realise_gram(name, k):
    V = prototype_vectors(name, k)
    assert V.shape == (k, k)
    assert np.allclose(np.linalg.norm(V, axis=1), 1.0, atol=EXACT)
    assert np.allclose(V @ V.T, prototype_gram(name, k), atol=1e-9)


def test_from_gram():
    G = etf_gram(4)
    V = prototype_vectors("from_gram", 4, gram=G, d=3)
    assert V.shape == (4, 3) and np.allclose(V @ V.T, G, atol=1e-12)
    with pytest.raises(InputError):  # not unit diagonal
        prototype_gram("from_gram", 2, gram=2 * np.eye(2))
    with pytest.raises(InputError):  # wrong size
        prototype_gram("from_gram", 3, gram=np.eye(2))
    with pytest.raises(InputError):  # not PSD
        prototype_gram("from_gram", 2, gram=np.array([[1.0, 2.0], [2.0, 1.0]]))


@pytest.mark.parametrize(
    "call",
    [
        lambda: prototype_gram("pentagon", 5),
        lambda: prototype_gram("etf", 5, t=0.3),
        lambda: prototype_gram("majority-collapse", 5, 0),
        lambda: prototype_gram("majority-collapse", 5, 5),
        lambda: prototype_gram("minority-angles", 5, 2, t=1.5),
        lambda: prototype_gram("minority-angles", 5, 2, t="x"),
        lambda: prototype_gram("minority-angles", 5, 2, s=0.1),
        lambda: prototype_gram("etf", 1),
        lambda: prototype_vectors("etf", 5, d=3),
    ],
)
def test_prototype_bad_input(call):
    with pytest.raises(InputError):
        call()


# ---------------------------------------------------------------- issue 15: sizes and types refused
@pytest.mark.parametrize("call", [lambda: etf_gram(10**6), lambda: simplex_etf(10**6), lambda: orthogonal_frame(10**6),
                                  lambda: orthogonal_frame(4, 10**6, nonnegative=False),
                                  lambda: prototype_gram("minority-angles", 10**6),
                                  lambda: prototype_gram("majority-collapse", 10**6)])
def test_huge_geometries_are_refused_before_allocation(call):
    """k x k matrices of k = 1e6 (8 TB each) failed only at allocation: refused with the estimate."""
    with pytest.raises(InputError, match=r"needs ~.* TB for"):
        call()


@pytest.mark.parametrize("kw,words", [(dict(t="0.5"), "t must be a number"), (dict(t=True), "the boolean True"),
                                      (dict(cos_major="x", cos_minor=0.0, cos_cross=0.0), "cos_minor|cos_major"),
                                      (dict(cos_major=0.5, cos_minor="-0.1", cos_cross=0.0), "the string")])
def test_geometry_parameters_of_the_wrong_type(kw, words):
    with pytest.raises(InputError, match=words):
        prototype_gram("minority-angles", 4, **kw)


def test_complex_input_is_refused_not_cast():
    with pytest.raises(InputError, match="complex"):
        check_gram(np.eye(2) * (1 + 1j))

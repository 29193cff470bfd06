"""Tests of nctheory.metrics: hand-built examples with known values, brute-force recomputations,
invariances (rotation of features, permutation of classes) and bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nctheory.errors import InputError
from nctheory.geometry import etf_gram, orthogonal_frame, simplex_etf
from nctheory.metrics import (
    align_weight_class,
    align_weight_instance,
    beta_nc,
    centre_gram,
    class_mean_gram,
    class_means,
    classify_features,
    classify_geometry,
    delta_to_etf,
    delta_to_gram,
    delta_to_of,
    effective_rank,
    erank_inter,
    erank_intra,
    erank_weights,
    hdr,
    hdr_from_grams,
    matrix_entropy,
    mean_class_cosine,
    mean_class_cosine_centred,
    mean_pairwise_cosine,
    mir,
    mir_from_grams,
    nc_summary,
    nc_within_class_spread,
    ncc_accuracy,
)

EXACT = 1e-12  # exact constructions in float64 with k, d <= 32: errors of a few hundred eps at most


def _collapsed(V, per_class):
    """Features at exact NC: each class's samples equal its row of V; labels 0..k-1 with given counts."""
    y = np.repeat(np.arange(V.shape[0]), per_class)
    return V[y], y


def _noisy(k, d, n_per, seed, noise=0.3):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    Z = rng.standard_normal((k, d))[y] + noise * rng.standard_normal((y.size, d))
    return Z, y


def _rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------ class means / Gram
def test_class_means_hand():
    z = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]])
    y = np.array([0, 0, 1])
    M = class_means(z, y, 2)
    assert np.array_equal(M, np.array([[2.0, 1.0], [0.0, 5.0]]))  # raw means, not renormalised
    assert np.array_equal(class_mean_gram(z, y, 2), M @ M.T)
    assert np.array_equal(class_means(torch.tensor(z), torch.tensor(y), 2), M)  # torch input


def test_class_means_absent_class():
    z, y = np.ones((2, 3)), np.array([0, 2])
    with pytest.raises(InputError, match="class 1"):
        class_means(z, y, 3)
    M = class_means(z, y, 3, absent="nan")
    assert np.all(np.isnan(M[1])) and np.array_equal(M[[0, 2]], np.ones((2, 3)))
    with pytest.raises(InputError):
        class_mean_gram(z, y, 3)


@pytest.mark.parametrize(
    "z,y,k",
    [
        (np.ones((3, 2)), np.array([0, 1]), 2),  # length mismatch
        (np.ones((2, 2)), np.array([0, 2]), 2),  # label >= k
        (np.ones((2, 2)), np.array([0, -1]), 2),  # negative label
        (np.ones((2, 2)), np.array([0.5, 1.0]), 2),  # non-integer label
        (np.ones(4), np.array([0, 1, 0, 1]), 2),  # 1-d features
        (np.array([[np.inf, 0.0], [1.0, 1.0]]), np.array([0, 1]), 2),
        (np.ones((2, 2)), np.array([0, 1]), 0),
        (np.zeros((0, 2)), np.array([], dtype=int), 2),
    ],
)
def test_class_means_bad_input(z, y, k):
    with pytest.raises(InputError):
        class_means(z, y, k)


# ------------------------------------------------------------------------------ Delta metrics
@pytest.mark.parametrize("k", [2, 3, 10])
def test_delta_known_values(k):
    E, I = etf_gram(k), np.eye(k)
    assert delta_to_gram(E, E) < EXACT and delta_to_etf(3.7 * E) < EXACT
    assert delta_to_of(I) == 0.0 and delta_to_of(0.2 * I) < EXACT
    # distance between the two references: sqrt(2 - 2 <I/sqrt(k), E/||E||>) = sqrt(2 - 2 sqrt((k-1)/k))
    expected = math.sqrt(2 - 2 * math.sqrt((k - 1) / k))
    assert abs(delta_to_of(E) - expected) < EXACT
    assert abs(delta_to_etf(I) - expected) < EXACT
    assert abs(delta_to_gram(I, -I) - 2.0) < EXACT  # the maximum, opposite matrices


def test_delta_hand_2x2():
    # G_M = diag(1, 0): normalised (1,0;0,0); I/sqrt 2 -> ||(1 - 1/sqrt2, -1/sqrt2)|| = sqrt(2 - sqrt 2)
    assert abs(delta_to_of(np.diag([1.0, 0.0])) - math.sqrt(2 - math.sqrt(2))) < EXACT


def test_delta_from_features_at_nc():
    for V, target in [(simplex_etf(5, 8, seed=3), "etf"), (orthogonal_frame(5, 8, False, seed=3), "of")]:
        Z, y = _collapsed(2.5 * V, [1, 3, 2, 7, 4])  # imbalanced, scaled
        G = class_mean_gram(Z, y, 5)
        assert (delta_to_etf(G) if target == "etf" else delta_to_of(G)) < EXACT


@pytest.mark.parametrize(
    "call",
    [
        lambda: delta_to_gram(np.eye(2), np.eye(3)),
        lambda: delta_to_gram(np.zeros((2, 2)), np.eye(2)),
        lambda: delta_to_gram(np.eye(2), np.zeros((2, 2))),
        lambda: delta_to_of(np.ones((2, 3))),
        lambda: delta_to_etf(np.ones((1, 1))),
        lambda: delta_to_of([[np.nan]]),
    ],
)
def test_delta_bad_input(call):
    with pytest.raises(InputError):
        call()


# ------------------------------------------------------------------------------ beta_NC
def _beta_brute(Z, y, k, variant):
    """Direct transcription of Kini App. E.3.1 (variant kini) / Papyan et al. (variant papyan)."""
    mus = [Z[y == c].mean(0) for c in range(k)]
    if variant == "kini":
        muG = np.mean(mus, axis=0)
        SW = sum(np.outer(Z[i] - mus[y[i]], Z[i] - mus[y[i]]) for i in range(len(y)))
        SB = sum(np.outer(m - muG, m - muG) for m in mus)
    else:
        muG = Z.mean(0)
        SW = sum(np.outer(Z[i] - mus[y[i]], Z[i] - mus[y[i]]) for i in range(len(y))) / len(y)
        SB = sum(np.outer(m - muG, m - muG) for m in mus) / k
    return np.trace(SW @ np.linalg.pinv(SB, rcond=1e-10)) / k


@pytest.mark.parametrize("variant", ["kini", "papyan"])
@pytest.mark.parametrize("k,d", [(3, 2), (4, 6), (2, 5)])
def test_beta_nc_brute_force(variant, k, d):
    rng = np.random.default_rng(k * 10 + d)
    y = np.concatenate([np.arange(k), rng.integers(0, k, 15)])
    Z = rng.standard_normal((y.size, d))
    assert abs(beta_nc(Z, y, k, variant) - _beta_brute(Z, y, k, variant)) < 1e-9 * max(1, _beta_brute(Z, y, k, variant))


def test_beta_nc_zero_at_nc_and_balanced_relation():
    Z, y = _collapsed(simplex_etf(4, 6, seed=0), [3, 1, 2, 5])
    assert beta_nc(Z, y, 4) < 1e-25 and beta_nc(Z, y, 4, "papyan") < 1e-25
    Z, y = _noisy(5, 7, 6, seed=1)  # balanced: beta_kini = (n/k) beta_papyan
    assert abs(beta_nc(Z, y, 5, "kini") - (30 / 5) * beta_nc(Z, y, 5, "papyan")) < 1e-10 * beta_nc(Z, y, 5)


def test_beta_nc_hand():
    # k = 2, d = 1: means -1, +1 (mu_G = 0), Sigma_B = 2; samples -1.5, -0.5, 0.5, 1.5:
    # Sigma_W = 4 * 0.25 = 1, beta = (1/2) / 2 = 0.25
    Z = np.array([[-1.5], [-0.5], [0.5], [1.5]])
    y = np.array([0, 0, 1, 1])
    assert abs(beta_nc(Z, y, 2) - 0.25) < EXACT
    assert math.isnan(beta_nc(np.array([[1.0], [1.0], [0.0], [2.0]]), np.array([0, 0, 1, 1]), 2))  # equal means
    with pytest.raises(InputError):
        beta_nc(Z, y, 2, variant="sum")
    with pytest.raises(InputError):
        beta_nc(Z, y, 3)  # class 2 absent


# ------------------------------------------------------------------------------ cosines, NC spread
def test_mean_class_cosine_known_values():
    for k in [2, 5]:
        Z, y = _collapsed(3.0 * simplex_etf(k, k + 1, seed=2), [2] * k)
        assert abs(mean_class_cosine(Z, y, k) + 1 / (k - 1)) < EXACT
        Z, y = _collapsed(orthogonal_frame(k, k + 1), [2] * k)
        assert abs(mean_class_cosine(Z, y, k)) < EXACT
        # centred OF = scaled ETF
        assert abs(mean_class_cosine_centred(Z, y, k) + 1 / (k - 1)) < EXACT
    # two means at 60 degrees with different norms
    M = np.array([[1.0, 0.0], [1.0, math.sqrt(3.0)]])
    assert abs(mean_pairwise_cosine(M) - 0.5) < EXACT
    with pytest.raises(InputError):
        mean_pairwise_cosine(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(InputError):
        mean_pairwise_cosine(np.array([[1.0, 0.0]]))


def test_nc_within_class_spread():
    Z, y = _collapsed(simplex_etf(3), [2, 2, 2])
    assert nc_within_class_spread(Z, y, 3) == 0.0
    # unit features: 1 - sum_c (n_c/n) ||mu_c||^2 ; class 0 = {e1, e2} (|mu|^2 = 1/2), class 1 = {e1}
    Z = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert abs(nc_within_class_spread(Z, np.array([0, 0, 1]), 2) - (1 - (2 / 3) * 0.5 - 1 / 3)) < EXACT


# ------------------------------------------------------------------------------ classify
@pytest.mark.parametrize("k", [2, 3, 10, 50])
def test_classify_geometry_references(k):
    assert classify_geometry(etf_gram(k))["name"] == "ETF"
    assert classify_geometry(4.0 * np.eye(k))["name"] == "OF"
    V = orthogonal_frame(k, k + 2, nonnegative=False, seed=k)
    out = classify_geometry(V @ V.T)
    assert out["name"] == "OF" and out["delta_of"] < EXACT and out["tol"] == 1e-6
    assert out["delta_etf_centred"] < EXACT  # the centred OF is an ETF: why "ETF" allows no shift


def test_classify_geometry_other_and_tolerance():
    k = 6
    E = simplex_etf(k, k + 1)
    shifted = E + np.eye(k + 1)[k]  # ETF plus a common shift orthogonal to it
    G = shifted @ shifted.T
    assert classify_geometry(G)["name"] == "other"
    assert classify_geometry(centre_gram(G))["name"] == "ETF"
    from nctheory.geometry import majority_collapse_gram

    assert classify_geometry(majority_collapse_gram(k, 3))["name"] == "other"
    # a perturbed ETF: named ETF only if the tolerance covers the perturbation
    P = etf_gram(k) + 1e-4 * np.diag(np.arange(k))
    d = classify_geometry(P)["delta_etf"]
    assert 1e-6 < d < 1e-3
    assert classify_geometry(P, tol=1e-6)["name"] == "other"
    assert classify_geometry(P, tol=1e-3)["name"] == "ETF"


def test_classify_features():
    Z, y = _collapsed(orthogonal_frame(4), [2, 3, 2, 2])
    out = classify_features(Z, y, 4)
    assert out["name"] == "OF" and out["nc"] and out["nc_spread"] == 0.0
    Z2 = Z + 0.1 * np.random.default_rng(0).standard_normal(Z.shape)
    out = classify_features(Z2, y, 4)
    assert not out["nc"] and out["nc_spread"] > 1e-3


@pytest.mark.parametrize("G,tol", [(np.eye(1), 1e-6), (np.eye(3), -1.0), (np.eye(3), "x"), (np.zeros((3, 3)), 1e-6)])
def test_classify_bad_input(G, tol):
    with pytest.raises(InputError):
        classify_geometry(G, tol)


# ------------------------------------------------------------------------------ NCC
def test_ncc_accuracy_hand():
    ztr = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 0.0]])
    ytr = np.array([0, 0, 1, 1])  # centres (0, 1) and (10, 0)
    zte = np.array([[1.0, 1.0], [9.0, 0.0], [6.0, 0.0], [4.0, 0.0]])
    yte = np.array([0, 1, 1, 1])
    assert ncc_accuracy(ztr, ytr, zte, yte) == 0.75  # (4, 0) is nearer (0, 1)
    # cosine: (4,0) has cosine 0 with (0,1) and 1 with (10,0): all 4 right
    assert ncc_accuracy(ztr, ytr, zte, yte, metric="cosine") == 1.0
    # a class absent from training is never predicted: the (4, 0) point labelled 2 is always wrong
    assert ncc_accuracy(ztr, ytr, zte, np.array([0, 1, 1, 2]), k=3) == 0.75
    assert ncc_accuracy(ztr, ytr, zte, np.array([0, 1, 1, 2]), k=3, metric="cosine") == 0.75
    with pytest.raises(InputError):
        ncc_accuracy(ztr, ytr, zte[:, :1], yte)
    with pytest.raises(InputError):
        ncc_accuracy(ztr, ytr, zte, yte, metric="manhattan")
    with pytest.raises(InputError):
        ncc_accuracy(ztr, ytr, zte, yte, k=1)


# ------------------------------------------------------------------------------ Koromilas: effective ranks
def _erank_code(s):
    """The authors' util.effective_rank transcribed: p = s/||s||_1 + 1e-7, scipy entropy (renormalises)."""
    from scipy.stats import entropy

    s = np.asarray(s, dtype=float)
    return float(np.exp(entropy(s / s.sum() + 1e-7)))


@pytest.mark.parametrize("k", [1, 4, 9])
def test_effective_rank_identity_and_projector(k):
    assert abs(effective_rank(np.eye(k)) - k) < EXACT
    assert abs(effective_rank(np.eye(k), "code") - k) < EXACT  # uniform p stays uniform under +1e-7
    P = np.diag([1.0] * k + [0.0] * 3)
    assert abs(effective_rank(7.5 * P) - k) < EXACT
    # code variant: p = s/||s||_1 + 1e-7, renormalised (the zero singular values now count)
    assert abs(effective_rank(P, "code") - _erank_code([1.0] * k + [0.0] * 3)) < EXACT
    assert effective_rank(P, "code") > k


def test_effective_rank_hand_and_errors():
    # singular values (3, 1): p = (3/4, 1/4), erank = exp(H) = 4^(3/4) * (4/3)^(3/4) ... computed directly
    p = np.array([0.75, 0.25])
    assert abs(effective_rank(np.diag([3.0, 1.0])) - math.exp(-(p * np.log(p)).sum())) < EXACT
    with pytest.raises(InputError, match="undefined"):
        effective_rank(np.zeros((3, 3)))
    with pytest.raises(InputError):
        effective_rank(np.eye(2), variant="spec")
    with pytest.raises(InputError):
        effective_rank(np.ones(3))


@pytest.mark.parametrize("k", [3, 10])
def test_erank_inter_and_weights_at_nc(k):
    E = simplex_etf(k, k + 4, seed=1)
    Z, y = _collapsed(E, [3] * k)
    assert abs(erank_inter(Z, y, k) - (k - 1)) < 1e-9
    assert abs(erank_inter(Z, y, k, centring="global-mean-second-moment") - (k - 1)) < 1e-9
    assert abs(erank_weights(E) - (k - 1)) < 1e-9
    assert abs(erank_weights(E, form="paper") - (k - 1)) < 1e-9
    # OF: centred covariance has rank k-1, W itself rank k
    assert abs(erank_weights(np.eye(k)) - (k - 1)) < 1e-9
    assert abs(erank_weights(np.eye(k), form="paper") - k) < 1e-9
    Z, y = _collapsed(orthogonal_frame(k), [2] * k)
    assert abs(erank_inter(Z, y, k) - (k - 1)) < 1e-9


def test_erank_inter_centrings_differ_when_imbalanced():
    Z, y = _collapsed(orthogonal_frame(3), [1, 1, 8])
    a = erank_inter(Z, y, 3)  # covariance of the 3 means: rank 2, equal eigenvalues
    b = erank_inter(Z, y, 3, centring="global-mean-second-moment")
    assert abs(a - 2) < 1e-9 and abs(b - a) > 0.1


def test_erank_intra_hand():
    # each class: +-e1, +-e2 around its mean -> covariance diag(c, c, 0, ...) -> erank 2
    base = np.array([[1.0, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]])
    Z = np.vstack([base + np.array([5.0, 0, 0, 0]), 0.1 * base + np.array([0, 0, 3.0, 0])])
    y = np.repeat([0, 1], 4)
    assert abs(erank_intra(Z, y, 2) - 2.0) < EXACT
    # code variant: the 4 x 4 covariance has eigenvalues (c, c, 0, 0), each p gets +1e-7
    assert abs(erank_intra(Z, y, 2, "code") - _erank_code([1.0, 1.0, 0.0, 0.0])) < EXACT
    with pytest.raises(InputError):  # one-sample class
        erank_intra(Z[:5], y[:5], 2)
    with pytest.raises(InputError, match="undefined"):  # exact NC: undefined
        erank_intra(*_collapsed(np.eye(2), [2, 2]), 2)
    with pytest.raises(InputError, match="undefined"):  # NC up to round-off in the class means
        erank_intra(*_collapsed(simplex_etf(4, 6, seed=0), [2, 3, 2, 2]), 4)


# ------------------------------------------------------------------------------ Koromilas: alignments
def test_alignments():
    k = 4
    W = 3.0 * simplex_etf(k, 5, seed=0)
    Z, y = _collapsed(simplex_etf(k, 5, seed=0), [2, 1, 3, 2])
    assert align_weight_instance(Z, W, y) < EXACT and align_weight_class(Z, W, y) < EXACT
    # raw formula (normalise=False): ||z - 3 z||^2 = 4 for unit z
    assert abs(align_weight_instance(Z, W, y, normalise=False) - 4.0) < EXACT
    # hand: u = (1,0) vs w = (0,1): squared distance 2; class mean direction (1,1)/sqrt2 vs w = (0, 1)
    Z = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0])
    W = np.array([[0.0, 2.0]])
    assert abs(align_weight_instance(Z, W, y) - 1.0) < EXACT  # (2 + 0)/2
    assert abs(align_weight_class(Z, W, y) - (2 - math.sqrt(2))) < EXACT
    with pytest.raises(InputError):
        align_weight_instance(Z, np.zeros((1, 2)), y)
    with pytest.raises(InputError):
        align_weight_class(Z, np.ones((1, 3)), y)


# ------------------------------------------------------------------------------ Koromilas: MIR / HDR
def _mir_nc_closed_form(K):
    # at exact NC: H(G) = log(K-1), H(G o G) from the eigenvalues of (G o G)/K
    # G o G = (1 - 1/(K-1)^2) I + (1/(K-1)^2) J: eigenvalues ((K-1)^2 - 1 + K)/(K-1)^2 (once), ((K-1)^2-1)/(K-1)^2
    a = ((K - 1) ** 2 - 1 + K) / (K - 1) ** 2 / K
    b = ((K - 1) ** 2 - 1) / (K - 1) ** 2 / K
    h12 = -(a * math.log(a) + (K - 1) * b * math.log(b))
    return 2 - h12 / math.log(K - 1)


@pytest.mark.parametrize("K,table", [(3, 0.500), (5, 0.844), (10, 0.9524), (20, 0.9826), (100, 0.9978)])
def test_mir_hdr_at_exact_nc(K, table):
    E = simplex_etf(K, K, seed=0)
    Z, y = _collapsed(E, [2] * K)
    exact = mir(E, Z, y, clip=0)
    assert abs(exact - _mir_nc_closed_form(K)) < 1e-10
    assert abs(exact - table) < 6e-4  # the spec's table, rounded to 3-4 digits
    assert abs(mir(E, Z, y) - exact) < 1e-6  # clipping at 1e-10 (code) shifts by ~1e-9
    assert hdr(E, Z, y) < 1e-10
    assert abs(matrix_entropy(etf_gram(K), clip=0) - math.log(K - 1)) < 1e-10


def test_hdr_centring_under_imbalance():
    # exact NC with imbalanced classes: the sample mean is not the simplex centre, so the spec's
    # raw-global-mean G_M is not the ETF Gram and HDR > 0; centring by the mean of means gives 0
    E = simplex_etf(4, 6, seed=0)
    Z, y = _collapsed(E, [2, 3, 2, 2])
    assert hdr(E, Z, y) > 1e-3
    assert hdr(E, Z, y, centring="mean-of-means") < 1e-10
    assert abs(mir(E, Z, y, centring="mean-of-means", clip=0) - _mir_nc_closed_form(4)) < 1e-10


def test_hdr_code_centring_artefact():
    # NC + noise 1e-3 gives HDR ~0.17 (K = 10) with the code's normalised global mean, ~0 raw
    rng = np.random.default_rng(0)
    K, d = 10, 32
    E = simplex_etf(K, d, seed=1)
    y = np.repeat(np.arange(K), 50)
    Z = E[y] + 1e-3 * rng.standard_normal((y.size, d))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    assert hdr(E, Z, y) < 1e-5
    assert hdr(E, Z, y, centring="code") > 0.05


def test_mir_hdr_bad_input():
    with pytest.raises(InputError):
        mir_from_grams(np.eye(2), np.eye(3))
    with pytest.raises(InputError):  # rank-one Grams have zero entropy
        mir_from_grams(np.ones((3, 3)), np.ones((3, 3)), clip=0)
    with pytest.raises(InputError):
        hdr_from_grams(np.ones((2, 2)), np.ones((2, 2)), clip=0)
    Z, y = _collapsed(np.eye(3), [2, 2, 2])
    with pytest.raises(InputError):
        mir(np.eye(3), Z, y, centring="median")
    with pytest.raises(InputError):  # K = 2: the centred class means are always antipodal (rank one)
        mir(np.eye(2), *_collapsed(np.array([[1.0, 0.2], [0.3, 1.0]]), [1, 3]))
    with pytest.raises(InputError):
        hdr(np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1]]), Z, y)  # zero weight row


# ------------------------------------------------------------------------------ invariances (hypothesis)
@st.composite
def labelled_features(draw):
    k = draw(st.integers(3, 5))  # k = 2: centred means are antipodal, G_M rank one, MIR undefined
    d = draw(st.integers(k, 7))
    extra = draw(st.lists(st.integers(0, k - 1), min_size=k, max_size=12))
    y = np.array(list(range(k)) * 2 + extra)  # every class has >= 2 samples
    seed = draw(st.integers(0, 2**32 - 1))
    Z = np.random.default_rng(seed).standard_normal((y.size, d))
    return Z, y, k, seed


def _all_metrics(Z, y, k):
    W = class_means(Z, y, k) + 0.5  # some classifier (generic)
    return np.array(
        [
            delta_to_of(class_mean_gram(Z, y, k)),
            delta_to_etf(class_mean_gram(Z, y, k)),
            beta_nc(Z, y, k),
            beta_nc(Z, y, k, "papyan"),
            mean_class_cosine(Z, y, k),
            mean_class_cosine_centred(Z, y, k),
            nc_within_class_spread(Z, y, k),
            erank_inter(Z, y, k),
            erank_intra(Z, y, k),
            align_weight_instance(Z, W, y),
            align_weight_class(Z, W, y),
            mir(W, Z, y),
            hdr(W, Z, y),
        ]
    )


@settings(max_examples=50, deadline=None)
@given(labelled_features())
def test_metrics_invariant_under_rotation_of_features(data):
    Z, y, k, seed = data
    Q = _rotation(Z.shape[1], seed % 1000)
    W = class_means(Z, y, k) + 0.5
    base = _all_metrics(Z, y, k)
    # rotate features and classifier together (W is built from Z inside _all_metrics, plus a shift
    # that is not rotated, so compare the W-free metrics on Z Q and the W metrics with (Z Q, W Q))
    rot = _all_metrics(Z @ Q, y, k)
    assert np.allclose(base[:9], rot[:9], rtol=1e-7, atol=1e-9)
    pairs = [
        (align_weight_instance(Z, W, y), align_weight_instance(Z @ Q, W @ Q, y)),
        (align_weight_class(Z, W, y), align_weight_class(Z @ Q, W @ Q, y)),
        (mir(W, Z, y), mir(W @ Q, Z @ Q, y)),
        (hdr(W, Z, y), hdr(W @ Q, Z @ Q, y)),
        (erank_weights(W), erank_weights(W @ Q)),
        (ncc_accuracy(Z, y, Z[::2], y[::2]), ncc_accuracy(Z @ Q, y, Z[::2] @ Q, y[::2])),
    ]
    for a, b in pairs:
        assert abs(a - b) < 1e-8 * max(1.0, abs(a))


@settings(max_examples=50, deadline=None)
@given(labelled_features(), st.randoms(use_true_random=False))
def test_metrics_invariant_under_permutation_of_classes(data, rnd):
    Z, y, k, _ = data
    perm = np.array(rnd.sample(range(k), k))
    yp = perm[y]  # class c is renamed perm[c]
    G, Gp = class_mean_gram(Z, y, k), class_mean_gram(Z, yp, k)
    assert np.allclose(Gp[np.ix_(perm, perm)], G, atol=1e-12)
    a, b = _all_metrics(Z, y, k), _all_metrics(Z, yp, k)
    assert np.allclose(a, b, rtol=1e-7, atol=1e-9)
    assert classify_geometry(G)["name"] == classify_geometry(Gp)["name"]
    assert ncc_accuracy(Z, y, Z, y) == ncc_accuracy(Z, yp, Z, yp)


# ------------------------------------------------------------------------------ summary, torch input
def test_nc_summary_at_exact_nc_and_torch_dtypes():
    k = 4
    E = simplex_etf(k, 6, seed=0)
    Z, y = _collapsed(E, [3, 3, 3, 3])
    s = nc_summary(Z, y, k, W=E)
    assert s["geometry"] == "ETF" and s["delta_etf"] < EXACT and s["delta_to_prototypes"] < EXACT
    assert s["beta_nc_kini"] < 1e-25 and s["nc_spread"] < 1e-30
    assert abs(s["erank_inter"] - (k - 1)) < 1e-9 and abs(s["erank_weights"] - (k - 1)) < 1e-9
    assert s["align_weight_instance"] < EXACT and s["hdr"] < 1e-10
    assert math.isnan(s["erank_intra"]) and "erank_intra" in s["undefined"]  # undefined at NC
    # torch float32 / bfloat16 input is converted (bfloat16 has no numpy dtype)
    for dt in (torch.float32, torch.bfloat16):
        G = class_mean_gram(torch.tensor(Z, dtype=dt), torch.tensor(y), k)
        assert G.dtype == np.float64 and delta_to_etf(G) < 1e-2
    with pytest.raises(InputError):
        nc_summary(Z, y, k, W=E[:3])


# ------------------------------------------------------------------------------ issue 15: scale and types
import nctheory.metrics as _M  # noqa: E402

SCALE_INVARIANT = {
    "beta_nc_kini": lambda z, y, W: _M.beta_nc(z, y, 3),
    "beta_nc_papyan": lambda z, y, W: _M.beta_nc(z, y, 3, "papyan"),
    "nc_within_class_spread": lambda z, y, W: _M.nc_within_class_spread(z, y, 3),
    "mean_class_cosine": lambda z, y, W: _M.mean_class_cosine(z, y, 3),
    "mean_class_cosine_centred": lambda z, y, W: _M.mean_class_cosine_centred(z, y, 3),
    "classify_features.delta_of": lambda z, y, W: _M.classify_features(z, y, 3)["delta_of"],
    "classify_features.nc_spread": lambda z, y, W: _M.classify_features(z, y, 3)["nc_spread"],
    "ncc_accuracy": lambda z, y, W: _M.ncc_accuracy(z[::2], y[::2], z[1::2], y[1::2], 3),
    "erank_intra": lambda z, y, W: _M.erank_intra(z, y, 3),
    "erank_inter": lambda z, y, W: _M.erank_inter(z, y, 3),
    "erank_inter_second_moment": lambda z, y, W: _M.erank_inter(z, y, 3, centring="global-mean-second-moment"),
    "align_weight_instance": lambda z, y, W: _M.align_weight_instance(z, W, y),
    "align_weight_class": lambda z, y, W: _M.align_weight_class(z, W, y),
    "mir": lambda z, y, W: _M.mir(W, z, y),
    "hdr_code": lambda z, y, W: _M.hdr(W, z, y, centring="code"),
    "nc_summary.beta_nc_kini": lambda z, y, W: _M.nc_summary(z, y, 3, W=W)["beta_nc_kini"],
    "nc_summary.delta_to_prototypes": lambda z, y, W: _M.nc_summary(z, y, 3, W=W)["delta_to_prototypes"],
}


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e150, 1e200])
@pytest.mark.parametrize("name", sorted(SCALE_INVARIANT))
def test_scale_invariant_metrics_at_extreme_scales(name, scale):
    """beta_nc and the within-class spread were NaN for features scaled by 1e-200 (squares underflow to 0,
    0/0), beta_nc also at 1e200 (inf/inf). Every metric whose definition is invariant under z -> s z is
    computed on z times a power of two, so it equals its value at s = 1 up to the rounding of z * s
    (relative 1e-12: a handful of roundings of 1e-16 each)."""
    rng = np.random.default_rng(11)
    z = rng.normal(size=(12, 5)) + np.repeat(np.eye(3, 5) * 2, 4, axis=0)
    y = np.repeat(np.arange(3), 4)
    W = rng.normal(size=(3, 5))
    fn = SCALE_INVARIANT[name]
    ref = fn(z, y, W)
    got = fn(z * scale, y, W)
    assert np.isfinite(got) and got == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_delta_to_gram_scales_each_argument_on_its_own():
    G = class_mean_gram(np.repeat(np.eye(3), 2, axis=0), np.repeat(np.arange(3), 2), 3)
    ref = delta_to_gram(G + 0.1, G)
    for a, b in ((1e-300, 1.0), (1e300, 1e-300), (1e-170, 1e170)):
        assert delta_to_gram((G + 0.1) * a, G * b) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("bad,words", [(np.eye(3) * 1j, "complex"), (np.eye(3, dtype=bool), "booleans"),
                                       (torch.eye(3, dtype=torch.complex64), "complex"), (np.array([["a"]]), "strings")])
def test_complex_and_boolean_arrays_are_refused(bad, words):
    """as_float64 cast complex to real (dropping the imaginary part, with only a ComplexWarning) and booleans
    to 0/1; both are refused now."""
    with pytest.raises(InputError, match=words):
        delta_to_of(bad)
    with pytest.raises(InputError, match=words):
        class_means(bad, [0, 1, 2][: len(bad)], 3)

"""The LSE form as one object (nctheory.losses.gram.LSEForm): every view of it -- batched values, sign
values, gradient, softmax weights and the certificates' lower models, torch, sympy, the cvxpy
canonicalisation and its dual read-back, substitution, scaling and symmetry merging -- equals ``value``.
(``value`` itself equals the torch losses: tests/test_loss_catalogue.py, tests/test_prototype_geometry.py.)"""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from nctheory.errors import InputError
from nctheory.losses import gram as lg
from nctheory.losses.gram import LSEBuilder, LSEForm
from nctheory.solvers.prototypes import reduced_form
from nctheory.solvers.reduced import class_mean_form, orbit_form

Y = np.array([0, 0, 1, 1, 1, 2])


def _forms():
    """A form of every builder, each with its variable's dimension."""
    k = 3
    return {
        "scl": lg.scl_form(Y, 0.7),
        "scl_batches": lg.scl_form(Y, 0.5, [[0, 1, 2, 3], [2, 3, 4, 5], [0, 4, 5]]),
        "scl_prototypes": lg.scl_with_prototypes_form(Y, k, 2, 0.5),
        "normface": lg.normface_form(Y, k, 0.8),
        "ntce": lg.ntce_form(Y, k, 1.0),
        "nonl": lg.nonl_form(Y, k, 0.6),
        "ce_fixed": lg.ce_fixed_classifier_form(Y, k, 0.9),
        "proto": lg.proto_loss_form(Y, 0.4),
        "class_mean": class_mean_form([3, 2, 1, 2], 0.5),
        "prototype_block": reduced_form([3, 2, 1], 0.5 * (np.eye(k) + np.ones((k, k))), 3, 0.5),
    }


FORMS = _forms()


def _gram(m, rng):
    H = rng.normal(size=(m, m + 1))
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    return H @ H.T


@pytest.mark.parametrize("name", FORMS)
def test_values_and_sign_values_equal_value(name):
    f = FORMS[name]
    rng = np.random.default_rng(0)
    Gs = np.stack([_gram(f.size, rng) for _ in range(5)])
    assert np.allclose(f.values(Gs), [f.value(G) for G in Gs], rtol=1e-13, atol=1e-13)
    S = rng.choice([-1.0, 1.0], size=(7, f.size))
    assert np.allclose(f.sign_values(S), [f.value(np.outer(s, s)) for s in S], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", FORMS)
def test_gradient_is_the_derivative_of_value(name):
    """<gradient, E> = d/dt L(G + t E) at t = 0 for symmetric E (central differences, step 1e-5: error
    O(1e-10 |L'''|), far below the 1e-6 tolerance)."""
    f = FORMS[name]
    rng = np.random.default_rng(1)
    G = _gram(f.size, rng)
    D = f.gradient(G)
    assert np.allclose(D, D.T)
    for _ in range(3):
        E = rng.normal(size=G.shape)
        E = E + E.T
        h = 1e-5
        fd = (f.value(G + h * E) - f.value(G - h * E)) / (2 * h)
        assert float(np.sum(D * E)) == pytest.approx(fd, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name", FORMS)
def test_lower_models_touch_and_stay_below(name):
    """Gibbs' minorant at p = lse_weights(G) and the tangent plane both equal L at G and lie below L elsewhere;
    a random p with the right term sums gives a (looser) minorant too."""
    f = FORMS[name]
    rng = np.random.default_rng(2)
    G = _gram(f.size, rng)
    p = f.lse_weights(G)
    assert np.allclose(np.bincount(f.group, weights=p, minlength=f.n_terms), f.weight, rtol=1e-13)
    q = rng.uniform(0.01, 1, size=p.size)
    q *= (f.weight / np.bincount(f.group, weights=q, minlength=f.n_terms))[f.group]
    models = [f.minorant(p), f.tangent(G), f.minorant(q)]
    for S, off in models[:2]:
        assert float(np.sum(S * G)) + off == pytest.approx(f.value(G), rel=1e-12, abs=1e-12)
    for _ in range(10):
        X = _gram(f.size, rng)
        for S, off in models:
            assert float(np.sum(S * X)) + off <= f.value(X) + 1e-10 * max(1.0, abs(f.value(X)))


@pytest.mark.parametrize("name", ["scl", "scl_prototypes", "proto", "class_mean", "prototype_block"])
def test_torch_view_equals_value_and_its_gradient(name):
    import torch

    f = FORMS[name]
    G = _gram(f.size, np.random.default_rng(3))
    Gt = torch.tensor(G, dtype=torch.float64, requires_grad=True)
    v = f.torch("cpu")(Gt)
    assert float(v.detach()) == pytest.approx(f.value(G), rel=1e-13, abs=1e-13)
    (g,) = torch.autograd.grad(v, Gt)
    g = g.numpy()
    assert np.allclose(0.5 * (g + g.T), f.gradient(G), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["normface", "ntce", "nonl", "proto", "scl_batches"])
def test_sympy_view_is_exact_and_scales_with_tau(name):
    """At a rational G the exact value equals value(G); read at temperature tau, the form built at tau = 1
    equals the one built at tau (the builders' logits are inner products over tau plus log-multiplicities)."""
    import sympy

    build = {"normface": lambda t: lg.normface_form(Y, 3, t), "ntce": lambda t: lg.ntce_form(Y, 3, t),
             "nonl": lambda t: lg.nonl_form(Y, 3, t), "proto": lambda t: lg.proto_loss_form(Y, t),
             "scl_batches": lambda t: lg.scl_form(Y, t, [[0, 1, 2, 3], [2, 3, 4, 5]])}[name]
    f1 = build(1.0)
    rng = np.random.default_rng(4)
    G = np.round(_gram(f1.size, rng) * 8) / 8
    np.fill_diagonal(G, 1.0)
    Gs = sympy.Matrix(G.shape[0], G.shape[1], lambda i, j: sympy.Rational(int(round(G[i, j] * 8)), 8))
    assert float(f1.sympy(Gs)) == pytest.approx(f1.value(G), rel=1e-13, abs=1e-13)
    tau = sympy.Symbol("tau", positive=True)
    assert float(f1.sympy(Gs, tau).subs(tau, sympy.Rational(1, 2))) == pytest.approx(build(0.5).value(G), rel=1e-12)


@pytest.mark.parametrize("name", ["scl", "scl_prototypes", "proto", "class_mean"])
def test_canonicalisation_and_dual_read_back(name):
    """min over the epigraph variables at a fixed G is L(G) (Clarabel's 1e-8 accuracy, 1e-6 asserted), and the
    cones' duals read back by dual_weights are the softmax weights at G (1e-4: interior-point duals)."""
    import cvxpy as cp

    f = FORMS[name]
    G = _gram(f.size, np.random.default_rng(5))
    for scale in (1.0, 7.0):
        obj, cons, cone = f.canonicalise(cp.Constant(G), scale=scale)
        prob = cp.Problem(cp.Minimize(obj), cons)
        prob.solve(solver="CLARABEL")
        assert prob.value * scale == pytest.approx(f.value(G), rel=1e-6)
        assert np.allclose(f.dual_weights(cone), f.lse_weights(G), atol=1e-4 * f.weight.max())


def test_pullback_equals_value_at_the_substituted_point():
    f = FORMS["scl_prototypes"]
    rng = np.random.default_rng(6)
    m = f.size
    T = rng.normal(size=(m * m, 5))
    off = rng.normal(size=m * m)
    g = f.pullback(T, (5,), off)
    for _ in range(5):
        th = rng.normal(size=5) * 0.3
        assert g.value(th) == pytest.approx(f.value((T @ th + off).reshape(m, m)), rel=1e-12, abs=1e-12)
    with pytest.raises(InputError):
        f.pullback(T[:-1], (5,))


def test_scaled():
    f = FORMS["class_mean"]
    G = _gram(f.size, np.random.default_rng(7))
    assert f.scaled(0.25).value(G) == pytest.approx(0.25 * f.value(G), rel=1e-14)
    with pytest.raises(InputError):
        f.scaled(-1.0)


@pytest.mark.parametrize("counts", [[10, 2, 2], [3, 3, 2, 2, 1], [4, 4, 4], [5, 1, 1, 1]])
def test_merged_orbit_form_equals_the_class_mean_form(counts):
    """The orbit-reduced SCL program (class-mean form composed with the orbit parametrisation, then merged) equals
    the class-mean form at every orbit-constant point; its size is the number of orbits; expand maps its softmax
    weights to the class-mean form's."""
    f = class_mean_form(counts, 0.5)
    g, expand, (gid, m, ng) = orbit_form(counts, 0.5)
    G = m.size
    assert g.n_terms == int(np.sum(ng >= 2)) and g.shape == (G * G + G,)
    rng = np.random.default_rng(8)
    for _ in range(5):
        Q = rng.uniform(-0.5, 0.5, size=(G, G))
        Q = Q + Q.T
        d = rng.uniform(0.2, 1.0, size=G)
        theta = np.r_[Q.ravel(), d]
        M = Q[np.ix_(gid, gid)]
        np.fill_diagonal(M, d[gid])
        assert g.value(theta) == pytest.approx(f.value(M), rel=1e-12, abs=1e-12)
        assert np.allclose(expand(g.lse_weights(theta)), f.lse_weights(M), rtol=1e-12, atol=1e-14)


def test_merged_keeps_every_form_equal():
    """merged() on forms without repeated structure changes nothing but the representation; with it, fewer rows."""
    rng = np.random.default_rng(9)
    for name, f in FORMS.items():
        g, expand = f.merged()
        assert g.A.shape[0] <= f.A.shape[0] and g.n_terms <= f.n_terms
        X = _gram(f.size, rng)
        assert g.value(X) == pytest.approx(f.value(X), rel=1e-12, abs=1e-12), name
        assert np.allclose(expand(g.lse_weights(X)), f.lse_weights(X), rtol=1e-11, atol=1e-14), name


def test_builder_conventions():
    bld = LSEBuilder(2)
    bld.add_linear(([0], [1]), 3.0)
    bld.add_constant(1.5)
    f = bld.build()
    assert f.n_terms == 0 and f.value(np.array([[1.0, 0.5], [0.5, 1.0]])) == 3.0
    with pytest.raises(ValueError):
        bld.add_term(1.0, [], ([0], [0]))
    bld.add_term(2.0, [0.0, math.log(3.0)], ([0, 1], [1, 0]), [1.0, 2.0], logit=[0, 0])  # logit 1: a constant
    g = bld.build()
    X = np.array([[1.0, 0.2], [0.3, 1.0]])
    assert g.value(X) == pytest.approx(2 * math.log(math.exp(0.2 + 0.6) + 3.0) + 3.0 * 0.2 + 1.5, rel=1e-14)
    with pytest.raises(InputError):
        g.value(np.eye(3))
    with pytest.raises(TypeError):
        LSEForm((4,), sp.csr_matrix((0, 4)), np.zeros(0), np.zeros(0, int), np.zeros(0), np.zeros(4)).size

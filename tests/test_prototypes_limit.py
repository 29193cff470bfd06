"""Unit tests of nctheory.losses.prototype_limit: the n_w -> oo limit of SCL with prototypes, and the four
views of its per-sample objective f (PerSampleLimit: value, gradient, cvxpy, torch) checked equal."""

import math

import cvxpy as cp
import mpmath
import numpy as np
import pytest
import torch

from nctheory.errors import InputError
from nctheory.geometry import simplex_etf
from nctheory.losses import scl_with_prototypes
from nctheory.losses.prototype_limit import PerSampleLimit, asymptotic_offset, limit_loss, paper_limit_loss


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    return unit(rng.normal(size=(6, 3))), unit(rng.normal(size=(6, 3))), np.array([0, 1, 1, 2, 2, 0]), \
        unit(rng.normal(size=(3, 3)))


def brute_limit(z, y, W, tau):
    """Per-sample loop: sum_i [LSE_c(w_c.h_i/tau) - 2 w_y.h_i/tau + sum_c e^{w_c.h_i/tau}/Z_c]."""
    Z = np.exp(W @ W.T / tau).sum(1)
    tot = 0.0
    for h, c in zip(z, y):
        lg = W @ h / tau
        tot += math.log(np.exp(lg).sum()) - 2 * lg[c] + (np.exp(lg) / Z).sum()
    return tot


@pytest.mark.parametrize("tau", [0.3, 1.0])
def test_limit_loss_brute_force(problem, tau):
    z1, _, y, W = problem
    assert float(limit_loss(z1, y, W, tau)) == pytest.approx(brute_limit(z1, y, W, tau), rel=1e-13)


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_exact_minus_offset_converges_like_one_over_n_w(problem, tau):
    z1, _, y, W = problem
    rem = {nw: float(scl_with_prototypes(z1, y, W, nw, tau)) - asymptotic_offset(y, W, nw, tau)
           - float(limit_loss(z1, y, W, tau)) for nw in (10**3, 10**4, 10**5)}
    assert abs(rem[10**5]) < 1e-3
    assert rem[10**4] * 10**4 == pytest.approx(rem[10**5] * 10**5, rel=0.05)  # the remainder is C/n_w


def test_differences_converge_and_paper_form_does_not(problem):
    z1, z2, y, W = problem
    dl = float(limit_loss(z1, y, W) - limit_loss(z2, y, W))
    dp = float(paper_limit_loss(z1, y, W) - paper_limit_loss(z2, y, W))
    errs = []
    for nw in (10**3, 10**5, 10**7):
        de = float(scl_with_prototypes(z1, y, W, nw) - scl_with_prototypes(z2, y, W, nw))
        errs.append(abs(de - dl))
    assert errs[2] < 1e-5 < errs[0]
    assert abs(de - dp) > 0.01  # the printed Prop. 1 misses an order-1 term


def test_batches_sum(problem):
    z1, _, y, W = problem
    batches = [[0, 1, 2], [2, 3, 4, 5]]
    whole = float(limit_loss(z1, y, W, 0.7, batches))
    parts = sum(float(limit_loss(z1[b], y[b], W, 0.7)) for b in batches)
    assert whole == pytest.approx(parts, rel=1e-14)
    nw = 10**5
    ex = float(scl_with_prototypes(z1, y, W, nw, 0.7, batches))
    assert ex - asymptotic_offset(y, W, nw, 0.7, batches) - whole == pytest.approx(0, abs=1e-3)


def test_etf_repulsion_is_one_per_sample_at_the_prototypes():
    W = simplex_etf(4)
    y = np.array([0, 1, 2, 3, 3])
    z = W[y]
    assert float(limit_loss(z, y, W) - paper_limit_loss(z, y, W)) == pytest.approx(len(y), rel=1e-14)


def test_gradient_flows_to_features_not_prototypes(problem):
    z1, _, y, W = problem
    z = torch.tensor(z1, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    limit_loss(z, y, Wt).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and Wt.grad is None


def test_input_errors(problem):
    z1, _, y, W = problem
    with pytest.raises(InputError):
        limit_loss(z1, np.array([0, 1, 1, 2, 2, 3]), W)  # label >= k
    with pytest.raises(InputError):
        limit_loss(z1, y, W, tau=0)
    with pytest.raises(InputError):
        asymptotic_offset(y, W, 0)
    with pytest.raises(InputError):
        limit_loss(z1[:, :2], y, W)


# ---------------------------------------------------------------- PerSampleLimit: one f, four views
def mp_f(p, y, G, tau, form):
    """f(p, y) at 60 digits (mpmath): LSE(p/tau) - 2 p_y/tau [+ sum_c exp(p_c/tau) / sum_c' exp(G_cc'/tau)]."""
    mpmath.mp.dps = 60
    x = [mpmath.mpf(float(v)) / mpmath.mpf(tau) for v in p]
    val = mpmath.log(sum(mpmath.exp(v) for v in x)) - 2 * x[y]
    if form == "derived":
        for c, v in enumerate(x):
            val += mpmath.exp(v) / sum(mpmath.exp(mpmath.mpf(float(g)) / mpmath.mpf(tau)) for g in G[c])
    return float(val)


@pytest.mark.parametrize("form", ["derived", "paper"])
@pytest.mark.parametrize("tau", [1e-3, 0.05, 0.3, 1.0, 2.0])
def test_value_torch_cvxpy_and_gradient_are_one_f(form, tau):
    """value == torch == cvxpy (the expression evaluated at the point) == a 60-digit evaluation, and
    gradient == torch autograd, at p = W h for unit h (|p_c| <= 1, as in the solver), down to tau = 1e-3,
    where exp(G_cc/tau) = e^1000 overflows float64: log Z_c must be a log-sum-exp. Tolerance 1e-12
    relative: float64 rounding of O(k) terms of size up to 1/tau (each view sums them in its own order)."""
    rng = np.random.default_rng(11)
    k, d = 4, 3
    W = unit(rng.normal(size=(k, d)))
    G = W @ W.T
    f = PerSampleLimit(G, tau, form)
    H = unit(rng.normal(size=(5, d)))
    H[0] = W[2]  # on a prototype: the log-sum-exp's largest term is exp(1/tau)
    y = np.array([2, 0, 1, 3, 3])
    P = H @ W.T
    Pt = torch.tensor(P, requires_grad=True)
    per = f.torch(Pt, torch.as_tensor(y))
    per.sum().backward()
    per = per.detach()
    pv = cp.Variable(k)
    for i in range(len(y)):
        ref = mp_f(P[i], y[i], G, tau, form)
        scale = max(1.0, abs(ref))
        assert abs(f.value(P[i], y[i]) - ref) <= 1e-12 * scale
        assert abs(float(per[i]) - ref) <= 1e-12 * scale
        expr = f.cvxpy(pv, int(y[i]))
        assert expr.is_dcp() and expr.is_convex()
        pv.value = P[i]
        assert abs(float(expr.value) - ref) <= 1e-12 * scale
        g = f.gradient(P[i], y[i])
        assert np.all(np.isfinite(g))
        assert np.abs(g - Pt.grad[i].numpy()).max() <= 1e-12 * max(1.0, np.abs(g).max())


def test_limit_losses_are_built_on_per_sample_limit(problem):
    """limit_loss / paper_limit_loss = sum_i PerSampleLimit.value(W h_i, y_i), also at tau = 1e-3 (where the
    earlier np.log(np.exp(G/tau).sum(1)) overflowed to inf)."""
    z1, _, y, W = problem
    for tau in (1e-3, 0.5):
        for form, loss in (("derived", limit_loss), ("paper", paper_limit_loss)):
            f = PerSampleLimit(W @ W.T, tau, form)
            ref = sum(f.value(W @ h, c) for h, c in zip(z1, y))
            got = float(loss(z1, y, W, tau))
            assert math.isfinite(got) and got == pytest.approx(ref, rel=1e-12)


def test_per_sample_limit_bad_input():
    G = simplex_etf(3) @ simplex_etf(3).T
    with pytest.raises(InputError):
        PerSampleLimit(G, 1.0, form="printed")
    with pytest.raises(InputError):
        PerSampleLimit(G, 0.0)
    with pytest.raises(InputError):
        PerSampleLimit(np.ones((2, 3)))
    f = PerSampleLimit(G)
    with pytest.raises(InputError):
        f.value(np.zeros(2), 0)  # p of the wrong length
    with pytest.raises(InputError):
        f.gradient(np.zeros(3), 3)  # label >= k
    with pytest.raises(InputError):
        f.torch(torch.zeros(2, 4), torch.tensor([0, 1]))

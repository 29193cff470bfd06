"""Unit tests of nctheory.prototypes: the n_w -> oo limit of SCL with prototypes."""

import math

import numpy as np
import pytest
import torch

from nctheory.errors import InputError
from nctheory.geometry import simplex_etf
from nctheory.losses import scl_with_prototypes
from nctheory.prototypes import asymptotic_offset, limit_loss, paper_limit_loss


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

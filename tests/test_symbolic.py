"""Unit tests of nctheory.symbolic: each symbolic expression of a loss equals the torch loss at random
points, the derivations reach the expected comparisons, and `nctheory derive` exits as documented."""

import json

import numpy as np
import pytest
import sympy as sp

from nctheory.claims.symbolic_kini2023 import class_symmetric_features, symbolic_value
from nctheory.cli import main
from nctheory.geometry import simplex_etf
from nctheory.losses import proto_loss, scl, scl_with_prototypes
from nctheory.solvers.prototypes import limit_class_solution
from nctheory.symbolic import equivalences as eq
from nctheory.symbolic import prototypes as pr
from nctheory.symbolic import scl_bounds as sb
from nctheory.symbolic.core import is_zero


@pytest.mark.parametrize("counts,a_c,b,tau", [([2, 3], [0.9, 0.6], 0.1, 1.0), ([4, 2, 2], [1.0, 0.5, 0.7], 0.0, 0.3),
                                              ([3, 3, 5, 2], [0.4, 0.4, 0.9, 0.5], 0.35, 2.0)])
def test_class_symmetric_expression_is_the_torch_loss(counts, a_c, b, tau):
    H, y = class_symmetric_features(counts, a_c, b)
    assert np.all(H >= 0) and np.allclose(np.linalg.norm(H, axis=1), 1)
    assert symbolic_value(counts, a_c, b, tau) == pytest.approx(float(scl(H, y, tau)), rel=1e-12)


def test_thm1_derivation_agrees_and_flags_singletons():
    d = sb.thm1_derivation()
    assert d.agree and d.details == {"sign_d_da": "negative", "sign_d_db": "positive", "sign_F2": "positive"}
    stated = d.stated.function.subs(sb.n_c, 1)  # the stated term of a one-sample class
    assert is_zero(stated - (sp.log(sb.n - 1) - 1 / sb.tau))
    assert not is_zero(stated)


def test_sign_of_detects_both_signs():
    assert sb.sign_of(-sb.n_c / sb.tau) == "negative"
    assert sb.sign_of(sb.n - sb.n_c) == "positive"
    assert sb.sign_of(sb.a) == "undecided"


def test_lemma_d1_and_d2():
    d1 = sb.lemma_d1_derivation()
    assert d1.agree and is_zero(d1.derived + 1 / (sp.Symbol("k", integer=True, positive=True) - 1))
    d2 = sb.lemma_d2_derivation()
    assert d2.agree
    assert 6 < d2.details["thresholds"][2] < 7  # ETF loses already for R > ~6.52 at n_min = 2
    assert sb.lemma_d2_gap(10, 2) < 0 < sb.lemma_d2_gap(5, 2)


def test_remark2():
    assert sb.remark2_derivation().agree


def test_prototype_expansion_terms():
    d = pr.prop1_derivation()
    assert not d.agree
    assert d.details["missing_term"] == "T/Z_c"
    s_div, _, s_z = pr.split_terms(pr.expand(pr.sample_anchor_term()))
    assert s_div == sp.log(pr.N) and is_zero(s_z - (sp.log(pr.E) - pr.u))


def test_expansion_matches_exact_at_large_n_w():
    vals = {pr.S: 3.1, pr.E: 2.2, pr.sig: 0.7, pr.u: 0.4, pr.mc: 3, pr.T: 5.0, pr.Lam: 1.3, pr.q: 1.0, pr.v: 1.1}
    for exact in (pr.sample_anchor_term(), pr.prototype_anchor_total()):
        approx = pr.expand(exact)
        errs = [abs(float((exact - approx).subs(vals).subs(pr.N, nw).evalf(40))) for nw in (10**3, 10**4)]
        assert errs[1] < errs[0] / 5 and errs[1] < 1e-2  # O(1/n_w)


@pytest.mark.parametrize("n_w", [1, 2, 5, 1000])
def test_aggregated_exact_loss_is_the_torch_loss(n_w):
    rng = np.random.default_rng(n_w)
    z = rng.normal(size=(5, 3))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    W = rng.normal(size=(3, 3))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    y = np.array([0, 0, 1, 0, 1])  # class 2 absent: its copies have no positive when n_w = 1
    assert pr.aggregated_exact_loss(z, y, W, n_w, 0.6) == pytest.approx(float(scl_with_prototypes(z, y, W, n_w, 0.6)),
                                                                        rel=1e-12)


def test_prop2_reduction_and_solver():
    d = pr.prop2_derivation()
    assert d.agree and d.details == {"derived": True, "paper": True}
    W = np.eye(2)  # orthogonal prototypes: h* is not w_y (p = W h = h here)
    r = limit_class_solution(W @ W.T, 0, 1.0, "paper")
    assert np.abs(r["p"] - W[0]).max() > 0.1 and r["span_norm2"] == pytest.approx(1, abs=1e-6)
    # ETF prototypes: h* = w_y (Prop. 2), for both forms; 1e-3: interior-point accuracy on the boundary
    E = simplex_etf(3)
    for form in ("derived", "paper"):
        r = limit_class_solution(E @ E.T, 1, 0.5, form)
        assert np.abs(np.linalg.pinv(E) @ r["p"] - E[1]).max() < 1e-3


def test_proposition_p_numerically():
    rng = np.random.default_rng(3)
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    for _ in range(20):
        A = rng.normal(size=(9, 2))
        A /= np.linalg.norm(A, axis=1, keepdims=True)
        assert float(scl(A, y, 0.5)) / 9 >= float(proto_loss(A, y, 0.5)) - 1e-12
    D = rng.normal(size=(3, 2))
    A = (D / np.linalg.norm(D, axis=1, keepdims=True))[y]
    assert float(scl(A, y, 0.5)) / 9 == pytest.approx(float(proto_loss(A, y, 0.5)), abs=1e-13)
    assert eq.thm4_2_derivation().agree and eq.remark1_derivation().agree


def test_derive_cli(capsys):
    assert main(["derive", "--list"]) == 0
    assert "gill2023.prop1" in capsys.readouterr().out
    assert main(["derive", "kini2023.thm1"]) == 0
    out = capsys.readouterr().out
    assert "agree: yes" in out and "paper states:" in out
    assert main(["derive", "gill2023.prop1", "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["agree"] is False and "T/Z_c" in payload["details"]["missing_term"]
    assert main(["derive", "kini2023.lemma_d1", "--latex"]) == 0
    assert "\\frac" in capsys.readouterr().out
    assert main(["derive", "no.such"]) == 2
    assert main(["derive"]) == 2

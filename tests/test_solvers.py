"""Tests of the certified UFM solvers (nctheory.solvers) and `nctheory solve`. Small and fast."""

import json
import numpy as np
import pytest

from nctheory.bounds import full_batch_bound
from nctheory.errors import SolverError
from nctheory.losses import scl
from nctheory.losses.gram import scl_form
from nctheory.solvers.certificate import linear_lower_bound, lse_form_gradient
from nctheory.solvers.gram import solve_gram
from nctheory.solvers.reduced import block_gram, reduced_scl_value, solve_reduced
from nctheory.solvers.riemannian import form_objective, scl_objective, solve_riemannian

REL = 1e-6  # the certificate threshold


def labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_gram_relu_equals_thm1_and_is_of():
    y = labels([3, 2, 2])
    r = solve_gram(scl_form(y, 1.0), y=y, nonneg=True)
    assert r.status == "optimal" and abs(r.rel_gap) <= REL
    assert abs(r.value - full_batch_bound([3, 2, 2], 1.0)) <= REL * r.value
    assert r.geometry["name"] == "OF" and r.rank == 3
    # the certificate's two sides: value at a feasible G, and the loss evaluated there agrees with torch
    Z = r.Z / np.linalg.norm(r.Z, axis=1, keepdims=True)
    assert abs(float(scl(Z, y, 1.0)) - r.value) <= 1e-6 * r.value


def test_gram_balanced_is_etf_and_imbalanced_is_not():
    y = labels([3, 3, 3])
    r = solve_gram(scl_form(y, 0.5), y=y)
    assert r.geometry["name"] == "ETF"
    y = labels([10, 2, 2])
    r = solve_gram(scl_form(y, 1.0), y=y)
    assert r.geometry["name"] == "other"
    assert r.geometry["candidates"]["ETF"]["beaten_by_feasible"]
    assert r.value < full_batch_bound([10, 2, 2], 1.0)  # no ReLU: below the UFM+ bound


@pytest.mark.parametrize("counts,tau,relu", [([4, 2, 2], 1.0, False), ([4, 2, 2], 0.1, True), ([3, 3, 2, 1], 0.5, False)])
def test_reduced_agrees_with_full_program(counts, tau, relu):
    y = labels(counts)
    g = solve_gram(scl_form(y, tau), y=y, nonneg=relu)
    for orbits in ("counts", "classes"):
        r = solve_reduced(counts, tau, relu, orbits=orbits)
        assert abs(r.value - g.value) <= 2 * REL * max(1.0, g.value)
        # the reduced optimum expands to an n x n Gram matrix whose full loss is the same number
        assert abs(scl_form(y, tau).evaluate(block_gram(r.G, counts)) - r.value) <= 1e-9 * max(1.0, r.value)


def test_block_psd_criterion():
    """G (class-block constant) is PSD iff a_c <= 1 and the class-mean Gram G_M is PSD (reduced.py docstring)."""
    rng = np.random.default_rng(0)
    counts = [3, 2, 4]
    for _ in range(200):
        M = rng.uniform(-1, 1, (3, 3))
        M = 0.5 * (M + M.T)
        np.fill_diagonal(M, rng.uniform(0.0, 1.2, 3))
        G = block_gram(M, counts)
        psd_full = np.linalg.eigvalsh(G).min() >= -1e-10
        psd_red = np.linalg.eigvalsh(M).min() >= -1e-10 and np.all(np.diag(M) <= 1 + 1e-10)
        assert psd_full == psd_red


def test_reduced_cifar_sizes_fast_and_certified():
    c10 = [5000] * 5 + [500] * 5
    c100 = [500] * 50 + [50] * 50
    for counts in (c10, c100):
        for relu in (False, True):
            r = solve_reduced(counts, 0.1, relu)
            assert abs(r.rel_gap) <= REL and r.seconds < 20
            if relu:
                assert abs(r.value - full_batch_bound(counts, 0.1)) <= REL * r.value
                assert r.geometry["name"] == "OF"
            else:
                assert r.value < full_batch_bound(counts, 0.1) and r.geometry["name"] == "other"
    # reduced value formula = Thm 1 bound at the OF
    assert abs(reduced_scl_value(np.eye(10), c10, 0.1) - full_batch_bound(c10, 0.1)) <= 1e-12 * 3e5


def test_lower_bound_is_a_lower_bound():
    """The Lagrangian bound of certificate.py holds for arbitrary (bad) multipliers at random feasible points."""
    rng = np.random.default_rng(1)
    y = labels([2, 2, 1])
    f = scl_form(y, 0.7)
    X0 = rng.normal(size=(5, 5))
    X0 = X0 @ X0.T
    d = np.sqrt(np.diag(X0))
    X0 = X0 / d[:, None] / d[None, :]
    D = lse_form_gradient(f, X0)
    for _ in range(20):
        nu = rng.normal(size=5) * 3
        lb = f.evaluate(X0) - np.sum(D * X0) + linear_lower_bound(D, np.ones(5), np.ones(5), nu)["linear_part"]
        for _ in range(10):
            H = rng.normal(size=(5, 4))
            H /= np.linalg.norm(H, axis=1, keepdims=True)
            assert f.evaluate(H @ H.T) >= lb - 1e-9


def test_riemannian_matches_gram_and_reports_spread():
    y = labels([3, 2, 2])
    g = solve_gram(scl_form(y, 1.0), y=y)
    r = solve_riemannian(scl_objective(y, 1.0), 7, 7, restarts=3, device="cpu")
    assert abs(r.value - g.value) <= 1e-6 * g.value and r.converged >= 1 and r.stationarity <= 1e-6
    r2 = solve_riemannian(form_objective(scl_form(y, 1.0), device="cpu"), 7, 7, nonneg=True, restarts=2, device="cpu")
    assert abs(r2.value - full_batch_bound([3, 2, 2], 1.0)) <= 1e-6 * r2.value
    assert np.all(r2.Z >= 0)


def test_riemannian_minibatch_d_less_than_n():
    y = labels([4, 4, 4])
    batches = [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11], [0, 2, 4, 6, 8, 10]]
    r = solve_riemannian(scl_objective(y, 0.5, batches), 12, 3, nonneg=True, restarts=3, device="cpu")
    from nctheory.bounds import batch_bound

    assert r.value >= batch_bound(y, batches, 0.5) - 1e-9
    assert abs(r.value - batch_bound(y, batches, 0.5)) <= 1e-5 * r.value  # d = k = 3 suffices for the OF


def test_solver_errors_are_raised():
    y = labels([3, 2])
    with pytest.raises(SolverError):
        solve_riemannian(scl_objective(y, 1.0), 5, 5, restarts=2, max_iter=1, device="cpu")
    with pytest.raises(SolverError):
        solve_gram(scl_form(y, 1.0), y=y, solvers=())


@pytest.fixture
def _cli(capsys):
    """Run `nctheory solve ARGS` in-process (a subprocess pays ~9 s of imports per call)."""
    from nctheory.cli import main

    def run(*args):
        capsys.readouterr()
        code = main(["solve", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.mark.parametrize("relu", [False, True])
def test_cli_done_when(relu, _cli):
    code, out, err = _cli("--loss", "scl", "--counts", "10,2,2", "--tau", "1", "--json", *(["--relu"] if relu else []))
    assert code == 0, err
    d = json.loads(out)
    for key in ("value", "status", "gap", "geometry", "class_mean_gram"):
        assert key in d
    assert d["status"] == "optimal" and abs(d["rel_gap"]) <= REL
    assert d["geometry"]["name"] == ("OF" if relu else "other")


def test_cli_plan_plot_and_errors(tmp_path, _cli):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"labels": [0, 0, 1, 1, 2, 2], "batches": [[0, 1, 2, 3], [2, 3, 4, 5], [0, 1, 4, 5]]}))
    png = tmp_path / "h.png"
    code, out, err = _cli("--loss", "scl", "--plan", str(plan), "--relu", "--json", "--plot", str(png))
    assert code == 0, err
    d = json.loads(out)
    assert d["method"] == "gram" and d["geometry"]["name"] == "OF" and png.stat().st_size > 1000
    assert abs(d["value"] - d["kini_bound"]) <= REL * d["value"]
    assert _cli("--loss", "scl", "--counts", "3", "--tau", "1")[0] == 2
    assert _cli("--loss", "scl", "--counts", "3,2", "--tau", "-1")[0] == 2
    assert _cli("--loss", "scl", "--counts", "3,x", "--tau", "1")[0] == 2
    code, _, err = _cli("--loss", "scl", "--counts", "3,2", "--method", "riemannian", "--max-iter", "1", "--restarts", "1")
    assert code == 3 and "Traceback" not in err


def test_cli_relu_with_fixed_prototypes_uses_riemannian(_cli):
    code, out, err = _cli("--loss", "scl-prototypes", "--counts", "2,2", "--tau", "1", "--relu", "--restarts", "1", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["method"] == "riemannian" and d["certified"] is False and d["gap"] is None

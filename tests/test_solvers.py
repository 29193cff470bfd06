"""Tests of the certified UFM solvers (nctheory.solvers, solve_ufm) and `nctheory solve`. Small and fast."""

import json
import numpy as np
import pytest

from nctheory.bounds import full_batch_bound
from nctheory.errors import InputError, SolverError
from nctheory.losses import scl
from nctheory.losses.gram import scl_form
from nctheory.solvers import UFMProblem, solve_ufm
from nctheory.solvers.certificate import linear_lower_bound
from nctheory.solvers.gram import solve_gram
from nctheory.solvers.reduced import sample_gram_from_class_gram, reduced_scl_value, solve_reduced
from nctheory.solvers.riemannian import form_objective, loss_objective, solve_riemannian

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
        assert abs(scl_form(y, tau).value(sample_gram_from_class_gram(r.G, counts)) - r.value) <= 1e-9 * max(1.0, r.value)


def test_block_psd_criterion():
    """G (class-block constant) is PSD iff a_c <= 1 and the class-mean Gram G_M is PSD (reduced.py docstring)."""
    rng = np.random.default_rng(0)
    counts = [3, 2, 4]
    for _ in range(200):
        M = rng.uniform(-1, 1, (3, 3))
        M = 0.5 * (M + M.T)
        np.fill_diagonal(M, rng.uniform(0.0, 1.2, 3))
        G = sample_gram_from_class_gram(M, counts)
        psd_full = np.linalg.eigvalsh(G).min() >= -1e-10
        psd_red = np.linalg.eigvalsh(M).min() >= -1e-10 and np.all(np.diag(M) <= 1 + 1e-10)
        assert psd_full == psd_red


def test_reduced_cifar_sizes_certified():
    c10 = [5000] * 5 + [500] * 5
    c100 = [500] * 50 + [50] * 50
    for counts in (c10, c100):
        for relu in (False, True):
            r = solve_reduced(counts, 0.1, relu)
            assert abs(r.rel_gap) <= REL
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
    D = f.gradient(X0)
    for _ in range(20):
        nu = rng.normal(size=5) * 3
        lb = f.value(X0) - np.sum(D * X0) + linear_lower_bound(D, np.ones(5), np.ones(5), nu)["linear_part"]
        for _ in range(10):
            H = rng.normal(size=(5, 4))
            H /= np.linalg.norm(H, axis=1, keepdims=True)
            assert f.value(H @ H.T) >= lb - 1e-9


def test_riemannian_matches_gram_and_reports_spread():
    y = labels([3, 2, 2])
    g = solve_gram(scl_form(y, 1.0), y=y)
    r = solve_riemannian(loss_objective("scl", y, tau=1.0), 7, 7, restarts=3, device="cpu")
    assert abs(r.value - g.value) <= 1e-6 * g.value and r.converged >= 1 and r.stationarity <= 1e-6
    r2 = solve_riemannian(form_objective(scl_form(y, 1.0), device="cpu"), 7, 7, nonneg=True, restarts=2, device="cpu")
    assert abs(r2.value - full_batch_bound([3, 2, 2], 1.0)) <= 1e-6 * r2.value
    assert np.all(r2.Z >= 0)


def test_riemannian_minibatch_d_less_than_n():
    y = labels([4, 4, 4])
    batches = [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11], [0, 2, 4, 6, 8, 10]]
    r = solve_riemannian(loss_objective("scl", y, tau=0.5, batches=batches), 12, 3, nonneg=True, restarts=3, device="cpu")
    from nctheory.bounds import batch_bound

    assert r.value >= batch_bound(y, batches, 0.5) - 1e-9
    assert abs(r.value - batch_bound(y, batches, 0.5)) <= 1e-5 * r.value  # d = k = 3 suffices for the OF


def test_solver_errors_are_raised():
    y = labels([3, 2])
    with pytest.raises(SolverError):
        solve_riemannian(loss_objective("scl", y, tau=1.0), 5, 5, restarts=2, max_iter=1, device="cpu")
    with pytest.raises(SolverError):
        solve_gram(scl_form(y, 1.0), y=y, solvers=())


def ufm(counts, loss="scl", **kw):
    """solve_ufm on class counts (the library call behind `nctheory solve`); method defaults to auto."""
    method = kw.pop("method", "auto")
    return solve_ufm(UFMProblem(loss, labels(counts), **kw), method)


@pytest.mark.parametrize("relu", [False, True])
def test_ufm_readme_examples(relu):
    """README: `nctheory solve --loss scl --counts 10,2,2 --tau 1 [--relu] --json`."""
    r = ufm([10, 2, 2], tau=1.0, relu=relu)
    d = r.to_json()
    for key in ("value", "status", "gap", "geometry", "class_mean_gram"):
        assert key in d
    assert d["status"] == "optimal" and abs(d["rel_gap"]) <= REL and r.certified and r.exit_code == 0
    assert r.geometry["name"] == ("OF" if relu else "other") and r.method == "reduced"
    assert abs(r.value - (30.2429513 if relu else 27.8074423)) < 1e-6
    assert list(d)[:9] == ["loss", "tau", "relu", "n", "k", "counts", "method", "plan", "dim"]


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


def test_cli_plan_plot_and_errors(tmp_path, _cli):
    """The command line: a plan file, a plot, JSON, and the exit codes of bad input (2) and of a solver that
    does not converge (3)."""
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"labels": [0, 0, 1, 1, 2, 2], "batches": [[0, 1, 2, 3], [2, 3, 4, 5], [0, 1, 4, 5]]}))
    png = tmp_path / "h.png"
    code, out, err = _cli("--loss", "scl", "--plan", str(plan), "--relu", "--json", "--plot", str(png))
    assert code == 0, err
    d = json.loads(out)
    assert d["method"] == "gram" and d["geometry"]["name"] == "OF" and png.stat().st_size > 1000
    assert abs(d["value"] - d["kini_bound"]) <= REL * d["value"] and d["plan"] == str(plan) and d["plot"] == str(png)
    assert _cli("--loss", "scl", "--counts", "3", "--tau", "1")[0] == 2
    assert _cli("--loss", "scl", "--counts", "3,2", "--tau", "-1")[0] == 2
    assert _cli("--loss", "scl", "--counts", "3,x", "--tau", "1")[0] == 2
    assert _cli("--loss", "no-such-loss", "--counts", "3,2")[0] == 2
    assert _cli("--loss", "gill-prop1", "--counts", "3,2")[0] == 2  # no Gram form: nothing to certify
    code, _, err = _cli("--loss", "scl", "--counts", "3,2", "--method", "riemannian", "--max-iter", "1", "--restarts", "1")
    assert code == 3 and "Traceback" not in err


def test_cli_prints_the_lower_bound_only_case_and_exits_1(_cli):
    code, out, _ = _cli("--loss", "scl", "--counts", "3,3,3", "--dim", "1", "--method", "gram")
    assert code == 1 and "lower bound" in out and "NOT the optimum" in out and "\nvalue " not in out


def test_relu_with_fixed_prototypes_uses_riemannian():
    r = ufm([2, 2], "scl-prototypes", tau=1.0, relu=True, restarts=1)
    d = r.data
    assert d["method"] == "riemannian" and d["certified"] is False and d["gap"] is None and r.exit_code == 0
    assert "value" not in d and r.value is None and d["upper_bound"] > 0  # F14: never "value" uncertified


def test_report_enforces_the_naming_rule():
    from nctheory.solvers import UFMReport

    ok = {"method": "gram", "certified": True, "value": 1.0}
    assert UFMReport(ok).exit_code == 0
    assert UFMReport({"method": "gram", "certified": False, "lower_bound": 1.0}).exit_code == 1
    assert UFMReport({"method": "riemannian", "certified": False, "upper_bound": 2.0, "lower_bound": 1.0}).exit_code == 0
    for bad in ({"method": "gram", "certified": False, "value": 1.0},            # value without a certificate
                {"method": "gram", "certified": True, "value": 1.0, "lower_bound": 0.5},
                {"method": "gram", "certified": True},                             # certified, no value
                {"method": "gram", "certified": False},                            # no number named
                {"method": "gram", "certified": False, "upper_bound": 1.0},        # upper bound not first-order
                {"method": "gram", "value": 1.0}):                                 # certified missing
        with pytest.raises(ValueError, match="naming rule"):
            UFMReport(bad)


# ---------------------------------------------------------------------------------------------------
# d = 1 (F1): the unit sphere is {-1, +1}, every point is stationary; the minimum is found by enumeration
def _brute_force_d1(counts, tau=1.0):
    import itertools

    f = scl_form(labels(counts), tau)
    n = sum(counts)
    return min(f.value(np.outer(s, s)) for s in itertools.product([-1.0, 1.0], repeat=n))


def test_d1_is_solved_exactly_not_by_a_random_start():
    from nctheory.solvers.signs import solve_signs

    exact = _brute_force_d1([3, 3, 3])
    assert abs(exact - 13.226763583005) < 1e-9
    y = labels([3, 3, 3])
    r = solve_riemannian(loss_objective("scl", y, tau=1.0), 9, 1, restarts=2, device="cpu")  # was 20.77 ("stationary")
    assert abs(r.value - exact) <= 1e-12 * exact and r.exact and r.stationarity is None
    assert np.all(np.abs(r.Z) == 1) and abs(float(scl(r.Z, y, 1.0)) - exact) <= 1e-12 * exact
    f = solve_signs(scl_form(y, 1.0), 9)  # batched LSEForm path with the s -> -s symmetry
    assert abs(f.value - exact) <= 1e-12 * exact and f.patterns == 2 ** 8
    # UFM+ in d = 1: every feature is +1 (one feasible point)
    p = solve_signs(scl_form(y, 1.0), 9, nonneg=True)
    assert p.patterns == 1 and np.all(p.Z == 1) and abs(p.value - scl_form(y, 1.0).value(np.ones((9, 9)))) < 1e-12
    with pytest.raises(InputError):
        solve_signs(scl_form(labels([9, 9]), 1.0), 18)  # 2^17 patterns: too many, no heuristic fallback


def test_ufm_d1_exact():
    from nctheory.cli.cmd_solve import human

    r = ufm([3, 3, 3], dim=1)
    d = r.data
    assert d["method"] == "enumerate" and r.certified and d["status"] == "exact"
    assert abs(r.value - 13.226763583005) < 1e-9 and d["gap"] == 0.0
    r = ufm([3, 3, 3], dim=1, method="riemannian")  # answered by the enumeration, with a note
    out = human(r.data)
    assert "13.22676358" in out and "status exact" in out and "method enumerate" in out and "note:" in out
    with pytest.raises(InputError, match="too many"):
        ufm([9, 9], dim=1)


# ---------------------------------------------------------------------------------------------------
# --dim below the Gram optimum's rank (F2): only a lower bound, exit 1
def test_gram_dim_below_rank_reports_lower_bound_only():
    from nctheory.cli.cmd_solve import human

    r = ufm([3, 3, 3], dim=1, method="gram")
    d = r.data
    assert r.exit_code == 1 and "value" not in d and not r.certified
    assert abs(r.lower_bound - 10.85045183) < 1e-6 and r.lower_bound <= _brute_force_d1([3, 3, 3])
    assert d["relaxation"]["geometry"]["name"] == "ETF" and d["relaxation"]["rank"] == 2
    assert r.geometry is d["relaxation"]["geometry"]
    out = human(d)
    assert "lower bound" in out and "NOT the optimum" in out and "\nvalue " not in out
    # UFM+ in d = 2 with k = 3: the OF needs d = 3; the DNN value is only a lower bound
    r = ufm([3, 3, 3], dim=2, relu=True, method="gram")
    assert r.exit_code == 1 and "value" not in r.data and r.data["relaxation"]["geometry"]["name"] == "OF"
    # attained: the ETF fits in d = k - 1 = 2; the OF (with --relu) in d = k = 3
    r = ufm([3, 3, 3], dim=2, method="gram")
    assert r.exit_code == 0 and r.certified and abs(r.value - 10.85045183) < 1e-6
    assert r.geometry["name"] == "ETF" and abs(r.data["rel_gap"]) <= REL and r.data["dimension_check"]["dim"] == 2
    r = ufm([3, 3, 3], dim=3, relu=True, method="gram")
    assert r.exit_code == 0 and r.certified and abs(r.value - full_batch_bound([3, 3, 3], 1.0)) <= REL * r.value
    # the reduced program too
    r = ufm([3, 2, 2], dim=2, relu=True, method="reduced")
    assert r.exit_code == 1 and "value" not in r.data and not r.certified


def test_relu_value_needs_a_nonnegative_point():
    """relu: the DNN value is reported as `value` only with an explicit H >= 0 attaining it."""
    r = ufm([2, 2], "scl-prototypes", prototypes="learned", relu=True, method="gram")
    assert r.certified and r.data["dimension_check"]["construction"].startswith("NC + OF after a rotation")
    assert abs(r.data["rel_gap"]) <= REL
    r = ufm([3, 2, 2], relu=True, method="gram")
    assert r.exit_code == 0 and r.geometry["name"] == "OF"
    assert abs(r.value - full_batch_bound([3, 2, 2], 1.0)) <= REL * r.value


# ---------------------------------------------------------------------------------------------------
# fixed prototype block (F3): value is evaluated at an exactly feasible G
def test_repair_fixed_block_is_exactly_feasible():
    from nctheory.geometry import etf_gram, simplex_etf
    from nctheory.solvers.gram import feasibility_residuals, repair_fixed_block

    rng = np.random.default_rng(3)
    k, f = 3, 6
    H = np.abs(rng.normal(size=(f + k, 4)))  # samples >= 0 (UFM+-feasible), prototypes the ETF
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    H[f:] = simplex_etf(k, 4)
    H[0] = [1.0, 0, 0, 0]  # orthogonal samples: entries 0 that the perturbation makes negative
    H[1] = [0, 1.0, 0, 0]
    E = rng.normal(size=(f + k, f + k))
    G = H @ H.T + 1e-6 * (E + E.T)  # solver-like: feasible up to ~1e-6 everywhere
    idx, F = f + np.arange(k), etf_gram(k)
    mask = np.zeros((f + k, f + k), bool)
    mask[:f, :f] = True
    for nonneg in (None, mask):
        R = repair_fixed_block(G, idx, F, nonneg)
        res = feasibility_residuals(R, nonneg, (idx, F))
        assert res["fixed_block_error"] == 0.0 and res["max_diag_error"] == 0.0
        assert res["worst"] <= 1e-12
        assert np.abs(R - G).max() < 1e-4  # a repair of size ~ the infeasibility, not a replacement
    assert feasibility_residuals(G, None, (idx, F))["worst"] > 1e-8  # the unrepaired matrix is not feasible


def test_gram_fixed_block_value_is_at_a_feasible_point(monkeypatch):
    from nctheory.geometry import etf_gram
    from nctheory.losses.gram import scl_with_prototypes_form
    from nctheory.solvers import gram
    from nctheory.solvers.gram import FEAS_TOL

    y = labels([2, 2, 2])
    n = y.size
    args = (scl_with_prototypes_form(y, 3, 1, 0.5),)
    kw = dict(y=y, k=3, n_samples=n, fixed=etf_gram(3), fixed_index=n + np.arange(3))
    r = solve_gram(*args, **kw)
    # the solver's own G misses the block by ~6e-10; the repaired one has it exactly
    assert r.feasibility["fixed_block_error"] == 0.0 and r.feasibility["max_violation"] <= FEAS_TOL
    assert r.value >= r.dual_bound and abs(r.rel_gap) <= REL
    assert abs(r.value - args[0].value(r.G)) < 1e-12 * r.value
    # a G that is not repaired to feasibility is rejected (retry, then SolverError), not reported
    monkeypatch.setattr(gram, "repair_fixed_block", lambda G, idx, F, mask=None: G + 1e-7)
    with pytest.raises(SolverError, match="violates a constraint"):
        solve_gram(*args, **kw)


# ---------------------------------------------------------------------------------------------------
# numeric options are bad input (F11), first-order results are labelled upper bounds (F14)
@pytest.mark.parametrize("opt", [["--restarts", "0"], ["--restarts", "-2"], ["--gtol", "-1"], ["--gtol", "0"],
                                 ["--gtol", "nan"], ["--max-iter", "0"], ["--dim", "0"], ["--nw", "-1"]])
def test_cli_bad_numeric_options_exit_2(opt, _cli):
    code, out, err = _cli("--loss", "scl", "--counts", "3,2", "--method", "riemannian", *opt)
    assert code == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_riemannian_bad_options_are_input_errors():
    y = labels([3, 2])
    for kw in (dict(restarts=0), dict(restarts=-2), dict(gtol=-1.0), dict(gtol=0.0), dict(max_iter=0)):
        with pytest.raises(InputError):
            solve_riemannian(loss_objective("scl", y, tau=1.0), 5, 5, device="cpu", **kw)


def test_first_order_result_is_an_upper_bound():
    from nctheory.cli.cmd_solve import human

    # d = 2 < k - 1 = 3: no ETF fits; the first-order value is an upper bound, never "value"
    r = ufm([2, 2, 2, 2], dim=2, restarts=2)
    d = r.data
    gram_value = ufm([2, 2, 2, 2], method="gram").value
    assert d["method"] == "riemannian" and not r.certified and "value" not in d and r.exit_code == 0
    assert r.upper_bound >= gram_value - 1e-9  # above the d >= n optimum
    assert "upper_bound_minus_kini_bound" in d and "value_minus_kini_bound" not in d
    # auto tried the reduced program first: its certified lower bound (d >= n) brackets the minimum
    lb = d["relaxation_lower_bound"]
    assert lb["method"] == "reduced" and r.lower_bound == lb["lower_bound"] < r.upper_bound
    assert abs(r.lower_bound - gram_value) <= 1e-6 * r.upper_bound
    assert "relaxation" not in d and d["bracket_width"] == r.upper_bound - r.lower_bound
    out = human(d)
    assert "upper bound from first-order search (not certified)" in out and "the minimum lies in [lower, upper]" in out
    assert not any(line.startswith("value") for line in out.splitlines())


def test_auto_with_dim_certifies_when_the_relaxation_is_attained():
    """auto + dim D: the exact program is tried first and certifies whenever a D-dimensional point attains it."""
    r = ufm([3, 3, 3], dim=2)
    assert r.method == "reduced" and r.certified and r.geometry["name"] == "ETF"
    assert abs(r.value - 10.85045183) < 1e-6 and r.data["dimension_check"]["dim"] == 2
    # UFM+ at d = k: NC + OF attains Kini's Thm 1 bound, so the value is certified (it was a riemannian
    # upper bound before auto tried the reduced program)
    r = ufm([10, 2, 2], dim=3, relu=True)
    assert r.certified and r.geometry["name"] == "OF"
    assert abs(r.value - full_batch_bound([10, 2, 2], 1.0)) <= REL * r.value
    # the constructions tried do not attain the bound in d = 2, but the first-order point does (to rounding):
    # an explicit feasible point meeting a rigorous lower bound is a certified optimum, not a bracket
    r = ufm([3, 1, 1], dim=2, relu=True)
    d = r.data
    assert r.certified and r.method == "riemannian" and "upper_bound" not in d
    assert abs(r.value - d["dual_bound"]) <= 1e-6 * r.value and "bracket_width" not in d
    # the first-order search fails: the certified lower bound is still reported (exit 1), not thrown away
    r = ufm([2, 2, 2, 2], dim=2, max_iter=1)
    assert r.exit_code == 1 and not r.certified and "value" not in r.data and "did not converge" in r.data["note_method"]
    assert abs(r.lower_bound - 7.587221683) < 1e-6
    # the gram program (mini-batch-free scl-prototypes), attained by the ETF in d = k - 1
    r = ufm([2, 2, 2], "scl-prototypes", n_w=1, dim=2)
    assert r.method == "gram" and r.certified, r.data


def test_ufm_loss_names_and_problem_checks():
    """Loss names come from the catalogue ('-' or '_'); labels and options are checked (InputError)."""
    a = ufm([2, 2, 1], "ce-fixed", method="gram")
    b = ufm([2, 2, 1], "ce_fixed", method="gram")
    assert a.value == pytest.approx(b.value, rel=1e-12) and a.data["loss"] == "ce-fixed"
    for bad in (dict(loss="scl", labels=[0, 0, 2, 2]), dict(loss="scl", labels=[0, 0, 0]),
                dict(loss="scl", labels=[0, 1], tau=0), dict(loss="scl", labels=[0, 1], dim=0),
                dict(loss="normface", labels=[0, 0, 1, 1], batches=[[0, 1, 2, 3]]),
                dict(loss="normface", labels=[0, 0, 1, 1], prototypes=np.ones((2, 3))),
                dict(loss="gill_prop1", labels=[0, 0, 1, 1])):
        with pytest.raises(InputError):
            solve_ufm(UFMProblem(**bad))
    with pytest.raises(InputError):
        solve_ufm(UFMProblem("scl", [0, 0, 1, 1]), method="newton")


def test_ufm_array_prototypes_equal_etf():
    from nctheory.geometry import simplex_etf

    a = ufm([2, 2, 2], "scl-prototypes", n_w=2, method="gram")
    b = ufm([2, 2, 2], "scl-prototypes", n_w=2, method="gram", prototypes=simplex_etf(3, 3))
    assert a.data["prototypes"] == "etf" and b.data["prototypes"] == "array"
    assert b.value == pytest.approx(a.value, rel=1e-9)


def test_ideal_class_gram_uses_geometry():
    from nctheory.geometry import etf_gram
    from nctheory.solvers.verdict import ideal_class_gram

    assert np.array_equal(ideal_class_gram("ETF", 4), etf_gram(4))
    assert np.array_equal(ideal_class_gram("OF", 4), np.eye(4))


# ---------------------------------------------------------------------------------------------------
# issue 15: solve_ufm refuses too-large problems itself, before allocating (memory models in solvers.ufm)
def test_memory_estimates_follow_the_models():
    from nctheory.solvers import ufm

    p = UFMProblem("scl", labels=labels([10000, 10000]), dim=8)
    need, what = ufm.memory_estimate(p, "riemannian")
    assert need == 8 * ((ufm.POINT_COPIES + 8) * 20000 * 8 + ufm.PAIR_COPIES * 20000 ** 2)
    assert "20000 x 20000 logits" in what
    need, what = ufm.memory_estimate(UFMProblem("scl", labels=labels([30, 34])), "gram")
    assert need == ufm.PSD_BYTES * 64 ** 4 + ufm.LOGIT_BYTES * 64 ** 2 and "64 x 64 PSD cone" in what
    # the reduced program's cone has one row per distinct count (orbits), its form k^2 logits
    need, what = ufm.memory_estimate(UFMProblem("scl", labels=labels([3] * 5 + [4] * 5)), "reduced")
    assert need == ufm.PSD_BYTES * 2 ** 4 + ufm.LOGIT_BYTES * 100 and "2 x 2 PSD cone" in what
    # normface: n x k logits, but a point of n + k rows in dimension n + k by default
    need, what = ufm.memory_estimate(UFMProblem("normface", labels=labels([10**6, 10**6])), "riemannian")
    assert need > 10**15 and "--dim defaults to the size" in what


@pytest.mark.parametrize("problem,method,words", [
    (dict(loss="scl", labels=labels([10000, 10000]), dim=8), "riemannian", ["riemannian", "--method reduced fits"]),
    (dict(loss="normface", labels=labels([10**6, 10**6])), "auto", ["riemannian", "--dim"]),
    (dict(loss="normface", labels=labels([100, 100])), "gram", ["202 x 202 PSD cone", "--method riemannian --dim"]),
])
def test_too_large_problems_are_refused_with_an_estimate_and_what_fits(problem, method, words):
    """The issue's examples (10 GB, an allocation failure) at a 4 GB limit: one line naming the estimate, the
    limit and the method (or --dim) that fits; nothing is allocated (the refusal is immediate)."""
    from nctheory import validate

    with validate.memory_limit_set("4G"):
        with pytest.raises(InputError) as exc:
            solve_ufm(UFMProblem(**problem), method)
    msg = str(exc.value)
    assert msg.startswith("needs ~") and "limit 4.0 GB (--max-memory)" in msg and "\n" not in msg
    assert all(w in msg for w in words), msg


def test_auto_keeps_the_lower_bound_when_the_first_order_search_does_not_fit():
    """auto with --dim 2: the reduced program's optimum (an ETF of 4 needs dimension 3) is not attained, so
    auto adds riemannian's upper bound; when that search does not fit the limit, the certified lower bound
    alone is reported (exit 1) with the reason, instead of allocating."""
    from nctheory import validate
    from nctheory.solvers import ufm

    p = UFMProblem("scl", labels=labels([2, 2, 2, 2]), dim=2)
    full = solve_ufm(p)
    assert "upper_bound" in full.data and full.exit_code == 0
    limit = (ufm.memory_estimate(p, "reduced")[0] + ufm.memory_estimate(p, "riemannian")[0]) // 2
    with validate.memory_limit_set(limit):
        r = solve_ufm(p)
    assert r.exit_code == 1 and "upper_bound" not in r.data and r.lower_bound == full.lower_bound
    assert "would need ~" in r.data["note_method"]


def test_labels_with_huge_gaps_are_refused_without_allocating():
    """Labels 0, 0, 1e15, 1e15 made solve allocate 8 PB (a bincount sized by the largest label); the empty
    classes are found from the distinct labels alone."""
    with pytest.raises(InputError, match=r"class 1 is empty; relabel the 2 classes present 0\.\.1"):
        solve_ufm(UFMProblem("scl", labels=np.array([0, 0, 10**15, 10**15])))
    with pytest.raises(InputError, match="18446744073709551615"):
        solve_ufm(UFMProblem("scl", labels=np.array([0, 2**64 - 1], dtype=np.uint64)))
    with pytest.raises(InputError, match="booleans"):
        solve_ufm(UFMProblem("scl", labels=np.array([True, False, True])))


@pytest.mark.parametrize("field,value,words", [("tau", "0.1", "the string"), ("tau", True, "the boolean"),
                                               ("dim", 2.5, "--dim must be an integer"),
                                               ("seed", -1, r"--seed must be an integer in \[0, "),
                                               ("restarts", True, "--restarts must be an integer")])
def test_problem_fields_of_the_wrong_type_are_refused(field, value, words):
    with pytest.raises(InputError, match=words):
        solve_ufm(UFMProblem("scl", labels=labels([2, 2]), **{field: value}))


def test_solver_output_is_captured_and_a_failed_solve_is_a_solver_error(capfd):
    """At tau = 1e-300 SCS printed its error text on stdout (mixed into --json output). Solver output is
    captured (fd level): the solve is a SolverError (exit 3) quoting it, and nothing reaches stdout."""
    capfd.readouterr()
    with pytest.raises(SolverError, match="it printed: KKT matrix"):
        solve_ufm(UFMProblem("scl", labels=labels([2, 2]), tau=1e-300))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_solve_plan_with_views_and_repeated_samples(tmp_path, capsys):
    """`solve --plan` decides the plan as trained: a plan's views are feature rows (n * V of them) and a
    batch that repeats a sample is a multiset (the copy shares the feature); the certified UFM+ optimum then
    meets Kini's Thm 2 bound with the same semantics (nctheory.bounds.batch_bound)."""
    from nctheory.batching import Plan
    from nctheory.bounds import batch_bound
    from nctheory.cli import main

    two = tmp_path / "views.json"
    Plan.from_batches([0, 0, 1], [[0, 1, 2]], views=2).save(two)
    assert main(["solve", "--loss", "scl", "--plan", str(two), "--tau", "1", "--relu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and out["certified"]
    assert abs(out["value"] - batch_bound([0, 0, 1], [[0, 1, 2]], 1.0, views=2)) < 1e-6
    rep = tmp_path / "multiset.json"
    rep.write_text(json.dumps({"labels": [0, 0, 1, 1], "batches": [[0, 0, 2], [1, 3, 3]], "multiset": True}))
    assert main(["solve", "--loss", "scl", "--plan", str(rep), "--tau", "1", "--relu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    bound = batch_bound([0, 0, 1, 1], [[0, 0, 2], [1, 3, 3]], 1.0, multiset=True)
    assert out["certified"] and abs(out["value"] - bound) < 1e-6 and abs(out["kini_bound"] - bound) < 1e-12
    with pytest.raises(InputError, match="repeat a sample"):
        solve_ufm(UFMProblem("scl-prototypes", [0, 0, 1, 1], batches=[[0, 0, 2]], multiset=True))

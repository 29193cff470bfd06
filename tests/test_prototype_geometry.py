"""Tests of nctheory.solvers.prototypes and `nctheory prototypes`: the reduced Gram form equals the full one
(and the torch loss), the reduced optimum equals the full certified Gram optimum, the n_w -> inf geometry
equals a direct first-order minimisation of nctheory.losses.prototype_limit.limit_loss, and bad input is refused."""

import json
import math

import numpy as np
import pytest
import torch

from nctheory.cli import main
from nctheory.errors import InputError
from nctheory.geometry import gram_to_vectors, prototype_gram
from nctheory.losses import scl_with_prototypes
from nctheory.losses.gram import scl_with_prototypes_form
from nctheory.solvers.prototypes import (
    expand_block_gram,
    finite_geometry,
    gill_batch_counts,
    learned_geometry,
    limit_geometry,
    parse_nw,
    reduced_form,
)
from nctheory.losses.prototype_limit import PerSampleLimit, limit_loss, paper_limit_loss

TAU = 0.5


@pytest.mark.parametrize("n_w", [0, 1, 3, 50])
@pytest.mark.parametrize("counts", [[3, 2, 1], [1, 1, 4], [2, 2, 2]])
def test_reduced_form_equals_full_form_on_block_points(counts, n_w):
    rng = np.random.default_rng(n_w + sum(counts))
    k = len(counts)
    Gs = prototype_gram("minority-angles", k, n_major=1)
    X = rng.normal(size=(2 * k, 2 * k))
    X = (X + X.T) / 2
    X[k:, k:] = Gs
    G, y = expand_block_gram(X, counts)
    full = scl_with_prototypes_form(y, k, n_w, TAU).value(G)
    assert reduced_form(counts, Gs, n_w, TAU).value(X) == pytest.approx(full, rel=1e-12, abs=1e-12)


def test_reduced_form_equals_torch_loss_at_a_realised_point():
    """A feasible block point realised by vectors: the torch loss (the one definition) gives the same value."""
    k, counts, n_w = 3, [2, 2, 1], 4
    W = gram_to_vectors(prototype_gram("etf", k), d=6)
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(k, 6))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), counts)
    Z = mu[y]  # collapsed: a_c = 1, block constant
    X = np.zeros((2 * k, 2 * k))
    X[:k, :k], X[:k, k:], X[k:, :k], X[k:, k:] = mu @ mu.T, mu @ W.T, W @ mu.T, W @ W.T
    val = float(scl_with_prototypes(Z, y, W, n_w, TAU))
    assert reduced_form(counts, W @ W.T, n_w, TAU).value(X) == pytest.approx(val, rel=1e-12)


@pytest.mark.parametrize("geometry,counts,n_w,n_major", [("minority-angles", [3, 2, 1], 2, 1),
                                                          ("minority-angles", [2, 2, 1], 3, 2),
                                                          ("etf", [3, 1, 1], 0, 1)])
def test_reduced_optimum_equals_full_certified_gram_optimum(geometry, counts, n_w, n_major):
    """(The full program has no strictly feasible point when G_* is singular with n_w > 0 -- e.g. majority
    collapse -- and interior-point solvers then stop inaccurate; the reduced program is facially reduced.)"""
    from nctheory.solvers import solve_gram

    k = len(counts)
    Gs = prototype_gram(geometry, k, n_major=n_major)
    r = finite_geometry(Gs, counts, n_w, TAU)
    y = np.repeat(np.arange(k), counts)
    n = y.size
    s = solve_gram(scl_with_prototypes_form(y, k, n_w, TAU), y=y, k=k, n_samples=n, fixed=Gs,
                   fixed_index=n + np.arange(k))
    assert abs(r.certificate["rel_gap"]) <= 1e-6
    assert r.value == pytest.approx(s.value, rel=1e-6, abs=1e-6)
    # both certified: each value is within the other's duality gap
    assert r.value >= s.dual_bound - 1e-6 * max(1, abs(s.value))
    assert s.value >= r.certificate["dual_bound"] - 1e-6 * max(1, abs(r.value))
    if n_w > 0:  # with n_w = 0 the sample geometry is determined; with prototypes too (checked here)
        assert np.abs(r.G_M - s.class_mean_gram).max() < 1e-3


def test_limit_geometry_matches_first_order_minimisation_of_limit_loss():
    """limit_loss (torch) minimised directly over unit features with the prototypes fixed gives the same G_M."""
    from nctheory.solvers.riemannian import solve_riemannian

    k, d = 4, 6
    Gs = prototype_gram("minority-angles", k, t=0.5)
    W = gram_to_vectors(Gs, d)
    y = np.arange(k)  # one sample per class suffices: the limit decouples samples
    yt = torch.as_tensor(y)
    for form, fn in (("derived", limit_loss), ("paper", paper_limit_loss)):
        res = solve_riemannian(lambda Z: fn(Z[:k], yt, Z[k:], TAU), 2 * k, d, fixed_rows=np.arange(k, 2 * k),
                               fixed=W, restarts=3, seed=1, gtol=1e-8, device="cpu")
        Z = res.Z[:k]
        lim = limit_geometry(Gs, [1] * k, TAU, form)
        assert np.abs(Z @ Z.T - lim.G_M).max() < 1e-4, form
        assert np.abs(Z @ W.T - lim.extra["P"]).max() < 1e-4, form


def test_limit_is_independent_of_counts_and_exact_for_etf():
    Gs = prototype_gram("majority-collapse", 6)
    a = limit_geometry(Gs, [5, 5, 5, 1, 1, 1], 0.1)
    b = limit_geometry(Gs, [1, 1, 1, 1, 1, 1], 0.1)
    assert np.abs(a.G_M - b.G_M).max() < 1e-6
    e = limit_geometry(prototype_gram("etf", 6), [9, 9, 9, 1, 1, 1], 0.1)
    assert e.max_entry_error < 1e-4  # Gill Prop. 2: h* = w_y


def test_finite_nw_approaches_the_derived_limit_not_the_printed_one():
    Gs = prototype_gram("minority-angles", 4)
    counts = [20, 20, 2, 2]
    der = limit_geometry(Gs, counts, TAU, "derived").G_M
    pap = limit_geometry(Gs, counts, TAU, "paper").G_M
    errs = [np.abs(finite_geometry(Gs, counts, nw, TAU).G_M - der).max() for nw in (100, 10000)]
    assert errs[1] < errs[0] / 5  # converging
    assert errs[1] < 0.2 * np.abs(der - pap).max()  # to the derived limit, clearly not to the printed one


def test_collapsed_restriction_is_a_valid_upper_problem():
    Gs = prototype_gram("etf", 3)
    free = finite_geometry(Gs, [4, 2, 1], 5, TAU)
    col = finite_geometry(Gs, [4, 2, 1], 5, TAU, collapsed=True)
    assert col.value >= free.certificate["dual_bound"] - 1e-6 * abs(free.value)  # both certified to 1e-6 rel.
    assert np.allclose(np.diag(col.G_M), 1.0, atol=1e-6)


def test_gill_batch_counts_and_parse_nw():
    assert gill_batch_counts(10, 1) == [205] * 10
    assert gill_batch_counts(10, 100) == [406] * 5 + [4] * 5
    assert parse_nw("inf") == math.inf and parse_nw("10") == 10 and parse_nw(0) == 0
    for bad in ("-1", "1.5", "x", True):
        with pytest.raises(InputError):
            parse_nw(bad)


def test_bad_input_is_refused():
    Gs = prototype_gram("etf", 3)
    with pytest.raises(InputError):
        finite_geometry(Gs, [0, 2, 2], 1)
    with pytest.raises(InputError):
        finite_geometry(Gs, [2, 2], 1)
    with pytest.raises(InputError):
        finite_geometry(np.array([[1, 2, 0], [2, 1, 0], [0, 0, 1.0]]), [2, 2, 2], 1)  # not PSD
    with pytest.raises(InputError):
        learned_geometry(Gs, [2, 2, 2], 1, tau=0)


def test_cli_json_and_file_geometry(tmp_path, capsys):
    G = prototype_gram("minority-angles", 4)
    f = tmp_path / "g.json"
    f.write_text(json.dumps(G.tolist()))
    png = tmp_path / "p.png"
    code = main(["prototypes", "--geometry", str(f), "--k", "4", "--counts", "3,3,1,1", "--nw", "0,5,inf",
                 "--tau", "0.5", "--json", "--plot", str(png)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["n_w"] for r in out["results"]] == [0, 5, "inf"]
    assert all(r["delta_to_target"] >= 0 for r in out["results"])
    assert png.is_file() and png.stat().st_size > 0


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["prototypes", "--geometry", "nope", "--k", "3", "--nw", "1"]) == 2
    assert main(["prototypes", "--geometry", "etf", "--k", "3", "--counts", "1,2", "--nw", "1"]) == 2
    assert main(["prototypes", "--geometry", "etf", "--k", "3", "--counts", "1,2,2", "--nw", "-3"]) == 2
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n2 1\n")
    assert main(["prototypes", "--geometry", str(bad), "--k", "2", "--counts", "2,2", "--nw", "1"]) == 2
    assert "error" in capsys.readouterr().err


# ------------------------------------------------------------------------ rigorous certificates (F4)
def _random_feasible_X(Gs, counts, rng, extra=3):
    """A feasible block point: prototype vectors V (G_* = V V^T) padded into R^(r+extra), class means mu_c with
    |mu_c| <= 1 (= 1 for one-sample classes); X = [[mu mu^T, mu W^T], [W mu^T, V V^T]]."""
    from nctheory.solvers.prototypes import _range_factor

    V = _range_factor(Gs)
    k, r = V.shape
    W = np.c_[V, np.zeros((k, extra))]
    mu = rng.normal(size=(k, r + extra))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    mu *= np.where(np.asarray(counts) == 1, 1.0, rng.uniform(0.2, 1.0, size=k))[:, None]
    return np.block([[mu @ mu.T, mu @ W.T], [W @ mu.T, W @ W.T]])


@pytest.mark.parametrize("geometry,counts,n_w", [("minority-angles", [3, 2, 1], 2), ("etf", [4, 2, 1], 5),
                                                  ("majority-collapse", [5, 5, 2, 1], 3)])
def test_finite_lower_bound_is_below_the_loss_at_feasible_points(geometry, counts, n_w):
    """dual_bound is a lower bound (weak duality), not the solver's objective: below the loss at random feasible
    points and at the optimum, with a small rigorous gap."""
    k = len(counts)
    Gs = prototype_gram(geometry, k, n_major=max(1, k // 2))
    r = finite_geometry(Gs, counts, n_w, TAU)
    c = r.certificate
    assert c["gap_kind"].startswith("rigorous")
    assert 0 <= c["gap"] <= 1e-6 * max(1.0, abs(c["value"] - c["constant_part"]))
    assert c["dual_bound"] <= r.value
    form = reduced_form(counts, Gs, n_w, TAU)
    rng = np.random.default_rng(1)
    for _ in range(50):
        assert form.value(_random_feasible_X(Gs, counts, rng)) >= c["dual_bound"] - 1e-9 * abs(c["dual_bound"])


def test_lower_bound_is_valid_for_arbitrary_multipliers():
    """Weak duality holds for any multipliers: random LSE weights / PSD and fixed-block duals give a bound below
    the loss at every feasible point (the solver's multipliers only make it tight)."""
    from nctheory.solvers.prototypes import _reduced_lower_bound, facially_reduced_form

    counts, n_w, k = [3, 2, 1], 2, 3
    Gs = prototype_gram("etf", k)
    form = reduced_form(counts, Gs, n_w, TAU)
    formY, L, V, Vp = facially_reduced_form(form, Gs)
    r = V.shape[1]
    rng = np.random.default_rng(2)
    unit = np.asarray(counts) == 1
    lo, hi = np.r_[np.where(unit, 1.0, 0.0), np.ones(r)], np.ones(k + r)
    pts = []
    for _ in range(30):
        X = _random_feasible_X(Gs, counts, rng)
        Y = np.eye(k + r)
        Y[:k, :k], Y[:k, k:] = X[:k, :k], X[:k, k:] @ Vp
        Y[k:, :k] = Y[:k, k:].T
        assert formY.value(Y) == pytest.approx(form.value(X) - form.const, rel=1e-10, abs=1e-10)
        pts.append(Y)
    for trial in range(20):
        p = rng.uniform(0, 1, size=formY.group.size)
        p *= (formY.weight / np.bincount(formY.group, weights=p))[formY.group]
        Lam = rng.normal(size=(k + r, k + r))
        Lam = Lam @ Lam.T
        Phi = rng.normal(size=(r, r))
        lb = _reduced_lower_bound(formY, pts[trial], p, lo, hi, np.arange(k, k + r), Lam, Phi)["bound"]
        assert all(formY.value(Y) >= lb - 1e-9 for Y in pts)


def test_certificate_ignores_the_solver_dual_objective(monkeypatch):
    """A solver reporting an absurd dual objective changes neither the certified bound nor the acceptance."""
    from nctheory.solvers import conic

    Gs = prototype_gram("minority-angles", 3, n_major=1)
    honest = finite_geometry(Gs, [3, 2, 1], 2, TAU)
    lim_honest = limit_geometry(Gs, [1, 1, 1], TAU)
    real = conic.solve

    def lying(prob, solvers=("CLARABEL", "SCS"), what="program", accept=None):
        def acc(res):
            res.dual = res.primal + 1e6  # "optimal", with a dual objective far above the primal
            return accept(res) if accept else None
        res = real(prob, solvers, what, accept=acc)
        res.dual = res.primal + 1e6
        return res

    monkeypatch.setattr(conic, "solve", lying)
    r = finite_geometry(Gs, [3, 2, 1], 2, TAU)
    assert r.certificate["dual_bound"] == pytest.approx(honest.certificate["dual_bound"], rel=1e-9)
    assert r.certificate["dual_bound"] <= r.value
    lim = limit_geometry(Gs, [1, 1, 1], TAU)
    assert lim.certificate["per_class_gap_max"] == pytest.approx(lim_honest.certificate["per_class_gap_max"],
                                                                 rel=1e-6, abs=1e-12)
    assert lim.certificate["per_class_gap_max"] >= 0


def test_solver_error_when_the_rigorous_gap_exceeds_the_tolerance():
    from nctheory.errors import SolverError
    from nctheory.solvers.prototypes import limit_class_solution

    Gs = prototype_gram("etf", 3)
    with pytest.raises(SolverError, match="rigorous relative gap"):
        finite_geometry(Gs, [3, 2, 1], 2, TAU, gap_tol=1e-16)
    with pytest.raises(SolverError, match="rigorous relative gap"):
        limit_class_solution(Gs, 0, TAU, gap_tol=1e-16)


def test_limit_lower_bound_is_below_f_on_the_ball():
    from nctheory.solvers.prototypes import _range_factor, limit_class_solution

    Gs = prototype_gram("majority-collapse", 4)
    V = _range_factor(Gs)
    rng = np.random.default_rng(3)
    for form in ("derived", "paper"):
        s = limit_class_solution(Gs, 2, TAU, form)
        f = PerSampleLimit(Gs, TAU, form)
        assert s["dual_bound"] <= s["value"] and s["gap"] <= 1e-6 * max(1, abs(s["value"]))
        for _ in range(200):
            a = rng.normal(size=V.shape[1])
            a *= rng.uniform(0, 1) / np.linalg.norm(a)
            assert f.value(V @ a, 2) >= s["dual_bound"] - 1e-12


# ------------------------------------------------------------------------------------- CLI input (F11)
@pytest.mark.parametrize("R", ["nan", "inf", "-inf", "0.5", "1,nan"])
def test_cli_rejects_non_finite_or_small_R(R, capsys):
    assert main(["prototypes", "--geometry", "etf", "--k", "3", "--nw", "1", f"--R={R}"]) == 2
    err = capsys.readouterr().err
    assert "--R" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra", [["--n-major=-1"], ["--n-major", "0"], ["--n-major", "3"], ["--n-major", "4"],
                                   ["--n-major", "1", "--counts", "2,2,1"]])
@pytest.mark.parametrize("geometry", ["etf", "minority-angles", "majority-collapse"])
def test_cli_validates_n_major_for_every_geometry(geometry, extra, capsys):
    argv = ["prototypes", "--geometry", geometry, "--k", "3", "--nw", "1"] + extra
    if geometry != "etf" and "--counts" in extra:
        assert main(argv) == 0  # the geometry uses it: accepted
        capsys.readouterr()
        return
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--n-major" in err and len(err.strip().splitlines()) == 1


def test_cli_n_major_sets_the_majority_classes_of_the_R_counts(capsys):
    outs = []
    for m in ("1", "2"):
        assert main(["prototypes", "--geometry", "etf", "--k", "4", "--nw", "1", "--R", "10", "--batch", "64",
                     "--n-major", m, "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["results"][0]["counts"])
    assert outs[0] == gill_batch_counts(4, 10, 64, n_major_classes=1) and outs[0][1] < outs[0][0]
    assert outs[1] == gill_batch_counts(4, 10, 64, n_major_classes=2) and outs[1][1] == outs[1][0]


def test_gill_batch_counts_uses_the_shared_step_profile():
    from nctheory.counts import step_counts

    N = step_counts(10, 5000, 10)
    assert gill_batch_counts(10, 10) == [max(1, round(2048 * c / sum(N))) for c in N]
    for bad in (float("nan"), float("inf"), 0.5):
        with pytest.raises(InputError):
            gill_batch_counts(10, bad)


# ------------------------------------------------------------------------- Gill claim text (F10)
def test_finite_trends_states_only_what_holds():
    from nctheory.claims.gill2023_geometry import GEOMS, finite_trends

    nws, Rs = (10, 100), (1, 100)
    lim = {g: 0.1 for g in GEOMS}
    good = {(g, R, nw): 0.1 + 0.1 * (R == 100) + 1.0 / nw for g in GEOMS for R in Rs for nw in nws}
    t = finite_trends(good, lim, nws, Rs)
    assert not (t["not_nonincreasing_in_nw"] or t["not_nondecreasing_in_R"] or t["below_limit"])
    assert "shrinks as n_w grows" in t["statement"] and "grows with R" in t["statement"]
    bad = dict(good)
    bad["etf", 1, 100] = 0.5           # grows with n_w, and now larger at R=1 than at R=100
    bad["minority-angles", 100, 100] = 0.05   # below the limit
    t = finite_trends(bad, lim, nws, Rs)
    assert t["not_nonincreasing_in_nw"] == ["etf R=1"]
    assert "etf n_w=100" in t["not_nondecreasing_in_R"]
    assert t["below_limit"] == ["minority-angles R=100 n_w=100"]
    assert "shrinks" not in t["statement"] and "grows with R" not in t["statement"]
    assert "at least its limit" not in t["statement"]


# ---------------------------------------------------------------------------------------------------
# issue 15: the n_w = inf limit at small tau, sizes refused before allocation, the --geometry file
@pytest.mark.parametrize("geometry", ["etf", "minority-angles", "majority-collapse"])
@pytest.mark.parametrize("tau", [2e-3, 1.3e-3, 1e-3, 1e-4])
def test_limit_certifies_below_tau_1_4e_3(geometry, tau):
    """The n_w -> inf limit overflowed in exp below tau ~1.4e-3 (np.log(np.exp(G/tau).sum())) and ended in
    exit 3 where tau = 2e-3 certified. PerSampleLimit's log r_c is a stable log-sum-exp: every per-class
    program certifies (rigorous gap <= 1e-6), the minimisers lie in span(W), and the learnt geometry is close
    to the target (measured Delta_G* <= 1.2e-4 for k = 10 at these tau; 1e-3 allows for the solver)."""
    Gs = prototype_gram(geometry, 10)
    r = limit_geometry(Gs, [3] * 10, tau)
    assert r.certificate["per_class_rel_gap_max"] <= 1e-6 and r.certificate["span_norm2_min"] >= 1 - 1e-3
    assert r.delta <= 1e-3


def test_limit_at_a_temperature_the_solvers_cannot_take_is_a_clean_solver_error(capfd):
    """tau = 1e-300: the logits are 1e300; no solver converges. SolverError (exit 3, one line), with the
    solvers' own printing captured (SCS printed it on stdout)."""
    from nctheory.errors import SolverError

    capfd.readouterr()
    with pytest.raises(SolverError, match="not solved to a certified optimum"):
        limit_geometry(prototype_gram("etf", 3), [2, 2, 2], 1e-300)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_sizes_are_refused_before_allocation():
    """prototypes --k 1000000 failed only at allocation (G_* alone is 8 TB). The library refuses with the
    estimate: G_* itself (nctheory.geometry), and the programs (memory_estimate), naming n_w = inf when only
    that fits."""
    from nctheory import validate
    from nctheory.solvers.prototypes import check_memory, memory_estimate

    with pytest.raises(InputError, match=r"needs ~.* for the simplex-ETF Gram matrix \(1000000 x 1000000"):
        prototype_gram("etf", 10**6)
    with validate.memory_limit_set("1G"):
        with pytest.raises(InputError, match=r"reduced prototype program of 100 classes .*; n_w = inf fits"):
            check_memory(100, [1, math.inf])
        with pytest.raises(InputError, match=r"reduced prototype program of 100 classes"):
            learned_geometry(prototype_gram("etf", 100), [2] * 100, 1, 0.5)
        check_memory(100, [math.inf])  # 5 MB: fits
    need, what = memory_estimate(30, 1)
    assert need >= 218 * 10**6 and "60 x 60 PSD cone" in what  # measured 218 MB at k = 30 (module docstring)


@pytest.mark.parametrize("content,name,words", [
    ('{"a": 1}', "g.json", "nested list"), ("[[1, 0], [0]]", "g.json", "rectangular"),
    ("not a matrix", "g.txt", "cannot read a Gram matrix"), ("", "g.txt", "no data"),
    (np.eye(2) * 1j, "g.npy", "complex"),
    (np.eye(2, dtype=bool), "g.npy", "booleans"), (b"\x93NUMPY garbage", "g.npy", "cannot read"),
])
def test_cli_geometry_file_bad_content_exit_2(tmp_path, capsys, content, name, words):
    f = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(f, content)
    elif isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content)
    capsys.readouterr()
    assert main(["prototypes", "--geometry", str(f), "--k", "2", "--nw", "1"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_cli_plot_is_checked_before_solving_and_written_atomically(tmp_path, capsys, monkeypatch):
    import nctheory.solvers.prototypes as P

    calls = []
    monkeypatch.setattr(P, "learned_geometry", lambda *a, **k: calls.append(a))
    base = ["prototypes", "--geometry", "etf", "--k", "2", "--counts", "2,2", "--nw", "1", "--plot"]
    for bad, words in ((str(tmp_path / "nodir" / "x.png"), "does not exist"), ("/proc/x.png", "cannot write"),
                       (str(tmp_path / "x.xyz"), "unsupported file extension")):
        capsys.readouterr()
        assert main(base + [bad]) == 2 and words in capsys.readouterr().err
    assert calls == [] and not (tmp_path / "nodir").exists()
    monkeypatch.undo()
    out = tmp_path / "g.pdf"
    assert main(base + [str(out), "--json"]) == 0
    assert out.read_bytes()[:4] == b"%PDF" and [p.name for p in tmp_path.iterdir()] == ["g.pdf"]

"""`nctheory measure` and nctheory.measure: the report against brute-force float64 computations, the streamed
(chunked, file-read) path against the in-memory one, labels, plans and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nctheory import bounds
from nctheory import metrics as M
from nctheory import measure as ms
from nctheory.cli import main as cli_main
from nctheory.errors import InputError
from nctheory.losses import scl, scl_batches, supcon_mean

# Every streamed quantity is a sum re-ordered by chunking: float64 round-off of a sum of n terms is
# ~ n * eps * max|term| (n <= 3000 here: < 1e-12 relative); 1e-10 leaves room for the SVD / eigvalsh steps.
RTOL = 1e-10


def _unit_rows(rng, n, d, nonneg=True):
    H = rng.standard_normal((n, d))
    if nonneg:
        H = np.abs(H)
    return H / np.linalg.norm(H, axis=1, keepdims=True)


def brute_scl(H, y, tau):
    """Kini et al. Eq. 2 as printed, one loop per sum: sum_i 1/(n_{y_i}-1) sum_{j != i, y_j = y_i}
    log sum_{l != i} exp((h_i.h_l - h_i.h_j)/tau); anchors without a positive contribute 0."""
    n = len(y)
    total = 0.0
    for i in range(n):
        pos = [j for j in range(n) if j != i and y[j] == y[i]]
        for j in pos:
            s = sum(math.exp((H[i] @ H[l] - H[i] @ H[j]) / tau) for l in range(n) if l != i)
            total += math.log(s) / len(pos)
    return total


def brute_bound(counts, tau):
    n = sum(counts)
    return sum(c * math.log(c - 1 + (n - c) * math.exp(-1 / tau)) for c in counts if c >= 2)


def brute_delta_of(H, y, k):
    Mu = np.array([H[y == c].mean(0) for c in range(k)])
    G = Mu @ Mu.T
    return float(np.linalg.norm(G / np.linalg.norm(G) - np.eye(k) / math.sqrt(k)))


@pytest.mark.parametrize("nonneg", [True, False])
def test_bound_excess_and_delta_agree_with_brute_force(nonneg):
    rng = np.random.default_rng(0)
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3])  # class 3 has one sample: an anchor without positives
    H = _unit_rows(rng, y.size, 5, nonneg)
    tau = 0.3
    r = ms.measure(H, y, tau=tau, chunk_rows=4)
    L, B = brute_scl(H, y, tau), brute_bound([5, 3, 2, 1], tau)
    assert r["loss"]["sum"] == pytest.approx(L, rel=1e-12)
    assert r["loss"]["mean"] == pytest.approx(L / y.size, rel=1e-12)
    assert r["bound"]["value"] == pytest.approx(B, rel=1e-14)
    assert r["excess"] == pytest.approx(L - B, rel=1e-11, abs=1e-11)
    assert r["delta_to_of"] == pytest.approx(brute_delta_of(H, y, 4), rel=1e-12)
    assert r["bound"]["is_theorem"] is nonneg and r["checks"]["nonnegative"] is nonneg
    if nonneg:
        assert r["excess"] >= 0  # Kini Thm 1 with unit non-negative features
    # the mean form is the reference SupCon value with base_tau = tau
    ref = supcon_mean(torch.as_tensor(H)[:, None, :], torch.as_tensor(y), tau, tau)
    assert r["loss"]["mean"] == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("chunk", [1, 2, 5, 7, 64])
def test_streamed_loss_is_the_scl_definition(chunk):
    """scl_streamed (tiles, online log-sum-exp, positives from class sums) equals losses.scl in float64."""
    rng = np.random.default_rng(chunk)
    y = rng.integers(0, 4, 37)
    y[0] = 5  # a one-sample class (4 absent from nothing: labels need not be contiguous for the loss)
    H = _unit_rows(rng, y.size, 6, nonneg=False) * rng.uniform(0.5, 2.0, (y.size, 1))  # not unit: any rows
    for tau in (0.05, 1.0):
        want = float(scl(torch.as_tensor(H), torch.as_tensor(y), tau))
        got = ms.scl_streamed(ms.ArrayRows(H), y, tau, chunk_rows=chunk)
        assert got == pytest.approx(want, rel=1e-12)
    # two samples, and one sample (no positive, no denominator)
    assert ms.scl_streamed(ms.ArrayRows(H[:2]), np.array([0, 0]), 0.5, chunk_rows=1) == pytest.approx(
        float(scl(torch.as_tensor(H[:2]), torch.tensor([0, 0]), 0.5)), rel=1e-14)
    assert ms.scl_streamed(ms.ArrayRows(H[:1]), np.array([0]), 0.5) == 0.0


def _array_metrics(H, y, k, U=None):
    """Every metric of the report from the array functions of nctheory.metrics (the reference); U: the
    normalised rows (default: H's)."""
    U = H / np.linalg.norm(H, axis=1, keepdims=True) if U is None else U
    Mu = M.class_means(U, y, k)
    W = Mu / np.linalg.norm(Mu, axis=1, keepdims=True)
    cls = M.classify_features(H, y, k)  # the Deltas of G_M, computed on H scaled by a power of two
    return {
        ("kini2023", "delta_to_of"): cls["delta_of"], ("kini2023", "beta_nc"): M.beta_nc(H, y, k),
        ("kini2023", "mean_class_cosine"): M.mean_class_cosine(H, y, k),
        ("gill2023", "delta_to_etf"): cls["delta_etf"],
        ("papyan2020", "beta_nc"): M.beta_nc(H, y, k, "papyan"),
        ("papyan2020", "mean_class_cosine_centred"): M.mean_class_cosine_centred(H, y, k),
        ("papyan2020", "delta_to_etf_centred"): cls["delta_etf_centred"],
        ("nctheory", "nc_within_class_spread"): M.nc_within_class_spread(H, y, k),
        ("koromilas2026", "erank_intra", "paper"): M.erank_intra(U, y, k),
        ("koromilas2026", "erank_intra", "code"): M.erank_intra(U, y, k, "code"),
        ("koromilas2026", "erank_inter", "paper"): M.erank_inter(U, y, k),
        ("koromilas2026", "erank_inter", "code"): M.erank_inter(U, y, k, "code"),
        ("koromilas2026", "erank_inter", "paper_global_mean_second_moment"):
            M.erank_inter(U, y, k, centring="global-mean-second-moment"),
        ("koromilas2026", "erank_weights", "code_centred"): M.erank_weights(W),
        ("koromilas2026", "erank_weights", "paper"): M.erank_weights(W, form="paper"),
        ("koromilas2026", "align_weight_instance"): M.align_weight_instance(U, W, y),
        ("koromilas2026", "align_weight_class"): M.align_weight_class(U, W, y, k),
        **{("koromilas2026", f, c): fn(W, U, y, k, centring=c) for f, fn in (("mir", M.mir), ("hdr", M.hdr))
           for c in ("raw-global-mean", "mean-of-means", "code")},
    }


def _get(report, key):
    v = report["metrics"]
    for part in key:
        v = v[part]
    return v


@pytest.mark.parametrize("chunk", [3, 10_000])
def test_every_streamed_metric_equals_its_array_definition(chunk):
    """chunk=3 with d=4 also sends every class (>= 5 rows > max(3, 4)) through the scatter-matrix path."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), [9, 5, 7, 6])
    rng.shuffle(y)
    H = _unit_rows(rng, y.size, 4, nonneg=False) + 0.3 * np.eye(4)[y]
    r = ms.measure(H, y, tau=0.2, chunk_rows=chunk, ufm=False, loss=False)
    ref = _array_metrics(H, y, 4)
    for key, want in ref.items():
        assert _get(r, key) == pytest.approx(want, rel=RTOL, abs=1e-13), key
    assert r["ncc_accuracy"]["train"] == M.ncc_accuracy(H, y, H, y, 4)
    assert r["metrics"]["undefined"] == {}


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_streamed_metrics_keep_the_array_functions_scale_invariance(scale):
    """Features of size 1e-200 or 1e200 (squares under/overflow): the streamed metrics still equal the array
    functions (which compute on the features times a power of two) and the metrics of the unscaled features."""
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(3), [7, 6, 5])
    H = _unit_rows(rng, y.size, 4, nonneg=False) + 0.4 * np.eye(4)[y]
    U = H / np.linalg.norm(H, axis=1, keepdims=True)
    base = ms.measure(H, y, tau=0.5, chunk_rows=4, loss=False, ufm=False)
    big = ms.measure(H * scale, y, tau=0.5, chunk_rows=4, loss=False, ufm=False,
                     test_features=H[:5] * scale, test_labels=y[:5])
    for key, want in _array_metrics(H * scale, y, 3, U=U).items():
        assert _get(big, key) == pytest.approx(want, rel=RTOL, abs=1e-13), key
        assert _get(big, key) == pytest.approx(_get(base, key), rel=RTOL, abs=1e-13), key
    assert big["ncc_accuracy"]["train"] == base["ncc_accuracy"]["train"]
    assert big["ncc_accuracy"]["test"] == M.ncc_accuracy(H, y, H[:5], y[:5], 3)
    assert big["bound"]["is_theorem"] is False and big["checks"]["zero_rows"] == 0


def test_memory_mapped_npy_far_larger_than_the_chunk_gives_the_in_memory_answers(tmp_path):
    """A 3000-row float32 .npy read 64 rows at a time (47 chunks; classes of ~300-900 rows > the chunk go
    through the scatter path) gives the report of the same array in memory, read in one chunk."""
    rng = np.random.default_rng(2)
    y = rng.choice(5, 3000, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    H = (_unit_rows(rng, y.size, 8) + np.eye(8)[y] * 0.5).astype(np.float32)
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    np.save(tmp_path / "h.npy", H)
    np.save(tmp_path / "y.npy", y)
    on_disk = ms.measure(tmp_path / "h.npy", tmp_path / "y.npy", tau=0.5, chunk_rows=64, loss=True, ufm=False)
    in_mem = ms.measure(H, y, tau=0.5, chunk_rows=10**6, ufm=False)
    assert isinstance(ms.load_features(tmp_path / "h.npy").features, ms.NpyRows)

    def flat(d, prefix=()):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, prefix + (k,))
            else:
                yield prefix + (k,), v

    a, b = dict(flat(on_disk)), dict(flat(in_mem))
    assert a.keys() == b.keys()
    for key in a:
        if key in (("seconds",), ("features",)):
            continue
        va, vb = a[key], b[key]
        if isinstance(va, float):
            assert va == pytest.approx(vb, rel=RTOL, abs=1e-12), key
        elif isinstance(va, np.ndarray):
            np.testing.assert_allclose(va, vb, rtol=RTOL)
        else:
            assert va == vb, key
    # an np.memmap handed to the library directly is read chunk by chunk too, with the same answers
    mm = ms.measure(np.load(tmp_path / "h.npy", mmap_mode="r"), y, tau=0.5, chunk_rows=64, ufm=False)
    assert mm["delta_to_of"] == on_disk["delta_to_of"] and mm["loss"]["sum"] == on_disk["loss"]["sum"]
    # and the loss is the definition's value (float64 of the float32 rows)
    assert on_disk["loss"]["sum"] == pytest.approx(
        float(scl(torch.as_tensor(H, dtype=torch.float64), torch.as_tensor(y), 0.5)), rel=1e-12)


def test_plan_gives_thm2_and_the_minibatch_loss(tmp_path):
    from nctheory.batching import make_plan, save_plan

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2], [6, 4, 2])
    H = _unit_rows(rng, y.size, 5)
    plan = make_plan(y, "reshuffle", batch_size=5, epochs=2, seed=1)
    save_plan(plan, tmp_path / "p.json")
    r = ms.measure(H, y, tau=0.4, plan=tmp_path / "p.json", chunk_rows=2)
    assert r["loss"]["sum"] == pytest.approx(float(scl_batches(torch.as_tensor(H), torch.as_tensor(y),
                                                               plan.batches, 0.4)), rel=1e-12)
    assert r["bound"]["value"] == pytest.approx(bounds.batch_bound(y, plan.batches, 0.4), rel=1e-14)
    assert r["loss"]["anchors"] == plan.indices.size and r["bound"]["statement"].startswith("Kini et al. Thm 2")
    assert r["excess"] >= 0
    # labels from the plan when none are given; a plan for other labels is refused
    assert ms.measure(H, None, tau=0.4, plan=plan, ufm=False)["bound"]["value"] == r["bound"]["value"]
    with pytest.raises(InputError, match="plan's labels differ"):
        ms.measure(H, y[::-1], tau=0.4, plan=plan, ufm=False)
    with pytest.raises(InputError, match="samples"):
        ms.measure(H[:10], y[:10], tau=0.4, plan=plan, ufm=False)


def test_plans_with_views_and_with_repeated_samples():
    """A plan with native views is read on its feature rows (view v of sample i is row v * n + i), a multiset
    plan (a sampler with replacement) with every occurrence a copy: loss and bound as nctheory.losses and
    nctheory.bounds define them for such plans."""
    from nctheory.batching import Plan, make_plan

    rng = np.random.default_rng(9)
    y = np.repeat([0, 1, 2], [4, 3, 3])
    plan = make_plan(y, "reshuffle", batch_size=4, epochs=2, seed=0, views=2)
    assert plan.views == 2 and plan.n == 10
    H = _unit_rows(rng, 20, 5)
    yv = np.tile(y, 2)
    r = ms.measure(H, yv, tau=0.4, plan=plan, ufm=False)
    ex = plan.expanded()
    assert r["loss"]["sum"] == pytest.approx(float(scl_batches(torch.as_tensor(H), torch.as_tensor(yv),
                                                               ex.batches, 0.4)), rel=1e-12)
    assert r["bound"]["value"] == pytest.approx(bounds.batch_bound(y, plan.batches, 0.4, views=2), rel=1e-14)
    assert r["loss"]["anchors"] == 2 * plan.indices.size and r["excess"] >= 0
    with pytest.raises(InputError, match="feature rows"):
        ms.measure(H[:10], y, tau=0.4, plan=plan, ufm=False)  # one view of features for a 2-view plan
    multi = Plan.from_batches(y, [[0, 0, 4, 5], [1, 2, 2, 6, 7, 7]], multiset=True)
    r2 = ms.measure(H[:10], y, tau=0.4, plan=multi, ufm=False)
    assert r2["loss"]["sum"] == pytest.approx(float(scl_batches(torch.as_tensor(H[:10]), torch.as_tensor(y),
                                                                multi.batches, 0.4, multiset=True)), rel=1e-12)
    assert r2["bound"]["value"] == pytest.approx(bounds.batch_bound(y, multi.batches, 0.4, multiset=True), rel=1e-14)
    assert r2["excess"] >= 0 and "multiset" in r2["batches"]


def test_string_and_sparse_integer_labels_are_mapped_and_reported(tmp_path):
    rng = np.random.default_rng(4)
    names = np.array(["zebra", "ant", "moth"])[rng.integers(0, 3, 40)]
    H = _unit_rows(rng, 40, 4)
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    r = ms.measure(H, tmp_path / "labels.txt", tau=0.5, ufm=False, loss=False)
    assert r["label_mapping"] == ["ant", "moth", "zebra"]
    codes = np.searchsorted(["ant", "moth", "zebra"], names)
    assert r["counts"] == np.bincount(codes).tolist()
    assert r["delta_to_of"] == pytest.approx(brute_delta_of(H, codes, 3), rel=1e-12)
    ints = np.array([10, 30, 20])[codes]
    r2 = ms.measure(H, ints, tau=0.5, ufm=False, loss=False, test_features=H[:5], test_labels=ints[:5])
    assert r2["label_mapping"] == [10, 20, 30] and r2["ncc_accuracy"]["test"] == M.ncc_accuracy(
        H, np.searchsorted([10, 20, 30], ints), H[:5], np.searchsorted([10, 20, 30], ints[:5]), 3)
    assert ms.measure(H, codes, tau=0.5, ufm=False, loss=False)["label_mapping"] == "identity"
    with pytest.raises(InputError, match="not a class of the training labels"):
        ms.measure(H, ints, tau=0.5, ufm=False, loss=False, test_features=H[:2], test_labels=[10, 40])


def test_ufm_optima_are_certified_and_the_relu_one_is_thm1():
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1, 2], [10, 2, 2])
    H = _unit_rows(rng, y.size, 6)
    r = ms.measure(H, y, tau=1.0)["ufm_optimum"]
    # the numbers `nctheory solve --loss scl --counts 10,2,2 --tau 1 [--relu]` prints (README)
    assert r["ufm"]["certified"] and r["ufm"]["value"] == pytest.approx(27.8074423, abs=1e-6)
    assert r["ufm_plus"]["certified"] and r["ufm_plus"]["value"] == pytest.approx(
        bounds.full_batch_bound([10, 2, 2], 1.0), rel=1e-14) == pytest.approx(30.2429514, abs=1e-6)
    assert r["ufm_plus"]["delta_to_optimum"] == pytest.approx(brute_delta_of(H, y, 3), rel=1e-12)


def test_pt_and_npz_inputs(tmp_path):
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 30)
    H = _unit_rows(rng, 30, 4)
    torch.save({"features": torch.as_tensor(H, dtype=torch.float32), "labels": torch.as_tensor(y)}, tmp_path / "f.pt")
    np.savez(tmp_path / "f.npz", features=H.astype(np.float32), labels=y, test_features=H[:6], test_labels=y[:6])
    a = ms.measure(tmp_path / "f.pt", tau=0.5, ufm=False)
    b = ms.measure(tmp_path / "f.npz", tau=0.5, ufm=False)
    assert a["loss"]["sum"] == pytest.approx(b["loss"]["sum"], rel=1e-12)
    assert "test" in b["ncc_accuracy"] and "test" not in a["ncc_accuracy"]


def test_cli_measure_json_plot_and_bad_input(tmp_path, capsys):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 24)
    H = _unit_rows(rng, 24, 4).astype(np.float32)
    np.save(tmp_path / "h.npy", H)
    np.save(tmp_path / "y.npy", y)
    assert cli_main(["measure", str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--tau", "0.5",
                     "--json", "--plot", str(tmp_path / "pl"), "--test", str(tmp_path / "h.npy"), "--test-labels",
                     str(tmp_path / "y.npy")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ncc_accuracy"]["test"] == out["ncc_accuracy"]["train"]
    assert (tmp_path / "pl" / "class_mean_gram.png").exists()
    assert cli_main(["measure", str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--no-ufm"]) == 0
    assert "bound is a theorem  yes" in capsys.readouterr().out
    np.save(tmp_path / "nan.npy", np.full((3, 2), np.nan))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(rng.standard_normal((4, 3))))
    np.save(tmp_path / "three.npy", np.zeros((2, 2, 2)))
    np.savez(tmp_path / "nofeat.npz", x=H)
    (tmp_path / "f.csv").write_text("1,2\n")
    y3 = tmp_path / "y3.json"
    y3.write_text("[0, 1, 2]")
    cases = [
        [str(tmp_path / "missing.npy"), "--labels", str(tmp_path / "y.npy")],
        [str(tmp_path / "f.csv")],
        [str(tmp_path / "h.npy")],                                          # no labels
        [str(tmp_path / "h.npy"), "--labels", str(y3)],                     # 3 labels for 24 rows
        [str(tmp_path / "nan.npy"), "--labels", str(y3)],
        [str(tmp_path / "fortran.npy"), "--labels", str(y3)],
        [str(tmp_path / "three.npy"), "--labels", str(y3)],
        [str(tmp_path / "nofeat.npz")],
        [str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--tau", "0"],
        [str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--chunk-rows", "-3"],
        [str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--test", str(tmp_path / "h.npy")],
        [str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--test-labels", str(tmp_path / "y.npy")],
        [str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--plan", str(tmp_path / "nope.json")],
        [str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--device", "warp"],
        [str(tmp_path / "h.npy"), "--labels", str(tmp_path / "y.npy"), "--max-memory", "1k"],  # the memory budget
    ]
    for args in cases:
        capsys.readouterr()
        assert cli_main(["measure", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("nctheory measure: error:") and "\n" not in err, (args, err)


@pytest.mark.slow
def test_benchmark_script_runs_and_both_modes_agree(tmp_path):
    """benchmarks/bench_measure.py at smoke sizes: every child runs, and the streamed and in-memory modes
    give the same Delta to OF and loss (a benchmark of two different computations would be void)."""
    import runpy
    from pathlib import Path

    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_measure.py"))
    res = bench["main"](["--n", "600", "--loss-n", "300", "--d", "8", "--k", "3", "--chunk", "64",
                         "--json", str(tmp_path / "b.json")])
    assert [r.get("error") for r in res] == [None] * 4
    by = {(r["loss"], r["mode"]): r for r in res}
    for loss in (False, True):
        a, b = by[(loss, "streamed")], by[(loss, "whole")]
        assert a["delta_to_of"] == pytest.approx(b["delta_to_of"], rel=RTOL)
        assert a["peak_rss_mib"] >= 0 and a["seconds"] > 0
    assert by[(True, "streamed")]["loss_sum"] == pytest.approx(by[(True, "whole")]["loss_sum"], rel=1e-12)

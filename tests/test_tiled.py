"""The tiled losses (nctheory.losses.tiled) against the dense definitions they must equal.

Every comparison is value and gradient against the float64 dense definition (nctheory.losses.scl
and friends; for SupCon's contrast_mode="one", explicit masks and SimCLR, which the dense module does
not offer, against a dense float64 transcription of the reference SupContrast algorithm below).

Tolerances, and why:
- float64 input: 1e-10 relative to max(1, |reference|) (values), 1e-9 relative to the largest
  gradient entry. Both sides are exact in float64; they sum the same terms in a different order
  (tiles and log-sum-exp merges), which moves the last bits only.
- float32 input against the float64 reference: 2e-5 relative (values) and 1e-4 relative to the
  largest gradient entry. float32 rounds each logit to ~6e-8 relative; a term is a difference of
  an LSE and a mean of logits of size up to 1/tau, and gradients are sums of up to n softmax-weighted
  rows, so a few hundred ulps of the largest magnitude is the expected error.
- bf16 input (computed in float32) against the float64 loss of the same bf16-rounded features:
  the float32 tolerances.

Device: NCTHEORY_TEST_DEVICE (default cpu), as in tests/test_losses.py.
"""

from __future__ import annotations

import os

import pytest
import torch

from nctheory.errors import InputError
from nctheory.losses import scl, scl_batches, scl_with_prototypes, supcon, supcon_mean
from nctheory.losses import tiled as T
from nctheory.losses.reference import supcon_dense

DEVICE = os.environ.get("NCTHEORY_TEST_DEVICE", "cpu")
TOL = {torch.float64: (1e-10, 1e-9), torch.float32: (2e-5, 1e-4)}


def unit_rows(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    return torch.nn.functional.normalize(z, dim=-1).to(dtype)


def grad_of(value, x):
    """d value / d x, zeros when value does not depend on x (e.g. a dense loss with no positive pair)."""
    if not value.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(value, x, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def assert_value_grad(fn_tiled, fn_dense, x64, dtype, device=DEVICE):
    """fn_tiled on x64 cast to dtype (on device) vs fn_dense on x64 (float64, cpu): value and gradient."""
    rel_v, rel_g = TOL[dtype]
    x = x64.detach().to(device=device, dtype=dtype).requires_grad_(True)
    got = fn_tiled(x)
    g_got = grad_of(got, x).to("cpu", torch.float64)
    xr = x64.detach().clone().requires_grad_(True)
    ref = fn_dense(xr)
    g_ref = grad_of(ref, xr)
    assert got.dtype == (dtype if dtype in (torch.float32, torch.float64) else torch.float32)
    got, ref = float(got.detach()), float(ref.detach())
    assert abs(got - ref) <= rel_v * max(1.0, abs(ref)), (got, ref)
    scale = max(1.0, float(g_ref.abs().max()))
    err = float((g_got - g_ref).abs().max())
    assert err <= rel_g * scale, (err, scale)
    return ref


# ---------------------------------------------------------------- the reference SupCon semantics, dense
reference_supcon = supcon_dense  # nctheory.losses.reference: the one dense comparator (tested in test_losses.py)


# ---------------------------------------------------------------- scl
LABELS = {
    "balanced": lambda n: torch.arange(n) % 3,
    "singletons": lambda n: torch.cat([torch.zeros(max(n - 3, 0), dtype=torch.long), torch.arange(1, 4)])[:n],
    "all_unique": lambda n: torch.arange(n),
    "sparse_ids": lambda n: (torch.arange(n) % 4) * 1000 + 7,  # large, non-contiguous label values
}
SIZES = [(1, 8), (2, 8), (37, 8), (8, 8), (9, 8), (5, 1)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,tile", SIZES)
@pytest.mark.parametrize("labels", sorted(LABELS))
def test_scl_tiled_equals_dense(dtype, n, tile, labels):
    """Anchors without positives (singletons, all_unique) contribute 0 and stay negatives; n = 1, 2,
    n = tile, tile + 1, n not a multiple of the tile, tile 1."""
    y = LABELS[labels](n)
    z = unit_rows(n, 5, seed=n)
    assert_value_grad(lambda x: T.scl_tiled(x, y.to(x.device), 0.3, tile=tile), lambda x: scl(x, y, 0.3), z, dtype)


@pytest.mark.parametrize("tau", [0.02, 0.1, 1.0, 5.0])
def test_scl_tiled_large_logits_and_unnormalised_features(tau):
    """Logits up to |h|^2/tau = 16/0.02 = 800 (beyond float32's exp range): the online log-sum-exp
    stays finite and exact in float64."""
    z = 4.0 * unit_rows(40, 6, seed=1) * torch.linspace(0.2, 1.0, 40)[:, None].double()
    y = torch.arange(40) % 5
    assert_value_grad(lambda x: T.scl_tiled(x, y, tau, tile=16), lambda x: scl(x, y, tau), z, torch.float64)


def test_scl_tiled_float32_large_logits_finite():
    """float32 at logits up to 1/0.01 = 100: exp would overflow without the max shift; within tolerance."""
    z = unit_rows(33, 4, seed=2)
    y = torch.arange(33) % 3
    assert_value_grad(lambda x: T.scl_tiled(x, y, 0.01, tile=8), lambda x: scl(x, y, 0.01), z, torch.float32)


def test_scl_tiled_result_does_not_depend_on_the_tile():
    z = unit_rows(29, 3, seed=3)
    y = torch.arange(29) % 4
    vals = [float(T.scl_tiled(z, y, 0.5, tile=t)) for t in (1, 3, 8, 29, 64)]
    assert max(vals) - min(vals) <= 1e-12 * abs(vals[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scl_tiled_anchor_subsets_partition_the_loss(dtype):
    """anchors=rows: the sum of those anchors' terms against the whole batch; a partition sums to scl,
    and one part equals a literal per-anchor transcription."""
    n = 23
    z = unit_rows(n, 4, seed=4)
    y = torch.tensor([0] * 9 + [1] * 7 + [2] * 6 + [3])  # class 3 is a singleton
    parts = [list(range(0, n, 3)), list(range(1, n, 3)), list(range(2, n, 3))]

    def tiled(x):
        return sum(T.scl_tiled(x, y.to(x.device), 0.4, anchors=p, tile=5) for p in parts)

    assert_value_grad(tiled, lambda x: scl(x, y, 0.4), z, dtype)

    def literal(x, rows):
        S = x @ x.T / 0.4
        out = x.new_zeros(())
        for i in rows:
            others = [l for l in range(n) if l != i]
            pos = [j for j in others if y[j] == y[i]]
            if pos:
                out = out + torch.logsumexp(S[i, others], 0) - S[i, pos].mean()
        return out

    p = [22, 0, 5, 17, 9]  # unsorted, includes the singleton 22
    assert_value_grad(lambda x: T.scl_tiled(x, y.to(x.device), 0.4, anchors=p, tile=4),
                      lambda x: literal(x, p), z, dtype)
    assert float(T.scl_tiled(z, y, 0.4, anchors=[])) == 0.0


# ---------------------------------------------------------------- scl_batches
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scl_batches_tiled_equals_dense_with_repeated_and_overlapping_batches(dtype):
    n = 19
    z = unit_rows(n, 4, seed=5)
    y = torch.arange(n) % 3
    batches = [list(range(10)), list(range(10)), [3, 11, 12, 18, 0, 7], [5], list(range(n)), [2, 9]]
    assert_value_grad(lambda x: T.scl_batches_tiled(x, y.to(x.device), batches, 0.2, tile=4),
                      lambda x: scl_batches(x, y, batches, 0.2), z, dtype)


# ---------------------------------------------------------------- supcon
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("views", [1, 2, 3])
@pytest.mark.parametrize("tau,base_tau", [(0.07, 0.07), (0.2, 0.07)])
@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2, 0], [0, 1, 2, 3, 4], [0, 0, 0, 1, 2, 3, 3, 1, 5]])
def test_supcon_mean_tiled_equals_dense(dtype, views, tau, base_tau, labels):
    lab = torch.tensor(labels)
    f = unit_rows(len(labels) * views, 6, seed=views).reshape(len(labels), views, 6)
    assert_value_grad(lambda x: T.supcon_mean_tiled(x, lab.to(x.device), tau, base_tau, tile=4),
                      lambda x: supcon_mean(x, lab, tau, base_tau), f, dtype)


def _masks(bsz, seed):
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, 3, (bsz,), generator=g)
    sym = (lab[:, None] == lab[None, :])
    asym = torch.rand(bsz, bsz, generator=g) < 0.3  # asymmetric 0/1, rows may be empty
    weighted = torch.rand(bsz, bsz, generator=g, dtype=torch.float64) * asym
    signed = weighted - 0.3 * torch.eye(bsz, dtype=torch.float64)  # negative entries: the reference's formula still applies
    return {"labels_bool": sym, "asym": asym, "weighted": weighted, "signed": signed}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["all", "one"])
@pytest.mark.parametrize("views", [1, 2, 3])
@pytest.mark.parametrize("kind", ["labels", "simclr", "labels_bool", "asym", "weighted", "signed"])
def test_supcon_tiled_equals_reference_algorithm(dtype, mode, views, kind):
    """contrast_mode all/one, SimCLR (labels = mask = None), a bool mask equal to the labels' mask,
    asymmetric and weighted masks: value and gradient equal the dense reference algorithm."""
    bsz = 11
    f = unit_rows(bsz * views, 5, seed=10 + views).reshape(bsz, views, 5)
    lab = torch.arange(bsz) % 4
    kw = {}
    if kind == "labels":
        kw["labels"] = lab
    elif kind != "simclr":
        kw["mask"] = _masks(bsz, views)[kind]

    def tiled(x):
        kk = {k: v.to(x.device) for k, v in kw.items()}
        return T.supcon_mean_tiled(x, tau=0.1, base_tau=0.07, contrast_mode=mode, tile=5, **kk)

    assert_value_grad(tiled, lambda x: reference_supcon(x, temperature=0.1, contrast_mode=mode, **kw), f, dtype)


def test_supcon_bool_mask_equals_labels():
    f = unit_rows(16, 4, seed=7).reshape(8, 2, 4)
    lab = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0])
    a = T.supcon_mean_tiled(f, lab, 0.1, 0.07)
    b = T.supcon_mean_tiled(f, None, 0.1, 0.07, mask=lab[:, None] == lab[None, :])
    assert abs(float(a - b)) <= 1e-12 * abs(float(a))


def test_supcon_tiled_trailing_dims_are_flattened():
    f = unit_rows(12, 6, seed=8).reshape(6, 2, 2, 3)
    lab = torch.tensor([0, 0, 1, 1, 2, 2])
    a = T.supcon_mean_tiled(f, lab, 0.1, 0.07)
    b = supcon_mean(f.reshape(6, 2, 6), lab, 0.1, 0.07)
    assert abs(float(a - b)) <= 1e-12 * abs(float(b))


# ---------------------------------------------------------------- prototypes
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_w", [0, 1, 5])
@pytest.mark.parametrize("batched", [False, True])
def test_scl_with_prototypes_tiled_equals_dense(dtype, n_w, batched):
    """k = 4 prototypes, class 3 absent from the data (its prototype anchors have a positive only
    when n_w >= 2), class 2 a singleton; repeated batches and a one-sample batch when batched."""
    n, k = 21, 4
    z = unit_rows(n, 5, seed=20 + n_w)
    y = torch.tensor([0] * 11 + [1] * 9 + [2])
    W = unit_rows(k, 5, seed=99)
    batches = [list(range(12)), list(range(12)), [20, 3, 15, 1, 19], [7], list(range(n))] if batched else None
    assert_value_grad(lambda x: T.scl_with_prototypes_tiled(x, y.to(x.device), W.to(x.device), n_w, 0.3, batches, tile=4),
                      lambda x: scl_with_prototypes(x, y, W, n_w, 0.3, batches), z, dtype)


def test_scl_with_prototypes_tiled_one_prototype_one_sample():
    z, y, W = unit_rows(1, 3, seed=1), torch.tensor([0]), unit_rows(1, 3, seed=2)
    for n_w in (0, 1, 5):
        assert_value_grad(lambda x: T.scl_with_prototypes_tiled(x, y, W, n_w, 0.5),
                          lambda x: scl_with_prototypes(x, y, W, n_w, 0.5), z, torch.float64)


# ---------------------------------------------------------------- low precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    z = unit_rows(30, 8, seed=30).to(dtype)
    y = torch.arange(30) % 3
    x = z.clone().requires_grad_(True)
    got = T.scl_tiled(x, y, 0.2, tile=8)
    got.backward()
    assert got.dtype == torch.float32 and x.grad.dtype == dtype
    xr = z.double().requires_grad_(True)
    ref = scl(xr, y, 0.2)
    ref.backward()
    assert abs(got.item() - ref.item()) <= TOL[torch.float32][0] * abs(ref.item())
    # the gradient is rounded to the input dtype on its way back: compare at that dtype's precision
    eps = torch.finfo(dtype).eps
    assert float((x.grad.double() - xr.grad).abs().max()) <= 2 * eps * float(xr.grad.abs().max())


# ---------------------------------------------------------------- gradcheck (float64, small n)
def test_gradcheck_kernels():
    g = torch.Generator().manual_seed(0)
    H = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    A = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    selfs = torch.tensor([2, -1, 0, 6, 6])
    w = torch.randn(7, generator=g, dtype=torch.float64)  # signed weights: the multiplied-weights path
    assert torch.autograd.gradcheck(lambda h: T.lse_others(h, 0.7, tile=3), (H,))
    assert torch.autograd.gradcheck(lambda h: (T.lse_others(h, 0.7, tile=3) * w).sum(), (H,))
    assert torch.autograd.gradcheck(lambda a, c: T.lse_rows(a, c, 0.7, selfs, tile=2), (A, H))
    assert torch.autograd.gradcheck(lambda a, c: (T.lse_rows(a, c, 0.7, None, tile=4) * w[:5]).sum(), (A, H))


def test_gradcheck_losses():
    z = unit_rows(9, 3, seed=40).requires_grad_(True)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 3])
    W = unit_rows(4, 3, seed=41)
    f = unit_rows(10, 3, seed=42).reshape(5, 2, 3).requires_grad_(True)
    m = _masks(5, 3)["weighted"]
    assert torch.autograd.gradcheck(lambda x: T.scl_tiled(x, y, 0.5, tile=4), (z,))
    assert torch.autograd.gradcheck(lambda x: T.scl_tiled(x, y, 0.5, anchors=[1, 5, 8], tile=2), (z,))
    assert torch.autograd.gradcheck(lambda x: T.scl_with_prototypes_tiled(x, y, W, 5, 0.5, [[0, 2, 4, 6], [1, 2, 3]], tile=2), (z,))
    assert torch.autograd.gradcheck(lambda x: T.supcon_mean_tiled(x, None, 0.5, 0.07, mask=m, contrast_mode="one", tile=3), (f,))


# ---------------------------------------------------------------- memory: what the forward keeps
def _saved_numel(fn):
    """Numbers of elements of every tensor autograd keeps for backward while fn() runs."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sizes


def test_forward_keeps_no_n_by_n_tensor():
    """Everything saved for backward is O(n d + n): the largest saved tensor has at most
    max(n, k) * d elements, and the total is below 12 (n d + n) (a few copies of the features, the
    LSE vectors and index vectors). The dense scl saves n x n tensors: the check can fail."""
    n, d, k = 600, 4, 5
    z = unit_rows(n, d, seed=50).requires_grad_(True)
    y = torch.arange(n) % k
    W = unit_rows(k, d, seed=51)
    f = z.reshape(n // 2, 2, d)
    cases = {
        "scl": lambda: T.scl_tiled(z, y, 0.1, tile=64),
        "scl_anchors": lambda: T.scl_tiled(z, y, 0.1, anchors=list(range(0, n, 2)), tile=64),
        "scl_batches": lambda: T.scl_batches_tiled(z, y, [list(range(400)), list(range(200, 600))], 0.1, tile=64),
        "supcon": lambda: T.supcon_mean_tiled(f, y[: n // 2], 0.1, tile=64),
        "supcon_one": lambda: T.supcon_mean_tiled(f, y[: n // 2], 0.1, contrast_mode="one", tile=64),
        "simclr": lambda: T.supcon_mean_tiled(f, None, 0.1, tile=64),
        "prototypes": lambda: T.scl_with_prototypes_tiled(z, y, W, 5, 0.1, tile=64),
    }
    for name, fn in cases.items():
        sizes = _saved_numel(fn)
        assert max(sizes) <= n * d, (name, max(sizes))
        assert sum(sizes) <= 12 * (n * d + n), (name, sum(sizes))
    assert max(_saved_numel(lambda: scl(z, y, 0.1))) >= n * n  # control


# ---------------------------------------------------------------- bad input
def test_bad_input_raises_input_error():
    z, y = unit_rows(6, 3, seed=60), torch.arange(6) % 2
    f = z.reshape(3, 2, 3)
    with pytest.raises(InputError):
        T.scl_tiled(z, y, 0.5, tile=0)
    with pytest.raises(InputError):
        T.scl_tiled(z, y, 0.5, anchors=[0, 6])
    with pytest.raises(InputError):
        T.scl_tiled(z, y, 0.5, anchors=[1, 1])
    with pytest.raises(InputError):
        T.scl_tiled(z[:0], y[:0], 0.5)
    with pytest.raises(InputError):
        T.scl_tiled(z, y, -1.0)
    with pytest.raises(InputError):
        T.supcon_mean_tiled(f, torch.arange(3), mask=torch.eye(3))
    with pytest.raises(InputError):
        T.supcon_mean_tiled(f, torch.arange(3), contrast_mode="some")
    with pytest.raises(InputError):
        T.supcon_mean_tiled(f, mask=torch.eye(4))
    with pytest.raises(InputError):
        T.supcon_mean_tiled(z, torch.arange(6))
    with pytest.raises(InputError):
        T.scl_with_prototypes_tiled(z, y, unit_rows(2, 3, seed=1), -1, 0.5)


# ---------------------------------------------------------------- the one-line integration into losses.scl
@pytest.mark.parametrize("n_w", [0, 1, 5])
def test_prototype_batch_tiled_is_a_drop_in_for_the_dense_batch_function(n_w):
    """scl.scl_with_prototypes can switch per batch: _prototype_batch_tiled takes the same arguments."""
    from nctheory.losses.scl import _prototype_batch

    zb = unit_rows(13, 4, seed=70).requires_grad_(True)
    yb = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 0, 1, 0, 1, 1])  # class 3 absent
    W = unit_rows(4, 4, seed=71)
    Q = W @ W.T / 0.3
    assert_value_grad(lambda x: T._prototype_batch_tiled(x, yb, W, Q, n_w, 0.3),
                      lambda x: _prototype_batch(x, yb, W, Q, n_w, 0.3), zb.detach(), torch.float64)


# ---------------------------------------------------------------- CPU threads
def test_thread_split_is_reproducible_and_equals_one_thread():
    """On the CPU the tiles are split over torch.get_num_threads() Python threads (statically, merged
    in thread order): two runs give the same bits, and 1, 2 or 3 threads agree to float64 rounding."""
    z = unit_rows(45, 4, seed=80).requires_grad_(True)
    y = torch.arange(45) % 4
    prev = torch.get_num_threads()
    out = {}
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            runs = []
            for _ in range(2):
                v = T.scl_tiled(z, y, 0.2, tile=6) + T.scl_tiled(z, y, 0.2, anchors=list(range(0, 45, 2)), tile=6)
                (g,) = torch.autograd.grad(v, z)
                runs.append((float(v.detach()), g))
                assert torch.get_num_threads() == t  # restored after the call
            assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
            out[t] = runs[0]
    finally:
        torch.set_num_threads(prev)
    for t in (2, 3):
        assert abs(out[t][0] - out[1][0]) <= 1e-12 * abs(out[1][0])
        assert float((out[t][1] - out[1][1]).abs().max()) <= 1e-12 * float(out[1][1].abs().max())


@pytest.mark.parametrize("call,words", [
    (lambda z, y: T.scl_tiled(z, y, 0.5, tile="a"), "tile must be an integer >= 1"),
    (lambda z, y: T.scl_tiled(z, y, 0.5, tile=torch.tensor([2, 3])), "tile must be an integer >= 1"),
    (lambda z, y: T.scl_tiled(z, y, 0.5, anchors=[[0], [1, 2]]), "anchors must be a rectangular array"),
    (lambda z, y: T.scl_with_prototypes_tiled(z, y, torch.eye(3, dtype=z.dtype), "a"), "n_w must be an integer >= 0"),
    (lambda z, y: scl_with_prototypes(z, y, torch.eye(3, dtype=z.dtype), "a"), "n_w must be an integer >= 0"),
    (lambda z, y: T.supcon_mean_tiled(z.reshape(3, 2, 3), y[:3], 0.1, "x"), "base_tau must be"),
    (lambda z, y: supcon_mean(z.reshape(3, 2, 3), y[:3], 0.1, "x"), "base_tau must be"),
    (lambda z, y: supcon(z.reshape(3, 2, 3), mask=[[1, 0, 0], [1]]), "mask must be a rectangular array"),
])
def test_bad_arguments_are_input_errors_naming_them(call, words):
    """Ragged lists, strings and tensors where a number is expected: one-line InputError naming the argument
    (never a ValueError from numpy or float())."""
    z = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64), dim=1)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(InputError, match=words) as exc:
        call(z, y)
    assert "\n" not in str(exc.value)


def test_concurrent_calls_leave_the_thread_count_as_it_was():
    """Tiled losses called from several Python threads at once (each splits its tiles over threads with
    the intra-op count set to 1 and restored): the process's thread count is the same afterwards, and
    every value equals the one computed alone."""
    import threading as th

    z = torch.nn.functional.normalize(torch.randn(300, 8, dtype=torch.float64), dim=1)
    y = torch.arange(300) % 7
    alone = float(T.scl_tiled(z, y, 0.5, tile=16))
    before = torch.get_num_threads()
    got, errors = [], []

    def call():
        try:
            got.append(float(T.scl_tiled(z, y, 0.5, tile=16)))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [th.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 4
    assert torch.get_num_threads() == before
    assert all(abs(v - alone) <= 1e-12 * abs(alone) for v in got)

"""impl="auto": the dense code below nctheory.losses.scl.TILED_MIN_ROWS rows per batch, the tiled kernel from
there on, and either way the value and gradient of the float64 dense definition.

Every SCL-type entry point (scl, scl_batches incl. multiset batches, supcon_mean with 1-3 views,
scl_with_prototypes with n_w = 0 and n_w > 0, supcon with labels / SimCLR / a mask, contrast_mode "all" and
"one", every reduction) is called at the real threshold, one batch just below it and one just above
(sizes odd, not a multiple of the tile DEFAULT_TILE = 512), and compared with impl="dense" in float64. Which
path ran is observed, not assumed: the dense code saves its logit matrix for backward, the tiled kernel
nothing of that size (the check can fail both ways).

Tolerances (the ones of tests/test_tiled.py, which says why): float64 input 1e-10 relative to
max(1, |reference|) for values, 1e-9 relative to the largest gradient entry; float32 input against the
float64 reference 2e-5 and 1e-4.
"""

from __future__ import annotations

import os

import pytest
import torch

from nctheory.errors import InputError
from nctheory.losses import scl, scl_batches, scl_with_prototypes, supcon, supcon_mean
from nctheory.losses import tiled as T
from nctheory.losses.scl import TILED_MIN_ROWS

DEVICE = os.environ.get("NCTHEORY_TEST_DEVICE", "cpu")
TOL = {torch.float64: (1e-10, 1e-9), torch.float32: (2e-5, 1e-4)}
D = 6
BELOW, ABOVE = TILED_MIN_ROWS - 1, TILED_MIN_ROWS + 1


def test_the_sizes_are_odd_and_not_multiples_of_the_tile():
    assert BELOW % 2 == 1 and ABOVE % 2 == 1 and ABOVE % T.DEFAULT_TILE != 0


def unit(n, seed, d=D):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


def labels(n, seed):
    """Classes 0..39 (about 50 samples each), one singleton class and one absent id: anchors without positives."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 40, (n,), generator=g)
    y[y == 7] = 8  # class 7 absent
    y[0] = 41  # a singleton
    return y


def saved_max_numel(fn):
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, max(sizes)


def check(fn, x64, dtype, n_rows):
    """fn(x, impl) with impl "auto" (on x in dtype) against fn(x64, "dense"): the path taken by size, the
    value and the gradient."""
    rel_v, rel_g = TOL[dtype]
    x = x64.detach().to(device=DEVICE, dtype=dtype).requires_grad_(True)
    got, biggest = saved_max_numel(lambda: fn(x, "auto"))
    if n_rows >= TILED_MIN_ROWS:  # no logit matrix of the large batch (a user's (bsz, bsz) mask is N^2/4)
        assert biggest < n_rows * n_rows // 2, f"auto above the threshold kept a tensor of {biggest} elements"
    else:  # the dense code keeps its (anchors, N) logits: N^2, or N^2 / 2 for 2 views in contrast_mode "one"
        assert biggest >= n_rows * n_rows // 2, "auto below the threshold did not take the dense code"
    (g,) = torch.autograd.grad(got, x)
    xr = x64.detach().clone().requires_grad_(True)
    ref = fn(xr, "dense")
    (g_ref,) = torch.autograd.grad(ref, xr)
    got, ref = float(got.detach()), float(ref.detach())
    assert abs(got - ref) <= rel_v * max(1.0, abs(ref)), (got, ref)
    err = float((g.to("cpu", torch.float64) - g_ref).abs().max())
    assert err <= rel_g * max(1.0, float(g_ref.abs().max())), err


DTYPES = [torch.float64, torch.float32]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [BELOW, ABOVE])
def test_scl(n, dtype):
    y = labels(n, 1).to(DEVICE)
    check(lambda x, impl: scl(x, y.to(x.device), 0.2, impl=impl), unit(n, 1), dtype, n)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("multiset", [False, True])
def test_scl_batches_each_batch_by_its_size(multiset, dtype):
    """One batch above the threshold (with repeated samples when multiset), one below and a one-sample batch:
    the large batch takes the tiled kernel, the others the dense code, the sum is the dense sum."""
    n = ABOVE + 40
    y = labels(n, 2)
    g = torch.Generator().manual_seed(2)
    big = torch.randperm(n, generator=g)[:ABOVE]
    if multiset:
        big[:300] = big[300:600]  # 300 samples appear twice: copies
    batches = [big.tolist(), list(range(0, n, 5)), [3]]
    check(lambda x, impl: scl_batches(x, y.to(x.device), batches, 0.3, multiset=multiset, impl=impl),
          unit(n, 2), dtype, ABOVE)
    small = [list(range(0, n, 5)), [3]]  # only batches below the threshold: dense throughout
    check(lambda x, impl: scl_batches(x, y.to(x.device), small, 0.3, multiset=multiset, impl=impl),
          unit(n, 2), dtype, len(small[0]))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("views", [1, 2, 3])
@pytest.mark.parametrize("side", ["below", "above"])
def test_supcon_mean(views, side, dtype):
    bsz = (BELOW if side == "below" else ABOVE) // views + (0 if side == "below" else 1)
    N = bsz * views
    assert (N < TILED_MIN_ROWS) == (side == "below")
    y = labels(bsz, 3)
    f = unit(N, 3).reshape(bsz, views, D)
    check(lambda x, impl: supcon_mean(x, y.to(x.device), 0.1, 0.07, impl=impl), f, dtype, N)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n_w", [0, 3])
@pytest.mark.parametrize("n", [BELOW, ABOVE])
def test_scl_with_prototypes(n, n_w, dtype):
    k = 42
    y = labels(n, 4)
    W = unit(k, 40)
    check(lambda x, impl: scl_with_prototypes(x, y.to(x.device), W.to(x.device, x.dtype), n_w, 0.3, impl=impl),
          unit(n, 4), dtype, n)


def _mask(bsz, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(bsz, bsz, generator=g, dtype=torch.float64) * (torch.rand(bsz, bsz, generator=g) < 0.02)


@pytest.mark.parametrize("kind", ["labels", "simclr", "mask"])
@pytest.mark.parametrize("mode", ["all", "one"])
@pytest.mark.parametrize("reduction,dtype", [("all_anchors", torch.float64), ("all_anchors", torch.float32),
                                             ("anchors_with_positives", torch.float64), ("sum", torch.float64)],
                         ids=str)
@pytest.mark.parametrize("side", ["below", "above"])
def test_supcon_every_convention(side, reduction, dtype, mode, kind):
    views = 2
    bsz = (BELOW - 1) // views if side == "below" else (ABOVE + 1) // views
    N = bsz * views
    assert (N < TILED_MIN_ROWS) == (side == "below")
    f = unit(N, 5).reshape(bsz, views, D)
    kw = {"labels": labels(bsz, 5)} if kind == "labels" else {"mask": _mask(bsz, 5)} if kind == "mask" else {}

    def fn(x, impl):
        kk = {k: v.to(x.device) for k, v in kw.items()}
        return supcon(x, **kk, tau=0.1, base_tau=0.07, contrast_mode=mode, reduction=reduction, impl=impl)

    check(fn, f, dtype, N)


def test_forcing_either_path_at_any_size():
    """impl="tiled" below the threshold saves nothing n x n; impl="dense" above it does; both equal."""
    z, y = unit(50, 6), labels(50, 6)
    zt = z.clone().requires_grad_(True)
    vt, bt = saved_max_numel(lambda: scl(zt, y, 0.5, impl="tiled"))
    vd, bd = saved_max_numel(lambda: scl(zt, y, 0.5, impl="dense"))
    assert bt <= z.numel() < 50 * 50 <= bd
    assert abs(float(vt - vd)) <= 1e-12 * abs(float(vd))
    for bad in ("fast", "Tiled", None, 1):
        with pytest.raises(InputError, match="impl"):
            scl(z, y, 0.5, impl=bad)

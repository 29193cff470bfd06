"""nctheory.losses.SupConLoss against an independent reference of the SupContrast algorithm, written here.

The reference below is written from the algorithm's description (Khosla et al. 2020, Eq. 2, L^sup_out, and
the SupContrast ``SupConLoss`` conventions): features (bsz, n_views, ...) flattened after dim 2 and stacked
view-major; positives from labels (same label), a mask (M_ij, possibly asymmetric or weighted) or, with
neither, the sample's other views (SimCLR); labels and mask together refused; anchors every view
("all") or the first view ("one"); each anchor's log-probabilities over every other contrast row; the
mean over its positives, weighted by the mask; an anchor whose positive mass is below 1e-6 divides by 1
(its loss is 0: the 0/0 of an anchor without positives, which early SupContrast versions returned as
NaN); the loss times -(temperature / base_temperature); the mean over all anchors. It loops over anchors
and contrast rows one at a time (float64, torch scalars, so that autograd gives its gradient too) and
shares no code with nctheory. A second reference, of pytorch-metric-learning's SupConLoss call
(cosine similarities, the average over the anchors that have positives, no base-temperature factor), is
written the same way.

Tolerances, and why (those of tests/test_tiled.py):
- float64: 1e-10 relative to max(1, |reference|) (values) and 1e-9 relative to the largest gradient entry:
  both sides are exact in float64 and sum the same terms in another order.
- float32 input against the float64 reference: 2e-5 and 1e-4 (float32 rounds each logit of size up to
  1/tau to ~6e-8 relative; a few hundred ulps of the largest term).
- bfloat16 input: see test_bf16_error_against_float64.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from nctheory.errors import InputError
from nctheory.losses import SupConLoss, scl, supcon, supcon_mean
from nctheory.losses.scl import TILED_MIN_ROWS

DEVICE = os.environ.get("NCTHEORY_TEST_DEVICE", "cpu")
TOL = {torch.float64: (1e-10, 1e-9), torch.float32: (2e-5, 1e-4)}
IMPLS = ("auto", "dense", "tiled")


# ------------------------------------------------------------------------------- independent references
def reference_anchor_losses(features, labels=None, mask=None, temperature=0.07, base_temperature=0.07,
                            contrast_mode="all"):
    """(per-anchor losses, per-anchor positive mass) of the SupContrast algorithm, one anchor at a time."""
    if labels is not None and mask is not None:
        raise ValueError("labels and mask both given")
    bsz, views = features.shape[0], features.shape[1]
    f = features.reshape(bsz, views, -1)
    rows = [(v, i) for v in range(views) for i in range(bsz)]  # view-major contrast rows

    def weight(i, j):
        if labels is not None:
            return 1.0 if int(labels[i]) == int(labels[j]) else 0.0
        if mask is not None:
            return float(mask[i][j])
        return 1.0 if i == j else 0.0

    anchors = rows if contrast_mode == "all" else [(0, i) for i in range(bsz)]
    losses, masses = [], []
    for va, i in anchors:
        others = [(v, j) for v, j in rows if (v, j) != (va, i)]
        if not others:
            losses.append(f[i, va].sum() * 0.0)
            masses.append(0.0)
            continue
        logits = [torch.dot(f[i, va], f[j, v]) / temperature for v, j in others]
        log_den = torch.logsumexp(torch.stack(logits), 0)
        mass = sum(weight(i, j) for _, j in others)
        acc = f[i, va].sum() * 0.0
        for (v, j), s in zip(others, logits):
            w = weight(i, j)
            if w != 0.0:
                acc = acc + w * (s - log_den)
        mean_log_prob_pos = acc / (mass if mass >= 1e-6 else 1.0)
        losses.append(-(temperature / base_temperature) * mean_log_prob_pos)
        masses.append(mass)
    return losses, masses


def reference(features, labels=None, mask=None, temperature=0.07, base_temperature=0.07, contrast_mode="all",
              reduction="all_anchors"):
    losses, masses = reference_anchor_losses(features, labels, mask, temperature, base_temperature, contrast_mode)
    if reduction == "all_anchors":
        return sum(losses) / len(losses)
    if reduction == "sum":
        return sum(losses)
    kept = [l for l, m in zip(losses, masses) if m >= 1e-6]
    return sum(kept) / len(kept) if kept else losses[0] * 0.0


def pml_reference(embeddings, labels, temperature):
    """pytorch-metric-learning's SupConLoss(temperature)(embeddings, labels), from its description: cosine
    similarities over temperature; for each anchor with a positive, minus the mean over its positives of
    (similarity - log-sum-exp over every other sample); the average over those anchors."""
    n = embeddings.shape[0]
    u = embeddings / embeddings.norm(dim=1, keepdim=True)
    per = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        pos = [j for j in others if int(labels[j]) == int(labels[i])]
        if not pos:
            continue
        s = {j: torch.dot(u[i], u[j]) / temperature for j in others}
        lse = torch.logsumexp(torch.stack([s[j] for j in others]), 0)
        per.append(-sum(s[j] - lse for j in pos) / len(pos))
    return sum(per) / len(per)


# ------------------------------------------------------------------------------- helpers
def unit(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    return x / x.reshape(shape[0], shape[1], -1).norm(dim=2).reshape(shape[0], shape[1], *([1] * (len(shape) - 2)))


def assert_matches(fn_ours, fn_ref, x64, dtype):
    rel_v, rel_g = TOL[dtype]
    x = x64.detach().to(device=DEVICE, dtype=dtype).requires_grad_(True)
    got = fn_ours(x)
    assert got.dtype == dtype and got.ndim == 0
    (g,) = torch.autograd.grad(got, x)
    xr = x64.detach().clone().requires_grad_(True)
    ref = fn_ref(xr)
    (g_ref,) = torch.autograd.grad(ref, xr, allow_unused=True)
    g_ref = torch.zeros_like(xr) if g_ref is None else g_ref
    got, ref = float(got.detach()), float(ref.detach())
    assert abs(got - ref) <= rel_v * max(1.0, abs(ref)), (got, ref)
    err = float((g.to("cpu", torch.float64) - g_ref).abs().max())
    assert err <= rel_g * max(1.0, float(g_ref.abs().max())), err
    return ref


LABELS = {"classes": [0, 1, 0, 2, 1, 1, 3, 0, 2], "with_singletons": [0, 0, 1, 2, 3, 3, 4, 5, 0]}


def masks(bsz, seed):
    g = torch.Generator().manual_seed(seed)
    asym = (torch.rand(bsz, bsz, generator=g) < 0.35).to(torch.float64)
    weighted = asym * torch.rand(bsz, bsz, generator=g, dtype=torch.float64)
    tiny = weighted.clone()
    tiny[0] = 0.0
    tiny[0, 3] = 4e-7  # anchor row 0's positive mass is below 1e-6 (x views): the reference divides it by 1
    return {"asymmetric": asym, "weighted": weighted, "tiny": tiny, "bool": torch.rand(bsz, bsz, generator=g) < 0.3}


# ------------------------------------------------------------------------------- the reference call
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("views", [1, 2, 3])
@pytest.mark.parametrize("labels", sorted(LABELS))
@pytest.mark.parametrize("mode", ["all", "one"])
def test_multi_view_labels(mode, labels, views, impl, dtype):
    lab = torch.tensor(LABELS[labels])
    f = unit((len(lab), views, 5), seed=views)
    loss = SupConLoss(temperature=0.1, contrast_mode=mode, base_temperature=0.07, impl=impl)
    assert_matches(lambda x: loss(x, lab.to(x.device)),
                   lambda x: reference(x, lab, temperature=0.1, base_temperature=0.07, contrast_mode=mode), f, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("views", [1, 2, 4])
@pytest.mark.parametrize("mode", ["all", "one"])
def test_simclr(mode, views, impl, dtype):
    """labels = mask = None: a sample's other views are its only positives (one view: none, the loss is 0)."""
    f = unit((7, views, 4), seed=10 + views)
    loss = SupConLoss(temperature=0.5, contrast_mode=mode, impl=impl)
    ref = assert_matches(lambda x: loss(x), lambda x: reference(x, temperature=0.5, contrast_mode=mode), f, dtype)
    assert (ref == 0.0) == (views == 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["asymmetric", "weighted", "tiny", "bool"])
@pytest.mark.parametrize("mode", ["all", "one"])
def test_mask(mode, kind, impl, dtype):
    bsz = 8
    m = masks(bsz, 3)[kind]
    f = unit((bsz, 2, 6), seed=20)
    loss = SupConLoss(temperature=0.2, contrast_mode=mode, base_temperature=0.1, impl=impl)
    assert_matches(lambda x: loss(x, mask=m.to(x.device)),
                   lambda x: reference(x, mask=m, temperature=0.2, base_temperature=0.1, contrast_mode=mode), f, dtype)


def test_mask_equal_to_the_labels_mask_gives_the_labels_loss():
    lab = torch.tensor(LABELS["classes"])
    f = unit((len(lab), 2, 3), seed=4)
    loss = SupConLoss(0.1)
    assert abs(float(loss(f, lab) - loss(f, mask=lab[:, None] == lab[None, :]))) <= 1e-12


@pytest.mark.parametrize("reduction", ["all_anchors", "anchors_with_positives", "sum"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["all", "one"])
@pytest.mark.parametrize("case", ["labels", "singletons_one_view", "mask", "simclr_one_view"])
def test_reductions(case, mode, impl, reduction):
    """The three named reductions against the reference's per-anchor losses: one view with singleton classes
    (anchors without positives: the reductions differ), a sparse mask, SimCLR with one view (no anchor has a
    positive: "anchors_with_positives" is 0, not NaN)."""
    lab = torch.tensor(LABELS["with_singletons"])
    views = 1 if case.endswith("one_view") else 2
    f = unit((len(lab), views, 4), seed=30)
    kw = {"labels": lab} if case in ("labels", "singletons_one_view") else {}
    if case == "mask":
        kw = {"mask": masks(len(lab), 5)["weighted"]}
    loss = SupConLoss(0.3, mode, 0.3, reduction=reduction, impl=impl)
    ref = assert_matches(lambda x: loss(x, **{k: v.to(x.device) for k, v in kw.items()}),
                         lambda x: reference(x, **kw, temperature=0.3, base_temperature=0.3, contrast_mode=mode,
                                             reduction=reduction), f, torch.float64)
    if case == "simclr_one_view":
        assert ref == 0.0


def test_the_reductions_differ_where_anchors_lack_positives_and_relate_as_stated():
    lab = torch.tensor(LABELS["with_singletons"])  # classes 1, 2, 4, 5 are singletons: 4 of 9 anchors
    f = unit((9, 1, 4), seed=31)
    v = {r: float(SupConLoss(0.3, base_temperature=0.3, reduction=r)(f, lab))
         for r in ("all_anchors", "anchors_with_positives", "sum")}
    assert math.isclose(v["all_anchors"] * 9, v["sum"], rel_tol=1e-12)
    assert math.isclose(v["anchors_with_positives"] * 5, v["sum"], rel_tol=1e-12)
    # the sum form with base_temperature = temperature is the papers' SCL (Kini et al. Eq. 2)
    assert math.isclose(v["sum"], float(scl(f[:, 0], lab, 0.3)), rel_tol=1e-12)


def test_labels_all_is_supcon_mean_and_trailing_dims_are_flattened():
    lab = torch.tensor(LABELS["classes"])
    f = unit((9, 2, 2, 3), seed=6)
    a = SupConLoss(0.1, base_temperature=0.07)(f, lab)
    b = supcon_mean(f.reshape(9, 2, 6), lab, 0.1, 0.07)
    c = reference(f, lab, temperature=0.1, base_temperature=0.07)
    assert abs(float(a - b)) <= 1e-12 * abs(float(b)) and abs(float(a) - float(c)) <= 1e-10 * abs(float(c))


def test_labels_as_a_column_are_taken_as_the_reference_takes_them():
    lab = torch.tensor(LABELS["classes"])
    f = unit((9, 2, 3), seed=5)
    assert float(SupConLoss(0.1)(f, lab[:, None])) == float(SupConLoss(0.1)(f, lab))
    with pytest.raises(InputError):
        SupConLoss(0.1)(f, lab[:, None].repeat(1, 2))


def test_the_issue_141_case_is_finite():
    """One sample whose class has no other member and one view: SupContrast's early code divided 0 by 0."""
    f = unit((3, 1, 4), seed=7)
    lab = torch.tensor([0, 0, 1])
    x = f.clone().requires_grad_(True)
    v = SupConLoss(0.8)(x, lab)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(x.grad).all()
    assert abs(float(v.detach()) - float(reference(f, lab, temperature=0.8, base_temperature=0.07))) <= 1e-12


def test_one_sample_one_view():
    x = unit((1, 1, 3), seed=8).requires_grad_(True)
    v = SupConLoss(0.5)(x)
    v.backward()
    assert float(v.detach()) == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


# ------------------------------------------------------------------------------- the PML call
@pytest.mark.parametrize("impl", IMPLS)
def test_pml_call_normalised_anchors_with_positives(impl):
    g = torch.Generator().manual_seed(9)
    emb = 3.0 * torch.randn(12, 5, generator=g, dtype=torch.float64)  # not unit rows: normalize=True divides
    lab = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 0, 4, 2, 5])  # classes 4 and 5 are singletons
    loss = SupConLoss(0.1, base_temperature=0.1, reduction="anchors_with_positives", normalize=True, impl=impl)
    assert_matches(lambda x: loss(x, lab), lambda x: pml_reference(x, lab, 0.1), emb, torch.float64)


def test_pml_call_is_the_one_view_reference_call():
    lab = torch.tensor(LABELS["classes"])
    f = unit((9, 1, 4), seed=11)
    loss = SupConLoss(0.2, reduction="sum")
    assert abs(float(loss(f[:, 0], lab) - loss(f, lab))) <= 1e-12 * abs(float(loss(f, lab)))
    assert abs(float(loss(f[:, 0].numpy(), lab.numpy()) - loss(f, lab))) <= 1e-12 * abs(float(loss(f, lab)))


def test_normalize_divides_each_flattened_row_by_its_norm():
    g = torch.Generator().manual_seed(12)
    raw = torch.randn(6, 2, 2, 2, generator=g, dtype=torch.float64) * torch.linspace(0.1, 5, 6)[:, None, None, None]
    lab = torch.tensor([0, 1, 0, 1, 2, 2])
    flat = raw.reshape(6, 2, 4)
    unitised = flat / flat.norm(dim=2, keepdim=True)
    a = SupConLoss(0.1, normalize=True)(raw, lab)
    b = SupConLoss(0.1, normalize=False)(unitised, lab)
    assert abs(float(a - b)) <= 1e-12 * abs(float(b))
    assert abs(float(SupConLoss(0.1)(raw, lab) - b)) > 1e-3  # default normalize=False: features used as given


# ------------------------------------------------------------------------------- precision
def test_bf16_error_against_float64():
    """bfloat16 features are computed in float32: the value is float32 and the gradient reaches the input in
    bfloat16. Two tolerances:
    - against the float64 loss of the *same bf16-rounded* features: the float32 tolerances (only the
      arithmetic differs: the loss really is computed in float32, not in bf16);
    - against the float64 loss of the original features: each entry is rounded by at most u = 2^-8
      (bf16 keeps 8 significant bits), so |f_a.f_c| moves by at most 2u + u^2 for unit rows and each
      logit by (2u + u^2)/tau; l_a is LSE minus a mean of logits, hence moves by at most
      2 (2u + u^2) / tau times tau/base_tau, and so does their mean: a bound, stated and checked."""
    lab = torch.arange(40) % 6
    f64 = unit((40, 2, 16), seed=13)
    tau, base = 0.1, 0.07
    loss = SupConLoss(tau, base_temperature=base)
    fb = f64.to(torch.bfloat16).requires_grad_(True)
    v = loss(fb, lab)
    v.backward()
    assert v.dtype == torch.float32 and fb.grad.dtype == torch.bfloat16
    rounded = fb.detach().double().requires_grad_(True)
    ref_rounded = loss(rounded, lab)
    ref_rounded.backward()
    v, ref_rounded = v.detach(), ref_rounded.detach()
    assert abs(float(v) - float(ref_rounded)) <= TOL[torch.float32][0] * abs(float(ref_rounded))
    eps = torch.finfo(torch.bfloat16).eps  # the gradient itself is rounded to bf16 on its way back
    assert float((fb.grad.double() - rounded.grad).abs().max()) <= 2 * eps * float(rounded.grad.abs().max())
    u = 2.0 ** -8
    bound = 2 * (2 * u + u * u) / tau * (tau / base)
    err = abs(float(v) - float(loss(f64, lab)))
    assert err <= bound, (err, bound)  # measured: 4.4e-4 against the bound 0.22
    # control: the same loss computed in bf16 arithmetic misses the float32 tolerance by orders of magnitude
    in_bf16 = reference(fb.detach(), lab, temperature=tau, base_temperature=base)
    assert abs(float(in_bf16) - float(ref_rounded)) > 100 * TOL[torch.float32][0] * abs(float(ref_rounded))


@pytest.mark.parametrize("impl", IMPLS)
def test_under_autocast_the_loss_is_computed_in_float32(impl):
    """Inside torch.autocast (CPU, bf16) a float32 matrix product would run in bf16 (the control below);
    the loss switches autocast off: the same float32 value as outside autocast."""
    lab = torch.arange(30) % 4
    f = unit((30, 2, 8), seed=14).float()
    loss = SupConLoss(0.1, impl=impl)
    outside = loss(f, lab)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (f[:, 0] @ f[:, 0].T).dtype == torch.bfloat16  # control: autocast is on
        inside = loss(f, lab)
        net = torch.nn.Linear(8, 8).double()  # a network output under autocast is bf16
        h = net.float()(f)
        assert h.dtype == torch.bfloat16
        from_net = loss(h, lab)
    assert inside.dtype == torch.float32 and float(inside) == float(outside)
    assert from_net.dtype == torch.float32 and torch.isfinite(from_net)
    assert float(from_net) == float(loss(h.detach().float(), lab))


@pytest.mark.parametrize("name", ["scl", "scl_prototypes", "supcon_mean", "ce", "normface", "ntce", "nonl",
                                  "proto", "ce_fixed", "scl_prototypes_limit", "gill_prop1"])
def test_every_catalogue_loss_ignores_autocast(name):
    from nctheory.losses.catalogue import LOSSES

    spec = LOSSES[name]
    assert set(LOSSES) == {"scl", "scl_prototypes", "supcon_mean", "ce", "normface", "ntce", "nonl", "proto",
                           "ce_fixed", "scl_prototypes_limit", "gill_prop1"}
    g = torch.Generator().manual_seed(15)
    z = torch.nn.functional.normalize(torch.randn(12, 6, generator=g), dim=1)
    y = torch.arange(12) % 3
    kw = {}
    if spec.classifier != "none":
        kw["W"] = torch.nn.functional.normalize(torch.randn(3, 6, generator=g), dim=1)
    if spec.takes_tau:
        kw["tau"] = 0.1
    if spec.takes_n_w:
        kw["n_w"] = 2
    outside = spec(z, y, **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = spec(z, y, **kw)
    assert inside.dtype == torch.float32 and float(inside) == float(outside)


# ------------------------------------------------------------------------------- size threshold
def test_above_the_threshold_the_module_takes_the_tiled_kernel_and_equals_the_dense_code():
    bsz = TILED_MIN_ROWS // 2 + 1  # N = 2 bsz >= TILED_MIN_ROWS, not a multiple of the tile
    lab = torch.arange(bsz) % 50
    f = unit((bsz, 2, 4), seed=16)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    x = f.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        v = SupConLoss(0.1)(x, lab)
    assert max(sizes) <= x.numel()  # nothing N x N kept
    (g,) = torch.autograd.grad(v, x)
    xd = f.clone().requires_grad_(True)
    d = SupConLoss(0.1, impl="dense")(xd, lab)
    (gd,) = torch.autograd.grad(d, xd)
    assert abs(float(v.detach() - d.detach())) <= 1e-10 * abs(float(d))
    assert float((g - gd).abs().max()) <= 1e-9 * float(gd.abs().max())


# ------------------------------------------------------------------------------- bad input
F3 = unit((4, 2, 3), seed=17)
BAD_CALLS = {
    "1-d features": lambda: SupConLoss()(torch.ones(5), torch.arange(5)),
    "0-d features": lambda: SupConLoss()(torch.tensor(1.0)),
    "2-d without labels": lambda: SupConLoss()(torch.ones(4, 3)),
    "labels and mask": lambda: SupConLoss()(F3, torch.arange(4), mask=torch.eye(4)),
    "complex features": lambda: SupConLoss()(F3.to(torch.complex128), torch.arange(4)),
    "bool features": lambda: SupConLoss()(F3 > 0, torch.arange(4)),
    "string features": lambda: SupConLoss()([["a", "b"], ["c", "d"]], [0, 1]),
    "complex numpy": lambda: SupConLoss()(np.ones((4, 2, 3), dtype=complex), np.arange(4)),
    "NaN features": lambda: SupConLoss()(F3 * float("nan"), torch.arange(4)),
    "labels of wrong length": lambda: SupConLoss()(F3, torch.arange(3)),
    "float labels": lambda: SupConLoss()(F3, torch.tensor([0.5, 1, 2, 3])),
    "bool labels": lambda: SupConLoss()(F3, torch.tensor([True, False, True, False])),
    "mask of wrong shape": lambda: SupConLoss()(F3, mask=torch.eye(3)),
    "complex mask": lambda: SupConLoss()(F3, mask=torch.eye(4, dtype=torch.complex64)),
    "NaN mask": lambda: SupConLoss()(F3, mask=torch.full((4, 4), float("nan"))),
    "no samples": lambda: SupConLoss()(torch.ones(0, 2, 3)),
    "bad reduction": lambda: SupConLoss(reduction="mean"),
    "bad contrast_mode": lambda: SupConLoss(contrast_mode="some"),
    "bad impl": lambda: SupConLoss(impl="fast"),
    "string temperature": lambda: SupConLoss(temperature="0.1"),
    "zero temperature": lambda: SupConLoss(temperature=0.0),
    "bool base_temperature": lambda: SupConLoss(base_temperature=True),
    "normalize=1": lambda: SupConLoss(normalize=1),
    "supcon bad reduction": lambda: supcon(F3, reduction="max"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_is_one_line_input_error(case):
    with pytest.raises(InputError) as e:
        BAD_CALLS[case]()
    assert "\n" not in str(e.value) and str(e.value)


def test_the_reference_refuses_labels_and_mask_too():
    with pytest.raises(ValueError):
        reference(F3, torch.arange(4), torch.eye(4))


def test_module_repr_and_export():
    import nctheory.losses as L

    assert "SupConLoss" in L.__all__ and L.SupConLoss is SupConLoss
    r = repr(SupConLoss(0.1, "one", 0.2, reduction="sum", normalize=True, impl="dense"))
    for word in ("temperature=0.1", "'one'", "base_temperature=0.2", "'sum'", "normalize=True", "'dense'"):
        assert word in r

"""One table-driven test of every loss in the catalogue (nctheory.losses.catalogue.LOSSES).

For each entry: the torch loss through the uniform call == a naive loop transcription of the paper's
formula written here (python loops, math.exp/log, float64) == its Gram form (LSEForm.evaluate at the
joint Gram matrix, where has_gram) == its numpy form (where there is one: PerSampleLimit.value summed for
Gill's limits, the sympy aggregated expression for scl_prototypes), in the sum and the mean form (the
mean divides by the anchors the test counts itself, which spec.anchors must reproduce). Cases: small
hand-built ones (anchors without positives, absent classes, mini-batches with a one-sample batch and
overlapping batches where the entry takes a plan) and seeded random ones, each in float64 and float32
(entries with a tiled kernel: with impl "auto", "dense" and "tiled"), on the device named by the
environment variable NCTHEORY_TEST_DEVICE (default cpu; e.g.
NCTHEORY_TEST_DEVICE=cuda python -m pytest tests/test_loss_catalogue.py), plus a hypothesis search per
entry in float64. An entry of the catalogue without a reference here fails the test.

Tolerances (relative to max(1, |reference|)):
- float64: 1e-10. The loop and the vectorised code add the same O(n^2) terms in another order and the
  loop evaluates log(sum exp) without shifting; with logits of size <= 1/tau = 10 the rounding is
  ~1e-14 relative at most (measured on the table cases, CPU: 4.5e-16), so 1e-10 leaves orders of
  margin and still catches any wrong term (a term of these losses is >= 1e-4 of the value).
- float32: 1e-5. The inputs are rounded to float32 first (the reference uses the same rounded values),
  so only the arithmetic differs: float32 eps = 1.2e-7 times logits up to 1/tau = 10 gives ~1e-6
  absolute per log-sum-exp in the worst case; measured on the table cases (CPU): 1.2e-7 (supcon_mean,
  random case, mean form).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nctheory.errors import InputError
from nctheory.losses import nonl, normface, ntce, proto_loss, supcon_mean
from nctheory.losses.catalogue import LOSSES, get_loss
from nctheory.losses.prototype_limit import PerSampleLimit
from nctheory.symbolic.prototypes import aggregated_exact_loss

DEVICE = os.environ.get("NCTHEORY_TEST_DEVICE", "cpu")
DTYPES = (torch.float64, torch.float32)
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
HSET = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------ naive transcriptions (sum forms)
def naive_scl_batch(H, y, B, tau):
    """Kini et al. Eq. (1)/(4) for one batch B, literally: sum_i 1/(n_{B,y_i} - 1) sum_{j in P(i)}
    log sum_{l in B, l != i} exp((h_i.h_l - h_i.h_j)/tau); anchors without a positive are skipped."""
    total = 0.0
    for i in B:
        pos = [j for j in B if j != i and y[j] == y[i]]
        if not pos:
            continue
        acc = 0.0
        for j in pos:
            acc += math.log(sum(math.exp((H[i] @ H[l] - H[i] @ H[j]) / tau) for l in B if l != i))
        total += acc / len(pos)  # len(pos) = n_{B,y_i} - 1
    return total


def naive_scl(c):
    return sum(naive_scl_batch(c.z, c.y, B, c.tau) for B in c.plan())


def naive_scl_prototypes(c):
    """Gill et al. Eq. 1 on each batch augmented with n_w copies of every prototype (class c for w_c),
    by explicit concatenation: every member of the augmented batch is an anchor."""
    total = 0.0
    for B in c.plan():
        Z = np.vstack([c.z[B]] + [c.W] * c.n_w)
        yz = np.concatenate([c.y[B]] + [np.arange(c.k)] * c.n_w)
        total += naive_scl_batch(Z, yz, list(range(len(yz))), c.tau)
    return total


def _softmax_terms(c, i):
    """[w_c.h_i / tau for every class c]."""
    return [c.W[cl] @ c.z[i] / c.tau for cl in range(c.k)]


def naive_gill_prop1(c):
    """Gill et al. Prop. 1 as printed, per batch: -sum_i [log softmax(W h_i/tau)[y_i] + w_{y_i}.h_i/tau]."""
    total = 0.0
    for B in c.plan():
        for i in B:
            lg = _softmax_terms(c, i)
            total += -(lg[c.y[i]] - math.log(sum(math.exp(v) for v in lg)) + lg[c.y[i]])
    return total


def naive_limit(c):
    """The derived n_w -> oo limit: Prop. 1 as printed plus sum_c exp(w_c.h_i/tau) / Z_c per sample,
    Z_c = sum_c' exp(w_c.w_c'/tau)."""
    Z = [sum(math.exp(c.W[a] @ c.W[b] / c.tau) for b in range(c.k)) for a in range(c.k)]
    rep = sum(sum(math.exp(v) / Z[cl] for cl, v in enumerate(_softmax_terms(c, i))) for B in c.plan() for i in B)
    return naive_gill_prop1(c) + rep


def naive_ce(c, W, b):
    """Koromilas Eq. (1) times M: sum_i -log softmax(z_i W^T + b)[y_i]."""
    out = 0.0
    for i in range(len(c.y)):
        logits = [c.z[i] @ W[cl] + (0.0 if b is None else b[cl]) for cl in range(len(W))]
        out += -logits[c.y[i]] + math.log(sum(math.exp(v) for v in logits))
    return out


def naive_normface(c):
    """Koromilas Eq. (3) times M: -sum_i log[exp(u_i.w^_{y_i}/tau) / sum_c exp(u_i.w^_c/tau)]."""
    U, Wh = unit_rows(c.z), unit_rows(c.W)
    return sum(-math.log(math.exp(U[i] @ Wh[c.y[i]] / c.tau) / sum(math.exp(U[i] @ w / c.tau) for w in Wh))
               for i in range(len(c.y)))


def naive_ntce(c):
    """Koromilas Eq. (4) times M: -sum_i log[exp(w^_{y_i}.u_i/tau) / sum_j exp(w^_{y_i}.u_j/tau)]."""
    U, Wh = unit_rows(c.z), unit_rows(c.W)
    return sum(-math.log(math.exp(Wh[c.y[i]] @ U[i] / c.tau) / sum(math.exp(Wh[c.y[i]] @ u / c.tau) for u in U))
               for i in range(len(c.y)))


def naive_nonl(c):
    """Koromilas Eq. (9) times M: the denominator over instances of other classes only."""
    U, Wh, y = unit_rows(c.z), unit_rows(c.W), c.y
    return sum(-math.log(math.exp(Wh[y[i]] @ U[i] / c.tau)
                         / sum(math.exp(Wh[y[i]] @ U[j] / c.tau) for j in range(len(y)) if y[j] != y[i]))
               for i in range(len(y)))


def naive_proto(c):
    """Koromilas Eq. (6) times N: -sum_i log[exp(a_i.mu_{y_i}/tau) / (-exp(a_i.mu_{y_i}/tau) + sum_c n_c
    exp(a_i.mu_c/tau))], mu_c the raw class means of the batch, absent classes left out."""
    A, y = c.z, c.y
    classes = sorted(set(y.tolist()))
    n = {cl: int(np.sum(y == cl)) for cl in classes}
    mu = {cl: A[y == cl].mean(0) for cl in classes}
    out = 0.0
    for i in range(len(y)):
        num = math.exp(A[i] @ mu[y[i]] / c.tau)
        out += -math.log(num / (-num + sum(n[cl] * math.exp(A[i] @ mu[cl] / c.tau) for cl in classes)))
    return out


def naive_supcon_mean(Z, y, tau):
    """Khosla et al. Eq. (2) (L^sup_out), the reference's mean over all anchors: (1/|A|) sum_i
    -(1/|P(i)|) sum_{p in P(i)} log[exp(z_i.z_p/tau) / sum_{a != i} exp(z_i.z_a/tau)], 0 if P(i) is empty."""
    n, total = len(y), 0.0
    for i in range(n):
        P = [p for p in range(n) if p != i and y[p] == y[i]]
        if not P:
            continue
        den = sum(math.exp(Z[i] @ Z[a] / tau) for a in range(n) if a != i)
        total += -sum(math.log(math.exp(Z[i] @ Z[p] / tau) / den) for p in P) / len(P)
    return total / n


def limit_numpy(form):
    def value(c):
        f = PerSampleLimit(c.W @ c.W.T, c.tau, form)
        return sum(f.value(c.W @ c.z[i], int(c.y[i])) for B in c.plan() for i in B)
    return value


def aggregated_numpy(c):
    """The sympy aggregated expression of the exact loss (nctheory.symbolic.prototypes), per batch."""
    return sum(aggregated_exact_loss(c.z[B], c.y[B], c.W, c.n_w, c.tau) for B in c.plan())


@dataclass
class Reference:
    naive: Callable                     # case -> the sum form, in loops
    features: str = "unit"              # "unit" rows (the papers' SCL setting) or "raw" (the loss normalises / CE)
    numpy: Callable | None = None       # case -> the sum form from a numpy view
    copies_are_anchors: bool = False    # the anchors of a batch include the k n_w prototype copies
    refuses: Callable = field(default=lambda c: False)  # case -> True where the paper's formula is undefined


REFERENCES = {
    "scl": Reference(naive_scl),
    "scl_prototypes": Reference(naive_scl_prototypes, numpy=aggregated_numpy, copies_are_anchors=True),
    "scl_prototypes_limit": Reference(naive_limit, numpy=limit_numpy("derived")),
    "gill_prop1": Reference(naive_gill_prop1, numpy=limit_numpy("paper")),
    "ce": Reference(lambda c: naive_ce(c, c.W, c.b), features="raw"),
    "ce_fixed": Reference(lambda c: naive_ce(c, c.W / c.tau, None)),
    "normface": Reference(naive_normface, features="raw"),
    "ntce": Reference(naive_ntce, features="raw"),
    "nonl": Reference(naive_nonl, features="raw", refuses=lambda c: len(set(c.y.tolist())) < 2),
    "proto": Reference(naive_proto, refuses=lambda c: len(c.y) < 2),
    "supcon_mean": Reference(lambda c: len(c.y) * naive_supcon_mean(c.z, c.y, c.tau)),
}


# ------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    label: str
    z: np.ndarray
    y: np.ndarray
    k: int
    tau: float
    W: np.ndarray | None = None
    b: np.ndarray | None = None
    n_w: int = 0
    batches: list | None = None

    def plan(self):
        return [list(range(len(self.y)))] if self.batches is None else [list(B) for B in self.batches]

    def rounded(self, dtype):
        """The same case with every input rounded to dtype (so that a float32 run and its float64
        reference see identical numbers)."""
        def r(a):
            return None if a is None else torch.as_tensor(a).to(dtype).double().numpy()
        return Case(self.label, r(self.z), self.y, self.k, self.tau, r(self.W), r(self.b), self.n_w, self.batches)


def make_case(spec, ref, label, rng, y, k, d, tau, n_w=0, batches=None, bias=True) -> Case:
    """A case for one entry: unit or raw feature rows, W unit rows (prototypes) or raw (learned), CE's bias."""
    y = np.asarray(y, dtype=np.int64)
    z = rng.normal(size=(len(y), d))
    z = unit_rows(z) if ref.features == "unit" else 0.5 + z
    W = None
    if spec.classifier == "fixed":
        W = unit_rows(rng.normal(size=(k, d)))
    elif spec.classifier == "learned":
        W = rng.normal(size=(k, d))
    b = rng.normal(size=k) if (spec.takes_bias and bias) else None
    return Case(label, z, y, k, tau if spec.takes_tau else 1.0, W, b,
                n_w if spec.takes_n_w else 0, batches if spec.batches else None)


def table_cases(spec, ref) -> list[Case]:
    rng = np.random.default_rng(sum(map(ord, spec.name)))
    # class 2 absent, class 1 a single sample (no positive in the SCL family); n_w = 1: the copy of w_2 has
    # no positive either; no bias: the Gram form (CE without bias) applies
    cases = [make_case(spec, ref, "absent-and-singleton", rng, [0, 0, 1, 3, 3, 3], 4, 3, 0.5, n_w=1, bias=False),
             make_case(spec, ref, "random", rng, rng.integers(0, 3, 9), 3, 4, 0.1, n_w=3)]
    if spec.batches:  # overlapping batches, a one-sample batch, a batch where no anchor has a positive
        cases.append(make_case(spec, ref, "mini-batches", rng, [0, 1, 1, 2, 0, 2, 1, 0], 3, 3, 0.3, n_w=2,
                               batches=[[0, 1, 2, 4], [2, 3, 4, 5, 6], [7], [0, 1, 3], [5, 6, 7, 0]]))
    return cases


# ------------------------------------------------------------------------------------------ the checks
def case_kwargs(spec, c: Case, W) -> dict:
    """The uniform call's keywords for case c: only what the entry takes."""
    return {"W": W, "k": c.k, "batches": c.batches, **({"tau": c.tau} if spec.takes_tau else {}),
            **({"n_w": c.n_w} if spec.takes_n_w else {})}


def call(spec, c: Case, dtype, device, reduction="sum", impl="auto"):
    t = (lambda a: None if a is None else torch.as_tensor(a, dtype=dtype, device=device))
    return spec(t(c.z), torch.as_tensor(c.y, device=device), **case_kwargs(spec, c, t(c.W)), b=t(c.b),
                reduction=reduction, impl=impl)


def counted_anchors(spec, ref, c: Case) -> int:
    """The anchors of the case's batches, counted here: every sample (+ k n_w copies for scl_prototypes)."""
    extra = c.k * c.n_w if ref.copies_are_anchors else 0
    return sum(len(B) + extra for B in c.plan())


def joint_gram(spec, c: Case) -> np.ndarray:
    """Gram matrix of [Z; W] (samples first, then the classifier / prototype rows); of the normalised rows
    for the losses that normalise."""
    J = c.z if c.W is None else np.vstack([c.z, c.W])
    if spec.unit_rows:
        J = unit_rows(J)
    return J @ J.T


def close(a, b, rtol):
    return abs(float(a) - float(b)) <= rtol * max(1.0, abs(float(b)))


def check_case(spec, ref, c: Case, dtype=torch.float64, device=DEVICE):
    """Every view of the entry on case c (rounded to dtype) against the naive transcription."""
    c = c.rounded(dtype)
    rtol = RTOL[dtype]
    if ref.refuses(c):
        with pytest.raises(InputError):
            call(spec, c, dtype, device)
        if spec.has_gram:
            with pytest.raises(InputError):
                spec.gram_form(c.y, k=c.k, tau=c.tau, n_w=c.n_w, batches=c.batches)
        return
    expected = ref.naive(c)
    anchors = counted_anchors(spec, ref, c)
    got = call(spec, c, dtype, device)
    assert got.dtype == dtype and got.device.type == torch.device(device).type and got.ndim == 0
    assert close(got, expected, rtol), (spec.name, c.label, dtype, float(got), expected)
    assert close(call(spec, c, dtype, device, "mean"), expected / anchors, rtol), (spec.name, c.label, "mean")
    if spec.tiled:  # both implementations, forced (these cases are below TILED_MIN_ROWS: "auto" is dense)
        for impl in ("dense", "tiled"):
            v = call(spec, c, dtype, device, impl=impl)
            assert v.dtype == dtype and close(v, expected, rtol), (spec.name, c.label, dtype, impl, float(v), expected)
    sizes = [len(B) for B in c.plan()]
    assert sum(spec.anchors(s, c.k, c.n_w) for s in sizes) == anchors
    if dtype != torch.float64:
        return  # the Gram and numpy forms are float64 by construction
    from_numpy = spec(c.z, c.y, **case_kwargs(spec, c, c.W), b=c.b)  # numpy input: float64 on the CPU
    assert from_numpy.dtype == torch.float64 and close(from_numpy, expected, rtol)
    if spec.has_gram and c.b is None:
        G = joint_gram(spec, c)
        native = expected if spec.native_reduction == "sum" else expected / anchors
        form = dict(k=c.k, tau=c.tau, n_w=c.n_w, batches=c.batches)
        assert close(spec.gram_form(c.y, **form).value(G), native, rtol), (spec.name, c.label, "gram")
        assert close(spec.gram_form(c.y, **form, reduction="sum").value(G), expected, rtol)
        assert close(spec.gram_form(c.y, **form, reduction="mean").value(G), expected / anchors, rtol)
    elif not spec.has_gram:
        with pytest.raises(InputError):
            spec.gram_form(c.y, k=c.k, tau=c.tau, batches=c.batches)
    if ref.numpy is not None:
        assert close(ref.numpy(c), expected, rtol), (spec.name, c.label, "numpy")


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_entry_has_a_reference(name):
    assert name in REFERENCES, f"catalogue entry {name} has no reference in tests/test_loss_catalogue.py"


def test_no_reference_without_an_entry():
    assert set(REFERENCES) == set(LOSSES)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(LOSSES))
def test_entry_equals_naive_gram_and_numpy_forms(name, dtype):
    spec, ref = LOSSES[name], REFERENCES[name]
    for c in table_cases(spec, ref):
        check_case(spec, ref, c, dtype)


@st.composite
def drawn_case(draw, name):
    """Labels from range(k), so classes may be absent, have one sample, or many; a drawn plan where the
    entry takes batches; n_w in 0..4 (n_w = 0: scl_prototypes is scl)."""
    spec, ref = LOSSES[name], REFERENCES[name]
    k, n, d = draw(st.integers(1, 4)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    y = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    batches = None
    if spec.batches and draw(st.booleans()):
        batches = [sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n)))
                   for _ in range(draw(st.integers(1, 4)))]
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    return make_case(spec, ref, "drawn", rng, y, k, d, draw(st.sampled_from([0.1, 0.5, 1.0, 2.0])),
                     n_w=draw(st.integers(0, 4)), batches=batches, bias=draw(st.booleans()))


@pytest.mark.parametrize("name", list(LOSSES))
def test_entry_on_drawn_cases(name):
    @HSET
    @given(drawn_case(name))
    def run(c):
        check_case(LOSSES[name], REFERENCES[name], c)

    run()


# ------------------------------------------------------------------------------------------ semantics
@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_reaches_the_features_and_a_learned_classifier_only(name):
    """float64 gradients equal finite differences through the uniform call; W gets a gradient exactly when
    the entry's classifier is "learned" (a "fixed" W is a constant)."""
    spec, ref = LOSSES[name], REFERENCES[name]
    c = table_cases(spec, ref)[-1]
    W = None if c.W is None else torch.tensor(c.W, requires_grad=True)
    y = torch.as_tensor(c.y)
    z = torch.tensor(c.z, requires_grad=True)
    fixed = case_kwargs(spec, c, None if W is None else W.detach())
    assert torch.autograd.gradcheck(lambda t: spec(t, y, **fixed), (z,), eps=1e-6, atol=1e-7, rtol=1e-6)
    spec(z, y, **case_kwargs(spec, c, W)).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    if W is not None:
        assert (W.grad is not None) == (spec.classifier == "learned")


@pytest.mark.parametrize("tau,views", [(0.1, 2), (0.5, 1), (0.5, 3)])
def test_supcon_mean_takes_the_stacked_views(tau, views):
    """supcon_mean's uniform call: the views stacked view-major as rows, their labels repeated; its mean form
    is the reference's value with base_tau = tau and Khosla's Eq. (2) computed on the views."""
    rng = np.random.default_rng(views)
    labels = np.array([0, 1, 0, 2, 1])
    f = unit_rows(rng.normal(size=(len(labels) * views, 4))).reshape(len(labels), views, 4)
    stacked = np.concatenate([f[:, v] for v in range(views)])
    yv = np.tile(labels, views)
    spec = get_loss("supcon_mean")
    got = spec(stacked, yv, tau=tau, reduction="mean")
    assert close(got, supcon_mean(torch.as_tensor(f), torch.as_tensor(labels), tau, tau), 1e-12)
    assert close(got, naive_supcon_mean(stacked, yv, tau), 1e-10)


def test_names_and_kinds():
    assert get_loss("scl-prototypes") is LOSSES["scl_prototypes"]
    for name, spec in LOSSES.items():
        assert spec.name == name and get_loss(name.replace("_", "-")) is spec
    assert {n for n, s in LOSSES.items() if s.unit_rows} == {"normface", "ntce", "nonl"}
    assert {n for n, s in LOSSES.items() if s.classifier == "learned"} == {"ce", "normface", "ntce", "nonl"}
    assert {n for n, s in LOSSES.items() if s.classifier == "fixed"} == {"scl_prototypes", "scl_prototypes_limit",
                                                                        "gill_prop1", "ce_fixed"}
    with pytest.raises(InputError, match="scl_prototypes"):  # the message names the valid losses
        get_loss("scl_prototype")
    # the normalising losses refuse a zero row; the others take it as given
    z, y, W = np.array([[0.0, 0.0], [1.0, 0.0]]), [0, 1], np.eye(2)
    for name in ("normface", "ntce", "nonl"):
        with pytest.raises(InputError, match="zero row"):
            get_loss(name)(z, y, W=W)


@pytest.mark.parametrize("name", list(LOSSES))
def test_uniform_call_refuses_what_a_loss_does_not_take(name):
    spec = LOSSES[name]
    rng = np.random.default_rng(0)
    z, y, W = unit_rows(rng.normal(size=(4, 2))), np.array([0, 0, 1, 1]), unit_rows(rng.normal(size=(2, 2)))
    kw = {} if spec.classifier == "none" else {"W": W}
    with pytest.raises(InputError):
        spec(z, y, W=W) if spec.classifier == "none" else spec(z, y)
    with pytest.raises(InputError):
        spec(z, y, **kw, reduction="max")
    if not spec.takes_n_w:
        with pytest.raises(InputError):
            spec(z, y, **kw, n_w=2)
    if not spec.batches:
        with pytest.raises(InputError):
            spec(z, y, **kw, batches=[[0, 1], [2, 3]])
    if not spec.takes_tau:
        with pytest.raises(InputError):
            spec(z, y, **kw, tau=0.5)
    if not spec.takes_bias:
        with pytest.raises(InputError):
            spec(z, y, **kw, b=np.zeros(2))
    if spec.classifier != "none":
        with pytest.raises(InputError):
            spec(z, y, W=W, k=3)  # W has 2 rows
    if not spec.has_gram:
        with pytest.raises(InputError):
            spec.gram_form(y, k=2)
    with pytest.raises(InputError, match="impl"):
        spec(z, y, **kw, impl="fast")
    if not spec.tiled:
        with pytest.raises(InputError, match="no tiled implementation"):
            spec(z, y, **kw, impl="tiled")


def test_the_tiled_entries_are_the_scl_family():
    """Every entry whose batch couples every pair of rows (an n x n logit matrix in its dense code) has the
    tiled kernel; the others are O(n k) (classifier / prototype logits) and have one implementation."""
    assert {n for n, s in LOSSES.items() if s.tiled} == {"scl", "scl_prototypes", "supcon_mean"}


def test_the_mean_form_of_koromilas_losses_is_the_papers_average():
    """The catalogue's mean form (sum / anchors) is the functions' own reduction="mean" (Koromilas' 1/M)."""
    rng = np.random.default_rng(1)
    z, y, W = rng.normal(size=(7, 3)), np.array([0, 1, 2, 0, 1, 2, 2]), rng.normal(size=(3, 3))
    for fn in (normface, ntce, nonl):
        assert close(get_loss(fn.__name__)(z, y, W=W, tau=0.3, reduction="mean"), fn(z, y, W, 0.3), 1e-12)
    a = unit_rows(z)
    assert close(get_loss("proto")(a, y, tau=0.3, reduction="mean"), proto_loss(a, y, 0.3), 1e-12)

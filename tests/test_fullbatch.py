"""The two-pass exact full-batch gradient (nctheory.harness.train.full_batch_features / full_batch_backward).

Reference: the direct full-batch gradient, one forward of every view of every image with a graph, the
catalogue's dense loss in the trainer's mean form, one backward. Everything in float64 (network, data, loss),
so the two computations differ only by the order of floating-point sums (chunks, tiles): the tolerance
is 1e-9 times the largest entry of the whole parameter gradient, about 1e6 x float64 epsilon, far below
the differences a wrong chunk slice, a wrong view order or a missing head gradient make (order 1e-2
relative and more; test_batchnorm_chunks_are_not_the_full_batch_gradient measures one such difference).
Every compared gradient is checked to be non-trivial (largest entry > 1e-6), so a constant network
cannot pass by giving 0 = 0. Images are 16 x 16 so that the last stage of the width-2 ResNet is 2 x 2.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nctheory.errors import InputError
from nctheory.harness import train as T
from nctheory.harness.data import augment
from nctheory.harness.train import LossHead, Machine, TrainConfig

RTOL = 1e-9
CPU = Machine(torch.device("cpu"), False, 0, 1, None, False)
N, K = 23, 3  # 23 images: chunk sizes 5 and 7 do not divide it


def _setup(norm="none", model="mlp", loss="scl", chunk_size=5, views=2, **kw):
    cfg = TrainConfig(dataset="synthetic", model=model, width=2, mlp_hidden=12, mlp_depth=2, feat_dim=6, norm=norm,
                      loss=loss, tau=0.5, batching="full", chunk_size=chunk_size, views=views,
                      view_augment="vflip", n_w=2, progress=False, **kw)
    cfg.validate()
    g = torch.Generator().manual_seed(3)
    data = type("Data", (), {})()
    data.x_train = torch.randn(N, 1, 16, 16, generator=g, dtype=torch.float64)
    data.y_train = torch.arange(N) % K
    torch.manual_seed(0)
    model = T.model_from_config(cfg, (1, 16, 16), K).double().train()
    head = LossHead(cfg, K, model.feat_dim, [8, 8, 7]).double()
    if head.W is not None:  # float64 prototypes / classifier
        head.W.data = head.W.data.double()
    return cfg, data, model, head


def _views_fn(cfg):
    return [cfg.augment] + [cfg.view_augment] * (cfg.views - 1)


def _params(model, head):
    return [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]


def _direct_gradient(cfg, data, model, head):
    """The reference: [x; view(x); ...] in one forward, the dense catalogue loss, one backward."""
    x, y = data.x_train, data.y_train
    xv = torch.cat([augment(x, a, None) for a in _views_fn(cfg)])
    z = model(xv)
    value, n_anchor = head.sum_form(z, y.repeat(cfg.views))  # dense (tiled=False)
    (value / n_anchor).backward()
    return [p.grad.clone() for p in _params(model, head)], float(value.detach())


def _two_pass_gradient(cfg, data, model, head):
    B = torch.arange(N)
    gen = torch.Generator().manual_seed(0)
    z, yv, replay = T.full_batch_features(model, model, data, B, _views_fn(cfg), gen, cfg, CPU)
    T.full_batch_backward(model, head, data, B, z, yv, replay, _views_fn(cfg), gen, cfg, CPU, 1.0)
    return [p.grad.clone() for p in _params(model, head)], z, yv


def _both(**kw):
    cfg, data, model, head = _setup(**kw)
    model2, head2 = copy.deepcopy(model), copy.deepcopy(head)
    direct, value = _direct_gradient(cfg, data, model, head)
    two, z, yv = _two_pass_gradient(cfg, data, model2, head2)
    return direct, two, (cfg, data, model, model2, head2, z, yv, value)


def _max_rel(a, b):
    """max |a - b| / max |b| over all parameters' gradients."""
    return max(float((x - y).abs().max()) for x, y in zip(a, b)) / _scale(b)


def _scale(grads):
    return max(float(g.abs().max()) for g in grads)


def _assert_same(two, direct):
    assert len(direct) == len(two) > 0
    assert _scale(direct) > 1e-6  # a network that does something
    assert _max_rel(two, direct) <= RTOL, _max_rel(two, direct)


@pytest.mark.parametrize("chunk_size", [5, 7, None, 100])
@pytest.mark.parametrize("model,norm", [("mlp", "none"), ("mlp", "group"), ("mlp", "frozen"),
                                        ("resnet18", "group"), ("resnet18", "frozen"), ("resnet18", "none")])
def test_two_pass_equals_full_batch_gradient(model, norm, chunk_size):
    """Networks without batch-dependent layers, two views, chunk sizes that do not divide n = 23 (5, 7),
    one chunk (None) and a chunk larger than the batch (100): the same parameter gradient."""
    direct, two, _ = _both(model=model, norm=norm, chunk_size=chunk_size)
    _assert_same(two, direct)


@pytest.mark.parametrize("loss", ["scl", "scl_prototypes", "normface", "ce"])
def test_two_pass_gradient_for_each_loss_kind(loss):
    """The tiled kernels (scl, scl_prototypes with fixed prototypes) and per-sample losses with a learned
    classifier, whose own gradient comes from the feature-gradient backward (normface, ce)."""
    kw = {"normalize": False} if loss == "ce" else {}
    direct, two, _ = _both(norm="group", chunk_size=7, loss=loss, **kw)
    _assert_same(two, direct)


def test_pass_one_features_and_logged_loss():
    """Pass 1's features are the network's features of the views (chunk-wise view-major rows), and the tiled
    float64 sum form the trainer logs is the dense catalogue loss."""
    _, _, (cfg, data, model, model2, head2, z, yv, value) = _both(norm="group", chunk_size=7)
    rows = []
    for C in torch.arange(N).split(7):
        rows.append(torch.cat([data.x_train[C], augment(data.x_train[C], "vflip", None)]))
    with torch.no_grad():
        expect = model(torch.cat(rows))  # the initial network (model2 took the step's gradient only)
    assert torch.allclose(z, expect, rtol=0, atol=1e-12)
    assert torch.equal(yv, torch.cat([data.y_train[C].repeat(2) for C in torch.arange(N).split(7)]))
    tiled = float(head2.sum_form(z, yv, tiled=True)[0])
    assert abs(tiled - value) <= 1e-10 * abs(value)


def test_batchnorm_chunks_are_not_the_full_batch_gradient():
    """norm batch: per-chunk statistics differ from the full batch's, and the two-pass gradient differs from
    the full-batch gradient (measured here: far above RTOL); with one chunk it is exact. Pass 1 does not
    move the running statistics; pass 2 updates them once per chunk."""
    direct, two, (cfg, data, model, model2, *_rest) = _both(norm="batch", chunk_size=7)
    assert _max_rel(two, direct) > 1e-3
    bns = [m for m in model2.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bns and all(int(m.num_batches_tracked) == 4 for m in bns)  # ceil(23 / 7) chunks, pass 2 only
    direct1, two1, (_, _, model_1, model2_1, *_r) = _both(norm="batch", chunk_size=None)
    _assert_same(two1, direct1)
    for a, b in zip(model2_1.buffers(), model_1.buffers()):  # running statistics as one direct step leaves them
        assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-12)


def test_two_pass_never_uses_the_dense_loss(monkeypatch):
    """--batching full keeps O(n d) memory for scl: the two-pass gradient never calls the catalogue's dense
    loss (patched to fail); the next test runs a whole training run, the logged float64 value included."""
    from nctheory.losses.catalogue import LossSpec

    real = LossSpec.__call__

    def no_dense(self, *a, **k):  # the trainer's calls ask for the tiled kernel: impl="tiled"
        if self.name in ("scl", "scl_prototypes") and k.get("impl", "auto") != "tiled":
            raise AssertionError("dense loss called")
        return real(self, *a, **k)

    monkeypatch.setattr(LossSpec, "__call__", no_dense)
    cfg, data, model, head = _setup(norm="group", chunk_size=5)
    with pytest.raises(AssertionError):  # the patch bites the dense path
        head.sum_form(torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 0, 1, 1]))
    _two_pass_gradient(cfg, data, model, head)


def test_two_pass_train_run_records_the_gradient_kind(tmp_path, monkeypatch):
    """A whole run with --batching full and chunks: dense loss never called, and config.json / summary.json name
    the norm and what the step's gradient is."""
    from nctheory.losses.catalogue import LossSpec
    import json

    real = LossSpec.__call__

    def no_dense(self, *a, **k):
        if self.name == "scl" and k.get("impl", "auto") != "tiled":
            raise AssertionError("dense loss called")
        return real(self, *a, **k)

    monkeypatch.setattr(LossSpec, "__call__", no_dense)
    tiny = dict(dataset="synthetic", synthetic={"k": 3, "n_per_class": 7, "n_test_per_class": 2}, model="mlp",
                mlp_hidden=12, mlp_depth=1, feat_dim=6, epochs=2, tau=0.5, progress=False, batching="full",
                chunk_size=5, ufm_optimum=False)
    for norm, exact in (("group", True), ("batch", False)):
        out = tmp_path / norm
        summary = T.train(TrainConfig(**tiny, norm=norm), out)
        info = json.loads((out / "config.json").read_text())
        assert info["norm"] == summary["norm"] == norm
        assert info["config"]["chunk_size"] == 5
        text = summary["full_batch_gradient"]
        assert text == info["full_batch_gradient"]
        assert ("the exact full-batch gradient" in text) == exact
        assert ("NOT the full-batch gradient" in text) == (not exact)


@pytest.mark.parametrize("kw,msg", [
    ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
    ({"chunk_size": 2.5}, "chunk_size"),
    ({"chunk_size": 4, "batching": "reshuffle"}, "chunk_size is for batching full"),
    ({"chunk_size": 4, "loss": "ntce"}, r"no O\(n d\) tiled form"),
    ({"norm": "layer"}, "norm must be one of batch, group, frozen, none"),
    ({"norm": "group", "batchnorm": False}, "conflicts with norm"),
])
def test_bad_chunk_and_norm_values(kw, msg):
    with pytest.raises(InputError, match=msg):
        TrainConfig.from_dict({"batching": "full", **kw})


def test_validate_refuses_a_bad_chunk_size_set_directly():
    with pytest.raises(InputError, match="chunk_size must be a positive integer"):
        TrainConfig(batching="full", chunk_size=0).validate()


def test_cli_bad_chunk_size_is_exit_2(capsys):
    from nctheory.cli import main as cli_main

    code = cli_main(["train", "--batching", "full", "--chunk-size", "0", "--epochs", "1", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chunk_size" in err[0]


def test_batchnorm_false_is_for_the_mlp_only():
    """A ResNet keeps its norm layers whatever batchnorm says, so batchnorm=false with a ResNet is refused
    (it would be recorded as norm none, an exact full-batch gradient, while the network has BatchNorm); the
    MLP's batchnorm=false is recorded as norm none and is exact."""
    with pytest.raises(InputError, match="batchnorm=false applies to the MLP only"):
        TrainConfig(model="resnet18", width=4, batchnorm=False, batching="full", chunk_size=64).validate()
    cfg = TrainConfig(model="mlp", batchnorm=False, batching="full", chunk_size=64)
    cfg.validate()
    assert cfg.norm_used == "none" and T.full_batch_gradient(cfg).endswith("norm none: the exact full-batch gradient")
    bn = TrainConfig(model="resnet18", width=4, batching="full", chunk_size=64)
    assert "NOT the full-batch gradient" in T.full_batch_gradient(bn)

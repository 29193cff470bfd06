"""The DDP path on CPU: 2 gloo processes must reproduce the single-process global-batch loss and gradients.

Why it matters: SCL couples every member of a batch, so a data-parallel run that computed the loss per
process would train on half-size batches (a different plan, a different Thm-2 bound). The harness
gathers features with a differentiable all_gather; here we check that loss and parameter gradients
after DDP's averaging equal those of one process holding the whole batch, and that a short train()
run under 2 processes logs the same per-epoch losses as a 1-process run.
"""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nctheory import losses
from nctheory.harness import distributed as D
from nctheory.harness.models import build_model

TAU = 0.5
N, K = 14, 3  # odd slice sizes on purpose (14 images x 2 views, split 7/7 -> rows 14/14; see below)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N, 1, 4, 4, generator=g)
    y = torch.arange(N) % K
    return x, y


def _model():
    torch.manual_seed(0)
    return build_model("mlp", (1, 4, 4), mlp_hidden=16, mlp_depth=2, batchnorm=False, relu=True, feat_dim=8)


def _loss(z, y):
    return losses.scl(z, y, TAU) / z.shape[0]


def _reference():
    x, y = _batch()
    model = _model()
    xv = torch.cat([x, torch.flip(x, dims=(2,))])
    yv = y.repeat(2)
    loss = _loss(model(xv), yv)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


ORDERS = [list(range(N)), [13, 2, 7, 0, 5, 11, 1, 9, 4, 12, 3, 6, 10]]


def _grad_check(rank, world, out_dir, o, order):
    x, y = _batch()
    B = torch.as_tensor(order)
    model = torch.nn.parallel.DistributedDataParallel(_model())
    local = D.split_for_rank(B, rank, world)
    xl, yl = x[local], y[local]
    xv = torch.cat([xl, torch.flip(xl, dims=(2,))])
    yv = yl.repeat(2)
    sizes = [2 * s for s in D.slice_sizes(B.numel(), world)]
    z = D.gather_rows(model(xv), sizes)
    yg = D.gather_labels(yv, sizes)
    loss = _loss(z, yg)
    loss.backward()
    grads = {n: p.grad.tolist() for n, p in model.module.named_parameters()}
    with open(os.path.join(out_dir, f"grad{o}_rank{rank}.json"), "w") as f:
        json.dump({"loss": float(loss), "grads": grads, "rows": int(z.shape[0])}, f)


def _worker(rank, world, port, out_dir):
    """One spawn does everything (process start-up dominates the cost): gradient checks, then train()."""
    from nctheory.harness.train import TrainConfig, train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for o, order in enumerate(ORDERS):
            _grad_check(rank, world, out_dir, o, order)
        train(TrainConfig(**_train_cfg()), os.path.join(out_dir, "ddp"))
    finally:
        dist.destroy_process_group()


def _train_cfg():
    return dict(dataset="synthetic", synthetic={"k": 3, "n_per_class": 10, "n_test_per_class": 4},
                model="mlp", mlp_hidden=16, mlp_depth=1, batchnorm=False, feat_dim=8, batching="reshuffle",
                batch_size=9, epochs=2, tau=0.5, progress=False, ufm_optimum=False, koromilas_metrics=False)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("o", range(len(ORDERS)))
def test_ddp_gradients_equal_global_batch(ddp_run, o):
    """2 processes, gloo: loss and every parameter gradient equal the 1-process global-batch values.

    The second order has 13 images (unequal 7/6 slices) and a permuted layout; the reference then uses
    the same 13 images. Tolerance 1e-5 relative: float32 with a different summation order.
    """
    order = ORDERS[o]
    x, y = _batch()
    sel = torch.as_tensor(order)
    model = _model()
    xs, ys = x[sel], y[sel]
    xv = torch.cat([xs, torch.flip(xs, dims=(2,))])
    ref_loss = _loss(model(xv), ys.repeat(2))
    ref_loss.backward()
    ref = {n: p.grad for n, p in model.named_parameters()}
    for rank in range(2):
        got = json.loads((ddp_run / f"grad{o}_rank{rank}.json").read_text())
        assert got["rows"] == 2 * len(order)
        assert got["loss"] == pytest.approx(ref_loss.item(), rel=1e-5)
        for n, g in ref.items():
            np.testing.assert_allclose(np.asarray(got["grads"][n]), g.numpy(), rtol=1e-4, atol=1e-6, err_msg=n)


def test_without_gather_the_gradient_differs():
    """Control: per-process losses (no gather) give a different gradient, so the test above can fail."""
    x, y = _batch()
    model = _model()
    half = [torch.arange(0, N, 2), torch.arange(1, N, 2)]
    total = 0
    for h in half:
        xv = torch.cat([x[h], torch.flip(x[h], dims=(2,))])
        total = total + _loss(model(xv), y[h].repeat(2)) / 2
    total.backward()
    g_local = {n: p.grad.clone() for n, p in model.named_parameters()}
    _, g_ref = _reference()
    assert any(not torch.allclose(g_local[n], g_ref[n], rtol=1e-3) for n in g_ref)


def test_train_loop_two_processes_matches_one(ddp_run, tmp_path):
    """train() under 2 gloo processes logs the same epoch losses and bounds as under 1 process."""
    from nctheory.runplots import read_metrics
    from nctheory.harness.train import TrainConfig, train

    train(TrainConfig(**_train_cfg()), tmp_path / "single")
    a, b = read_metrics(tmp_path / "single"), read_metrics(ddp_run / "ddp")
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        assert ra["bound"] == rb["bound"]  # same plan, same batches: the bound is identical
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)  # float32 features, different order
        assert rb["delta_to_of"] == pytest.approx(ra["delta_to_of"], rel=1e-4)

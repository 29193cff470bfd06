"""scl_distributed under 2 and 3 gloo processes on CPU against one process holding the global batch.

Each rank holds the rows r, r + W, r + 2W, ... of the global batch (uneven slices on purpose) and
computes only its own anchors. Checked, in float64 (tolerance 1e-10 relative: the same terms summed
in another order):
- the shares add up to the global loss (all_reduce SUM of the values equals losses.scl);
- the gradient on each rank's feature rows equals the single-process global-batch gradient rows,
  with no factor;
- under DDP, back-propagating W * L_r gives every rank the single-process parameter gradient of a
  tiny network, and back-propagating L_r alone gives 1/W of it (the documented scale: the test
  fails if either statement is wrong);
- the layouts include a rank without rows (N = 2, W = 3) and ranks whose anchors have no positive.
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

from nctheory.losses import scl
from nctheory.losses.distributed import scl_distributed

TAU = 0.4
REL = 1e-10
# (global labels): uneven splits over W = 2 and 3, a tiny batch (a rank of W = 3 gets no row),
# and all-unique labels (no anchor has a positive: the loss is 0, the gradient 0)
CASES = {
    "mixed": [0, 1, 2, 0, 1, 2, 0, 0, 3, 1, 1, 2, 0],  # class 3 a singleton, 13 rows
    "tiny": [0, 0],
    "unique": [0, 1, 2, 3, 4],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _features(n, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def _inputs(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).double()


def _embed(net, x):
    return torch.nn.functional.normalize(net(x), dim=1)


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    res = {}
    try:
        for name, labels in CASES.items():
            y = torch.tensor(labels)
            n = len(labels)
            own = torch.arange(rank, n, world)
            # features as leaves: value and feature gradient
            z = _features(n)[own].clone().requires_grad_(True)
            loss = scl_distributed(z, y[own], TAU, tile=2)
            loss.backward()
            total = loss.detach().clone()
            dist.all_reduce(total)
            res[name] = {"share": float(loss), "total": float(total), "grad": z.grad.tolist(), "rows": own.tolist()}
            # a tiny network under DDP: W * L_r and L_r
            x = _inputs(n)[own]
            for factor in ("W", "1"):
                ddp = torch.nn.parallel.DistributedDataParallel(_net())
                lr = scl_distributed(_embed(ddp, x), y[own], TAU, tile=3)
                (lr * (world if factor == "W" else 1)).backward()
                res[name]["params_" + factor] = {k: p.grad.tolist() for k, p in ddp.module.named_parameters()}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=[2, 3])
def run(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"w{world}")
    mp.spawn(_worker, args=(world, _free_port(), str(out)), nprocs=world, join=True)
    return world, [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def _reference(labels):
    y = torch.tensor(labels)
    n = len(labels)
    z = _features(n).requires_grad_(True)
    loss = scl(z, y, TAU)
    gz = torch.autograd.grad(loss, z)[0] if loss.requires_grad else torch.zeros_like(z)
    net = _net()
    lp = scl(_embed(net, _inputs(n)), y, TAU)
    if lp.requires_grad:
        lp.backward()
    gp = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in net.named_parameters()}
    return float(loss.detach()), gz, gp


def _close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    return float(np.abs(a - b).max(initial=0.0)) <= REL * scale


@pytest.mark.parametrize("case", sorted(CASES))
def test_shares_sum_to_the_global_loss_and_feature_gradients_are_exact(run, case):
    world, ranks = run
    loss, gz, _ = _reference(CASES[case])
    shares = [r[case]["share"] for r in ranks]
    assert _close(sum(shares), loss)
    for r in ranks:
        assert _close(r[case]["total"], loss)
        rows = r[case]["rows"]
        assert len(r[case]["grad"]) == len(rows)
        if rows:
            assert _close(r[case]["grad"], gz[rows].numpy())
    if case == "tiny" and world == 3:
        assert ranks[2][case]["rows"] == []  # a rank without rows took part


@pytest.mark.parametrize("case", sorted(CASES))
def test_ddp_parameter_gradients_need_the_factor_w(run, case):
    """After DDP's average, W * L_r gives the single-process gradient and L_r gives 1/W of it."""
    world, ranks = run
    _, _, gp = _reference(CASES[case])
    for r in ranks:
        for k, g in gp.items():
            assert _close(r[case]["params_W"][k], g.numpy()), (k, "W * L_r")
            assert _close(r[case]["params_1"][k], g.numpy() / world), (k, "L_r")
    if case == "mixed":
        assert any(float(g.abs().max()) > 1e-3 for g in gp.values())  # the comparison is not of zeros


def test_single_process_is_scl_tiled():
    """Without a process group scl_distributed is the whole loss."""
    y = torch.tensor(CASES["mixed"])
    z = _features(len(y))
    assert abs(float(scl_distributed(z, y, TAU)) - float(scl(z, y, TAU))) <= REL * abs(float(scl(z, y, TAU)))

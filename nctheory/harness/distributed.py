"""Multi-process training helpers: a differentiable all_gather so the contrastive batch is the global batch.

With torch.distributed (torchrun, DDP) every process holds a slice of the global batch B. SCL couples
all members of B (every anchor's denominator runs over the whole batch), so each process gathers the
features of all slices, evaluates the *same* global-batch loss L_B, and back-propagates into its own
slice. The batch plan therefore stays true: the batches the loss sees are exactly the plan's batches.

Gradients. Every rank computes the same scalar L. The gradient that reaches rank r's features is
dL/dz_r (its slice of dL/dZ, Z the gathered features). ``AllGather.backward`` sums the incoming
gradients over ranks (all_reduce, SUM) before taking the slice, which gives W * dL/dz_r on each of
the W ranks; DDP then *averages* parameter gradients over ranks, so every rank ends with

    (1/W) sum_r W * (dz_r/dθ)^T dL/dz_r = (dZ/dθ)^T dL/dZ,

the gradient of the single-process global-batch loss (tests/test_ddp_gloo.py checks this with 2 gloo
processes on CPU). Slices may have unequal sizes: they are padded to the largest before the gather
and the padding is dropped afterwards.

The split of a global batch among ranks is ``split_for_rank``: rank r takes positions r, r+W, r+2W, ...
so every rank knows every slice's size without communication.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_world() -> tuple[int, int]:
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def split_for_rank(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank r's share of a global batch: positions r, r + world, r + 2*world, ..."""
    return indices[rank::world]


def slice_sizes(n: int, world: int) -> list[int]:
    return [len(range(r, n, world)) for r in range(world)]


class AllGather(torch.autograd.Function):
    """Gather variable-size row blocks from every rank; backward returns this rank's block of the summed gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: tuple[int, ...]):
        rank, world = dist.get_rank(), dist.get_world_size()
        m = max(sizes)
        pad = x.new_zeros((m - x.shape[0], *x.shape[1:]))
        xp = torch.cat([x, pad], 0).contiguous()
        bufs = [torch.empty_like(xp) for _ in range(world)]
        dist.all_gather(bufs, xp)
        ctx.rank, ctx.sizes, ctx.m = rank, sizes, m
        return torch.cat([b[:s] for b, s in zip(bufs, sizes)], 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]], None


def gather_rows(x: torch.Tensor, sizes) -> torch.Tensor:
    """Differentiable all_gather of the row blocks (identity with one process)."""
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    return AllGather.apply(x, tuple(int(s) for s in sizes))


def gather_labels(y: torch.Tensor, sizes) -> torch.Tensor:
    """Non-differentiable gather of integer rows (labels), same layout as :func:`gather_rows`."""
    if not is_distributed() or dist.get_world_size() == 1:
        return y
    world = dist.get_world_size()
    m = max(sizes)
    yp = torch.cat([y, y.new_zeros((m - y.shape[0], *y.shape[1:]))], 0).contiguous()
    bufs = [torch.empty_like(yp) for _ in range(world)]
    dist.all_gather(bufs, yp)
    return torch.cat([b[:s] for b, s in zip(bufs, sizes)], 0)


def init_from_env(device_type: str) -> bool:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1). Returns True if distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True

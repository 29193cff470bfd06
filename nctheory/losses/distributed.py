"""SCL under torch.distributed: each rank computes only its own anchors' terms, against the whole batch.

The global batch B (N rows) is split among W ranks; rank r holds the rows z_r (n_r, d) with labels
y_r. The sum-form SCL (Kini et al. 2023 Eq. 2; conventions of :mod:`nctheory.losses.scl`) is a sum
over anchors, L(B) = sum_r L_r with

    L_r = sum_{i in rank r, |P(i)| > 0} [ LSE_{l in B, l != i}(h_i.h_l/tau) - h_i.(S_{y_i} - h_i)/((n_{y_i} - 1) tau) ]

(S_c, n_c: class sums and sizes over the *global* batch; anchors without a positive in B contribute 0
and stay negatives). :func:`scl_distributed` gathers every rank's features with a differentiable
all_gather (:func:`gather_rows`), then evaluates only its own n_r anchor rows against the N gathered
rows with the tiled kernel (:mod:`nctheory.losses.tiled`, anchor-subset variant). Compute per rank is
4 n_r N d multiply-adds (forward + backward) and memory O(N d) (the gathered features) plus tiles, so
both fall as 1/W in the n^2 part; nothing N x N is formed on any rank.

Gradient scale (stated exactly; it is the usual bug of distributed contrastive losses):

- the value returned on rank r is its share L_r; the global loss is sum_r L_r
  (``dist.all_reduce(loss.detach(), SUM)``), not the mean;
- the gradient that reaches rank r's features is exactly dL/dz_r of the global loss L (no factor):
  the anchor side of L_r flows directly into z_r, and the contrast side of every rank's share (L_s
  depends on z_r through the gathered rows) comes back through the gather's backward, which sums the
  W ranks' gradients with respect to the gathered matrix (all_reduce SUM) and keeps rank r's rows;
- DDP *averages* parameter gradients over the W ranks: after ``L_r.backward()`` every rank holds
  (1/W) sum_r (dz_r/dθ)^T dL/dz_r = (1/W) dL/dθ. **To get the single-process global-batch gradient
  dL/dθ, back-propagate W * L_r** (``(loss * dist.get_world_size()).backward()``); without the factor
  the step is that of L / W. The same holds after any normalisation of L (e.g. dividing L_r by the
  global number of anchors N gives the mean form; then back-propagate W * L_r / N).

Every rank must call backward (the gather's backward is a collective). Rows may be split unevenly
(a rank may even hold none); sizes are exchanged inside. Labels are gathered without gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from nctheory.losses._inputs import as_features, as_labels, check_tau
from nctheory.losses.tiled import _check_tile, _compact_labels, _RowsLSE, scl_tiled


def _world(group) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _padded_all_gather(x: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    world = len(sizes)
    m = max(sizes)
    xp = torch.cat([x, x.new_zeros((m - x.shape[0], *x.shape[1:]))], 0).contiguous()
    bufs = [torch.empty_like(xp) for _ in range(world)]
    dist.all_gather(bufs, xp, group=group)
    return torch.cat([b[:s] for b, s in zip(bufs, sizes)], 0)


class _GatherRows(torch.autograd.Function):
    """Forward: the rows of every rank, rank-major. Backward: the sum over ranks of the incoming
    gradients (all_reduce SUM), restricted to this rank's rows: the gradient of sum_r L_r."""

    @staticmethod
    def forward(ctx, x, sizes, group):
        ctx.sizes, ctx.group = sizes, group
        ctx.rank = dist.get_rank(group)
        return _padded_all_gather(x, list(sizes), group)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]], None, None


def row_sizes(n_local: int, device, group=None) -> list[int]:
    """Every rank's number of rows (one small all_gather)."""
    _, world = _world(group)
    if world == 1:
        return [n_local]
    t = torch.tensor([n_local], device=device, dtype=torch.long)
    out = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(out, t, group=group)
    return [int(v) for v in out]


def gather_rows(x: torch.Tensor, sizes=None, group=None) -> torch.Tensor:
    """Differentiable all_gather of the ranks' row blocks (rank-major); the identity with one process.

    Its backward returns to each rank the sum over ranks of the gradients with respect to the
    gathered tensor, on that rank's rows (so a sum of per-rank losses gets its exact gradient).
    """
    _, world = _world(group)
    if world == 1:
        return x
    sizes = tuple(row_sizes(x.shape[0], x.device, group) if sizes is None else (int(s) for s in sizes))
    return _GatherRows.apply(x, sizes, group)


def scl_distributed(z_local, y_local, tau: float = 1.0, *, group=None, tile: int | None = None) -> torch.Tensor:
    """This rank's share L_r of the global-batch sum-form SCL (see the module docstring for the scale).

    z_local: (n_r, d) this rank's features, y_local: (n_r,) their labels; the global batch is the
    concatenation over ranks in rank order. Returns L_r (0-dim, the compute dtype of
    :mod:`nctheory.losses.tiled`); sum_r L_r = ``losses.scl(Z, Y, tau)`` of the gathered batch, and
    the gradient on z_local is that loss's gradient on these rows. Under DDP back-propagate
    W * L_r for the global-batch parameter gradient. Without an initialised process group (or with
    one process) this is ``scl_tiled(z_local, y_local, tau)``.
    """
    z = as_features(z_local)
    y = as_labels(y_local, z.shape[0], z.device)
    tau = check_tau(tau)
    tile = _check_tile(tile)
    rank, world = _world(group)
    if world == 1:
        return scl_tiled(z, y, tau, tile=tile)
    H = z  # as_features: float32 at least (bf16 / fp16 computed in float32)
    sizes = row_sizes(H.shape[0], H.device, group)
    Z = _GatherRows.apply(H, tuple(sizes), group)
    Y = _padded_all_gather(y, sizes, group)
    inv, counts = _compact_labels(Y)
    offset = sum(sizes[:rank])
    rows = torch.arange(offset, offset + H.shape[0], device=H.device)
    sums = Z.new_zeros((counts.numel(), Z.shape[1])).index_add(0, inv, Z)  # global class sums
    ia = inv[rows]
    lse = _RowsLSE.apply(H, Z, rows, tau, tile)
    n_c = counts[ia]
    pos = (H * (sums[ia] - H)).sum(1) / ((n_c - 1).clamp(min=1).to(H.dtype) * tau)
    terms = torch.where(n_c >= 2, lse - pos, torch.zeros_like(pos))
    return terms.sum()

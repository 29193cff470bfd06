"""Tiled exact SCL: the losses of :mod:`nctheory.losses.scl` in O(n d) memory, with exact gradients.

Every SCL-type loss splits, for an anchor i with positive set P(i) (the other members of its class in
its batch) and contrast set C(i) (every other member of its batch), into

    term_i = LSE_{l in C(i)}(h_i.h_l / tau) - (1/|P(i)|) sum_{j in P(i)} h_i.h_j / tau          (*)

(Kini et al. 2023 Eq. 2 written per anchor; see :mod:`nctheory.losses.scl`). The second part needs
no n x n matrix: sum_{j in P(i)} h_j = S_c - h_i with S_c the class sum, so it is
h_i.(S_c - h_i) / ((n_c - 1) tau) for an anchor of class c with n_c >= 2 members. Only the first
part couples every pair. It is computed here by two custom autograd functions:

- ``_SymLSE``: lse_i = LSE_{l != i}(h_i.h_l/tau) for every row of one (n, d) matrix. The forward
  runs over the pairs of row tiles (I, J), J >= I, computes the tile S_IJ = H_I H_J^T / tau once and
  folds it into the running maxima and sums (online log-sum-exp) of both the rows of I (row
  direction) and the rows of J (column direction);
  the backward recomputes each tile, forms G_IJ = g_I exp(S_IJ - lse_I) and G_JI^T, and accumulates
  dL/dH_I += (G_IJ + G_JI^T) H_J / tau and dL/dH_J += (G_IJ + G_JI^T)^T H_I / tau (anchor side and
  contrast side of both tiles). The symmetry halves the matrix products: 2 n^2 d multiply-adds for
  forward + backward, against 3 n^2 d for the dense path.
- ``_RowsLSE``: lse_a = LSE_{c != self(a)}(a.c/tau) for a set of anchor rows A (m, d) against
  contrast rows C (N, d), each anchor optionally excluding one contrast row (itself). This is the
  subset-of-anchors variant (distributed training, SupCon's ``contrast_mode="one"``, prototypes).

Both save only their inputs and the (n,) LSE values (O(n d + n)); no n x n tensor outlives a tile
(tile x tile temporaries, freed after each tile). The positive part is built from O(n d) tensors with
ordinary autograd (index_add, gathers), so the whole loss keeps O(n d) tensors for backward.
First-order gradients only (the custom functions are ``once_differentiable``). On the CPU the tiles
are shared among torch.get_num_threads() Python threads running single-threaded torch ops (see
``_run_split``: the intra-op thread count is 1 during a call and restored after it); on other
devices the tiles run in order on the current stream.

Precision: float64 and float32 inputs are computed in their own dtype; bfloat16 / float16 inputs are
computed in float32 (the loss comes back as float32; the gradient reaches the input in its dtype
through the cast); the entry points run outside autocast (``_precision.outside_autocast``). Anchors without a positive contribute 0 and still act as negatives, exactly as in
the dense definitions, which stay the reference these functions are tested against
(tests/test_tiled.py).

Entry points mirror the dense ones: :func:`scl_tiled`, :func:`scl_batches_tiled`,
:func:`supcon_mean_tiled` (also the reference SupCon semantics of ``contrast_mode="one"``, an
explicit ``mask`` and SimCLR) and :func:`scl_with_prototypes_tiled`; ``tile`` is the tile edge
(rows per tile), default :data:`DEFAULT_TILE`. The public losses (``losses.scl``, ``scl_batches``,
``supcon_mean``, ``scl_with_prototypes``, ``supcon`` / ``SupConLoss``) call these kernels themselves with
``impl="auto"`` from ``losses.scl.TILED_MIN_ROWS`` rows per batch, or with ``impl="tiled"`` at any size.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from nctheory.errors import InputError
from nctheory.losses._inputs import (as_batches, as_features, as_index_array, as_labels, check_tau, prototype_inputs,
                                     supcon_inputs, whole_number)
from nctheory.losses._precision import outside_autocast

NEG_INF = float("-inf")

#: default tile edge: 512 x 512 float32 temporaries are 1 MiB each. The tile sweep of
#: benchmarks/RESULTS-loss.md (n = 16384, d = 128, float32, 2-core CPU, 2 rounds) is where this number
#: comes from: 512 took the least wall time in both rounds and less CPU time than 1024 and 2048 (256
#: was within a few per cent of it). Chosen on the CPU; not measured on a GPU.
DEFAULT_TILE = 512


# ---------------------------------------------------------------- helpers
def _check_tile(tile) -> int:
    if tile is None:
        return DEFAULT_TILE
    return whole_number(tile, "tile", 1)


def _blocks(n: int, t: int):
    return [(s, min(s + t, n)) for s in range(0, n, t)]


def _log_weights(g: torch.Tensor, lse: torch.Tensor):
    """Shift for the softmax tiles: exp(s - lse) * g = exp(s - (lse - log g)) when every g >= 0.

    Returns (shift, scale): scale is None when g is folded into the shift (g = 0 gives shift +inf,
    whose tile entries exp(s - inf) are 0), else the row factors to multiply by. Rows with lse = -inf
    have no contrast row at all (every tile entry is -inf); their shift is set to 0 so that no
    -inf - (-inf) appears.
    """
    lse = torch.where(torch.isneginf(lse), torch.zeros_like(lse), lse)
    if bool((g >= 0).all()):
        return lse - torch.log(g), None
    return lse, g


def _online_update(m: torch.Tensor, s: torch.Tensor, S: torch.Tensor, dim: int, buf: torch.Tensor) -> None:
    """Fold tile S into running (max m, sum s) of the rows (dim=1) or columns (dim=0) of S, in place.

    After every tile, LSE = m + log(s) over the entries seen so far: the new maximum shifts the old
    sum by exp(m_old - m_new), and the tile's entries enter as exp(S - m_new) <= 1 (exact for any
    logits; no overflow). An all -inf slice (no contrast entry yet) keeps m = -inf, s = 0.
    buf: scratch of S's shape (holds the tile's exponentials).
    """
    new = torch.maximum(m, S.amax(dim))
    safe = torch.where(torch.isneginf(new), torch.zeros_like(new), new)
    torch.sub(S, safe.unsqueeze(dim), out=buf).exp_()
    s.mul_(torch.exp(m - safe)).add_(buf.sum(dim))
    m.copy_(new)


def _exclude_self(S: torch.Tensor, self_rows: torch.Tensor | None, j0: int, j1: int) -> None:
    """Set S[r, self_rows[r] - j0] = -inf for the rows whose own contrast column lies in [j0, j1)."""
    if self_rows is None:
        return
    hit = (self_rows >= j0) & (self_rows < j1)
    if bool(hit.any()):
        r = hit.nonzero().squeeze(1)
        S[r, self_rows[r] - j0] = NEG_INF


def _row_tiles(A, C, self_rows, inv_tau: float, row_blocks, col_blocks):
    """The logit tiles of the anchor rows A against the contrast rows C, recomputed: yields
    (i0, i1, j0, j1, S) with S = A[i0:i1] C[j0:j1]^T / tau, each anchor's own column (``self_rows``) set to
    -inf; the forward and the backward of :class:`_RowsLSE` walk the same tiles."""
    for i0, i1 in row_blocks:
        AI = A[i0:i1] * inv_tau
        sI = None if self_rows is None else self_rows[i0:i1]
        for j0, j1 in col_blocks:
            S = torch.mm(AI, C[j0:j1].T)
            _exclude_self(S, sI, j0, j1)
            yield i0, i1, j0, j1, S


# ---------------------------------------------------------------- parallel tiles on the CPU
def _workers(device: torch.device, n_items: int) -> int:
    """How many Python threads share the tiles: torch's intra-op thread count on the CPU, else 1."""
    if device.type != "cpu" or n_items < 2:
        return 1
    return max(1, min(torch.get_num_threads(), n_items))


def _run_split(items: list, work, device: torch.device) -> list:
    """work(items[k::T]) on T threads (T from :func:`_workers`); returns the T results in order k.

    On the CPU the tiles are spread over torch.get_num_threads() Python threads, each running
    single-threaded torch ops (the intra-op thread count is set to 1 for the call and restored after):
    tile ops are small, and one OpenMP parallel region per op (about 17 per tile pair) made the
    kernels several times slower whenever another job shared the cores (measured in
    benchmarks/RESULTS-loss.md). The split is static (thread k takes items k, k+T, ...) and the
    per-thread partial results are merged in thread order, so a result is reproducible bit for bit
    for a given thread count. Calls from several Python threads at once take turns (``_THREADS_LOCK``):
    the intra-op thread count is process-wide, so two overlapping set/restore pairs could otherwise
    leave it at 1.
    """
    from concurrent.futures import ThreadPoolExecutor

    def run(part):  # grad mode is thread-local: the tiles never record a graph
        with torch.no_grad():
            return work(part)

    with _THREADS_LOCK:
        T = _workers(device, len(items))
        if T > 1:
            prev = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(T) as ex:
                    futures = [ex.submit(run, items[k::T]) for k in range(T)]
                    return [f.result() for f in futures]
            finally:
                torch.set_num_threads(prev)
    return [work(items)]


_THREADS_LOCK = threading.Lock()


def _merge_lse(parts):
    """Combine per-thread running (max, sum) pairs into one (max, sum) (exact log-sum-exp merge)."""
    if len(parts) == 1:
        return parts[0]
    M = torch.stack([p[0] for p in parts])
    S = torch.stack([p[1] for p in parts])
    mx = M.amax(0)
    safe = torch.where(torch.isneginf(mx), torch.zeros_like(mx), mx)
    return mx, (S * torch.exp(M - safe)).sum(0)


def _sum_parts(parts):
    out = parts[0]
    for p in parts[1:]:
        out.add_(p)
    return out


# ---------------------------------------------------------------- the two tiled kernels
class _SymLSE(torch.autograd.Function):
    """lse_i = LSE_{l != i}(h_i.h_l / tau) for every row of H, by symmetric tile pairs (see module)."""

    @staticmethod
    def forward(ctx, H: torch.Tensor, tau: float, tile: int) -> torch.Tensor:
        n = H.shape[0]
        inv_tau = 1.0 / tau
        blocks = _blocks(n, tile)
        pairs = [(bi, bj) for bi in range(len(blocks)) for bj in range(bi, len(blocks))]

        def work(my_pairs):
            m, s = H.new_full((n,), NEG_INF), H.new_zeros(n)  # running max and sum of exp(logit - max)
            buf = H.new_empty((min(n, tile), min(n, tile)))
            for bi, bj in my_pairs:
                (i0, i1), (j0, j1) = blocks[bi], blocks[bj]
                S = torch.mm(H[i0:i1] * inv_tau, H[j0:j1].T)
                if bi == bj:
                    S.fill_diagonal_(NEG_INF)
                b = buf[: i1 - i0, : j1 - j0]
                _online_update(m[i0:i1], s[i0:i1], S, 1, b)
                if bi != bj:
                    _online_update(m[j0:j1], s[j0:j1], S, 0, b)
                del S
            return m, s

        m, s = _merge_lse(_run_split(pairs, work, H.device))
        lse = m.add_(s.log_())
        ctx.save_for_backward(H, lse)
        ctx.tau, ctx.tile = tau, tile
        return lse

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        H, lse = ctx.saved_tensors
        tau, tile = ctx.tau, ctx.tile
        n = H.shape[0]
        inv_tau = 1.0 / tau
        shift, scale = _log_weights(g.to(H.dtype), lse)
        blocks = _blocks(n, tile)
        pairs = [(bi, bj) for bi in range(len(blocks)) for bj in range(bi, len(blocks))]

        def work(my_pairs):
            dH = torch.zeros_like(H)
            for bi, bj in my_pairs:
                (i0, i1), (j0, j1) = blocks[bi], blocks[bj]
                S = torch.mm(H[i0:i1] * inv_tau, H[j0:j1].T)
                if bi == bj:
                    S.fill_diagonal_(NEG_INF)
                # M = G_IJ + (G_JI)^T with G_ab = g_a exp(s_ab - lse_a); S is overwritten by the second
                M = torch.sub(S, shift[i0:i1, None]).exp_()
                S.sub_(shift[None, j0:j1]).exp_()
                if scale is not None:
                    M.mul_(scale[i0:i1, None])
                    S.mul_(scale[None, j0:j1])
                M.add_(S)
                del S
                dH[i0:i1].addmm_(M, H[j0:j1])
                if bi != bj:
                    dH[j0:j1].addmm_(M.T, H[i0:i1])
                del M
            return dH

        dH = _sum_parts(_run_split(pairs, work, H.device))
        return dH.mul_(inv_tau), None, None


class _RowsLSE(torch.autograd.Function):
    """lse_a = LSE_{c != self(a)}(a.c / tau) for anchor rows A against contrast rows C.

    self_rows: None, or a (m,) long tensor giving for each anchor the contrast row it excludes
    (-1 for none). A and C may be views of one tensor: autograd adds the two gradients.
    """

    @staticmethod
    def forward(ctx, A, C, self_rows, tau: float, tile: int):
        m, N = A.shape[0], C.shape[0]
        inv_tau = 1.0 / tau
        mx, s = A.new_full((m,), NEG_INF), A.new_zeros(m)
        cblocks = _blocks(N, tile)

        def work(my_rows):  # row blocks are disjoint between threads: they write their own slices
            buf = A.new_empty((min(m, tile), min(N, tile)))
            for i0, i1, j0, j1, S in _row_tiles(A, C, self_rows, inv_tau, my_rows, cblocks):
                _online_update(mx[i0:i1], s[i0:i1], S, 1, buf[: i1 - i0, : j1 - j0])

        _run_split(_blocks(m, tile), work, A.device)
        lse = mx.add_(s.log_())
        if self_rows is None:
            ctx.save_for_backward(A, C, lse)
        else:
            ctx.save_for_backward(A, C, lse, self_rows)
        ctx.tau, ctx.tile = tau, tile
        return lse

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        A, C, lse, *rest = ctx.saved_tensors
        self_rows = rest[0] if rest else None
        tau, tile = ctx.tau, ctx.tile
        need_a, need_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        m, N = A.shape[0], C.shape[0]
        inv_tau = 1.0 / tau
        shift, scale = _log_weights(g.to(A.dtype), lse)
        dA = torch.zeros_like(A) if need_a else None
        cblocks = _blocks(N, tile)

        def work(my_rows):  # dA: disjoint row slices; dC: one accumulator per thread, summed after
            dC = torch.zeros_like(C) if need_c else None
            for i0, i1, j0, j1, S in _row_tiles(A, C, self_rows, inv_tau, my_rows, cblocks):
                S.sub_(shift[i0:i1, None]).exp_()  # the softmax tile g_a exp(s_ac - lse_a)
                if scale is not None:
                    S.mul_(scale[i0:i1, None])
                if need_a:
                    dA[i0:i1].addmm_(S, C[j0:j1])
                if need_c:
                    dC[j0:j1].addmm_(S.T, A[i0:i1])
            return dC

        parts = _run_split(_blocks(m, tile), work, A.device)
        dC = _sum_parts(parts) if need_c else None
        return (None if dA is None else dA.mul_(inv_tau), None if dC is None else dC.mul_(inv_tau),
                None, None, None)


def lse_others(H: torch.Tensor, tau: float, tile: int | None = None) -> torch.Tensor:
    """(n,) tensor lse_i = log sum_{l != i} exp(h_i.h_l / tau), tiled; -inf for n = 1. Differentiable."""
    return _SymLSE.apply(H, float(tau), _check_tile(tile))


def lse_rows(A: torch.Tensor, C: torch.Tensor, tau: float, self_rows: torch.Tensor | None = None,
             tile: int | None = None) -> torch.Tensor:
    """(m,) tensor lse_a = log sum_{c != self_rows[a]} exp(a.c / tau), tiled. Differentiable in A and C.

    self_rows: None (no exclusion) or (m,) long indices into C's rows (-1: exclude nothing).
    """
    if self_rows is not None:
        self_rows = self_rows.to(device=A.device, dtype=torch.long)
    return _RowsLSE.apply(A, C, self_rows, float(tau), _check_tile(tile))


# ---------------------------------------------------------------- SCL built on the kernels
def _compact_labels(y: torch.Tensor):
    """(inverse, counts): labels renumbered 0..k'-1 in sorted order, and each class's size."""
    _, inv, counts = torch.unique(y, return_inverse=True, return_counts=True)
    return inv, counts


def _scl_core(H: torch.Tensor, inv: torch.Tensor, counts: torch.Tensor, tau: float, tile: int,
              anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of (*) over the anchors (all rows when anchors is None) of one batch H (compute dtype)."""
    n = H.shape[0]
    sums = H.new_zeros((counts.numel(), H.shape[1])).index_add(0, inv, H)  # class sums S_c
    if anchors is None:
        lse = _SymLSE.apply(H, tau, tile) if n > 1 else H.new_full((n,), NEG_INF)
        Ha, ia = H, inv
    else:
        Ha, ia = H[anchors], inv[anchors]
        lse = _RowsLSE.apply(Ha, H, anchors, tau, tile)
    n_c = counts[ia]
    has = n_c >= 2
    pos = (Ha * (sums[ia] - Ha)).sum(1) / ((n_c - 1).clamp(min=1).to(H.dtype) * tau)
    terms = torch.where(has, lse - pos, torch.zeros_like(pos))
    return terms.sum()


def _as_anchor_index(anchors, n: int, device) -> torch.Tensor | None:
    """None, or a (m,) long tensor of distinct row indices in [0, n) (m = 0 allowed)."""
    if anchors is None:
        return None
    arr = as_index_array(anchors, "anchors")
    if arr.size == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InputError("anchors must be a 1-dimensional list of integer row indices")
    if arr.min() < 0 or arr.max() >= n:
        raise InputError(f"anchors has index {int(arr.min() if arr.min() < 0 else arr.max())} outside [0, {n})")
    if np.unique(arr).size != arr.size:
        raise InputError("anchors repeats a row index")
    return torch.as_tensor(arr.astype(np.int64), device=device)


@outside_autocast
def scl_tiled(z, y, tau: float = 1.0, *, anchors=None, tile: int | None = None) -> torch.Tensor:
    """Full-batch SCL in the papers' sum form (Kini et al. Eq. 2), tiled; equals ``losses.scl``.

    L(H) = sum_i [LSE_{l != i}(h_i.h_l/tau) - h_i.(S_{y_i} - h_i)/((n_{y_i} - 1) tau)] over anchors
    whose class has n_{y_i} >= 2 samples; anchors without a positive contribute 0 and remain
    negatives of the others (module convention of :mod:`nctheory.losses.scl`).

    anchors: None (every row is an anchor: the loss ``scl(z, y, tau)``) or a list/tensor of distinct
    row indices: the sum of those anchors' terms only, each still against the whole batch (the rows
    are contrasts either way). Summing over a partition of the rows gives ``scl``. Memory O(n d);
    ``tile`` rows per tile (default DEFAULT_TILE). bf16/fp16 are computed in float32.
    """
    z = as_features(z)
    y = as_labels(y, z.shape[0], z.device)
    tau = check_tau(tau)
    tile = _check_tile(tile)
    if z.shape[0] == 0:
        raise InputError("scl needs at least one sample")
    H = z  # as_features: float32 at least (bf16 / fp16 computed in float32)
    idx = _as_anchor_index(anchors, H.shape[0], H.device)
    if idx is not None and idx.numel() == 0:
        return H.sum() * 0
    inv, counts = _compact_labels(y)
    return _scl_core(H, inv, counts, tau, tile, idx)


@outside_autocast
def scl_batches_tiled(z, y, batches, tau: float = 1.0, multiset: bool = False, *,
                      tile: int | None = None) -> torch.Tensor:
    """Mini-batch SCL (Kini et al. Eq. 4), tiled: sum over the batches B of L_B; equals ``losses.scl_batches``.

    batches: iterable of index lists (a sample may appear in several batches, and then contributes to
    each). Indices are distinct within a batch unless ``multiset=True``: then every occurrence of a
    sample is a copy with the same feature (the rows of the batch are gathered with repetition, so a
    copy is a positive of the other copies of its sample and a term of every denominator, exactly as
    in ``losses.scl_batches(..., multiset=True)``). Same no-positive convention as :func:`scl_tiled`.
    """
    z = as_features(z)
    y = as_labels(y, z.shape[0], z.device)
    tau = check_tau(tau)
    tile = _check_tile(tile)
    H = z
    total = H.new_zeros(())
    for b in as_batches(batches, z.shape[0], multiset=multiset):
        b = b.to(z.device)
        inv, counts = _compact_labels(y[b])
        total = total + _scl_core(H[b], inv, counts, tau, tile)
    return total


class _RowBlockMatmul(torch.autograd.Function):
    """out = M @ X with a constant (r, s) matrix M converted to X's dtype one row block at a time.

    Saves M as given (no converted copy); the gradient X^T-side is M^T @ dOut, again by row blocks.
    """

    @staticmethod
    def forward(ctx, M, X, tile: int):
        out = X.new_empty((M.shape[0], X.shape[1]))
        for i0, i1 in _blocks(M.shape[0], tile):
            torch.mm(M[i0:i1].to(X.dtype), X, out=out[i0:i1])
        ctx.save_for_backward(M)
        ctx.tile = tile
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (M,) = ctx.saved_tensors
        dX = dout.new_zeros((M.shape[1], dout.shape[1]))
        for i0, i1 in _blocks(M.shape[0], ctx.tile):
            dX.addmm_(M[i0:i1].to(dout.dtype).T, dout[i0:i1])
        return None, dX, None


@outside_autocast
def supcon_mean_tiled(features, labels=None, tau: float = 0.07, base_tau: float = 0.07, *, mask=None,
                      contrast_mode: str = "all", tile: int | None = None) -> torch.Tensor:
    """The reference SupCon loss (Khosla et al., SupContrast ``SupConLoss``), tiled.

    features: (bsz, n_views, ...) (trailing dims flattened), labels: (bsz,) or None, mask: (bsz, bsz)
    or None (not both). The views are stacked view-major into N = n_views * bsz contrast rows
    (row v * bsz + j is view v of sample j). Positive weights between anchor row a (sample i) and
    contrast row c (sample j), c != a: M_ij, with M = [y_i == y_j] for labels, the given mask
    (real weights allowed, possibly asymmetric; a constant: no gradient flows into it), or the
    identity when both are None (SimCLR: each sample's other views are its positives). Anchors:
    every contrast row (``contrast_mode="all"``) or the first views only (``"one"``, rows 0..bsz-1).
    For anchor a, with s_ac = f_a.f_c/tau and lse_a = LSE_{c != a} s_ac over all N rows,

        l_a = (tau/base_tau) * (mpp_a lse_a - sum_{c != a} M_{i(a) j(c)} s_ac) / mpp'_a,
        mpp_a = sum_{c != a} M_{i(a) j(c)},   mpp'_a = 1 if mpp_a < 1e-6 else mpp_a,

    and the loss is the mean of l_a over all anchors (those without positives included, where l_a
    is 0): the reference's guarded convention (its stored file gives NaN there). With labels and
    ``"all"`` this is ``losses.supcon_mean``, i.e. (tau/base_tau) scl(stacked, labels, tau) / N.
    The weighted positive sum is f_a.(Q_i - M_ii f_a) with Q = M @ (sum of the views): no N x N
    tensor (a user-given mask is (bsz, bsz) itself and is read a row block at a time).
    :func:`supcon_terms_tiled` gives the l_a themselves (``nctheory.losses.supcon`` reduces them).
    """
    f, y, m = supcon_inputs(features, labels, mask, contrast_mode)
    tau, base_tau = check_tau(tau), check_tau(base_tau, "base_tau")
    terms, _ = supcon_terms_tiled(f, y, m, tau, contrast_mode, _check_tile(tile))
    return (tau / base_tau) * terms.mean()


def supcon_terms_tiled(f: torch.Tensor, y: torch.Tensor | None, mask: torch.Tensor | None, tau: float,
                       contrast_mode: str = "all", tile: int = DEFAULT_TILE):
    """(terms, mpp): the per-anchor SupCon terms l_a / (tau/base_tau) of :func:`supcon_mean_tiled` and each
    anchor's positive mass mpp_a, for inputs already checked by ``_inputs.supcon_inputs`` (f (bsz,
    n_views, d) in the compute dtype, y long labels or None, mask or None). Anchors in the order of the
    reference: view-major (row v * bsz + i) for "all", the first views for "one"."""
    bsz, views, _ = f.shape
    C = torch.cat(torch.unbind(f, dim=1), dim=0)  # (N, d), view-major
    N = C.shape[0]
    dt = C.dtype
    Fsum = f.sum(1)  # (bsz, d): sum over the views of each sample
    if y is not None:
        inv, counts = _compact_labels(y)
        Q = Fsum.new_zeros((counts.numel(), Fsum.shape[1])).index_add(0, inv, Fsum)[inv]
        row_mass, diag = counts[inv].to(dt), torch.ones(bsz, dtype=dt, device=C.device)
    elif mask is not None:
        Q = _RowBlockMatmul.apply(mask, Fsum, tile)
        row_mass = torch.cat([mask[i0:i1].to(dt).sum(1) for i0, i1 in _blocks(bsz, tile)])
        diag = torch.diagonal(mask).to(dt)
    else:  # SimCLR
        Q = Fsum
        row_mass, diag = torch.ones(bsz, dtype=dt, device=C.device), torch.ones(bsz, dtype=dt, device=C.device)
    if contrast_mode == "all":
        A, reps = C, views
        lse = _SymLSE.apply(C, tau, tile) if N > 1 else C.new_full((N,), NEG_INF)
    else:
        A, reps = C[:bsz], 1
        lse = _RowsLSE.apply(A, C, torch.arange(bsz, device=C.device), tau, tile)
    Qa, ma, da = Q.repeat(reps, 1), row_mass.repeat(reps), diag.repeat(reps)
    mpp = views * ma - da
    pos = (A * (Qa - da[:, None] * A)).sum(1) / tau  # sum_{c != a} M s_ac
    mpp_g = torch.where(mpp < 1e-6, torch.ones_like(mpp), mpp)
    lse_part = torch.where(mpp != 0, mpp * lse, torch.zeros_like(lse))
    return (lse_part - pos) / mpp_g, mpp


@outside_autocast
def scl_with_prototypes_tiled(z, y, W, n_w: int, tau: float = 1.0, batches=None, *,
                              tile: int | None = None) -> torch.Tensor:
    """SCL with n_w copies of fixed prototypes in every batch (Gill et al. 2023 §2, Eq. 1), tiled.

    Equals ``losses.scl_with_prototypes`` (same conventions: every member of B ∪ W_rep is an anchor,
    the n_w copies of a prototype counted n_w times; the copies enter a denominator as a log(n_w)
    offset, a prototype anchor's own class as log(n_w - 1); anchors without a positive contribute 0).
    Per batch B of n samples:

    - sample anchor i: LSE = logaddexp(LSE_{l in B, l != i} h_i.h_l/tau, log n_w + LSE_c h_i.w_c/tau)
      (both tiled), positives n_{B,y_i} - 1 + n_w with sum h_i.(S_{y_i} - h_i)/tau + n_w h_i.w_{y_i}/tau;
    - prototype anchor c (weight n_w): LSE = logaddexp(LSE_{l in B} w_c.h_l/tau (tiled),
      LSE_{c'} (w_c.w_{c'}/tau + log mult_{cc'})) with mult = n_w off the diagonal, n_w - 1 on it
      (k x k, dense: k is the number of prototypes); positives n_{B,c} + n_w - 1 with sum
      w_c.S_c/tau + (n_w - 1) w_c.w_c/tau.

    z: (n, d), y: (n,) labels in [0, k), W: (k, d) prototypes (a constant: no gradient flows into
    it), batches: None for the full batch. Memory O((n + k) d + k^2).
    """
    z, y, W, n_w, tau = prototype_inputs(z, y, W, n_w, tau)  # z: float32 at least; W in z's dtype
    tile = _check_tile(tile)
    Q = W @ W.T / tau
    total = z.new_zeros(())
    for b in as_batches(batches, z.shape[0]):
        b = b.to(z.device)
        total = total + _prototype_batch_tiled(z[b], y[b], W, Q, n_w, tau, tile)
    return total


def _prototype_batch_tiled(Hb, yb, W, Q, n_w: int, tau: float, tile: int = DEFAULT_TILE) -> torch.Tensor:
    """One batch of :func:`scl_with_prototypes_tiled`; same arguments as scl._prototype_batch (drop-in)."""
    if n_w == 0:
        inv, counts = _compact_labels(yb)
        return _scl_core(Hb, inv, counts, tau, tile)
    n, k = Hb.shape[0], W.shape[0]
    log_nw = math.log(n_w)
    sums = Hb.new_zeros((k, Hb.shape[1])).index_add(0, yb, Hb)  # class sums over the batch, (k, d)
    n_c = torch.bincount(yb, minlength=k).to(Hb.dtype)

    # sample anchors
    lse_hh = _SymLSE.apply(Hb, tau, tile) if n > 1 else Hb.new_full((n,), NEG_INF)
    lse_s = torch.logaddexp(lse_hh, _RowsLSE.apply(Hb, W, None, tau, tile) + log_nw)
    cnt_s = n_c[yb] - 1 + n_w
    pos_s = (Hb * (sums[yb] - Hb)).sum(1) / tau + n_w * (Hb * W[yb]).sum(1) / tau
    sample_part = (lse_s - pos_s / cnt_s).sum()  # cnt_s >= n_w >= 1

    # prototype anchors
    eye_k = torch.eye(k, dtype=torch.bool, device=Hb.device)
    mult = torch.full((k, k), float(n_w), dtype=Hb.dtype, device=Hb.device) - eye_k.to(Hb.dtype)
    log_mult = torch.where(mult > 0, mult.clamp(min=1).log(), torch.full_like(mult, NEG_INF))
    lse_p = torch.logaddexp(_RowsLSE.apply(W, Hb, None, tau, tile), torch.logsumexp(Q + log_mult, 1))
    cnt_p = n_c + (n_w - 1)
    pos_p = (sums * W).sum(1) / tau + (n_w - 1) * torch.diagonal(Q)
    proto_terms = torch.where(cnt_p > 0, lse_p - pos_p / cnt_p.clamp(min=1), torch.zeros_like(lse_p))
    return sample_part + n_w * proto_terms.sum()

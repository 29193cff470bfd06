"""Sets of unordered class pairs {a, b} (a != b) over k classes, in memory that follows the plan.

``check-batches`` needs, for a plan, which class pairs are joined by an orthogonality edge (some
batch holds both classes, one of them at least twice) and, for the paper's Def. 4 graph, which pairs
co-occur at all. A batch B contributes the pairs {a, c} with a in A_B (its "anchor" classes: those
with a positive there, or every class present for Def. 4) and c in C_B (every class present).
Up to this module's introduction the set was a dense k x k matrix built from (batches x k)
indicator matrices, so memory grew with k^2 whatever the plan held: with 40,000 classes x 2 samples
the check failed at its first allocation (benchmarks/RESULTS-check-batches.md).

:class:`ClassPairs` holds the same set in one of three representations, chosen by size; the
answers do not depend on the choice (tests/test_batching.py forces each one and compares):

``dense``   a k x k boolean matrix, for k <= :data:`DENSE_MAX_K` (4 MiB at most); filled by
            (anchor indicator)^T @ (presence indicator) products over slices of batches.
``sparse``  the sorted distinct keys a * k + b (a < b) of the covered pairs: 8 bytes per covered pair
            plus a buffer of :data:`PAIR_CHUNK` new pairs, so memory follows what the plan covers.
``bitset``  k rows of k bits (k^2 / 8 bytes), entered once the sparse keys would take more room
            (more than k^2 / 64 covered pairs): row a holds the partners c of a as an anchor
            (rows of A_B are OR-ed with the packed mask of C_B), made symmetric by :meth:`finish`
            (8 x 8 bit tiles transposed as 64-bit words).

A batch holding every class as an anchor covers every pair (``complete``; nothing else is stored).
Memory never exceeds ``max_bytes``: before the keys or the bitset would, :class:`InputError` says
how much the plan's pairs need (CLI exit 2, one line) -- or, with ``on_limit="abandon"`` (for a
side report such as the paper's Def. 4 graph), the set is dropped and :attr:`abandoned` says why.
"""

from __future__ import annotations

import numpy as np

from nctheory.errors import InputError
from nctheory.validate import format_bytes

DENSE_MAX_K = 2048              # k x k bool: 4 MiB; the per-slice float32 indicators are bounded below
DENSE_CELLS = 4_000_000         # (batches in a slice) x k indicator cells per product (16 MB float32)
PAIR_CHUNK = 4_000_000          # new sparse pairs generated at once (32 MB of int64 keys)
SWITCH_RATIO = 1 / 64           # sparse -> bitset once keys > SWITCH_RATIO * k * kp (8 B/key vs kp/8 B/row)


BAND = 4096                     # bitset rows symmetrised at once (k/8 bytes each, plus 8-byte tiles)


def _transpose8(x: np.ndarray) -> np.ndarray:
    """Transpose every 8 x 8 bit tile held in a uint64 (byte r = row r, bit c of it = column c), in
    three delta swaps (Hacker's Delight, transpose8)."""
    x = x.astype("<u8", copy=True)
    for shift, mask in ((7, 0x00AA00AA00AA00AA), (14, 0x0000CCCC0000CCCC), (28, 0x00000000F0F0F0F0)):
        sh, mk = np.uint64(shift), np.uint64(mask)
        t = (x ^ (x >> sh)) & mk
        x ^= t ^ (t << sh)
    return x


class _Abandoned(Exception):
    """Raised inside :class:`ClassPairs` when an abandon-on-limit set gives up (caught by add/finish)."""


class ClassPairs:
    """A set of unordered class pairs over k classes (module docstring). Fill with :meth:`add`, then
    call :meth:`finish` once before the queries :attr:`count`, :meth:`degree`, :meth:`missing`."""

    def __init__(self, k: int, max_bytes: float | None = None, what: str = "class pairs", mode: str | None = None,
                 on_limit: str = "raise", limit_source: str = "--max-memory"):
        self.k = int(k)
        self.limit_source = limit_source
        self.on_limit = on_limit
        self.abandoned: str | None = None
        self.max_bytes = float("inf") if max_bytes is None else float(max_bytes)
        self.what = what
        self.complete = False
        self.mode = mode or ("dense" if self.k <= DENSE_MAX_K else "sparse")
        self.kp = -(-self.k // 64) * 64  # bit columns padded to whole 64-bit words
        self.dense = np.zeros((self.k, self.k), dtype=bool) if self.mode == "dense" else None
        self.bits = None
        self.keys = np.zeros(0, dtype=np.int64)
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self._finished = False
        if self.mode == "bitset":
            self._to_bitset()

    # ---- filling -----------------------------------------------------------------------------------
    def add(self, gb: np.ndarray, gc: np.ndarray, anchor: np.ndarray) -> None:
        """Add the pairs of some batches, given as their (batch, class) groups sorted by batch and class:
        gb (G,) batch ids, gc (G,) classes, anchor (G,) bool. Every pair {a, c}, a != c, of one batch with
        a the class of an anchor group and c the class of any group is added."""
        if self.complete or self.abandoned or gb.size == 0 or not anchor.any():
            return
        gb = np.asarray(gb, dtype=np.int64)
        gc = np.asarray(gc, dtype=np.int64)
        anchor = np.asarray(anchor, dtype=bool)
        start = np.flatnonzero(np.r_[True, gb[1:] != gb[:-1]])
        csize = np.diff(np.r_[start, gb.size])
        asize = np.add.reduceat(anchor.astype(np.int64), start)
        if np.any(asize == self.k):   # a batch with every class an anchor covers every pair
            self.complete = True
            self.dense = self.bits = None
            self.keys = np.zeros(0, dtype=np.int64)
            self.buffer, self.buffered = [], 0
            return
        keep = asize > 0
        try:
            if self.mode == "dense":
                self._add_dense(gb, gc, anchor, start, csize, keep)
            elif self.mode == "sparse":
                self._add_sparse(gb, gc, anchor, start, csize)
            else:
                self._add_bits(gc, anchor, start, csize, keep)
        except _Abandoned:
            pass

    def _add_dense(self, gb, gc, anchor, start, csize, keep):
        local = np.cumsum(np.r_[True, gb[1:] != gb[:-1]]) - 1      # batch rank within this call
        nbl = int(local[-1]) + 1
        step = max(1, DENSE_CELLS // self.k)
        for l0 in range(0, nbl, step):
            l1 = min(nbl, l0 + step)
            sel = (local >= l0) & (local < l1) & keep[local]
            if not sel.any():
                continue
            P = np.zeros((l1 - l0, self.k), dtype=np.float32)
            P[local[sel] - l0, gc[sel]] = 1.0
            A = np.zeros_like(P)
            a = sel & anchor
            A[local[a] - l0, gc[a]] = 1.0
            self.dense |= (A.T @ P) > 0

    def _add_sparse(self, gb, gc, anchor, start, csize):
        bidx = np.cumsum(np.r_[True, gb[1:] != gb[:-1]]) - 1      # batch rank of every group
        aj = np.flatnonzero(anchor)
        cnt = csize[bidx[aj]]                                      # partners of every anchor group
        ends = np.cumsum(cnt)
        if self.keys.size + self.buffered + int(ends[-1]) > SWITCH_RATIO * self.k * self.kp:
            # these batches alone could hold more pairs than the bitset has room for: switch before
            # generating them (the bitset is then the smaller structure whatever the duplicates)
            self._merge()
            self._to_bitset()
            if self.mode == "bitset":
                self._add_bits(gc, anchor, start, csize, None)
                return
        j0 = 0
        while j0 < aj.size:
            # anchors j0..j1-1 generate at most PAIR_CHUNK pairs (at least one anchor per step)
            base = ends[j0 - 1] if j0 else 0
            j1 = max(j0 + 1, int(np.searchsorted(ends, base + PAIR_CHUNK, side="right")))
            a, c = aj[j0:j1], cnt[j0:j1]
            T = int(c.sum())
            first = np.repeat(start[bidx[a]] - (np.cumsum(c) - c), c) + np.arange(T, dtype=np.int64)
            ca = np.repeat(gc[a], c)
            cb = gc[first]
            m = ca != cb
            lo, hi = np.minimum(ca[m], cb[m]), np.maximum(ca[m], cb[m])
            self._push(lo * self.k + hi)
            if self.mode != "sparse":  # _push switched to the bitset: the remaining anchors go there
                rest = anchor.copy()
                rest[aj[:j1]] = False
                self._add_bits(gc, rest, start, csize, None)
                return
            j0 = j1

    def _push(self, keys: np.ndarray) -> None:
        self.buffer.append(keys)
        self.buffered += keys.size
        if self.buffered >= PAIR_CHUNK:
            self._merge()

    def _merge(self) -> None:
        if not self.buffer:
            return
        need = 8 * (self.keys.size + self.buffered) * 2  # the merge holds old and new keys at once
        if need > self.max_bytes:
            self._refuse(need)
        allk = np.concatenate([self.keys] + self.buffer)
        allk.sort()
        self.keys = allk[np.r_[True, allk[1:] != allk[:-1]]] if allk.size else allk
        self.buffer, self.buffered = [], 0
        if self.keys.size > SWITCH_RATIO * self.k * self.kp:   # the bitset is now the smaller one
            self._to_bitset()

    def _to_bitset(self) -> None:
        need = self.kp * (self.kp // 8)
        if need > self.max_bytes:
            if self.mode == "sparse" and 8 * self.keys.size <= self.max_bytes:
                return  # stay sparse while the keys fit
            self._refuse(need)
        self.bits = np.zeros((self.kp, self.kp // 8), dtype=np.uint8)   # rows padded like the columns
        if self.keys.size:
            a, b = self.keys // self.k, self.keys % self.k
            np.bitwise_or.at(self.bits, (a, b >> 3), (1 << (b & 7)).astype(np.uint8))
        self.keys = np.zeros(0, dtype=np.int64)
        self.mode = "bitset"

    def _add_bits(self, gc, anchor, start, csize, keep):
        W = self.kp // 8
        for s, c in zip(start.tolist(), csize.tolist()):
            a = anchor[s:s + c]
            if not a.any():
                continue
            cls = gc[s:s + c]
            mask = np.bincount(cls >> 3, weights=(1 << (cls & 7)), minlength=W).astype(np.uint8)
            self.bits[cls[a]] |= mask
            self.bits[cls[a], cls[a] >> 3] &= ~(1 << (cls[a] & 7)).astype(np.uint8)  # no pair {a, a}

    def _refuse(self, need: float) -> None:
        msg = (f"needs ~{format_bytes(need)} or more for the plan's {self.what} (k = {self.k} classes); "
               f"limit {format_bytes(self.max_bytes)} ({self.limit_source})")
        if self.on_limit == "abandon":
            self.abandoned = msg
            self.dense = self.bits = None
            self.keys = np.zeros(0, dtype=np.int64)
            self.buffer, self.buffered = [], 0
            raise _Abandoned
        raise InputError(msg)

    def finish(self) -> "ClassPairs":
        if self._finished:
            return self
        self._finished = True
        if self.complete or self.abandoned:
            return self
        if self.mode == "sparse":
            try:
                self._merge()
            except _Abandoned:
                return self
        if self.mode == "dense":
            self.dense |= self.dense.T
            np.fill_diagonal(self.dense, False)
        elif self.mode == "bitset":
            self._symmetrise()
        return self

    def _symmetrise(self) -> None:
        """bits |= bits^T, BAND rows at a time: the 8 x 8 bit tiles of a band of columns are transposed in
        place as uint64 words (:func:`_transpose8`) and laid out as rows (O(k^2 / 8) bytes moved)."""
        K = self.kp
        for i0 in range(0, K, BAND):
            i1 = min(K, i0 + BAND)
            cols = self.bits[:, i0 // 8:i1 // 8]                    # rows j, the bytes of columns i0..i1
            nb = cols.shape[1]
            tiles = np.ascontiguousarray(cols.reshape(K // 8, 8, nb).transpose(0, 2, 1)).view("<u8")[..., 0]
            tiles = np.ascontiguousarray(_transpose8(tiles).T)       # (nb, K/8): tile (i-block, j-byte)
            rows = tiles[..., None].view(np.uint8).reshape(nb, K // 8, 8).transpose(0, 2, 1).reshape(nb * 8, K // 8)
            self.bits[i0:i1] |= rows

    # ---- queries -------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return self.k * (self.k - 1) // 2

    @property
    def count(self) -> int:
        """Covered unordered pairs."""
        if self.complete:
            return self.total
        if self.mode == "dense":
            return int(self.dense.sum()) // 2
        if self.mode == "sparse":
            return int(self.keys.size)
        return int(np.bitwise_count(self.bits).sum(dtype=np.int64)) // 2

    @property
    def num_missing(self) -> int:
        return self.total - self.count

    def degree(self) -> np.ndarray:
        """(k,) the number of classes each class is paired with."""
        if self.complete:
            return np.full(self.k, self.k - 1, dtype=np.int64)
        if self.mode == "dense":
            return self.dense.sum(1).astype(np.int64)
        if self.mode == "sparse":
            return (np.bincount(self.keys // self.k, minlength=self.k)
                    + np.bincount(self.keys % self.k, minlength=self.k)).astype(np.int64)
        return np.bitwise_count(self.bits[:self.k]).sum(1, dtype=np.int64)

    def _row(self, a: int) -> np.ndarray:
        """(k,) bool: the partners of class a."""
        if self.mode == "dense":
            return self.dense[a]
        if self.mode == "bitset":
            return np.unpackbits(self.bits[a], bitorder="little")[:self.k].astype(bool)
        row = np.zeros(self.k, dtype=bool)
        lo, hi = np.searchsorted(self.keys, [a * self.k, (a + 1) * self.k])
        row[self.keys[lo:hi] % self.k] = True               # partners b > a
        # partners b < a: keys b * k + a
        cand = np.arange(a) * self.k + a
        if a:
            pos = np.searchsorted(self.keys, cand)
            hit = pos < self.keys.size
            hit[hit] = self.keys[pos[hit]] == cand[hit]
            row[:a] = hit
        return row

    def missing(self, limit: int) -> np.ndarray:
        """(m, 2) the first ``limit`` missing pairs (a < b), in lexicographic order."""
        out: list[np.ndarray] = []
        if self.complete or limit <= 0:
            return np.zeros((0, 2), dtype=np.int64)
        deg = self.degree()
        got = 0
        for a in np.flatnonzero(deg < self.k - 1).tolist():
            if self.mode == "sparse":
                lo, hi = np.searchsorted(self.keys, [a * self.k + a + 1, (a + 1) * self.k])
                if hi - lo == self.k - 1 - a:  # every b > a is covered
                    continue
                right = np.ones(self.k - a - 1, dtype=bool)
                right[self.keys[lo:hi] % self.k - a - 1] = False
            else:
                right = ~self._row(a)[a + 1:]
            bs = np.flatnonzero(right)[:limit - got] + a + 1
            if bs.size:
                out.append(np.stack([np.full(bs.size, a, dtype=np.int64), bs], axis=1))
                got += bs.size
                if got >= limit:
                    break
        return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)

    def covered(self, a: int, b: int) -> bool:
        if a == b:
            return True
        return bool(self.complete or self._row(int(a))[int(b)])

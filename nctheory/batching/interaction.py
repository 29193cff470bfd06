r"""Which batching plans make the orthogonal frame (OF) the *unique* optimum of mini-batch SCL in UFM+.

Kini et al. 2023, Thm 2 / Cor. 2.1 / App. B.1, redone exactly under this project's conventions.

Setting. UFM+ : unit, entrywise non-negative features h_i in R^d (so s_ij := h_i.h_j in [0, 1], and
for non-negative vectors s_ij = 0 iff their supports are disjoint). Mini-batch SCL (Eq. 4, with
temperature tau) is L(H) = sum_B L_B(H). An anchor whose class appears once in B contributes 0 (the
project's no-positive convention) but is still a negative of the other anchors of B.

1. Per-anchor bound and its equality conditions (the derivation everything below rests on)
------------------------------------------------------------------------------------------
Fix a batch B (N = |B|) and an anchor i of class c with m = n_{B,c} >= 2, K = N - m negatives.
Its term is  T_i = LSE_{l in B\i}(s_il/tau) - mean_{j in P(i)} s_ij/tau,  P(i) = the m-1 positives.

  (a) sum_{negatives l} e^{s_il/tau} >= K               equality iff s_il = 0 for every negative l;
  (b) sum_{j in P(i)} e^{s_ij/tau} >= (m-1) e^{sbar/tau} (Jensen, sbar = mean_j s_ij)
                                                         equality iff all s_ij (j in P(i)) are equal;
  (c) so T_i >= log((m-1) + K e^{-sbar/tau}) >= log((m-1) + K e^{-1/tau}); when K >= 1 the middle
      expression is strictly decreasing in sbar, so the last step is an equality iff sbar = 1.

Hence, summing over anchors, L_B >= sum_{c: n_{B,c} >= 2} n_{B,c} log(n_{B,c} - 1 + (N - n_{B,c}) e^{-1/tau})
(Thm 2's bound, corrected: classes appearing once contribute 0, not the printed
log(N-1) - 1/tau, which is positive once N - 1 > e^{1/tau}; see nctheory.bounds), and the bound is
attained by any OF (NC + orthogonal class means; it exists for d >= k). So the optimal set of
UFM+ is exactly the set of feasible H meeting, in every batch B, these equality conditions:

  * mixed batch (>= 2 classes present), class c with n_{B,c} >= 2:
        ALIGNMENT     h_i = h_j for all i, j of class c in B                        (from (b)+(c))
        ORTHOGONALITY h_i . h_l = 0 for i of class c in B and every l in B of another class (from (a)),
        including l whose own class appears once in B: a no-positive anchor imposes nothing by its
        own term, but it is a negative of every anchor that has a positive.
  * two samples of different classes that both appear once in B: NO constraint between them.
  * single-class batch (K = 0 for every anchor): T_i >= log(m-1) with equality iff all s_ij,
    j in B\i, are equal. For m = 2 this is vacuous (T_i = 0 identically); for m >= 3 it says
        EQUI-SIMILARITY  all pairwise similarities in B equal one common t_B in [0, 1]
    -- *not* alignment. (Thm 2's "h_i = h_j if y_i = y_j" is false for such batches; they occur
    inside the paper's stated hypotheses only when k = 1.)

2. The contracted constraint structure
--------------------------------------
ALIGNMENT edges are joined with a union-find (scipy connected components, chunk by chunk, the
result compacted to a spanning forest of the n samples after each chunk): per batch and class, every
member gets one edge to an auxiliary hub node of that (batch, class) group -- never the per-batch
clique, so the work is linear in the number of batch entries. EQUI-SIMILARITY batches are then closed: if two members of such a batch are
already aligned, t_B = 1 and the whole batch aligns; if m > d, the Gram matrix (1-t)I + tJ of m
distinct vectors has rank m > d, so t_B = 1 again. Repeat to a fixpoint. The resulting components
are the *super-nodes*: r_c of them in class c. ORTHOGONALITY edges contract to edges between
super-nodes; only their class-pair coverage (a k x k boolean matrix, from per-batch class-count
matrices: pos^T @ present) is needed unless d = k.

3. When is the OF the unique optimum geometry?
----------------------------------------------
Conditions: (1') every class is one super-node (r_c = 1); (2') every pair of classes is joined by
an orthogonality edge (some batch holds both, one of them at least twice).

  IF (1') and (2'): NC holds by (1') and the class means are pairwise orthogonal by (2'): the OF
  is the unique optimum geometry for every d >= k.
  NOT (2'): put NC with mu_{c1} = mu_{c2} for the uncovered pair and the other k-2 classes on
  their own coordinates (k-1 coordinates): every condition holds, the geometry is not an OF.
  NOT (1') and (2'), class c with r_c >= 2. Optima are exactly the non-negative assignments of
  one vector per super-node meeting the orthogonality and equi-similarity conditions; for
  non-negative vectors orthogonality = disjoint supports, and (absent equi-similarity batches) an
  optimum that is not an OF exists in R^d iff the contracted orthogonality graph has a proper
  colouring with <= d colours that is not the class colouring (pick one coordinate from each
  support; conversely colour u -> e_{colour(u)}). Witnesses used, all one coordinate per super-node:
    - split (d >= k+1): one equi-similarity-closed group of class c's super-nodes gets the new
      coordinate k+1 (Kini's "only if" construction: k+1 orthogonal non-negative vectors);
    - orthogonal (d >= k-1+r_c): every super-node of class c gets its own coordinate (needed when
      equi-similarity batches link all of class c's super-nodes);
    - recolour (d >= k): a closed group U of class c that has no orthogonality edge to any sample
      of class c' moves onto the coordinate of class c' (Fig. 5 is of this kind, k = d = 3);
    - permute (d >= k): a connected component of the contracted graph that holds some but not all
      super-nodes of a class swaps two class coordinates;
    - search (d = k, or a d for which none of the above applies): exhaustive backtracking for a
      colouring with >= 2 colours on one class (colours of an equi-similarity batch all equal or
      all distinct), with a node budget.
  At d = k the "only if" of Cor. 2.1 can FAIL: e.g. labels [0,0,0,0,1,1], batches {0,1,4,5},
  {2,3,4,5} (every batch holds every class twice, d = k = 2): class 0 is disconnected, yet in R^2_+
  h_4 = h_5 must be a coordinate vector (something non-negative is orthogonal to it) and both
  halves of class 0 must be the other one, so the OF is unique. With d = 3 it is not.

The verdict is ``unique`` True/False; ``None`` (undecided, CLI exit 3) only when d is given, an
equi-similarity batch survives the closure, and no witness was found, or the search budget ran out.
Without ``dim`` the dimension is taken to be unbounded (d >= k + max r_c), where the verdict is
always decided: unique iff (1') and (2').

Paper's literal Cor. 2.1 (Def. 4 graph: any co-occurrence is an edge) is reported alongside as
``paper_conditions``; the two agree on plans in which every batch holds every class it contains
at least twice and at least two classes (the paper's assumption n_{B,c} >= 2 with k >= 2) and
d >= k+1.

4. Batches with repeated samples (multisets) and views
------------------------------------------------------
A sampler with replacement (torch's WeightedRandomSampler, an m-per-class sampler on a class
smaller than m) puts a sample into a batch more than once. Convention (``Plan.multiset``): a batch
B is a multiset, mult_B(i) >= 0 occurrences of sample i, N = |B| = sum_i mult_B(i) *positions*;
every occurrence is a *copy* of the sample with the same feature h_i. Mini-batch SCL (Eq. 4) is read
over positions p with sample s(p):

    L_B(H) = sum_{p: P(p) != {}} [ LSE_{q != p}(h_{s(p)}.h_{s(q)}/tau) - mean_{q in P(p)} h_{s(p)}.h_{s(q)}/tau ],
    P(p) = {q != p : y_{s(q)} = y_{s(p)}},

so a copy is an anchor, a positive of its sample's other copies (similarity h_i.h_i = 1) and of its
class, and a term of every other anchor's denominator. This is L_B of the *expanded* batch, one row
per position, with the rows of copies constrained equal (``scl_batches(..., multiset=True)``, tested
equal to that expanded loss). Class counts count positions: n_{B,c} = sum_{i: y_i = c} mult_B(i).

What changes in the proof. App. B applies App. A (Eqs. 6-9) to each batch; every step there is over
the "other members" l != i of the batch and never uses that two members are different samples:
(6) and the means a_i, b_i run over positions (a_i includes the other copies of i, i.e. h_i itself);
the Jensen steps (7), (8) and the monotone step (9), or (a)-(c) of section 1, hold verbatim; in (9)
Cauchy-Schwarz h_i.h_l <= 1 is an equality for a copy l of i whatever H is. Hence

    Thm 2 with multiplicities:  L_batch(H) >= sum_B sum_{c: n_{B,c} >= 2} n_{B,c} log(n_{B,c} - 1 + (N_B - n_{B,c}) e^{-1/tau})

with n_{B,c}, N_B counted with multiplicity (``nctheory.bounds.batch_bound(..., multiset=True)``), attained
by every OF (copies are equal in any H), so it is the minimum. What differs from the distinct case:
a class present as ONE sample drawn twice has n_{B,c} = 2 and contributes 2 log(1 + (N_B - 2) e^{-1/tau})
(it is no longer a class appearing once), and the equality conditions, which section 1 states for
pairs of positions, are vacuous between the copies of one sample. Per batch they become:

  * mixed batch, class c with n_{B,c} >= 2 positions: ALIGNMENT of the *distinct* samples of class c in
    B (none when c is one sample drawn several times) and ORTHOGONALITY of every sample of class c in
    B to every sample of another class in B;
  * class with one position: no condition of its own; orthogonal to the anchors with a positive;
  * single-class batch with m = N positions: all similarities s(p).s(q), q != p, equal for every anchor
    p (section 1). m <= 2: vacuous ({i, i}: T = log e^{1/tau} - 1/tau = 0). m >= 3 with a repeated
    sample: the copies' similarity is 1, so every similarity is 1: ALIGNMENT of the whole batch
    (t_B = 1; vacuous if it holds one distinct sample). m >= 3, all distinct: EQUI-SIMILARITY as before.

So the uniqueness condition of section 3 holds as stated once "n_{B,c} >= 2" counts positions and
alignment edges join distinct samples only: unique iff (1') every class is one super-node after the
closure and (2') every class pair co-occurs in a batch where one of the two has >= 2 positions. The
implementation needs no separate rule: the per-(batch, class) counts of section 2 count entries, a
hub edge from two copies joins nothing, and the closure's "two members already aligned" test sees
two copies as aligned. Consequences: repetition can *create* orthogonality (labels [0, 1], batch
{0, 0, 1}: class 0 has a positive, so h_0 . h_1 = 0 and the OF is unique, while {0, 1} leaves the loss
identically 0), never alignment between distinct samples except through a single-class batch of >= 3
positions with a repeat. Checked in tests/test_batching_multiset.py: the loss against its expansion
and a naive loop, the bound against hypothesis-searched (shrunk) and optimised H, and against
certified UFM+ optima; the verdict against the max-deviation program (unique) and explicit witnesses
(not unique).

Views (``Plan.views = V``): every batch holds each of its samples in V views, each view a feature row of
its own (sample i's view v is row v * n + i) with the sample's multiplicity; ``check_plan`` decides the
expanded plan (:meth:`Plan.expanded`), and the bound counts n_{B,c} and N_B times V without expanding.

5. Memory
---------
Nothing here is sized by k^2 unless the plan needs it: per-(batch, class) groups come from a
bincount over (batch, class) cells when a chunk has few of them and a sort otherwise; alignment hubs
are one node per group; the class-pair coverage is a :class:`nctheory.batching.pairs.ClassPairs`
(dense for k <= 2048, sparse keys while the plan covers few pairs, a k^2-bit set otherwise). Every
per-class step is vectorised (one sort of the samples by class), and lists in the result are capped
(``MAX_LISTED``; the counts are exact). ``max_memory`` bounds the coverage: beyond it InputError says
what the plan needs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from nctheory.batching.pairs import ClassPairs
from nctheory.batching.plan import Plan
from nctheory.errors import InputError

CHUNK_ENTRIES = 2_000_000     # batch entries processed at once (bounds memory, see benchmark)
DENSE_GROUP_CELLS = 4_000_000  # (batches x k) cells below which a chunk's groups come from a bincount
SEARCH_BUDGET = 200_000       # backtracking nodes for the d = k colouring search
MAX_SEARCH_NODES = 5000       # super-nodes beyond which the colouring search is not attempted
MAX_EXAMPLES = 5              # sample indices shown per component witness
MAX_COMPONENTS_SHOWN = 10
MAX_LISTED = 100_000          # missing class pairs / disconnected classes listed in a result (counts exact)
MAX_FIX_ENTRIES = 20_000_000  # batch entries a binding fix may add before it is not attempted
PAPER_MAX_BYTES = 256 * 2**20  # memory for the paper's Def. 4 class pairs (a side report; dropped beyond)
EXPANDED_BYTES_PER_ENTRY = 24  # the expanded plan's indices, its validation keys and distinct_batches' copy


@dataclass
class CheckResult:
    unique: bool | None
    reason: str
    n: int                                  # feature rows (samples x views)
    k: int
    dim: int | None
    classes: list
    class_super_nodes: dict                 # class -> r_c (1 = connected)
    disconnected_classes: list              # [{class, num_components, components: [{size, examples}]}] (first MAX_LISTED)
    missing_class_pairs: list               # [[c1, c2], ...] (class labels; first MAX_LISTED)
    witness: dict | None                    # a non-OF optimum (one coordinate per super-node), if any
    paper_conditions: dict                  # Cor. 2.1 on the literal Def. 4 graph
    stats: dict
    fix: dict | None = None
    num_missing_class_pairs: int = 0
    num_disconnected_classes: int = 0
    # internals for witness construction (not serialised)
    comp: np.ndarray | None = field(default=None, repr=False)
    coord: dict | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("unique", "reason", "n", "k", "dim", "classes",
                                              "disconnected_classes", "num_disconnected_classes",
                                              "missing_class_pairs", "num_missing_class_pairs", "witness",
                                              "paper_conditions", "stats", "fix")}
        out["class_super_nodes"] = {str(c): int(r) for c, r in self.class_super_nodes.items()}
        out["connected_classes"] = [c for c, r in self.class_super_nodes.items() if r == 1]
        return out


# ---------------------------------------------------------------------------------------------------
def _forest(n: int, edges_u, edges_v, prev: np.ndarray | None, extra_nodes: int = 0) -> np.ndarray:
    """Connected-component labels of the first n nodes under (prev labels, kept as a spanning star
    forest of n - #components edges) + new edges; nodes n..n+extra_nodes-1 are auxiliary hubs."""
    us, vs = [edges_u], [edges_v]
    if prev is not None:
        nodes = np.arange(n)
        _, first = np.unique(prev, return_index=True)   # the smallest node of every component
        rep = np.empty(int(prev.max()) + 1, dtype=np.int64)
        rep[prev[first]] = first
        keep = rep[prev] != nodes
        us.append(nodes[keep])
        vs.append(rep[prev][keep])
    u = np.concatenate(us)
    v = np.concatenate(vs)
    m = n + extra_nodes
    g = csr_matrix((np.ones(u.size, np.int8), (u, v)), shape=(m, m))
    # weak components of the directed graph = components of the undirected one (no symmetrisation copy)
    _, lab = connected_components(g, directed=True, connection="weak")
    return lab[:n].astype(np.int64)


def _groups(bl: np.ndarray, lab: np.ndarray, nbc: int, k: int):
    """The (batch, class) groups of a chunk: batch, class, entry count (copies counted) of each group,
    sorted by (batch, class), and every entry's group. A bincount over the nbc x k cells when there
    are few, a sort otherwise (same result; never an array sized nbc x k for large k)."""
    key = bl * k + lab
    if nbc * k <= DENSE_GROUP_CELLS:
        cnt = np.bincount(key, minlength=nbc * k)
        nz = cnt > 0
        gkey = np.flatnonzero(nz)
        inv = (np.cumsum(nz) - 1)[key]
        gcnt = cnt[gkey]
    else:
        gkey, inv, gcnt = np.unique(key, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
    return gkey // k, gkey % k, gcnt, inv


def _scan(plan: Plan, cls: np.ndarray, k: int, max_bytes: float | None = None, source: str = "--max-memory"):
    """One pass over the batches (chunked). Returns, for the exact rules and for the paper's Def. 4
    graph: component labels (ALIGNMENT / same-class co-occurrence) and the class-pair coverage
    (ORTHOGONALITY / any co-occurrence) as :class:`ClassPairs`; plus the single-class batches of
    >= 3 entries and the count of entries without a positive.

    Alignment is joined through one auxiliary hub node per (batch, class) group: every aligning entry
    gets one edge to its group's hub (no sorting, no clique); after each chunk the components are
    compacted to a spanning forest of the n samples, so memory is O(n + chunk)."""
    n = plan.n
    off = plan.offsets
    nb = plan.num_batches
    comp = pcomp = None
    cov = ClassPairs(k, max_bytes, "orthogonality class pairs", limit_source=source)
    # the paper's graph is a side report: it gets a quarter of the budget (at most PAPER_MAX_BYTES) and is
    # dropped, not refused, beyond it
    pbytes = PAPER_MAX_BYTES if max_bytes is None else min(PAPER_MAX_BYTES, max_bytes / 4)
    pcov = ClassPairs(k, pbytes, "co-occurring class pairs (Def. 4 graph)", on_limit="abandon")
    single_class = []
    n_single_anchor_entries = 0
    sizes = np.diff(off)
    mean = max(1.0, float(sizes.mean()))
    step = int(max(1, CHUNK_ENTRIES / mean))
    for b0 in range(0, nb, step):
        b1 = min(nb, b0 + step)
        seg = plan.indices[off[b0]:off[b1]]
        bl = np.repeat(np.arange(b1 - b0, dtype=np.int64), sizes[b0:b1])
        gb, gc, gcnt, inv = _groups(bl, cls[seg], b1 - b0, k)
        ncls = np.bincount(gb, minlength=b1 - b0)
        pos = (gcnt >= 2) & (ncls[gb] >= 2)
        n_single_anchor_entries += int(np.sum(gcnt == 1))
        sc = np.flatnonzero((ncls == 1) & (sizes[b0:b1] >= 3))
        single_class.extend((sc + b0).tolist())
        cov.add(gb, gc, pos)
        pcov.add(gb, gc, np.ones(gb.size, dtype=bool))
        al = pos[inv]
        comp = _forest(n, seg[al], n + inv[al], comp, gb.size)
        pal = gcnt[inv] >= 2
        pcomp = _forest(n, seg[pal], n + inv[pal], pcomp, gb.size)
    return comp, cov.finish(), pcomp, pcov.finish(), single_class, n_single_anchor_entries


def _relabel(comp: np.ndarray) -> np.ndarray:
    _, inv = np.unique(comp, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def _close_equisim(plan: Plan, comp: np.ndarray, single_class: list, dim: int | None):
    """Fixpoint of the equi-similarity closure. Returns (comp, surviving equi-similarity batch ids).
    A batch whose entries are not all in distinct components (two aligned members, or two copies of
    one sample in a multiset batch) has t_B = 1: it aligns (section 1 and 4)."""
    if not single_class:
        return comp, []
    n = plan.n
    off = plan.offsets
    alive = list(single_class)
    changed = True
    while changed:
        changed = False
        eu, ev, keep = [], [], []
        for b in alive:
            mem = plan.indices[off[b]:off[b + 1]]
            cm = comp[mem]
            if np.unique(cm).size < mem.size or (dim is not None and mem.size > dim):
                eu.append(mem)
                ev.append(np.full(mem.size, mem[0]))
                changed = True
            else:
                keep.append(b)
        if changed:
            comp = _forest(n, np.concatenate(eu), np.concatenate(ev), comp)
        alive = keep
    return _relabel(comp), alive


def _disconnected_list(cs: np.ndarray, r: np.ndarray, order: np.ndarray, start: np.ndarray, comp: np.ndarray,
                       classes: np.ndarray) -> list:
    """[{class, num_components, components: [{size, examples}]}] for the classes cs (vectorised): per class
    its MAX_COMPONENTS_SHOWN largest components (ties: smaller component label first), each with its
    first MAX_EXAMPLES sample indices."""
    if cs.size == 0:
        return []
    lens = start[cs + 1] - start[cs]
    pos = np.repeat(start[cs] - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(int(lens.sum()))
    m = order[pos]                              # members, class by class (index increasing)
    m_cls = np.repeat(np.arange(cs.size), lens)
    m_comp = comp[m]
    o = np.lexsort((m, m_comp, m_cls))
    m, m_comp, m_cls = m[o], m_comp[o], m_cls[o]
    gstart = np.flatnonzero(np.r_[True, (m_cls[1:] != m_cls[:-1]) | (m_comp[1:] != m_comp[:-1])])
    gsize = np.diff(np.r_[gstart, m.size])
    g_cls = m_cls[gstart]
    go = np.lexsort((m_comp[gstart], -gsize, g_cls))    # within a class: largest first
    cstart = np.searchsorted(g_cls[go], np.arange(cs.size))
    cend = np.r_[cstart[1:], go.size]
    out = []
    m, go, gstart, gsize = m.tolist(), go.tolist(), gstart.tolist(), gsize.tolist()   # Python lists: one
    for j, c, a0, a1 in zip(range(cs.size), classes[cs].tolist(), cstart.tolist(), cend.tolist()):  # conversion
        comps = []
        for g in go[a0:min(a1, a0 + MAX_COMPONENTS_SHOWN)]:
            a = gstart[g]
            comps.append({"size": gsize[g], "examples": m[a:a + min(MAX_EXAMPLES, gsize[g])]})
        out.append({"class": c, "num_components": int(r[cs[j]]), "components": comps})
    return out


def _by_class(cls: np.ndarray, k: int):
    """(order, start): the indices sorted by class (stably), class c is order[start[c]:start[c+1]]."""
    order = np.argsort(cls, kind="stable")
    start = np.r_[0, np.cumsum(np.bincount(cls, minlength=k))]
    return order, start


def _count_per_class(cls_of: np.ndarray, comp_of: np.ndarray, k: int) -> np.ndarray:
    """Distinct components per class: bincount of the class of each distinct (class, component)."""
    key = _uniq(cls_of * (int(comp_of.max()) + 1) + comp_of)
    return np.bincount(key // (int(comp_of.max()) + 1), minlength=k)


def check_plan(plan: Plan, dim: int | None = None, with_fix: bool = True,
               search_budget: int = SEARCH_BUDGET, max_memory=None) -> CheckResult:
    """Decide whether the OF is the unique optimum geometry of UFM+ with mini-batch SCL on ``plan``.

    dim: the embedding dimension d (None: unbounded, d >= k + max r_c). Must be >= k (Thm 2 needs an
    OF to exist). A plan with views is decided on its expansion (rows v * n + i), a multiset plan with
    the copies' semantics (module docstring, section 4). max_memory: the memory the check may take
    (bytes or '8G'; default :func:`nctheory.validate.memory_limit`: --max-memory, $NCTHEORY_MAX_MEMORY or
    the available memory); beyond it InputError says what the plan needs. See the module docstring
    for the derivation and the witnesses.
    """
    from nctheory.validate import memory_limit

    limit_arg = max_memory
    max_memory, source = memory_limit(limit_arg)
    dim = _embedding_dim(dim, plan.k)
    given = {"num_batches": plan.num_batches, "num_epochs": plan.num_epochs,
             "total_entries": plan.views * int(plan.indices.size),     # entries of the expanded plan
             "repeated_entries": plan.views * plan.num_repeated_entries()}
    base = distinct_batches(plan)   # the plan as given, each batch once (the fix binds its samples)
    plan = _expanded_views(base, limit_arg)
    classes, cls, k = plan.label_values, plan.labels, plan.k
    # section 2: alignment components closed under equi-similarity, orthogonality class pairs
    comp, cov, pcomp, pcov, single_class, n_single = _scan(plan, cls, k, max_memory, source)
    comp, equisim = _close_equisim(plan, _relabel(comp), single_class, dim)
    sn_class, r = _super_nodes(comp, cls, k)
    split = np.flatnonzero(r >= 2)
    miss = cov.missing(MAX_LISTED)
    stats = _plan_stats(given, base, plan, single_class, equisim, n_single, sn_class.size, cov)
    res = CheckResult(None, "", plan.n, k, dim, classes.tolist(), {int(classes[c]): int(r[c]) for c in range(k)},
                      _disconnected_list(split[:MAX_LISTED], r, *_by_class(cls, k), comp, classes),
                      classes[miss].tolist(), None, _paper_conditions(classes, cls, pcomp, pcov), stats,
                      num_missing_class_pairs=int(cov.num_missing), num_disconnected_classes=int(split.size),
                      comp=comp)
    # section 3: the verdict
    if split.size == 0 and cov.num_missing == 0:
        res.unique = True
        res.reason = ("every class is one alignment component and every class pair has an "
                      "orthogonality edge: NC and orthogonal class means are forced (any d >= k)")
    elif cov.num_missing:
        _merge_classes_witness(res, miss[0], sn_class, int(cov.num_missing))
    else:
        _decide_disconnected(res, plan, cls, classes, sn_class, r, equisim, dim, search_budget)
    if with_fix and res.unique is False:
        res.fix = suggest_fix(base, res, cov, dim, limit_arg)
    return res


def _embedding_dim(dim, k: int) -> int | None:
    """The checked embedding dimension: a positive integer d >= k (an OF exists), or None (unbounded)."""
    if dim is None:
        return None
    if isinstance(dim, bool) or int(dim) != dim or dim < 1:
        raise InputError(f"--dim must be a positive integer, got {dim!r}")
    dim = int(dim)
    if dim < k:
        raise InputError(f"dimension d = {dim} is below the number of classes k = {k}: no OF exists "
                         f"(Kini et al. Thm 2 assumes d >= k)")
    return dim


def _expanded_views(plan: Plan, limit_arg) -> Plan:
    """The plan with its views as feature rows (row v * n + i), within the memory budget."""
    from nctheory.validate import check_budget

    if plan.views > 1:
        check_budget(EXPANDED_BYTES_PER_ENTRY * plan.views * int(plan.indices.size),
                     f"the plan's {plan.views} views expanded ({plan.views * int(plan.indices.size):.3g} entries)",
                     limit=limit_arg)
    return plan.expanded()


def _super_nodes(comp: np.ndarray, cls: np.ndarray, k: int):
    """(sn_class, r): the class of every super-node (alignment component) and r_c, the number of
    super-nodes of class c."""
    sn_class = np.full(int(comp.max()) + 1, -1, dtype=np.int64)
    sn_class[comp] = cls
    return sn_class, np.bincount(sn_class, minlength=k)


def _paper_conditions(classes: np.ndarray, cls: np.ndarray, pcomp: np.ndarray, pcov: ClassPairs) -> dict:
    """The paper's literal Cor. 2.1 on its Def. 4 graph (any co-occurrence is an edge)."""
    pr = _count_per_class(cls, pcomp, classes.size)
    pmiss = None if pcov.abandoned else int(pcov.num_missing)
    paper = {"conditions_hold": False if np.any(pr >= 2) or pmiss else (None if pmiss is None else True),
             "disconnected_classes": [int(classes[c]) for c in np.flatnonzero(pr >= 2)[:MAX_LISTED]],
             "num_missing_class_pairs": pmiss}
    if pcov.abandoned:
        paper["not_counted"] = pcov.abandoned
    return paper


def _plan_stats(given: dict, base: Plan, plan: Plan, single_class: list, equisim: list, n_single: int,
                num_super_nodes: int, cov: ClassPairs) -> dict:
    """The counts reported with a verdict: of the plan as given, its distinct batches and its expansion."""
    used = np.zeros(plan.n, bool)
    used[plan.indices] = True
    return {"num_batches": given["num_batches"], "distinct_batches": plan.num_batches,
            "num_epochs": given["num_epochs"], "total_entries": given["total_entries"],
            "unused_samples": int(plan.n - used.sum()),
            "single_class_batches_size_ge_3": len(single_class),
            "equisimilarity_batches_after_closure": len(equisim),
            "no_positive_entries": int(n_single), "super_nodes": int(num_super_nodes),
            "views": base.views, "multiset": base.multiset, "repeated_entries": given["repeated_entries"],
            "samples": base.n, "class_pairs_storage": cov.mode if not cov.complete else "complete"}


def _merge_classes_witness(res: CheckResult, pair: np.ndarray, sn_class: np.ndarray, num_missing: int) -> None:
    """A class pair (c1, c2) without an orthogonality edge: NC with mu_{c2} = mu_{c1} and the other
    classes on their own coordinates is a non-OF optimum in k - 1 dimensions (section 3, NOT (2'))."""
    c1, c2 = (int(x) for x in pair)
    coord = np.arange(res.k)
    coord[c2] = coord[c1]
    coord = _compact(coord)
    res.coord = {int(u): int(coord[sn_class[u]]) for u in range(sn_class.size)}
    res.unique = False
    res.witness = {"kind": "merge_classes", "classes": res.missing_class_pairs[0], "dim_needed": max(1, res.k - 1),
                   "description": f"NC with the means of classes {res.missing_class_pairs[0][0]} and "
                                  f"{res.missing_class_pairs[0][1]} equal, the other classes orthogonal"}
    res.reason = f"{num_missing} class pair(s) never constrained to be orthogonal"


def distinct_batches(plan: Plan) -> Plan:
    """The plan with repeated batches (same indices in the same order) kept once.

    The optimum set of UFM+ depends only on the *set* of batches (each batch's equality conditions do
    not depend on how often it occurs), so a fixed partition repeated over 200 epochs is checked once.
    Batches repeated in a different order are not merged (harmless: only slower)."""
    off = plan.offsets
    idx = plan.indices
    seen = {}
    keep = []
    for b in range(plan.num_batches):
        key = idx[off[b]:off[b + 1]].tobytes()
        if key not in seen:
            seen[key] = b
            keep.append(b)
    if len(keep) == plan.num_batches:
        return plan
    keep = np.asarray(keep)
    sizes = np.diff(off)[keep]
    new_off = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    new_idx = np.concatenate([idx[off[b]:off[b + 1]] for b in keep])
    eo = None
    if plan.epoch_offsets is not None:
        # epochs are kept as a count only: batch b belongs to the epoch of its first occurrence
        eo = np.searchsorted(keep, plan.epoch_offsets[1:-1], side="left")
        eo = np.unique(np.r_[0, eo, keep.size]).astype(np.int64)
    return plan.with_batches(new_idx, new_off, eo)


def _compact(coord: np.ndarray) -> np.ndarray:
    _, inv = np.unique(coord, return_inverse=True)
    return inv


def _equisim_groups(plan: Plan, comp: np.ndarray, equisim: list, ncomp: int) -> np.ndarray:
    """Labels of super-nodes joined by surviving equi-similarity batches (the 'closed groups')."""
    if not equisim:
        return np.arange(ncomp)
    off = plan.offsets
    eu, ev = [], []
    for b in equisim:
        cm = comp[plan.indices[off[b]:off[b + 1]]]
        eu.append(cm)
        ev.append(np.full(cm.size, cm[0]))
    return _forest(ncomp, np.concatenate(eu), np.concatenate(ev), None)


class _Witness(NamedTuple):
    """A non-OF optimum of section 3: one coordinate per super-node (before compaction)."""
    coord: np.ndarray
    kind: str
    label: int          # the split class whose optimum is not an OF (its label)
    need: int           # the dimension the construction needs
    description: str
    extra: dict | None = None


@dataclass
class _SuperNodes:
    """The contracted plan of section 2: super-node u belongs to class ``sn_class[u]`` (an index into
    ``classes``), class c has ``r[c]`` super-nodes, and ``grp[u]`` is u's closed group (super-nodes
    linked by surviving equi-similarity batches)."""
    k: int
    classes: np.ndarray
    sn_class: np.ndarray
    r: np.ndarray
    grp: np.ndarray
    order: np.ndarray = field(init=False)   # super-nodes sorted by class: class c is order[start[c]:start[c+1]]
    start: np.ndarray = field(init=False)
    split: np.ndarray = field(init=False)   # the classes that are not one super-node (r_c >= 2)

    def __post_init__(self):
        self.order, self.start = _by_class(self.sn_class, self.k)
        self.split = np.flatnonzero(self.r >= 2)

    @property
    def count(self) -> int:
        return int(self.sn_class.size)

    def of_class(self, c: int) -> np.ndarray:
        """Class c's super-nodes, increasing."""
        return self.order[self.start[c]:self.start[c + 1]]

    def label(self, c: int) -> int:
        return int(self.classes[c])


def _decide_disconnected(res, plan, cls, classes, sn_class, r, equisim, dim, budget):
    """Every class pair has an orthogonality edge but some class is split (r_c >= 2): the first of
    section 3's witnesses that fits in R^d_+ (split and orthogonal need d >= k + 1; recolour and
    permute need d >= k), else the exhaustive colouring search decides. Sets ``res``."""
    sn = _SuperNodes(res.k, classes, sn_class, r, _equisim_groups(plan, res.comp, equisim, sn_class.size))
    witness = None
    if dim is None or dim >= sn.k + 1:
        witness = _split_class_witness(sn) or _orthogonal_class_witness(sn, dim)
    if witness is None:
        edges = _supernode_edges(plan, res.comp, cls, sn.k)  # (m, 2) int64
        witness = _recolour_witness(sn, edges) or _permute_component_witness(sn, edges)
        if witness is None:
            hyper = _equisim_hyperedges(plan, res.comp, equisim) if equisim else []
            _decide_by_colouring_search(res, sn, edges, hyper, dim, budget)
            return
    _set_witness(res, witness.coord, witness.kind, witness.label, witness.need, witness.description,
                 extra=witness.extra)


def _split_class_witness(sn: _SuperNodes) -> _Witness | None:
    """d >= k + 1: a split class with >= 2 closed groups puts its first group on the new coordinate k."""
    ngroups = _count_per_class(sn.sn_class, sn.grp, sn.k)
    two = sn.split[ngroups[sn.split] >= 2]
    if not two.size:
        return None
    c = int(two[0])
    sns = sn.of_class(c)
    g = sn.grp[sns]
    coord = sn.sn_class.copy()
    coord[sns[g == g[0]]] = sn.k
    return _Witness(coord, "split_class", sn.label(c), sn.k + 1,
                    "one closed group of the class on a new coordinate (Kini App. B.1, case 1)")


def _orthogonal_class_witness(sn: _SuperNodes, dim: int | None) -> _Witness | None:
    """d >= k - 1 + r_c: every super-node of a split class c on a coordinate of its own."""
    fits = sn.split if dim is None else sn.split[sn.k - 1 + sn.r[sn.split] <= dim]
    if not fits.size:
        return None
    c = int(fits[0])
    sns = sn.of_class(c)
    coord = sn.sn_class.copy()
    coord[sns[1:]] = sn.k + np.arange(sns.size - 1)
    return _Witness(coord, "orthogonal_class", sn.label(c), sn.k - 1 + int(sn.r[c]),
                    "every super-node of the class on its own coordinate")


def _recolour_witness(sn: _SuperNodes, edges: np.ndarray) -> _Witness | None:
    """d >= k: a closed group U of a split class (not the whole class) with no orthogonality edge to
    some class c' moves onto c''s coordinate. The first such group in (class, group) order takes the
    smallest such c' (vectorised over all groups)."""
    k, grp, sn_class = sn.k, sn.grp, sn.sn_class
    G = int(grp.max()) + 1
    # the classes each closed group meets through an orthogonality edge, as sorted keys group * k + class
    blocked = _uniq(np.r_[grp[edges[:, 0]] * k + sn_class[edges[:, 1]], grp[edges[:, 1]] * k + sn_class[edges[:, 0]]])
    in_split = np.isin(sn_class, sn.split)
    cand = _uniq(sn_class[in_split] * G + grp[in_split])
    cand_c, cand_g = cand // G, cand % G
    whole = np.bincount(grp, minlength=G)[cand_g] == sn.r[cand_c]
    bk = _uniq(np.r_[blocked, cand_g * k + cand_c])          # blocked classes per group, own class included
    b_grp, b_cls = bk // k, bk % k
    b_start = np.flatnonzero(np.r_[True, b_grp[1:] != b_grp[:-1]])
    b_cnt = np.diff(np.r_[b_start, bk.size])
    rank = np.arange(bk.size) - np.repeat(b_start, b_cnt)
    first_gap = np.full(b_start.size, -1, dtype=np.int64)    # the smallest unblocked class of each group
    mis = np.flatnonzero(b_cls != rank)
    if mis.size:
        gi = np.searchsorted(b_start, mis, side="right") - 1
        keep = np.r_[True, gi[1:] != gi[:-1]]
        first_gap[gi[keep]] = rank[mis[keep]]
    first_gap = np.where(first_gap >= 0, first_gap, b_cnt)
    free = first_gap[np.searchsorted(b_grp[b_start], cand_g)]
    ok = np.flatnonzero(~whole & (free < k))
    if not ok.size:
        return None
    c, gval, c2 = int(cand_c[ok[0]]), int(cand_g[ok[0]]), int(free[ok[0]])
    coord = sn_class.copy()
    coord[grp == gval] = c2
    return _Witness(coord, "recolour", sn.label(c), k,
                    f"a component of the class takes the coordinate of class "
                    f"{sn.label(c2)}, which it never meets as a negative",
                    extra={"to_class": sn.label(c2)})


def _permute_component_witness(sn: _SuperNodes, edges: np.ndarray) -> _Witness | None:
    """d >= k: a connected component (orthogonality edges + equi-similarity links) of the contracted
    graph holding part, not all, of a split class c swaps the coordinates of c and c + 1 (mod k)."""
    k, grp, sn_class, ncomp = sn.k, sn.grp, sn.sn_class, sn.count
    if k < 2:
        return None
    rep = np.full(int(grp.max()) + 1, ncomp, dtype=np.int64)
    np.minimum.at(rep, grp, np.arange(ncomp))  # a representative super-node of every closed group
    eu = np.r_[edges[:, 0], np.arange(ncomp)]
    ev = np.r_[edges[:, 1], rep[grp]]
    _, cc = connected_components(coo_matrix((np.ones(eu.size), (eu, ev)), shape=(ncomp, ncomp)),
                                 directed=False)
    qc, cnt = _uniq_counts(cc.astype(np.int64) * k + sn_class)
    q_of, c_of = qc // k, qc % k
    hit = np.flatnonzero((sn.r[c_of] >= 2) & (cnt < sn.r[c_of]))
    if not hit.size:
        return None
    q, c = int(q_of[hit[0]]), int(c_of[hit[0]])
    c2 = (c + 1) % k
    coord = sn_class.copy()
    inQ = cc == q
    coord[inQ & (sn_class == c)] = c2
    coord[inQ & (sn_class == c2)] = c
    return _Witness(coord, "permute_component", sn.label(c), k,
                    "a connected part of the constraint graph swaps two class coordinates",
                    extra={"swapped_with": sn.label(c2)})


def _decide_by_colouring_search(res, sn: _SuperNodes, edges: np.ndarray, hyper: list, dim: int | None,
                                budget: int) -> None:
    """No quick witness applies: search, for each split class c and each of its super-nodes u2 after
    the first u1, for a proper d-colouring of the contracted graph (each equi-similarity hyperedge
    all-equal or all-distinct) with colour(u1) != colour(u2). One is a witness; none (within the
    budget, and no equi-similarity batch left) proves the OF unique at this d."""
    d = dim if dim is not None else sn.k
    ncomp = sn.count
    if ncomp > MAX_SEARCH_NODES:
        res.unique = None
        res.reason = (f"undecided at d = {d}: {ncomp} super-nodes is beyond the exhaustive colouring "
                      f"search ({MAX_SEARCH_NODES}) and no quick witness applies")
        return
    adj = [set() for _ in range(ncomp)]
    for u, v in edges.tolist():
        adj[u].add(v)
        adj[v].add(u)
    nodes_used = [0]
    for c in sn.split.tolist():
        sns = sn.of_class(c)
        for u2 in sns[1:]:
            col = _colour_search(ncomp, adj, hyper, d, int(sns[0]), int(u2), budget, nodes_used)
            if col is None and nodes_used[0] > budget:
                res.unique = None
                res.reason = (f"undecided: the colouring search exceeded its budget of {budget} nodes "
                              f"(d = {d})")
                return
            if col is not None:
                _set_witness(res, np.asarray(col), "colouring", sn.label(c), d,
                             f"a proper {d}-colouring of the contracted constraint graph that is "
                             f"not the class colouring")
                return
    if hyper:
        res.unique = None
        res.reason = (f"undecided at d = {d}: equi-similarity batches (single-class, size >= 3) survive "
                      f"and no 0/1 witness exists; witnesses with 0 < t < 1 were not searched")
        return
    res.unique = True
    res.reason = (f"d = {d}: classes {[sn.label(c) for c in sn.split]} are not "
                  f"alignment-connected, but the contracted orthogonality graph is uniquely "
                  f"{d}-colourable (exhaustive search, {nodes_used[0]} nodes): NC is forced by the "
                  f"lack of room in R^{d}_+")


def _equisim_hyperedges(plan, comp, equisim):
    off = plan.offsets
    return [np.unique(comp[plan.indices[off[b]:off[b + 1]]]).tolist() for b in equisim]


def _set_witness(res, coord, kind, cls_label, need, desc, extra=None):
    coord = _compact(np.asarray(coord))
    res.unique = False
    res.coord = {u: int(coord[u]) for u in range(coord.size)}
    res.witness = {"kind": kind, "class": cls_label, "dim_needed": int(max(need, coord.max() + 1)),
                   "description": desc, **(extra or {})}
    res.reason = (f"class {cls_label} is not one alignment component and a non-OF optimum exists "
                  f"({kind}, needs d >= {res.witness['dim_needed']})")


def _supernode_edges(plan: Plan, comp: np.ndarray, cls: np.ndarray, k: int) -> np.ndarray:
    """Contracted orthogonality edges between super-nodes (deduplicated; per batch at most
    |classes with a positive| x |super-nodes in the batch| pairs, never the sample clique)."""
    off = plan.offsets
    keys = []
    ncomp = int(comp.max()) + 1
    seen = set()
    for b in range(plan.num_batches):
        mem = plan.indices[off[b]:off[b + 1]]
        sig = hash(mem.tobytes())  # a repeated batch (fixed partition, every epoch) adds nothing new
        if sig in seen:
            continue
        seen.add(sig)
        lab = cls[mem]
        u, cnt = _uniq_counts(lab)
        if u.size < 2 or cnt.max() < 2:
            continue
        pair = _uniq(lab * ncomp + comp[mem])
        pl, ps = pair // ncomp, pair % ncomp
        isanchor = np.isin(pl, u[cnt >= 2])
        anchors, al = ps[isanchor], pl[isanchor]
        a = np.repeat(anchors, ps.size)
        bb = np.tile(ps, anchors.size)
        m = np.repeat(al, ps.size) != np.tile(pl, anchors.size)
        keys.append(np.minimum(a[m], bb[m]) * ncomp + np.maximum(a[m], bb[m]))
        if sum(k.size for k in keys) > 4_000_000:
            keys = [_uniq(np.concatenate(keys))]
    if not keys:
        return np.zeros((0, 2), dtype=np.int64)
    allk = _uniq(np.concatenate(keys))
    return np.stack([allk // ncomp, allk % ncomp], axis=1)


def _uniq(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based; faster than np.unique's hash path on these int64 keys)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if x.size else x


def _uniq_counts(x: np.ndarray):
    x = np.sort(x)
    start = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    return x[start], np.diff(np.r_[start, x.size])


def _colour_search(N, adj, hyper, d, u1, u2, budget, counter):
    """A proper colouring with colours 0..d-1, colour(u1)=0, colour(u2)=1, each hyperedge all-equal or
    all-distinct; None if none exists (or the budget ran out: counter[0] > budget). Colours are
    interchangeable, so fixing u1, u2 to 0, 1 loses nothing."""
    if d < 2:
        return None
    col = [-1] * N
    col[u1], col[u2] = 0, 1
    hyper_of = [[] for _ in range(N)]
    for h in hyper:
        for u in h:
            hyper_of[u].append(h)

    def ok(u):
        c = col[u]
        for v in adj[u]:
            if col[v] == c:
                return False
        for h in hyper_of[u]:
            cs = [col[v] for v in h if col[v] >= 0]
            if len(set(cs)) not in (1, len(cs)):
                return False
        return True

    if not (ok(u1) and ok(u2)):
        return None
    order_pool = set(range(N)) - {u1, u2}

    def rec():
        counter[0] += 1
        if counter[0] > budget:
            return False
        if not order_pool:
            return True
        # DSATUR: most distinct neighbour colours first
        u = max(order_pool, key=lambda x: (len({col[v] for v in adj[x] if col[v] >= 0}), len(adj[x])))
        order_pool.discard(u)
        used_max = max(col)
        for c in range(min(d, used_max + 2)):  # colours above used_max+1 are symmetric
            col[u] = c
            if ok(u) and rec():
                return True
            if counter[0] > budget:
                break
        col[u] = -1
        order_pool.add(u)
        return False

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, N + 1000))
    try:
        return list(col) if rec() else None
    finally:
        sys.setrecursionlimit(old)


def witness_embedding(res: CheckResult, d: int | None = None) -> np.ndarray:
    """The non-OF optimum as an explicit (n, d) non-negative unit matrix: sample i gets e_{coord(super-node)}."""
    if res.coord is None:
        raise InputError("this plan has no non-OF witness (the OF is unique or the check was undecided)")
    coord = np.array([res.coord[int(u)] for u in res.comp])
    need = int(coord.max()) + 1
    d = need if d is None else int(d)
    if d < need:
        raise InputError(f"the witness needs d >= {need}")
    H = np.zeros((res.n, d))
    H[np.arange(res.n), coord] = 1.0
    return H


def of_embedding(labels, d: int | None = None) -> np.ndarray:
    """An OF: class c (by rank of its label) on coordinate c."""
    from nctheory.geometry import orthogonal_frame

    classes, cls = np.unique(np.asarray(labels), return_inverse=True)
    return orthogonal_frame(classes.size, d)[cls]


def suggest_fix(plan: Plan, res: CheckResult, cov: ClassPairs, dim, max_memory=None) -> dict:
    """Binding examples to add (Kini Alg. 1 restricted to the classes that fail), verified by re-checking.

    plan: the plan as given (before view expansion: binding adds a *sample*, with all its views).
    Classes that fail = disconnected classes and classes in a missing pair. One binding example per
    such class (a member of its largest component) is added to every batch; samples used by no
    batch are listed (they must be added to some batch). If the restricted binding does not verify,
    full Alg. 1 (one example of every class) is tried. A scope whose binding would add more than
    MAX_FIX_ENTRIES batch entries is not attempted (said in ``skipped``)."""
    from nctheory.batching.schemes import batch_binding, choose_binding_examples

    k = plan.k
    classes = plan.label_values
    r = np.array([res.class_super_nodes[int(v)] for v in classes.tolist()])
    fail = np.flatnonzero((r >= 2) | (cov.degree() < k - 1))
    used = np.zeros(plan.n, bool)
    used[plan.indices] = True
    unused = np.flatnonzero(~used)
    out = {"classes": classes[fail[:MAX_LISTED]].tolist(), "num_classes": int(fail.size),
           "unused_samples": unused[:20].tolist(), "num_unused_samples": int(unused.size)}
    comp = res.comp[:plan.n]  # view 0 of sample i is row i of the expanded plan
    skipped = []
    for scope, which in (("failing classes", fail), ("all classes (Alg. 1)", np.arange(k))):
        added = plan.num_batches * int(which.size) * plan.views
        if added > MAX_FIX_ENTRIES:
            skipped.append(f"{scope}: binding would add up to {added:.3g} batch entries (limit {MAX_FIX_ENTRIES:.3g})")
            continue
        bind = choose_binding_examples(plan.original_labels(), classes=classes[which], comp=comp)
        fixed = batch_binding(plan, bind)
        if unused.size:
            # the unused samples join the first batch (with the binding examples)
            fixed = _add_to_first_batch(fixed, unused)
        r2 = check_plan(fixed, dim=dim, with_fix=False, max_memory=max_memory)
        out.update({"scope": scope, "binding_examples": {str(c): int(i) for c, i in bind.items()},
                    "added_per_batch": len(bind), "verified_unique": r2.unique is True})
        if r2.unique is True:
            break
    if "scope" not in out:
        out.update({"scope": None, "binding_examples": {}, "added_per_batch": 0, "verified_unique": None})
    if skipped:
        out["skipped"] = "; ".join(skipped)
    return out


def _add_to_first_batch(plan: Plan, extra: np.ndarray) -> Plan:
    bs = plan.batches
    if plan.multiset:
        first = np.concatenate([bs[0], extra[~np.isin(extra, bs[0])]])
    else:
        first = np.unique(np.concatenate([bs[0], extra]))
    sizes = np.r_[first.size, np.diff(plan.offsets)[1:]]
    idx = np.concatenate([first, plan.indices[plan.offsets[1]:]])
    return plan.with_batches(idx, np.r_[0, np.cumsum(sizes)].astype(np.int64), plan.epoch_offsets)

"""Measure a researcher's own features against the theory: `nctheory measure` and the per-epoch measurements
of every run folder (``nctheory train`` and :class:`nctheory.Monitor` both call :func:`geometry_row`).

For an (n, d) feature matrix H with class labels y (any integer or string ids, mapped to 0..k-1 in sorted
order) and a temperature tau, :func:`measure` reports, in float64:

- the SCL loss of exactly these features: the papers' sum form (Kini et al. Eq. 2, full batch; Eq. 4 with a
  batching plan), definition :func:`nctheory.losses.scl.scl`, and its mean form (sum / number of anchors,
  every sample an anchor: the reference SupCon value :func:`nctheory.losses.supcon_mean` with
  base_tau = tau); anchors without a positive contribute 0 and stay negatives (the package convention);
- Kini et al.'s lower bound for the same counts: Thm 1 (full batch) or Thm 2 (the plan's batches),
  :mod:`nctheory.bounds` (one-sample classes left out, as corrected there), the printed formula beside it,
  and the excess loss - bound;
- whether the bound is a theorem for these features: Thm 1/2 assume unit rows in the non-negative orthant
  (UFM+). Checked: the smallest entry (>= 0 exactly) and max_i | ||h_i|| - 1 | (<= UNIT_TOL);
- every NC metric of :mod:`nctheory.metrics`, named by paper and variant (the Koromilas metrics on the
  L2-normalised rows with the fixed-prototype classifier, normalised class means, as the authors' code);
- the certified UFM and UFM+ optimum of full-batch SCL for the same counts, tau and dimension
  (:func:`nctheory.solvers.solve_ufm`, symmetry-reduced program) and Gill et al.'s Delta_{G*} of the
  features' class-mean Gram to the optimum's;
- NCC accuracy on the features (train) and on test features when given.

Bounded memory. Features are read in chunks of ``chunk_rows`` rows (a C-order ``.npy`` file by explicit
reads, so a 1.28M x 2048 float32 file is never in memory): a first pass accumulates counts, class sums
and the checks; a second pass, with the class means known, the within-class sums (beta_NC along the
between-class directions, spread, alignment, NCC); the effective ranks take one class at a time (a class of
more than max(chunk_rows, d) rows through its d x d scatter matrix). The full-batch loss is
:func:`scl_streamed`: O(chunk_rows * (d + chunk_rows)) memory, O(n^2 d) time (a log-sum-exp over
anchor / column tiles, the positive terms from the class sums). Each streamed quantity calls the
statistics form of its definition in :mod:`nctheory.metrics` (tests check every one against the array
functions and a brute-force float64 computation).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nctheory import bounds
from nctheory import metrics as M
from nctheory.errors import InputError, NCTheoryError
from nctheory.geometry import as_float64
from nctheory.validate import check_budget, estimate_bytes, input_file, real_array

CHUNK_ROWS = 4096  # rows per chunk: 4096 x 2048 float64 = 64 MiB, and a 4096 x 4096 loss tile = 128 MiB
# |‖h_i‖ - 1| allowed for "unit rows": float32 normalisation (F.normalize) leaves |‖h‖ - 1| of a few
# float32 ulps (6e-8 each); 1e-5 accepts that for any d up to ~10^5 and refuses features that were not
# normalised (their norms are off by O(1)).
UNIT_TOL = 1e-5
# The certified optimum uses the symmetry-reduced program, one orbit per distinct class size: its PSD cone
# has that many rows; above this it takes minutes to hours (solvers/reduced.py: k = 100 ~1-3 min).
MAX_UFM_ORBITS = 100
# Loss tiles are computed in float64; the "geometry" column names a class-mean geometry with this tolerance
# (a trained network never reaches Delta = 0), capped at 0.3 x the OF-ETF separation
# sqrt(2 - 2 sqrt((k-1)/k)) (0.32 at k = 10, 0.10 at k = 100) so the two names never overlap.
GEOMETRY_TOL = 0.1


def geometry_tol(k: int) -> float:
    return min(GEOMETRY_TOL, 0.3 * math.sqrt(2.0 - 2.0 * math.sqrt((k - 1) / k)))


# ============================================================================================ sources
class FeatureRows:
    """Read access to an (n, d) feature matrix, as float64 row blocks (the only access measure needs)."""

    n: int
    d: int
    name: str = "features"

    def read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows idx (sorted, distinct), float64."""
        raise NotImplementedError

    def chunks(self, rows: int):
        """(start, float64 block) over the matrix, ``rows`` rows at a time; refuses non-finite entries."""
        for start in range(0, self.n, rows):
            block = self.read(start, min(start + rows, self.n))
            if not np.isfinite(block).all():
                bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                raise InputError(f"{self.name} row {bad} holds NaN or infinite entries")
            yield start, block


class ArrayRows(FeatureRows):
    """A numpy array, np.memmap or torch tensor (any device or dtype)."""

    def __init__(self, a, name: str = "features"):
        # dtype and shape checked here (nctheory.validate); finiteness chunk by chunk as the rows are read
        a = real_array(a, name, ndim=2, finite=False)
        self.torch = hasattr(a, "detach") and hasattr(a, "cpu")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise InputError(f"{name} is empty (shape {tuple(a.shape)})")
        self.a, self.n, self.d, self.name = a, int(a.shape[0]), int(a.shape[1]), name

    def _np(self, block) -> np.ndarray:
        if self.torch:
            return block.detach().cpu().double().numpy()
        return np.array(block, dtype=np.float64)

    def read(self, start, stop):
        return self._np(self.a[start:stop])

    def take(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        if self.torch:
            import torch

            return self._np(self.a[torch.as_tensor(idx, device=self.a.device)])
        return self._np(self.a[idx])


class NpyRows(FeatureRows):
    """A C-order ``.npy`` file read by explicit seeks and reads: only the rows asked for are in memory (a
    memory map would keep every page it touched resident in the process)."""

    def __init__(self, path, name: str | None = None):
        self.path = Path(path)
        self.name = name or str(path)
        try:  # the header only: shape, dtype, order and where the data start (any .npy format version)
            mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except OSError as exc:
            raise InputError(f"cannot read {self.name}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise InputError(f"{self.name} is not a readable .npy array file: {exc}") from None
        if not isinstance(mm, np.memmap):
            raise InputError(f"{self.name} is not a .npy array file")
        shape, dtype, self.offset = mm.shape, mm.dtype, int(mm.offset)
        fortran = mm.ndim > 1 and mm.flags.f_contiguous and not mm.flags.c_contiguous
        del mm
        if fortran:
            raise InputError(f"{self.name} is stored in Fortran order; save it with np.save(np.ascontiguousarray(a))")
        if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
            raise InputError(f"{self.name} must hold an (n, d) array with n, d >= 1, got shape {shape}")
        if dtype.kind not in "fiu" or dtype.hasobject:
            raise InputError(f"{self.name} must hold real numbers, got dtype {dtype}")
        self.n, self.d, self.dtype = int(shape[0]), int(shape[1]), dtype
        need = self.offset + self.n * self.d * dtype.itemsize
        if self.path.stat().st_size < need:
            raise InputError(f"{self.name} is truncated: {self.path.stat().st_size} bytes, the header needs {need}")

    def read(self, start, stop):
        row = self.d * self.dtype.itemsize
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * row)
            out = np.fromfile(f, dtype=self.dtype, count=(stop - start) * self.d)
        return out.reshape(stop - start, self.d).astype(np.float64)

    def take(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty((idx.size, self.d))
        if idx.size == 0:
            return out
        row = self.d * self.dtype.itemsize
        runs = np.flatnonzero(np.diff(idx) != 1) + 1  # contiguous runs of rows: one read each
        starts, stops = np.r_[0, runs], np.r_[runs, idx.size]
        with open(self.path, "rb") as f:
            for a, b in zip(starts, stops):
                f.seek(self.offset + int(idx[a]) * row)
                out[a:b] = np.fromfile(f, dtype=self.dtype, count=(b - a) * self.d).reshape(b - a, self.d)
        return out


def as_rows(x, name: str = "features") -> FeatureRows:
    if isinstance(x, FeatureRows):
        return x
    if isinstance(x, (str, Path)):
        return load_features(x).features
    return ArrayRows(x, name)


@dataclass
class FeatureFile:
    """What a features file holds: the features, and labels / test features when the file has them."""

    features: FeatureRows
    labels: object = None
    test_features: FeatureRows | None = None
    test_labels: object = None
    source: str = ""


NPZ_KEYS = ("features", "labels", "test_features", "test_labels")


def load_features(path) -> FeatureFile:
    """Read features from ``.npy`` (streamed), ``.npz`` (keys features, labels, test_features, test_labels;
    loaded whole: zip members cannot be read by row) or ``.pt`` / ``.pth`` (a tensor, or a dict with those
    keys; memory-mapped by torch when saved in its zip format)."""
    p = input_file(path, "FEATURES", suffixes=(".npy", ".npz", ".pt", ".pth"))
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return FeatureFile(NpyRows(p), source=str(p))
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                arrs = {key: z[key] for key in z.files}
        except Exception as exc:  # zip / npy format errors of many kinds: one line
            raise InputError(f"cannot read {p}: {type(exc).__name__}: {exc}") from None
        return _from_mapping(arrs, p)
    if suffix in (".pt", ".pth"):
        import torch

        try:
            try:
                obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
                obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(f"cannot read {p}: {type(exc).__name__}: {exc}") from None
        if isinstance(obj, torch.Tensor):
            return FeatureFile(ArrayRows(obj, str(p)), source=str(p))
        if isinstance(obj, dict):
            return _from_mapping(obj, p)
        raise InputError(f"{p} holds a {type(obj).__name__}; expected a tensor or a dict with key 'features'")


def _from_mapping(arrs: dict, p: Path) -> FeatureFile:
    if "features" not in arrs:
        raise InputError(f"{p} has no 'features' (found {', '.join(map(str, arrs)) or 'nothing'})")
    unknown = sorted(set(map(str, arrs)) - set(NPZ_KEYS))
    if unknown:
        raise InputError(f"{p} holds unknown key(s) {', '.join(unknown)}; allowed: {', '.join(NPZ_KEYS)}")
    if ("test_features" in arrs) != ("test_labels" in arrs):
        raise InputError(f"{p} must hold both test_features and test_labels, or neither")
    test = ArrayRows(arrs["test_features"], f"{p}:test_features") if "test_features" in arrs else None
    return FeatureFile(ArrayRows(arrs["features"], f"{p}:features"), arrs.get("labels"), test,
                       arrs.get("test_labels"), str(p))


def read_label_file(path, flag: str = "--labels") -> np.ndarray:
    """Class ids from ``.npy`` / ``.npz`` (key labels) / ``.pt`` / ``.json`` (a list, or {"labels": [...]}) /
    text (one id per line; integers or strings)."""
    p = input_file(path, flag)
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "labels" not in z.files:
                    raise InputError(f"{p} has no array 'labels' (found {', '.join(z.files)})")
                return z["labels"]
        if suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(p, map_location="cpu", weights_only=True)
            return obj["labels"] if isinstance(obj, dict) else obj
        if suffix == ".json":
            obj = json.loads(p.read_text())
            obj = obj.get("labels") if isinstance(obj, dict) else obj
            if not isinstance(obj, list):
                raise InputError(f"{p} must hold a JSON list of class ids (or {{\"labels\": [...]}})")
            return np.asarray(obj)
        return np.asarray([t for t in p.read_text().splitlines() if t.strip() != ""])
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read labels from {p}: {type(exc).__name__}: {exc}") from None


def encode_labels(raw, classes=None, name: str = "labels") -> tuple[np.ndarray, list]:
    """(codes in 0..k-1, classes) for any integer or string class ids: class c is ``classes[c]``, the ids
    in sorted order (integer-valued floats count as integers). With ``classes`` given (the training
    mapping), every id must be one of them."""
    if hasattr(raw, "detach") and hasattr(raw, "cpu"):
        raw = raw.detach().cpu().numpy()
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty")
    if arr.dtype.kind == "b":
        raise InputError(f"{name} must be integer or string class ids, got booleans")
    if arr.dtype.kind == "f":
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise InputError(f"{name} must be integer or string class ids, got non-integer numbers")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "O":
        kinds = {type(v) for v in arr}
        if kinds <= {int, np.int64, np.int32}:
            arr = arr.astype(np.int64)
        elif kinds <= {str}:
            arr = arr.astype(str)
        else:
            raise InputError(f"{name} must be all integers or all strings")
    elif arr.dtype.kind not in "iuUS":
        raise InputError(f"{name} must be integer or string class ids, got dtype {arr.dtype}")
    if classes is None:
        uniq, codes = np.unique(arr, return_inverse=True)
        return codes.astype(np.int64).reshape(-1), [v.item() if hasattr(v, "item") else v for v in uniq]
    table = np.asarray(classes)
    if (table.dtype.kind in "iu") != (arr.dtype.kind in "iu"):
        raise InputError(f"{name} are {'integers' if arr.dtype.kind in 'iu' else 'strings'} but the training "
                         f"labels are {'integers' if table.dtype.kind in 'iu' else 'strings'}")
    order = np.argsort(table, kind="stable")
    pos = np.searchsorted(table[order], arr)
    pos = np.clip(pos, 0, table.size - 1)
    codes = order[pos]
    bad = np.flatnonzero(table[codes] != arr)
    if bad.size:
        raise InputError(f"{name}[{int(bad[0])}] = {arr[bad[0]]!r} is not a class of the training labels")
    return codes.astype(np.int64), list(classes)


def mapping_note(classes: list) -> str | list:
    """'identity' when the ids are already 0..k-1, else the list (class c is the id at position c)."""
    if all(isinstance(c, (int, np.integer)) for c in classes) and list(classes) == list(range(len(classes))):
        return "identity"
    return list(classes)


# ============================================================================================ statistics
def _class_sums(Z: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """(k, d) sums of the rows of Z by class, O(n d) (rows sorted by class, then np.add.reduceat)."""
    out = np.zeros((k, Z.shape[1]))
    order = np.argsort(y, kind="stable")
    ys = y[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ys)) + 1]
    out[ys[starts]] = np.add.reduceat(Z[order], starts, axis=0)
    return out


def _unit_and_norms(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows normalised, row norms), each row first scaled by a power of two as :mod:`nctheory.metrics`
    normalises rows, so rows of any finite size normalise and their norms neither underflow nor overflow;
    a zero row stays zero (the Koromilas metrics then refuse it)."""
    big = np.abs(Z).max(axis=1, keepdims=True)
    e = np.frexp(np.where(big > 0, big, 1.0))[1]
    U = np.ldexp(Z, -e)
    norms = np.linalg.norm(U, axis=1, keepdims=True)
    unit = np.where(norms > 0, U / np.where(norms > 0, norms, 1.0), 0.0)
    return unit, np.ldexp(norms, e)[:, 0]


def _unit(Z: np.ndarray) -> np.ndarray:
    return _unit_and_norms(Z)[0]


@dataclass
class FeatureStatistics:
    """Sufficient statistics of (features, labels) for every metric, accumulated chunk by chunk."""

    n: int
    d: int
    k: int
    counts: np.ndarray
    sums: np.ndarray              # (k, d) class sums of h_i
    sample_sum: np.ndarray        # (d,)
    unit_sums: np.ndarray         # (k, d) class sums of h_i / ||h_i|| (Koromilas metrics)
    unit_sample_sum: np.ndarray
    max_abs: float                # max_i,j |h_ij|
    min_entry: float
    max_norm_deviation: float     # max_i | ||h_i|| - 1 |
    zero_rows: int
    second: dict = field(default_factory=dict)   # second-pass sums
    eranks: dict = field(default_factory=dict)   # erank_intra per variant, or the reason it is undefined

    @property
    def means(self) -> np.ndarray:
        return self.sums / self.counts[:, None]

    @property
    def exponent(self) -> int:
        """e with max |h_ij| in [2^(e-1), 2^e): the scale-invariant metrics are computed on h * 2^-e, as
        :mod:`nctheory.metrics` computes them (its _pow2_scaled), so features of any finite size give them."""
        return int(np.frexp(self.max_abs)[1]) if 0 < self.max_abs < math.inf else 0

    @property
    def scaled_means(self) -> np.ndarray:
        return np.ldexp(self.means, -self.exponent)

    def scaled_gram(self) -> np.ndarray:
        """G_M of the features times 2^-exponent (for the scale-invariant Delta and geometry names)."""
        Ms = self.scaled_means
        return Ms @ Ms.T

    @property
    def unit_means(self) -> np.ndarray:
        return self.unit_sums / self.counts[:, None]

    @property
    def nonnegative(self) -> bool:
        return bool(self.min_entry >= 0)

    @property
    def unit_rows(self) -> bool:
        return bool(self.max_norm_deviation <= UNIT_TOL)

    def gram(self) -> np.ndarray:
        """G_M = M M^T of the raw class means (:func:`nctheory.metrics.class_mean_gram`; not scale-invariant:
        for features near 1e-200 / 1e200 its entries underflow to 0 / overflow to inf, as that function's do)."""
        Mm = self.means
        with np.errstate(over="ignore", under="ignore"):
            return Mm @ Mm.T


def _progress(it, total, desc, progress):
    if not progress:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


def accumulate(rows: FeatureRows, y: np.ndarray, k: int, *, W=None, chunk_rows: int = CHUNK_ROWS,
               koromilas: bool = True, progress: bool = False) -> FeatureStatistics:
    """Both passes over ``rows`` (labels y in [0, k), every class present) and the per-class eranks.

    W: the (k, d) classifier for the Koromilas alignment metrics (None: the fixed-prototype classifier,
    the normalised class means of the normalised features)."""
    n, d = rows.n, rows.d
    chunk_rows = _check_chunk(chunk_rows)
    if y.size and (y.min() < 0 or y.max() >= k):
        raise InputError(f"labels must lie in [0, {k}), got {int(y.min())}..{int(y.max())}")
    counts = np.bincount(y, minlength=k)
    if np.any(counts == 0):
        raise InputError(f"class {int(np.flatnonzero(counts == 0)[0])} has no sample, its mean is undefined")
    st = FeatureStatistics(n, d, k, counts, np.zeros((k, d)), np.zeros(d), np.zeros((k, d)), np.zeros(d), 0.0,
                           math.inf, 0.0, 0)
    nchunks = -(-n // chunk_rows)
    for start, Z in _progress(rows.chunks(chunk_rows), nchunks, "pass 1/2: class sums", progress):
        yc = y[start:start + Z.shape[0]]
        U, norms = _unit_and_norms(Z)
        st.sums += _class_sums(Z, yc, k)
        st.unit_sums += _class_sums(U, yc, k)
        st.sample_sum += Z.sum(0)
        st.unit_sample_sum += U.sum(0)
        big = np.abs(Z).max(axis=1)
        st.max_abs = max(st.max_abs, float(big.max()))
        st.min_entry = min(st.min_entry, float(Z.min()))
        st.max_norm_deviation = max(st.max_norm_deviation, float(np.abs(norms - 1.0).max()))
        st.zero_rows += int(np.sum(big == 0))
    _second_pass(st, rows, y, W, chunk_rows, koromilas, progress, nchunks)
    if koromilas:
        _class_eranks(st, rows, y, chunk_rows, progress)
    return st


def _check_chunk(chunk_rows) -> int:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise InputError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return int(chunk_rows)


def _second_pass(st: FeatureStatistics, rows, y, W, chunk_rows, koromilas, progress, nchunks):
    # the scale-invariant sums on the rows times 2^-exponent (FeatureStatistics.exponent; exact)
    e = st.exponent
    Mm = st.scaled_means
    dirs = {v: M.beta_nc_directions(Mm, np.ldexp(st.sample_sum / st.n, -e), st.n, v) for v in ("kini", "papyan")}
    sec = {"within": 0.0, "total": 0.0, "ncc_correct": 0,
           "beta_sq": {v: (np.zeros(len(dd.s)) if dd is not None else None) for v, dd in dirs.items()},
           "beta_dirs": dirs, "align_instance": 0.0, "align_error": None}
    if koromilas:
        Wk = _fp_classifier(st) if W is None else as_float64(W, "W")
        if Wk.shape != (st.k, st.d):
            raise InputError(f"W must have shape (k, d) = ({st.k}, {st.d}), got {Wk.shape}")
        sec["W"], sec["W_given"] = Wk, W is not None
    for start, Z in _progress(rows.chunks(chunk_rows), nchunks, "pass 2/2: within-class sums", progress):
        yc = y[start:start + Z.shape[0]]
        U = _unit(Z)
        Z = np.ldexp(Z, -e)
        D = Z - Mm[yc]
        sec["within"] += float(np.sum(D**2))
        sec["total"] += float(np.sum(Z**2))
        for v, dd in dirs.items():
            if dd is not None:
                sec["beta_sq"][v] += np.sum((D @ dd.V.T) ** 2, axis=0)
        sec["ncc_correct"] += int(np.sum(M.ncc_predict(Mm, Z) == yc))
        if koromilas and sec["align_error"] is None:
            try:  # (1/N) sum_i ||u_i - w_hat_{y_i}||^2 is a mean over samples: chunk means weighted by size
                sec["align_instance"] += M.align_weight_instance(U, sec["W"], yc) * Z.shape[0]
            except InputError as exc:  # a zero row has no direction
                sec["align_error"] = str(exc)
    st.second = sec


def _fp_classifier(st: FeatureStatistics) -> np.ndarray:
    """The fixed-prototype classifier of SCL (Koromilas et al.): normalised class means of the normalised rows."""
    return _unit(st.unit_means)


def _class_eranks(st: FeatureStatistics, rows, y, chunk_rows, progress):
    """erank_intra of the normalised rows (Koromilas), one class at a time, both variants."""
    if st.counts.min() < 2:
        c = int(np.argmin(st.counts))
        reason = f"erank_intra needs >= 2 samples in every class; class {c} has {int(st.counts[c])}"
        st.eranks = {v: reason for v in ("paper", "code")}
        return
    order = np.argsort(y, kind="stable")
    starts = np.r_[0, np.cumsum(st.counts)]
    vals = {"paper": [], "code": []}
    cap = max(chunk_rows, st.d)
    for c in _progress(range(st.k), st.k, "effective ranks by class", progress):
        idx = np.sort(order[starts[c]:starts[c + 1]])
        try:
            if idx.size <= cap:
                X = _unit(rows.take(idx))
                spec, max_abs = M.cov_spectrum(X), float(np.abs(X).max())
            else:  # more rows than fit: the centred scatter, chunk by chunk
                mu = st.unit_means[c]
                S, max_abs = np.zeros((st.d, st.d)), 0.0
                for a in range(0, idx.size, chunk_rows):
                    X = _unit(rows.take(idx[a:a + chunk_rows]))
                    max_abs = max(max_abs, float(np.abs(X).max()))
                    Xc = X - mu
                    S += Xc.T @ Xc
                spec = M.cov_spectrum_from_scatter(S, idx.size)
            for v in vals:
                vals[v].append(M.class_spectrum_erank(spec, max_abs, c, v))
        except InputError as exc:
            st.eranks = {v: str(exc) for v in vals}
            return
    st.eranks = {v: float(np.mean(x)) for v, x in vals.items()}


# ============================================================================================ the loss
def scl_streamed(rows: FeatureRows, y: np.ndarray, tau: float, *, class_sums: np.ndarray | None = None,
                 chunk_rows: int = CHUNK_ROWS, device: str = "cpu", progress: bool = False) -> float:
    """Full-batch SCL in the papers' sum form (Kini et al. Eq. 2), float64, in O(chunk_rows (d + chunk_rows))
    memory: the value of :func:`nctheory.losses.scl.scl` (tested equal), computed as

        L = sum_{i: n_{y_i} >= 2} [ LSE_{l != i} (h_i.h_l / tau) - (h_i.S_{y_i} - ||h_i||^2) / (tau (n_{y_i} - 1)) ]

    with S_c = sum_{j: y_j = c} h_j (the positive terms from the class sums) and the log-sum-exp
    accumulated online over column tiles (running maximum and rescaled sum). Anchors whose class has one
    sample contribute 0 and are negatives for the others (the package convention). O(n^2 d) time."""
    import torch

    from nctheory.losses._inputs import check_tau

    tau = check_tau(tau)
    chunk_rows = _check_chunk(chunk_rows)
    dev = torch.device(device)
    n = rows.n
    y = np.asarray(y, dtype=np.int64)
    k = int(y.max()) + 1
    counts = np.bincount(y, minlength=k)
    if class_sums is None:
        class_sums = np.zeros((k, rows.d))
        for start, Z in rows.chunks(chunk_rows):
            class_sums += _class_sums(Z, y[start:start + Z.shape[0]], k)
    Ssum = torch.as_tensor(class_sums, dtype=torch.float64, device=dev)
    cnt = torch.as_tensor(counts, device=dev)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    nblocks = -(-n // chunk_rows)
    for a0 in _progress(range(0, n, chunk_rows), nblocks, "loss: anchor blocks", progress):
        a1 = min(a0 + chunk_rows, n)
        Za = torch.as_tensor(rows.read(a0, a1), device=dev)
        ya = torch.as_tensor(y[a0:a1], device=dev)
        m = torch.full((a1 - a0,), -math.inf, dtype=torch.float64, device=dev)
        s = torch.zeros(a1 - a0, dtype=torch.float64, device=dev)
        for c0, Zc in rows.chunks(chunk_rows):
            S = Za @ torch.as_tensor(Zc, device=dev).T / tau
            lo, hi = max(a0, c0), min(a1, c0 + Zc.shape[0])
            if lo < hi:  # the tile holds diagonal entries l = i: not in the denominator
                i = torch.arange(lo, hi, device=dev)
                S[i - a0, i - c0] = -math.inf
            m_new = torch.maximum(m, S.max(dim=1).values)
            finite = torch.isfinite(m_new)
            shift = torch.where(finite, m_new, torch.zeros_like(m_new))
            s = torch.where(finite, s * torch.exp(m - shift) + torch.exp(S - shift[:, None]).sum(dim=1), s)
            m = m_new
        lse = m + torch.log(s)
        na = cnt[ya]
        pos = ((Za * Ssum[ya]).sum(dim=1) - (Za * Za).sum(dim=1)) / (tau * (na - 1).clamp(min=1).double())
        total = total + torch.where(na >= 2, lse - pos, torch.zeros_like(lse)).sum()
    return float(total)


def scl_plan(rows: FeatureRows, y: np.ndarray, batches, tau: float, device: str = "cpu",
             progress: bool = False) -> float:
    """Mini-batch SCL (Kini et al. Eq. 4): sum over the batches of :func:`nctheory.losses.scl.scl` of the
    batch's rows, read batch by batch (a sample repeated in a batch is a second copy of its row)."""
    import torch

    from nctheory.losses.scl import scl

    dev = torch.device(device)
    total = 0.0
    for b in _progress(batches, len(batches), "loss: batches", progress):
        idx = np.asarray(b, dtype=np.int64)
        uniq, inv = np.unique(idx, return_inverse=True)
        Zb = torch.as_tensor(rows.take(uniq)[inv], device=dev)
        total += float(scl(Zb, torch.as_tensor(y[idx], device=dev), tau))
    return total


# ============================================================================================ reports
def nc_metrics(st: FeatureStatistics, koromilas: bool = True) -> dict:
    """Every metric of :mod:`nctheory.metrics`, grouped by paper and named by variant, from the statistics.
    An undefined value is None, its reason under "undefined"."""
    Mm, k = st.means, st.k
    G = st.scaled_gram()  # the Deltas and the geometry name are scale-invariant
    undefined: dict = {}

    def put(group, key, fn, *a, **kw):
        try:
            group[key] = fn(*a, **kw)
        except InputError as exc:
            group[key] = None
            undefined[key] = str(exc)

    kini, gill, papyan, ours = {}, {}, {}, {}
    try:
        cls = M.classify_geometry(G, geometry_tol(k)) if k >= 2 else None
    except InputError as exc:  # e.g. every class mean is 0: G_M = 0 has no direction
        cls = None
        undefined["delta_to_of"] = str(exc)
    if cls is not None:
        kini["delta_to_of"], gill["delta_to_etf"] = cls["delta_of"], cls["delta_etf"]
        papyan["delta_to_etf_centred"] = cls["delta_etf_centred"]
        ours["geometry"], ours["geometry_tol"] = cls["name"], cls["tol"]
    else:
        kini["delta_to_of"] = gill["delta_to_etf"] = papyan["delta_to_etf_centred"] = None
        ours["geometry"] = "unclassified"
        undefined.setdefault("delta_to_of", "k = 1: one class has no geometry")
    sec = st.second
    for v, key, group in (("kini", "beta_nc", kini), ("papyan", "beta_nc", papyan)):
        dd = sec["beta_dirs"][v]
        group[key] = M.beta_nc_from_projections(sec["beta_sq"][v], dd) if dd is not None else math.nan
    if k >= 2:
        put(kini, "mean_class_cosine", M.mean_pairwise_cosine, Mm)
        put(papyan, "mean_class_cosine_centred", M.mean_pairwise_cosine, Mm - Mm.mean(0))
    ours["nc_within_class_spread"] = M.nc_within_class_spread_from_sums(sec["within"], sec["total"])
    out = {"kini2023": kini, "gill2023": gill, "papyan2020": papyan, "nctheory": ours}
    if koromilas:
        out["koromilas2026"] = _koromilas_metrics(st, put, undefined)
    out["undefined"] = undefined
    return out


def _koromilas_metrics(st: FeatureStatistics, put, undefined: dict) -> dict:
    """Koromilas et al.'s metrics (their code's conventions: L2-normalised rows), each named by variant;
    ``put`` stores a value or, on InputError, None with the reason in ``undefined``."""
    koro: dict = {}
    sec = st.second
    Um, g = st.unit_means, st.unit_sample_sum / st.n
    W = sec["W"]
    koro["erank_intra"] = {}
    for v in ("paper", "code"):
        val = st.eranks.get(v)
        koro["erank_intra"][v] = val if isinstance(val, float) else None
        if not isinstance(val, float):
            undefined[f"erank_intra.{v}"] = val
    koro["erank_inter"] = {}
    for v, centring in (("paper", "cov"), ("code", "cov"), ("paper_global_mean_second_moment",
                                                          "global-mean-second-moment")):
        put(koro["erank_inter"], v, M.erank_inter_from_means, Um, g, v.split("_")[0], centring)
    koro["erank_weights"] = {}
    put(koro["erank_weights"], "code_centred", M.erank_weights, W, "paper", "code-centred")
    put(koro["erank_weights"], "paper", M.erank_weights, W, "paper", "paper")
    if sec["align_error"] is None:
        koro["align_weight_instance"] = sec["align_instance"] / st.n
    else:
        koro["align_weight_instance"] = None
        undefined["align_weight_instance"] = sec["align_error"]
    put(koro, "align_weight_class", M.align_weight_class_from_means, W, Um)
    koro["mir"], koro["hdr"] = {}, {}
    for centring in ("raw-global-mean", "mean-of-means", "code"):
        try:
            GMi = M.mean_gram_for_information_from_means(Um, g, centring)
            GW = M.normalised_gram(W)
        except InputError as exc:
            koro["mir"][centring] = koro["hdr"][centring] = None
            undefined[f"mir.{centring}"] = undefined[f"hdr.{centring}"] = str(exc)
            continue
        put(koro["mir"], centring, M.mir_from_grams, GW, GMi)
        put(koro["hdr"], centring, M.hdr_from_grams, GW, GMi)
    koro["classifier"] = "given W" if sec["W_given"] else "fixed-prototype (normalised class means)"
    koro["features"] = "L2-normalised rows (as the authors' code)"
    return koro


def ufm_optimum(labels, tau: float, dim: int, relu: bool) -> dict:
    """The certified full-batch SCL minimum for these labels' counts and tau, in the UFM (relu=False) or UFM+
    (features >= 0), in dimension ``dim``, by the symmetry-reduced program through
    :func:`nctheory.solvers.solve_ufm` (method "reduced").

    Names follow DEVELOPERS.md (solve_ufm enforces them): ``value`` with certified true when the program's
    optimum is attained by an explicit point in dimension ``dim`` (with H >= 0 for UFM+); otherwise the
    program's certified ``lower_bound`` with certified false, and the class-mean Gram and geometry given
    are the relaxation's. Returns {"status": reason} when there is nothing to solve or it is skipped."""
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y)
    if np.count_nonzero(counts) < 2:
        return {"status": "not applicable: one class"}
    if np.all(counts < 2):
        return {"status": "not applicable: every class has one sample (the loss is identically 0)"}
    orbits = np.unique(counts[counts > 0]).size
    if orbits > MAX_UFM_ORBITS:
        return {"status": f"skipped: {orbits} distinct class sizes (the reduced program's PSD cone would have "
                          f"{orbits} rows; the limit is {MAX_UFM_ORBITS})"}
    try:
        from nctheory.solvers import UFMProblem, solve_ufm
    except ImportError as exc:
        return {"status": f"solver not available ({exc})"}
    try:
        rep = solve_ufm(UFMProblem("scl", labels=y, tau=tau, relu=relu, dim=int(dim)), method="reduced")
    except NCTheoryError as exc:
        return {"status": f"not certified: {exc}"}
    d = rep.data
    src = d if rep.certified else d.get("relaxation", d)
    geo = src.get("geometry")
    entry = {"certified": rep.certified, "problem": ("UFM+" if relu else "UFM") + f", dimension {int(dim)}"}
    for name in ("value", "lower_bound", "upper_bound", "rel_gap", "gap"):
        if d.get(name) is not None:
            entry[name] = float(d[name])
    entry["geometry"] = geo.get("name") if isinstance(geo, dict) else geo
    if not rep.certified:
        entry["note"] = d.get("lower_bound_note") or d.get("note")
    if src.get("class_mean_gram") is not None:
        entry["class_mean_gram"] = np.asarray(src["class_mean_gram"], dtype=np.float64)
    entry["seconds"] = float(d.get("seconds", 0.0))
    return entry


def ufm_optima(labels, tau: float, G, dim: int) -> dict:
    """:func:`ufm_optimum` in the UFM and in UFM+, each with Gill et al.'s Delta_{G*} (Def. 3) of the
    features' class-mean Gram G to the optimum's class-mean Gram."""
    out = {}
    for key, relu in (("ufm", False), ("ufm_plus", True)):
        entry = ufm_optimum(labels, tau, dim, relu)
        if "status" in entry and len(entry) == 1 and key == "ufm":
            return entry  # nothing to solve (or skipped): the same reason for both
        if "class_mean_gram" in entry:
            try:
                entry["delta_to_optimum"] = M.delta_to_gram(G, entry["class_mean_gram"])
            except InputError as exc:
                entry["delta_to_optimum"] = None
                entry["delta_note"] = str(exc)
        out[key] = entry
    return out


def _resolve_labels(ff: FeatureFile, labels, plan):
    if labels is None:
        labels = ff.labels
    elif isinstance(labels, (str, Path)):
        labels = read_label_file(labels)
    if labels is None and plan is not None:
        labels = np.asarray(plan.label_values)[plan.labels]  # the class ids as the plan writes them
    if labels is None:
        raise InputError("no labels: give --labels FILE (or features in an .npz/.pt holding 'labels')")
    return labels


def _features_file(features) -> FeatureFile:
    if isinstance(features, FeatureFile):
        return features
    if isinstance(features, (str, Path)):
        return load_features(features)
    return FeatureFile(as_rows(features))


def _plan(plan):
    """A Plan (or plan file) on feature rows: its views expanded (sample i's view v is row v * n + i,
    :meth:`nctheory.batching.Plan.expanded`); a multiset plan keeps its repeated samples (copies)."""
    if plan is None:
        return None
    from nctheory.batching import Plan, load_plan

    if isinstance(plan, (str, Path)):
        plan = load_plan(plan)
    if not isinstance(plan, Plan):
        raise InputError(f"plan must be a Plan or a plan file, got {type(plan).__name__}")
    return plan.expanded()


def _bound_report(st: FeatureStatistics, y, plan, tau: float):
    """The predicted lower bound (Kini et al. Thm 1 for the full batch, Thm 2 for the plan's batches), whether
    it is a theorem for these features (the checks of :func:`accumulate`), and the number of anchors."""
    theorem = st.nonnegative and st.unit_rows
    if plan is None:
        bound, stated = bounds.full_batch_bound(st.counts, tau), bounds.full_batch_bound(st.counts, tau, stated=True)
        anchors, which = int(y.size), "Kini et al. Thm 1 (full batch)"
    else:
        bound = bounds.batch_bound(y, plan.batches, tau, multiset=plan.multiset)
        stated = bounds.batch_bound(y, plan.batches, tau, stated=True, multiset=plan.multiset)
        anchors, which = int(plan.indices.size), "Kini et al. Thm 2 (the plan's batches)"
    entry = {"value": float(bound), "printed_formula": float(stated), "statement": which,
             "is_theorem": bool(theorem),
             "note": "classes with one sample in a batch are left out (nctheory.bounds); a lower bound "
                     "of the loss whenever the checks hold" if theorem else
                     "not a theorem for these features (see checks): reported for reference"}
    return entry, bound, anchors


def _test_ncc(st: FeatureStatistics, classes, test_features, test_labels, d: int, chunk_rows: int) -> float:
    """NCC accuracy of the training class means on test features (labels mapped with the training mapping)."""
    trows = as_rows(test_features, "test features")
    if trows.d != d:
        raise InputError(f"test features have dimension {trows.d}, features {d}")
    if test_labels is None:
        raise InputError("test features need test labels (--test-labels)")
    traw = read_label_file(test_labels, "--test-labels") if isinstance(test_labels, (str, Path)) else test_labels
    yt, _ = encode_labels(traw, classes, "test labels")
    if yt.size != trows.n:
        raise InputError(f"{yt.size} test labels for {trows.n} test feature rows")
    return ncc_streamed(st, trows, yt, chunk_rows) / trows.n


def measure(features, labels=None, *, tau: float = 0.1, plan=None, test_features=None, test_labels=None,
            chunk_rows: int = CHUNK_ROWS, loss: bool = True, ufm: bool = True, device: str = "cpu",
            progress: bool = False) -> dict:
    """The report of `nctheory measure` for ``features`` (a path, array, memmap, tensor or FeatureRows).

    labels: class ids (array, list, tensor or a label file); None: from the features file, else from the plan.
    plan: a :class:`nctheory.batching.Plan` or plan file (Thm 2): its sample indices are feature rows, or
    with ``views`` V the features hold V * n rows, view v of sample i at row v * n + i (SupCon's view-major
    stacking); a multiset plan's repeated samples are copies of their row. None: the full batch (Thm 1). test_features / test_labels: NCC test accuracy (test_labels mapped with
    the training mapping). loss=False skips the O(n^2 d) full-batch loss (the bound is still given).
    Returns a JSON-able dict (see the module docstring for what each entry is)."""
    from nctheory.losses._inputs import check_tau

    t0 = time.perf_counter()
    tau = check_tau(tau)
    ff = _features_file(features)
    rows = ff.features
    plan = _plan(plan)
    raw = _resolve_labels(ff, labels, plan)
    y, classes = encode_labels(raw)
    if y.size != rows.n:
        raise InputError(f"{y.size} labels for {rows.n} feature rows")
    k = len(classes)
    if plan is not None:
        _check_plan_labels(plan, y, raw)
    if test_features is None and ff.test_features is not None:
        test_features, test_labels = ff.test_features, ff.test_labels
    need = memory_estimate(rows.n, rows.d, k, _check_chunk(chunk_rows), loss and plan is None)
    if loss and plan is not None:  # scl_plan: each batch dense (its logits, exponentials, masks: 4 x b^2)
        need += estimate_bytes((int(plan.batch_sizes().max()),) * 2, copies=4)
    check_budget(need,
                 f"measuring {rows.n} x {rows.d} features of {k} classes {chunk_rows} rows at a time",
                 "use a smaller --chunk-rows")
    st = accumulate(rows, y, k, chunk_rows=chunk_rows, progress=progress)
    counts = st.counts
    report = {"features": ff.source or rows.name, "n": rows.n, "d": rows.d, "k": k, "counts": counts.tolist(),
              "label_mapping": mapping_note(classes), "tau": tau,
              "batches": "full batch" if plan is None else (f"plan: {plan.num_batches} batches, {plan.num_epochs} "
                                                            f"epoch(s)" + (", multiset" if plan.multiset else ""))}
    report["checks"] = {"min_entry": st.min_entry, "nonnegative": st.nonnegative,
                        "max_norm_deviation": st.max_norm_deviation, "unit_rows": st.unit_rows,
                        "unit_tol": UNIT_TOL, "zero_rows": st.zero_rows,
                        "checked": "entries >= 0 (smallest entry) and | ||h_i|| - 1 | <= unit_tol for every row: "
                                   "the hypotheses of Kini et al. Thm 1/2 (unit features in the non-negative orthant)"}
    report["bound"], bound, anchors = _bound_report(st, y, plan, tau)
    if loss:
        value = (scl_streamed(rows, y, tau, class_sums=st.sums, chunk_rows=chunk_rows, device=device,
                              progress=progress) if plan is None
                 else scl_plan(rows, y, plan.batches, tau, device, progress))
        report["loss"] = {"sum": value, "mean": value / anchors, "anchors": anchors,
                          "form": "sum: Kini et al. Eq. 2 / Eq. 4 (nctheory.losses.scl); mean: sum / anchors "
                                  "(reference SupCon, base_tau = tau)"}
        report["excess"] = value - bound
    else:
        report["loss"] = {"skipped": "loss=False (--no-loss)"}
        report["excess"] = None
    report["metrics"] = nc_metrics(st)
    report["delta_to_of"] = report["metrics"]["kini2023"].get("delta_to_of")
    report["class_mean_gram"] = st.gram()
    if ufm and progress:
        import sys

        print(f"certifying the UFM and UFM+ optima for {k} class sizes in dimension {rows.d} ...", file=sys.stderr)
    report["ufm_optimum"] = (ufm_optima(y, tau, st.scaled_gram(), rows.d) if ufm
                             else {"status": "not requested (--no-ufm)"})
    ncc = {"train": st.second["ncc_correct"] / rows.n}
    if test_features is not None:
        ncc["test"] = _test_ncc(st, classes, test_features, test_labels, rows.d, chunk_rows)
    report["ncc_accuracy"] = ncc
    report["seconds"] = time.perf_counter() - t0
    return report


def memory_estimate(n: int, d: int, k: int, chunk_rows: int, loss: bool = True) -> int:
    """Bytes :func:`measure` may hold at once (float64), an upper estimate: a chunk and its working copies
    (the rows as read and in float64, normalised, centred, class-sorted, squared, and the temporaries of the
    projections and of the NCC scores: 10 x chunk_rows x d), one class's rows and its SVD workspace
    (3 x max(chunk_rows, d) x d), with the loss a tile and its exponential and mask (3 x chunk_rows^2), the
    class statistics (sums, normalised sums, means: 6 x k x d), a class's scatter matrix and its
    eigen-decomposition (2 x d^2) and the labels with their sort orders (4 x n int64).
    benchmarks/RESULTS-measure.md compares it with the measured peak."""
    c = min(int(chunk_rows), int(n))
    return (estimate_bytes((c, d), copies=10) + estimate_bytes((min(max(c, d), n), d), copies=3)
            + (estimate_bytes((c, c), copies=3) if loss else 0) + estimate_bytes((k, d), copies=6)
            + estimate_bytes((d, d), copies=2) + estimate_bytes((n,), dtype="int64", copies=4))


def ncc_streamed(st: FeatureStatistics, rows: FeatureRows, y, chunk_rows: int = CHUNK_ROWS) -> int:
    """Number of rows whose nearest class centre among the training means of ``st``
    (:func:`nctheory.metrics.ncc_predict`) is their class; rows and centres scaled by the same power of two
    (the rule is invariant under a common scale)."""
    correct = 0
    for start, Z in rows.chunks(_check_chunk(chunk_rows)):
        pred = M.ncc_predict(st.scaled_means, np.ldexp(Z, -st.exponent))
        correct += int(np.sum(pred == y[start:start + Z.shape[0]]))
    return correct


def _check_plan_labels(plan, y, raw):
    """The (expanded) plan's rows are the feature rows, with the same classes: both rank their class ids
    0..k-1 (np.unique), so the class indices agree."""
    if plan.n != y.size:
        raise InputError(f"the plan has {plan.n} feature rows (samples x views), the features {y.size}")
    if not np.array_equal(plan.labels, y):
        i = int(np.flatnonzero(plan.labels != y)[0])
        raise InputError(f"the plan's labels differ from the features' labels (first at feature row {i})")


# ============================================================================================ per epoch
def geometry_row(features, labels, k: int, *, test_features=None, test_labels=None, W=None, G_proto=None,
                 G_ufm=None, pre=None, pre_test=None, koromilas: bool = True,
                 chunk_rows: int = CHUNK_ROWS) -> tuple[dict, np.ndarray]:
    """The geometry columns of a run folder's metrics.csv for features (n, d) with labels in [0, k), and
    the class-mean Gram G_M (saved as gram_final.npy): the one definition ``nctheory train`` and
    :class:`nctheory.Monitor` share (:func:`geometry_from_statistics` of :func:`accumulate`)."""
    rows = as_rows(features)
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1 or y.size != rows.n:
        raise InputError(f"{y.size} labels for {rows.n} feature rows")
    st = accumulate(rows, y, k, W=W, chunk_rows=chunk_rows, koromilas=koromilas)
    return geometry_from_statistics(st, test_features=test_features, test_labels=test_labels, G_proto=G_proto,
                                    G_ufm=G_ufm, pre=pre, y=y, pre_test=pre_test, koromilas=koromilas,
                                    chunk_rows=chunk_rows)


def geometry_from_statistics(st: FeatureStatistics, *, test_features=None, test_labels=None, G_proto=None,
                             G_ufm=None, pre=None, y=None, pre_test=None, koromilas: bool = True,
                             chunk_rows: int = CHUNK_ROWS) -> tuple[dict, np.ndarray]:
    """metrics.csv's geometry columns from the statistics of the training features:

    delta_to_of (Kini §3), delta_to_etf / delta_to_prototypes (Gram G_proto) / delta_to_ufm (Gram G_ufm)
    (Gill Def. 3), beta_nc (Kini E.3.1), mean_class_cosine (Kini E.3.2), ncc_train / ncc_test (Kini E.7.1;
    ncc_test_pre on the pre-projection features pre / pre_test with labels y), geometry (classify_geometry
    at :func:`geometry_tol`), and with koromilas the Koromilas metrics (default variants: erank_intra and
    erank_inter paper/cov, erank_weights code-centred, mir / hdr raw-global-mean) on the normalised rows.
    An undefined value is NaN."""
    m = nc_metrics(st, koromilas=koromilas)
    G, Gs = st.gram(), st.scaled_gram()

    def num(v):
        return math.nan if v is None else v

    row = {"delta_to_of": num(m["kini2023"].get("delta_to_of")), "delta_to_etf": num(m["gill2023"].get("delta_to_etf")),
           "beta_nc": num(m["kini2023"]["beta_nc"]), "mean_class_cosine": num(m["kini2023"].get("mean_class_cosine"))}
    for col, target in (("delta_to_prototypes", G_proto), ("delta_to_ufm", G_ufm)):
        if target is not None:
            try:
                row[col] = M.delta_to_gram(Gs, target)
            except InputError:
                row[col] = math.nan
    row["ncc_train"] = st.second["ncc_correct"] / st.n
    if test_features is not None:
        trows = as_rows(test_features, "test features")
        yt = np.asarray(test_labels, dtype=np.int64)
        if yt.ndim != 1 or yt.size != trows.n:
            raise InputError(f"{yt.size} test labels for {trows.n} test feature rows")
        if trows.d != st.d:
            raise InputError(f"test features have dimension {trows.d}, features {st.d}")
        row["ncc_test"] = ncc_streamed(st, trows, yt, chunk_rows) / trows.n
    if pre is not None and pre_test is not None:
        row["ncc_test_pre"] = M.ncc_accuracy(pre, y, pre_test, test_labels, st.k)
    row["geometry"] = m["nctheory"].get("geometry", "unclassified (k = 1)")
    if koromilas:
        ko = m["koromilas2026"]
        row.update({"erank_intra": num(ko["erank_intra"]["paper"]), "erank_inter": num(ko["erank_inter"]["paper"]),
                    "erank_weights": num(ko["erank_weights"]["code_centred"]),
                    "align_weight_instance": num(ko["align_weight_instance"]),
                    "align_weight_class": num(ko["align_weight_class"]),
                    "mir": num(ko["mir"]["raw-global-mean"]), "hdr": num(ko["hdr"]["raw-global-mean"])})
    return row, G

"""Reference geometries of k class vectors: simplex ETF, k-OF, and Gill et al.'s prototype geometries.

Every function returns a float64 numpy array of shape (k, d), **one row per class** (the project's
convention; the papers write the same vectors as columns of a d x k matrix, so their W^T W / M^T M is
our W W^T / M M^T). Definitions:

- simplex ETF (Kini et al. 2023 Def. 1; Gill et al. 2023 Prop. 2): k unit vectors with pairwise inner
  product -1/(k-1). They sum to zero and span a (k-1)-dimensional subspace, so d >= k-1.
- k-OF (Kini et al. 2023 Def. 2): k vectors with V V^T proportional to I_k; here unit norm, so
  V V^T = I_k. Needs d >= k. The UFM+ optimum of Kini Thm 1 lies in the non-negative orthant; there
  orthogonal vectors have disjoint supports (for d = k: a permutation of the standard basis).
- prototype geometry (Gill et al. 2023 Def. 2): the Gram matrix G_* = W W^T of fixed prototypes.
  :func:`prototype_gram` gives the target Gram matrices of Gill et al. Fig. 3 (ETF, larger minority
  angles, majority collapse), precisely defined there; :func:`prototype_vectors` returns unit
  vectors realising them (:func:`gram_to_vectors`).

STEP convention (Kini et al. §3, Gill et al. §2 experiments): the first ``n_major`` classes (default
k // 2) are the majorities, the remaining ``k - n_major`` the minorities.

Inputs may be numpy arrays or torch tensors; torch tensors are converted to float64 numpy.
"""

from __future__ import annotations

import numpy as np

from nctheory import validate
from nctheory.errors import InputError

# Relative tolerance for "G is PSD" and for the numerical rank: eigenvalues of a float64 symmetric
# k x k matrix are computed with absolute error of order k * eps * ||G||_2 (eps = 2.2e-16); we allow
# 1e-9 * s(G), s(G) = k * max|G_ij| >= ||G||_2, far above round-off for any k used here (k <= 10^4)
# yet far below any deliberate negative eigenvalue. Also the absolute tolerance of "unit diagonal".
PSD_TOL = 1e-9

GEOMETRIES = ("etf", "minority-angles", "majority-collapse", "from_gram")


def as_float64(a, name: str = "array") -> np.ndarray:
    """numpy float64 copy of a numpy array, nested list or torch tensor (detached, moved to CPU).

    The array must be real and finite (:func:`nctheory.validate.real_array`): complex values (whose
    imaginary part a cast would drop), booleans and strings are refused (InputError), not converted."""
    a = validate.real_array(a, name)
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor, without importing torch here
        a = a.detach().cpu().double().numpy()  # .double() first: numpy has no bfloat16
    return np.array(a, dtype=np.float64)


def _check_k(k, minimum: int = 1) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"k must be an integer, got {k!r}")
    k = int(k)
    if k < minimum:
        raise InputError(f"k must be at least {minimum}, got {k}")
    return k


def _check_d(d, default: int, minimum: int, what: str) -> int:
    if d is None:
        d = default
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise InputError(f"d must be an integer, got {d!r}")
    d = int(d)
    if d < minimum:
        raise InputError(f"{what} needs dimension d >= {minimum}, got d = {d}")
    return d


def _check_size(rows: int, cols: int, what: str, copies: int) -> None:
    """Refuse (InputError, one line) before allocating ``copies`` float64 arrays of rows x cols beyond the
    memory limit (:func:`nctheory.validate.check_budget`: --max-memory, $NCTHEORY_MAX_MEMORY or the
    memory available): --k 1000000 asks for 8 TB per k x k matrix."""
    validate.check_budget(validate.estimate_bytes((rows, cols), copies=copies), f"{what} ({rows} x {cols}, float64)")


def _rotation(d: int, seed) -> np.ndarray:
    """A Haar-random d x d orthogonal matrix (QR of a Gaussian matrix, signs fixed), seeded."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _centred_basis(k: int) -> np.ndarray:
    """(k, k-1) matrix whose columns are an orthonormal basis of {x in R^k : sum(x) = 0} (Helmert)."""
    H = np.zeros((k, k - 1))
    for j in range(1, k):
        H[:j, j - 1] = 1.0
        H[j, j - 1] = -float(j)
        H[:, j - 1] /= np.sqrt(j * (j + 1.0))
    return H


def etf_gram(k: int) -> np.ndarray:
    """Gram matrix of the simplex ETF: (k/(k-1)) (I_k - 1 1^T / k), i.e. 1 on the diagonal, -1/(k-1) off it."""
    k = _check_k(k, 2)
    _check_size(k, k, "the simplex-ETF Gram matrix", 3)
    return (k / (k - 1.0)) * (np.eye(k) - np.full((k, k), 1.0 / k))


def simplex_etf(k: int, d: int | None = None, seed=None) -> np.ndarray:
    """(k, d) simplex ETF: unit rows with pairwise inner product -1/(k-1) (k >= 2, d >= k-1).

    d = None means d = k. For d >= k the rows are the canonical sqrt(k/(k-1)) (e_c - 1/k 1), padded
    with zeros to length d; for d = k-1 they are the coordinates of those vectors in the Helmert basis
    of the sum-zero hyperplane. ``seed`` (optional) applies a seeded random rotation of R^d, which
    leaves the Gram matrix unchanged.
    """
    k = _check_k(k, 2)
    d = _check_d(d, k, k - 1, f"a simplex ETF of k = {k} vectors")
    _check_size(k, max(k, d), "a simplex ETF", 4 if seed is None else 4 + 3 * d // max(k, 1))
    E = np.sqrt(k / (k - 1.0)) * (np.eye(k) - np.full((k, k), 1.0 / k))
    if d >= k:
        V = np.zeros((k, d))
        V[:, :k] = E
    else:  # d == k - 1
        V = E @ _centred_basis(k)
    if seed is not None:
        V = V @ _rotation(d, seed).T
    return V


def orthogonal_frame(k: int, d: int | None = None, nonnegative: bool = True, seed=0) -> np.ndarray:
    """(k, d) k-OF with unit rows (Kini Def. 2): V V^T = I_k, d >= k (d = None means d = k).

    nonnegative=True: the standard basis vectors e_1..e_k (padded to length d), which lie in the
    non-negative orthant (the geometry of Kini et al. Thm 1). nonnegative=False: the first k rows of a
    Haar-random d x d orthogonal matrix drawn with ``seed`` (a rotated k-OF, generally with negative
    entries).
    """
    k = _check_k(k, 1)
    d = _check_d(d, k, k, f"an orthogonal frame of k = {k} vectors")
    _check_size(k if nonnegative else d, d, "an orthogonal frame", 1 if nonnegative else 4)
    if nonnegative:
        V = np.zeros((k, d))
        V[np.arange(k), np.arange(k)] = 1.0
        return V
    return _rotation(d, seed)[:k].copy()


def check_gram(G, tol: float = PSD_TOL, unit_diagonal: bool = False, name: str = "G") -> np.ndarray:
    """Validate a Gram matrix: square, symmetric and PSD within ``tol * k * max|G_ij|`` (relative to its
    size, see PSD_TOL); returns it symmetrised.

    With unit_diagonal=True also requires |G_cc - 1| <= tol for every c (unit-norm prototypes).
    """
    G = as_float64(G, name)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty square matrix, got shape {G.shape}")
    scale = float(np.abs(G).max()) * G.shape[0]  # >= ||G||_2
    asym = float(np.abs(G - G.T).max())
    if asym > tol * scale:
        raise InputError(f"{name} is not symmetric (max |G - G^T| = {asym:.3g})")
    G = (G + G.T) / 2
    lam_min = float(np.linalg.eigvalsh(G)[0])
    if lam_min < -tol * scale:
        raise InputError(
            f"{name} is not positive semidefinite (smallest eigenvalue {lam_min:.3g} < -{tol * scale:.3g})"
        )
    if unit_diagonal:
        dev = float(np.abs(np.diag(G) - 1.0).max())
        if dev > tol:
            raise InputError(f"{name} must have unit diagonal (unit-norm prototypes); max |G_cc - 1| = {dev:.3g}")
    return G


def gram_to_vectors(G, d: int | None = None, tol: float = PSD_TOL) -> np.ndarray:
    """(k, d) rows V with V V^T = G, from the eigendecomposition G = U diag(lam) U^T.

    V = U_r diag(sqrt(lam_r)), keeping the r eigenvalues above tol * k * max|G_ij| (the numerical
    rank, relative so that it does not depend on the scale of G), in decreasing order, then
    zero-padded to d columns. d = None means d = k. The zero matrix gives V = 0.
    InputError if G is not symmetric PSD within that tolerance (see :func:`check_gram`) or d < rank.
    The reconstruction error ||V V^T - G|| is of the size of the discarded eigenvalues (<= the tolerance).
    """
    G = check_gram(G, tol)
    k = G.shape[0]
    lam, U = np.linalg.eigh(G)
    order = np.argsort(lam)[::-1]
    lam, U = lam[order], U[:, order]
    scale = float(np.abs(G).max()) * k
    r = int(np.sum(lam > tol * scale))
    d = _check_d(d, k, r, f"a Gram matrix of rank {r}")
    V = np.zeros((k, d))
    V[:, :r] = U[:, :r] * np.sqrt(lam[:r])
    return V


def _split(k: int, n_major) -> tuple[int, int]:
    m = k // 2 if n_major is None else n_major
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
        raise InputError(f"n_major must be an integer, got {n_major!r}")
    m = int(m)
    if not 1 <= m <= k - 1:
        raise InputError(
            f"n_major must lie in [1, k-1] = [1, {k - 1}] (majorities and minorities both present), got {m}"
        )
    return m, k - m


def majority_collapse_gram(k: int, n_major: int | None = None) -> np.ndarray:
    """Gram matrix of Gill et al. Fig. 3 (bottom), "Majority Collapse", as defined here.

    The m = n_major majority classes share one prototype w_0; the r = k - m minority classes get
    w_1..w_r, and the r + 1 distinct vectors w_0..w_r form a simplex ETF of r + 1 vectors. Entries:
    1 between two majorities, 1 on the diagonal, -1/r between a minority and any other class.
    Rank r, so a realisation needs d >= r. Needs 1 <= m <= k-1.
    """
    k = _check_k(k, 2)
    m, r = _split(k, n_major)
    _check_size(k, k, "the majority-collapse Gram matrix", 2)
    G = np.full((k, k), -1.0 / r)
    G[:m, :m] = 1.0
    np.fill_diagonal(G, 1.0)
    return G


def minority_angles_gram(k: int, n_major: int | None = None, t: float = 0.5) -> np.ndarray:
    """Gram matrix of Gill et al. Fig. 3 (middle), "larger minority angles", as defined here.

    G(t) = (1 - t) G_ETF + t G_MC,  0 <= t <= 1,

    the convex combination of the simplex-ETF Gram (:func:`etf_gram`) and the majority-collapse Gram
    (:func:`majority_collapse_gram`). Both are PSD with unit diagonal, hence so is G(t). With
    m = n_major, r = k - m, the cosines are
      majority-majority  a(t) = -(1-t)/(k-1) + t,
      minority-minority  b(t) = -(1-t)/(k-1) - t/r   (also the majority-minority cosine),
    so for 0 < t and m >= 2 the minority prototypes are pairwise *more* separated than in the ETF
    (b < -1/(k-1)) and than the majorities (b < a). t = 0 is the ETF, t = 1 majority collapse.
    Gill et al. give no numbers for their Fig. 3; this one-parameter family is our definition.
    """
    k = _check_k(k, 2)
    t = validate.real(t, "t", lo=0.0, hi=1.0)
    _check_size(k, k, "the minority-angles Gram matrix", 6)
    return (1.0 - t) * etf_gram(k) + t * majority_collapse_gram(k, n_major)


def block_gram(
    k: int, n_major: int | None = None, *, cos_major: float, cos_minor: float, cos_cross: float
) -> np.ndarray:
    """Unit-diagonal STEP block Gram matrix with the three given cosines (majority-majority,
    minority-minority, majority-minority); InputError unless PSD within :data:`PSD_TOL`.

    PSD iff a, b <= 1, 1 + (m-1)a >= 0, 1 + (r-1)b >= 0 and (1 + (m-1)a)(1 + (r-1)b) >= m r c^2.
    """
    k = _check_k(k, 2)
    m, _ = _split(k, n_major)
    _check_size(k, k, "the block Gram matrix", 5)
    G = np.full((k, k), validate.real(cos_cross, "cos_cross", lo=-1.0, hi=1.0))
    G[:m, :m] = validate.real(cos_major, "cos_major", lo=-1.0, hi=1.0)
    G[m:, m:] = validate.real(cos_minor, "cos_minor", lo=-1.0, hi=1.0)
    np.fill_diagonal(G, 1.0)
    return check_gram(G, unit_diagonal=True, name="the block Gram matrix")


def prototype_gram(name: str, k: int, n_major: int | None = None, **params) -> np.ndarray:
    """Target Gram matrix G_* (Gill et al. Def. 2) of a named prototype geometry (unit diagonal, PSD).

    name:
      "etf"               -- :func:`etf_gram` (Gill Fig. 3 top; Prop. 2).
      "minority-angles"   -- :func:`minority_angles_gram` with parameter ``t`` (default 0.5), or, if
                             ``cos_major``, ``cos_minor``, ``cos_cross`` are given, :func:`block_gram`
                             with those cosines (then cos_minor < cos_major is required).
      "majority-collapse" -- :func:`majority_collapse_gram` (Gill Fig. 3 bottom).
      "from_gram"         -- the user's ``gram=G`` (k x k, PSD, unit diagonal).
    n_major: number of majority classes (the first ones), default k // 2 (STEP convention).
    """
    k = _check_k(k, 2)
    if name == "etf":
        if params:
            raise InputError(f"geometry 'etf' takes no parameters, got {sorted(params)}")
        return etf_gram(k)
    if name == "majority-collapse":
        if params:
            raise InputError(f"geometry 'majority-collapse' takes no parameters, got {sorted(params)}")
        return majority_collapse_gram(k, n_major)
    if name == "minority-angles":
        cos_keys = {"cos_major", "cos_minor", "cos_cross"}
        if cos_keys & set(params):
            if set(params) != cos_keys:
                raise InputError("give all three of cos_major, cos_minor, cos_cross (and nothing else)")
            if not (validate.real(params["cos_minor"], "cos_minor", lo=-1.0, hi=1.0)
                    < validate.real(params["cos_major"], "cos_major", lo=-1.0, hi=1.0)):
                raise InputError("minority-angles needs cos_minor < cos_major (larger angles between minorities)")
            return block_gram(k, n_major, **params)
        extra = set(params) - {"t"}
        if extra:
            raise InputError(f"geometry 'minority-angles' takes t or the three cosines, got {sorted(extra)}")
        return minority_angles_gram(k, n_major, params.get("t", 0.5))
    if name == "from_gram":
        if set(params) != {"gram"}:
            raise InputError("geometry 'from_gram' needs exactly one parameter, gram=G")
        G = check_gram(params["gram"], unit_diagonal=True, name="gram")
        if G.shape[0] != k:
            raise InputError(f"gram is {G.shape[0]} x {G.shape[0]} but k = {k}")
        return G
    raise InputError(f"unknown prototype geometry {name!r}; choose one of {', '.join(GEOMETRIES)}")


def prototype_vectors(name: str, k: int, n_major: int | None = None, d: int | None = None, **params) -> np.ndarray:
    """(k, d) unit-norm prototypes (rows) whose Gram matrix is :func:`prototype_gram` (name, k, n_major, **params).

    "etf" returns :func:`simplex_etf` (k, d); the others :func:`gram_to_vectors` of the target Gram.
    d = None means d = k. InputError if d is smaller than the rank of the target Gram matrix.
    """
    G = prototype_gram(name, k, n_major, **params)
    if name == "etf":
        return simplex_etf(k, d)
    V = gram_to_vectors(G, d)
    return V / np.linalg.norm(V, axis=1, keepdims=True)  # removes the O(tol) norm error of truncation

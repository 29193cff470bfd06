"""Neural-collapse metrics with the papers' exact definitions, each named by its variant (float64).

Conventions: features z are (n, d), one row per sample; labels y integers in [0, k); classifiers /
prototypes W are (k, d), one row per class; the class-mean matrix M is (k, d), row c = mu_c, so the
papers' G_M = M^T M (means as columns) is our M M^T. Inputs may be numpy arrays or torch tensors
(converted to float64 numpy; complex, boolean and string arrays are refused); every result is a Python
float or a float64 array.

Scale: the metrics whose definition is invariant under z -> s z (s > 0) are computed on z times one
power of two (:func:`_pow2_scaled`: the largest entry then lies in [1/2, 1); multiplying by a power of two
is exact), so they give the same number for features of any finite size, 1e-200 and 1e200 included
(squares of such entries would underflow to 0 or overflow to inf): beta_nc (both variants),
nc_within_class_spread, classify_features, ncc_accuracy (train and test scaled together), erank_intra,
erank_inter, mean_gram_for_information (and so mir, hdr), and every function that normalises rows
(:func:`_rows_normalised`: mean_class_cosine and its centred variant, align_weight_instance with
normalise=True, align_weight_class, erank_weights, normalised_gram); delta_to_gram / delta_to_of /
delta_to_etf scale each Gram matrix on its own. Not scale-invariant (and not rescaled): class_means,
class_mean_gram, align_weight_instance with normalise=False, matrix_entropy.

Sources (the papers' own sections; nctheory.claims.registry.PAPERS gives the full references):
- Gill et al. 2023, Def. 3: Delta_{G*} = || G_M/||G_M||_F - G*/||G*||_F ||_F.
- Kini et al. 2023, §3 "Metrics": Delta_{G_M} to the OF (G* = I_k);
  App. E.3.1: beta_NC = tr(Sigma_W Sigma_B^+)/k; App. E.3.2: Ave_{c != c'} alpha_sim(c, c').
- Koromilas et al. 2026, §5.2 "Quantifying Neural Collapse": effective ranks (after Roy & Vetterli 2007
  and Zhang et al. 2024), alignments (NC3), MIR / HDR (after Song et al. 2024); "code" variants reproduce
  the authors' repository where it differs from the paper's text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nctheory.errors import InputError
from nctheory.geometry import as_float64, etf_gram

# Default tolerance of classify_geometry: Delta values of an exact OF/ETF built in float64 are
# <= ~1e-14 (k <= 1000); the two reference geometries are sqrt(2 - 2 sqrt((k-1)/k)) ~ 1/sqrt(k) apart
# in Delta (0.765 at k = 2, 0.100 at k = 100), so 1e-6 separates them for every k up to ~10^11.
CLASSIFY_TOL = 1e-6

# Relative cut for the pseudo-inverse of Sigma_B in beta_nc: singular values of the centred means
# that are exactly zero come out at ~ k * eps * s_max in float64; 1e-10 * s_max is well above that.
PINV_RTOL = 1e-10

# An unclipped matrix entropy at or below this is "zero" (rank-one Gram matrix): round-off eigenvalues
# ~k*eps contribute ~k*eps*log(1/eps) ~ 1e-12 for k <= 100; a rank-two Gram has H >= ~1e-3 unless
# nearly rank-one. MIR and HDR divide by entropies, so they are refused (InputError) below it.
ENTROPY_ZERO = 1e-10

# erank_intra: a class whose centred features have largest singular value below 1e-12 * max|z_ij| is
# taken to have zero scatter (round-off of the mean of identical rows is ~ eps |z| = 2e-16 |z|), so
# its effective rank, the erank of round-off noise, is refused rather than reported.
SCATTER_ZERO = 1e-12


# ----------------------------------------------------------------------------------------- inputs
def _features(z, name: str = "z") -> np.ndarray:
    Z = as_float64(z, name)
    if Z.ndim != 2:
        raise InputError(f"{name} must be 2-dimensional (one row per sample), got shape {Z.shape}")
    return Z


def _labels(y, n: int, k: int | None, name: str = "y") -> np.ndarray:
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        elif arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size != n:
        raise InputError(f"{name} has {arr.size} labels for {n} feature rows")
    if n == 0:
        raise InputError("no samples given")
    if arr.min() < 0:
        raise InputError(f"{name} has a negative label ({int(arr.min())})")
    if k is not None and arr.max() >= k:
        raise InputError(f"{name} has label {int(arr.max())} but k = {k}")
    return arr.astype(np.int64)


def _k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _square(G, name: str) -> np.ndarray:
    G = as_float64(G, name)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty square matrix, got shape {G.shape}")
    return G


def _pow2_scaled(*arrays: np.ndarray) -> tuple:
    """The arrays times one common power of two 2**-e, e chosen so that the largest |entry| of all of them
    lies in [1/2, 1) (unchanged when every entry is 0). Exact (no rounding) except for entries that become
    subnormal; so a scale-invariant metric computed on the result is the metric of the input, and its
    squares neither underflow (features ~1e-200) nor overflow (~1e200)."""
    m = max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)
    if m == 0 or not np.isfinite(m):
        return arrays
    e = int(np.frexp(m)[1])
    return tuple(np.ldexp(a, -e) for a in arrays)


def _rows_normalised(V: np.ndarray, name: str) -> np.ndarray:
    """Each row over its norm, the row first scaled by a power of two (:func:`_pow2_scaled`, per row), so
    rows of any finite size normalise; a zero row is refused."""
    big = np.abs(V).max(axis=1, keepdims=True) if V.shape[1] else np.zeros((V.shape[0], 1))
    if np.any(big == 0):
        raise InputError(f"{name} has a zero row, which cannot be normalised (row {int(np.argmin(big[:, 0]))})")
    U = np.ldexp(V, -np.frexp(big)[1])
    return U / np.linalg.norm(U, axis=1, keepdims=True)


# ------------------------------------------------------------------------------ class means, Grams
def class_means(z, y, k: int, absent: str = "error") -> np.ndarray:
    """(k, d) raw class means mu_c = (1/n_c) sum_{i: y_i = c} z_i (not renormalised).

    This is mu_c of Kini et al. §2 and Gill et al. Def. 3 (mu_c = Ave_{y_i=c} h_i), and the raw mean of
    unit vectors of Koromilas et al. (App. A and B; *not* renormalised, although their notation marks it with a hat).
    absent="error" (default): a class with no sample raises InputError; absent="nan": its row is NaN.
    """
    Z = _features(z)
    k = _k(k)
    y = _labels(y, Z.shape[0], k)
    counts = np.bincount(y, minlength=k)
    if absent not in ("error", "nan"):
        raise InputError(f"absent must be 'error' or 'nan', got {absent!r}")
    if absent == "error" and np.any(counts == 0):
        raise InputError(f"class {int(np.flatnonzero(counts == 0)[0])} has no sample, its mean is undefined")
    sums = np.zeros((k, Z.shape[1]))
    np.add.at(sums, y, Z)
    with np.errstate(invalid="ignore", divide="ignore"):
        M = sums / counts[:, None]
    M[counts == 0] = np.nan
    return M


def class_mean_gram(z, y, k: int) -> np.ndarray:
    """G_M = M M^T (k x k): the Gram matrix of the raw class means (Kini §2, Gill Def. 3's M^T M with
    means as columns). Every class must have a sample (InputError otherwise)."""
    M = class_means(z, y, k)
    return M @ M.T


def delta_to_gram(G_M, G_star) -> float:
    """Gill et al. Def. 3: Delta_{G*} = || G_M/||G_M||_F - G*/||G*||_F ||_F (Frobenius norms).

    Scale-invariant in each argument, in [0, 2]. InputError on shape mismatch or a zero matrix.
    """
    A = _square(G_M, "G_M")
    B = _square(G_star, "G_star")
    if A.shape != B.shape:
        raise InputError(f"G_M is {A.shape} but G_star is {B.shape}")
    (A,), (B,) = _pow2_scaled(A), _pow2_scaled(B)  # each on its own: the metric is invariant in each
    na, nb = np.linalg.norm(A), np.linalg.norm(B)
    if na == 0 or nb == 0:
        raise InputError("Delta_{G*} is undefined for a zero Gram matrix")
    return float(np.linalg.norm(A / na - B / nb))


def delta_to_of(G_M) -> float:
    """Kini et al. §3 (Metrics; Fig. 2): Delta_{G_M} = || G_M/||G_M||_F - I_k/||I_k||_F ||_F, distance to the k-OF."""
    G = _square(G_M, "G_M")
    return delta_to_gram(G, np.eye(G.shape[0]))


def delta_to_etf(G_M) -> float:
    """Gill et al. Fig. 2's Delta_{G_ETF}: :func:`delta_to_gram` with G* the simplex-ETF Gram
    (1 on the diagonal, -1/(k-1) off it). Uncentred: the class means themselves, no common shift removed."""
    G = _square(G_M, "G_M")
    if G.shape[0] < 2:
        raise InputError("a simplex ETF needs k >= 2")
    return delta_to_gram(G, etf_gram(G.shape[0]))


def centre_gram(G_M) -> np.ndarray:
    """P G_M P with P = I - 1 1^T/k: the Gram matrix of the means centred by their average,
    mu_c - (1/k) sum_c' mu_c' (Papyan's centred means, Koromilas et al. §3.2 NC2)."""
    G = _square(G_M, "G_M")
    k = G.shape[0]
    P = np.eye(k) - np.full((k, k), 1.0 / k)
    return P @ G @ P


# ------------------------------------------------------------------------------ NC1: within-class
def beta_nc(z, y, k: int, variant: str = "kini", rtol: float = PINV_RTOL) -> float:
    """beta_NC = tr(Sigma_W Sigma_B^+) / k (Kini et al. App. E.3.1, after Papyan et al. 2020).

    variant="kini" (default), exactly as Kini App. E.3.1 writes it, with *sums* (no 1/n, 1/k):
        Sigma_W = sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T,
        Sigma_B = sum_c (mu_c - mu_G)(mu_c - mu_G)^T,  mu_G = (1/k) sum_c mu_c (mean of class means).
    variant="papyan": Papyan et al.'s averages, Sigma_W = (1/n) sum_i (...), Sigma_B = (1/k) sum_c (...),
        mu_G = (1/n) sum_i h_i (global mean over samples).
    For balanced classes the two centrings agree and beta_kini = (n/k) beta_papyan.
    Sigma_B^+ keeps singular directions of the centred means with s_j > rtol * s_max (see PINV_RTOL);
    computed as sum_j ||(Z - M[y]) v_j||^2 / s_j^2 over the right singular vectors v_j of the centred
    means. Returns 0 at exact NC (Sigma_W = 0); NaN when all class means coincide (Sigma_B = 0).
    Every class must have a sample. Scale-invariant (computed on z scaled by a power of two, module
    docstring): features of size 1e-200 or 1e200 give the same number.
    """
    (Z,) = _pow2_scaled(_features(z))
    k = _k(k)
    yy = _labels(y, Z.shape[0], k)
    M = class_means(Z, yy, k)
    directions = beta_nc_directions(M, Z.mean(0), Z.shape[0], variant, rtol)
    if directions is None:
        return float("nan")
    proj = (Z - M[yy]) @ directions.V.T  # (n, r)
    return beta_nc_from_projections(np.sum(proj**2, axis=0), directions)


@dataclass(frozen=True)
class BetaNCDirections:
    """The between-class part of :func:`beta_nc`: the kept right singular vectors V (r, d) of the centred
    class means, their singular values s (r,), and the scales of the variant (trace * w/b/k)."""

    V: np.ndarray
    s: np.ndarray
    w_scale: float
    b_scale: float
    k: int


def beta_nc_directions(M, sample_mean, n: int, variant: str = "kini", rtol: float = PINV_RTOL):
    """Sigma_B^+ of :func:`beta_nc` from the (k, d) class means M, the mean of all n samples and n
    (the statistics a streaming pass accumulates). None when all class means coincide (Sigma_B = 0)."""
    M = _features(M, "M")
    k = M.shape[0]
    if variant == "kini":
        Mc = M - M.mean(0)
        w_scale, b_scale = 1.0, 1.0
    elif variant == "papyan":
        Mc = M - np.asarray(sample_mean, dtype=np.float64)
        w_scale, b_scale = 1.0 / n, 1.0 / k
    else:
        raise InputError(f"variant must be 'kini' or 'papyan', got {variant!r}")
    _, s, Vt = np.linalg.svd(Mc, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return None
    keep = s > rtol * s[0]
    return BetaNCDirections(Vt[keep], s[keep], w_scale, b_scale, k)


def beta_nc_from_projections(sq, directions: BetaNCDirections) -> float:
    """beta_NC from sq[j] = sum_i ((h_i - mu_{y_i}) . v_j)^2 over the directions v_j of
    :func:`beta_nc_directions` (a sum over samples: it may be accumulated chunk by chunk)."""
    tr = float(np.sum(np.asarray(sq, dtype=np.float64) / (directions.s ** 2)))
    return tr * directions.w_scale / directions.b_scale / directions.k


def nc_within_class_spread(z, y, k: int) -> float:
    """Relative within-class spread sum_i ||z_i - mu_{y_i}||^2 / sum_i ||z_i||^2, in [0, 1].

    0 exactly at NC (z_i = mu_{y_i}, Kini Def. 1); scale-invariant (computed on z scaled by a power of
    two, module docstring); 1 - sum_c (n_c/n) ||mu_c||^2 for unit features. Our own summary of NC1 (not
    a paper metric); NaN if every feature is zero.
    """
    (Z,) = _pow2_scaled(_features(z))
    k = _k(k)
    yy = _labels(y, Z.shape[0], k)
    M = class_means(Z, yy, k, absent="nan")
    return nc_within_class_spread_from_sums(np.sum((Z - M[yy]) ** 2), np.sum(Z**2))


def nc_within_class_spread_from_sums(within: float, total: float) -> float:
    """:func:`nc_within_class_spread` from within = sum_i ||z_i - mu_{y_i}||^2 and total = sum_i ||z_i||^2."""
    if float(total) == 0:
        return float("nan")
    return float(within / total)


# ------------------------------------------------------------------------------ cosines
def mean_pairwise_cosine(M) -> float:
    """Ave_{c != c'} mu_c^T mu_c' / (||mu_c|| ||mu_c'||) over the rows of M (k >= 2); InputError on a zero row."""
    M = _features(M, "M")
    if M.shape[0] < 2:
        raise InputError("the average pairwise cosine needs at least 2 vectors")
    U = _rows_normalised(M, "M")
    C = U @ U.T
    k = M.shape[0]
    return float((C.sum() - np.trace(C)) / (k * (k - 1)))


def mean_class_cosine(z, y, k: int) -> float:
    """Kini et al. App. E.3.2: Ave_{c != c'} alpha_sim(c, c'), alpha_sim = mu_c^T mu_c'/(||mu_c|| ||mu_c'||),
    on the raw (uncentred) class means. 0 for an OF, -1/(k-1) for an ETF."""
    return mean_pairwise_cosine(class_means(z, y, k))


def mean_class_cosine_centred(z, y, k: int) -> float:
    """Centred variant of :func:`mean_class_cosine`: the means mu_c - (1/k) sum_c' mu_c' (Papyan's NC2
    centring). Always -1/(k-1) when the centred means have equal norms (then they form an ETF
    if and only if they are equiangular)."""
    M = class_means(z, y, k)
    return mean_pairwise_cosine(M - M.mean(0))


# ------------------------------------------------------------------------------ naming geometries
def classify_geometry(G_M, tol: float = CLASSIFY_TOL) -> dict:
    """Name the geometry of class means from their Gram matrix G_M (k x k, k >= 2).

    Returns {"name": "OF" | "ETF" | "other", "delta_of", "delta_etf", "delta_etf_centred", "tol"} with
      delta_of  = :func:`delta_to_of` (G_M)  (Kini §3),
      delta_etf = :func:`delta_to_etf` (G_M) (Gill Def. 3 with G* the simplex-ETF Gram),
      delta_etf_centred = delta_to_etf of P G_M P (means centred by their average; information only).
    "OF" if delta_of <= tol, "ETF" if delta_etf <= tol, else "other". The two references are
    ||I/sqrt(k) - G_ETF/||G_ETF||_F||_F = sqrt(2 - 2 sqrt((k-1)/k)) ~ 1/sqrt(k) apart (0.765 at k = 2,
    0.100 at k = 100), so both can hold only for tol above half of that; then the smaller delta wins.
    "ETF" allows no common shift of the means: an OF is itself a shifted ETF (e_c = (e_c - 1/k) + 1/k),
    so allowing a shift would call every OF an ETF. Equal norms and equiangularity at -1/(k-1) of the
    means themselves is what delta_etf = 0 means (the ETF of Gill Prop. 2 and Graf et al.).
    """
    G = _square(G_M, "G_M")
    if G.shape[0] < 2:
        raise InputError("classify_geometry needs k >= 2 classes")
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        raise InputError(f"tol must be a number, got {tol!r}") from None
    if not (tol >= 0 and np.isfinite(tol)):
        raise InputError(f"tol must be a finite non-negative number, got {tol}")
    d_of = delta_to_of(G)
    d_etf = delta_to_etf(G)
    Gc = centre_gram(G)
    d_etf_c = delta_to_etf(Gc) if np.linalg.norm(Gc) > 0 else float("nan")
    name = "other"
    if d_of <= tol and (d_etf > tol or d_of <= d_etf):
        name = "OF"
    elif d_etf <= tol:
        name = "ETF"
    return {"name": name, "delta_of": d_of, "delta_etf": d_etf, "delta_etf_centred": d_etf_c, "tol": tol}


def classify_features(z, y, k: int, tol: float = CLASSIFY_TOL) -> dict:
    """:func:`classify_geometry` of :func:`class_mean_gram` (z, y, k), plus within-class collapse:
    "nc_spread" = :func:`nc_within_class_spread` and "nc" = (nc_spread <= tol)."""
    (Z,) = _pow2_scaled(_features(z))  # scale-invariant; G_M of features ~1e-200 would underflow to 0
    out = classify_geometry(class_mean_gram(Z, y, k), tol)
    spread = nc_within_class_spread(z, y, k)
    out["nc_spread"] = spread
    out["nc"] = bool(spread <= out["tol"])
    return out


# ------------------------------------------------------------------------------ NCC classifier
def ncc_accuracy(z_train, y_train, z_test, y_test, k: int | None = None, metric: str = "euclidean") -> float:
    """Accuracy of the nearest-class-centre classifier (Kini §3 "Generalization", NCC).

    Centres are the raw class means of the training features; a test point gets the class whose centre
    is nearest: metric="euclidean" minimises ||z - mu_c||_2, metric="cosine" maximises
    z^T mu_c/(||z|| ||mu_c||). Classes absent from the training set are not candidates. Ties go to the
    smallest class index. k defaults to 1 + the largest label seen.
    """
    Ztr, Zte = _features(z_train, "z_train"), _features(z_test, "z_test")
    if Ztr.shape[1] != Zte.shape[1]:
        raise InputError(f"z_train has dimension {Ztr.shape[1]} but z_test has {Zte.shape[1]}")
    Ztr, Zte = _pow2_scaled(Ztr, Zte)  # one common factor: the rule is invariant under z -> s z
    ytr = _labels(y_train, Ztr.shape[0], None, "y_train")
    yte = _labels(y_test, Zte.shape[0], None, "y_test")
    if k is None:
        k = int(max(ytr.max(), yte.max())) + 1
    k = _k(k)
    if ytr.max() >= k or yte.max() >= k:
        raise InputError(f"a label is >= k = {k}")
    M = class_means(Ztr, ytr, k, absent="nan")
    return float(np.mean(ncc_predict(M, Zte, metric) == yte))


def ncc_predict(M, z, metric: str = "euclidean") -> np.ndarray:
    """The nearest-class-centre class of every row of z, for centres M (k, d; a NaN row is an absent
    class, never predicted): the rule of :func:`ncc_accuracy` (ties to the smallest class index)."""
    M = np.asarray(M, dtype=np.float64)
    Zte = _features(z, "z_test")
    present = np.flatnonzero(~np.isnan(M[:, 0]))
    C = M[present]
    if metric == "euclidean":
        score = -((Zte**2).sum(1)[:, None] - 2 * Zte @ C.T + (C**2).sum(1)[None, :])
    elif metric == "cosine":
        score = _rows_normalised(Zte, "z_test") @ _rows_normalised(C, "class centres").T
    else:
        raise InputError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    return present[np.argmax(score, axis=1)]


# ------------------------------------------------------------------------------ Koromilas §5.2
def _entropy_erank(s: np.ndarray, variant: str) -> float:
    s = np.asarray(s, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)) or s.sum() <= 0:
        raise InputError("the effective rank of the zero matrix is undefined (Koromilas et al. §5.2 erank needs singular values)")
    if variant == "paper":
        p = s / s.sum()
        p = p[p > 0]
    elif variant == "code":
        p = s / s.sum() + 1e-7
        p = p / p.sum()  # scipy.stats.entropy renormalises
    else:
        raise InputError(f"variant must be 'paper' or 'code', got {variant!r}")
    return float(np.exp(-np.sum(p * np.log(p))))


def effective_rank(A, variant: str = "paper") -> float:
    """erank(A) = exp(-sum_i p_i log p_i), p_i = sigma_i / sum_j sigma_j over the singular values of A
    (Roy & Vetterli 2007; Koromilas et al. §5.2).

    variant="paper": zero p_i dropped (0 log 0 = 0). variant="code": the authors' util.effective_rank,
    p = s/||s||_1 + 1e-7 then renormalised (their rescaling of s by powers of 10 does not change p).
    erank(I_k) = k; scale-invariant; InputError for the zero matrix (undefined; the code loops forever).
    """
    A = as_float64(A, "A")
    if A.ndim != 2:
        raise InputError(f"A must be a matrix, got shape {A.shape}")
    return _entropy_erank(np.linalg.svd(A, compute_uv=False), variant)


def _cov_spectrum(X: np.ndarray) -> np.ndarray:
    """Eigenvalues of np.cov(X.T) (d x d, ddof=1), padded with zeros to length d, from the SVD of the centred X."""
    n, d = X.shape
    Xc = X - X.mean(0)
    s = np.linalg.svd(Xc, compute_uv=False) ** 2 / (n - 1)
    out = np.zeros(d)
    out[: s.size] = s
    return out


def cov_spectrum_from_scatter(S, n: int) -> np.ndarray:
    """The spectrum :func:`_cov_spectrum` gives (eigenvalues of np.cov, ddof = 1), from the centred
    scatter matrix S = sum_i (x_i - xbar)(x_i - xbar)^T of n rows (d x d; for rows that do not fit in
    memory at once). Round-off negatives are clipped to 0."""
    S = _square(S, "S")
    return np.clip(np.linalg.eigvalsh((S + S.T) / 2), 0.0, None)[::-1] / (n - 1)


def erank_intra(z, y, k: int, variant: str = "paper") -> float:
    """Koromilas et al. §5.2 (NC1): (1/K) sum_c erank(Cov[z_i - mu_c | y_i = c]).

    Cov is np.cov of the class-centred features (d x d, ddof = 1; erank is scale-invariant so the
    normalisation does not matter). The authors pass L2-normalised features; this function uses z as
    given. Each class needs >= 2 samples and within-class scatter above round-off (see SCATTER_ZERO;
    else InputError: the metric is undefined; its "optimum 0" of Table 3 is unattainable since erank >= 1).
    Scale-invariant (computed on z scaled by a power of two, module docstring).
    """
    (Z,) = _pow2_scaled(_features(z))
    k = _k(k)
    yy = _labels(y, Z.shape[0], k)
    counts = np.bincount(yy, minlength=k)
    if counts.min() < 2:
        c = int(np.argmin(counts))
        raise InputError(f"erank_intra needs >= 2 samples in every class; class {c} has {int(counts[c])}")
    return float(np.mean([class_erank(Z[yy == c], c, variant) for c in range(k)]))


def class_erank(X, c: int = 0, variant: str = "paper") -> float:
    """One class's term of :func:`erank_intra` from its rows X (n_c >= 2, d)."""
    X = _features(X, "X")
    return class_spectrum_erank(cov_spectrum(X), np.abs(X).max(), c, variant)


def cov_spectrum(X) -> np.ndarray:
    """Eigenvalues of np.cov(X.T) (d x d, ddof = 1), largest first, padded with zeros to length d: the
    spectrum whose effective rank is a class's term of :func:`erank_intra`."""
    return _cov_spectrum(_features(X, "X"))


def class_spectrum_erank(spec, max_abs: float, c: int = 0, variant: str = "paper") -> float:
    """One class's term of :func:`erank_intra`: the effective rank of its covariance spectrum ``spec``
    (eigenvalues of np.cov of the class's rows), whose largest entry in absolute value is ``max_abs``."""
    spec = np.asarray(spec, dtype=np.float64)
    # scatter at round-off level (a class of identical rows: mean error ~ eps * ||x||) is zero
    if spec.max() <= (SCATTER_ZERO * max_abs) ** 2:
        raise InputError(f"class {c} has no within-class scatter beyond round-off: erank_intra undefined (no scatter to take the effective rank of)")
    return _entropy_erank(spec, variant)


def erank_inter(z, y, k: int, variant: str = "paper", centring: str = "cov") -> float:
    """Koromilas et al. §5.2 (NC2): erank(Cov[mu_c - mu_G]) over the K class means.

    centring="cov" (the authors' code): np.cov((M - mean_i z_i).T), which re-centres over the K means,
      so it is the covariance of the class means (ddof = 1) whatever mu_G is.
    centring="global-mean-second-moment": (1/K) sum_c (mu_c - mu_G)(mu_c - mu_G)^T with mu_G the mean of
      all samples and no re-centring; equals "cov" up to scale when classes are balanced.
    Exact ETF or OF class means: K - 1. Scale-invariant (computed on z scaled by a power of two).
    """
    (Z,) = _pow2_scaled(_features(z))
    k = _k(k)
    M = class_means(Z, y, k)
    return erank_inter_from_means(M, Z.mean(0), variant, centring)


def erank_inter_from_means(M, sample_mean, variant: str = "paper", centring: str = "cov") -> float:
    """:func:`erank_inter` from the (k, d) class means M and the mean of all samples."""
    M = _features(M, "M")
    k = M.shape[0]
    if centring == "cov":
        if k < 2:
            raise InputError("erank_inter with centring='cov' needs k >= 2 classes")
        spec = _cov_spectrum(M)
    elif centring == "global-mean-second-moment":
        Mc = M - np.asarray(sample_mean, dtype=np.float64)
        spec = np.zeros(M.shape[1])
        s = np.linalg.svd(Mc, compute_uv=False) ** 2 / k
        spec[: s.size] = s
    else:
        raise InputError(f"centring must be 'cov' or 'global-mean-second-moment', got {centring!r}")
    return _entropy_erank(spec, variant)


def erank_weights(W, variant: str = "paper", form: str = "code-centred") -> float:
    """Koromilas et al. §5.2 (weights): erank of the classifier / prototypes W (k, d).

    form="code-centred" (default, the code): erank(np.cov(W_hat.T)), W_hat = rows of W normalised,
      i.e. centred over the K rows (d x d covariance).
    form="paper": erank(W) as the paper writes it, singular values of W itself (not normalised, not centred).
    Exact ETF: K - 1 in both forms. OF (W = I_k): "code-centred" K - 1, "paper" K.
    """
    W = as_float64(W, "W")
    if W.ndim != 2:
        raise InputError(f"W must be a (k, d) matrix, got shape {W.shape}")
    if form == "code-centred":
        if W.shape[0] < 2:
            raise InputError("erank_weights with form='code-centred' needs k >= 2 rows")
        return _entropy_erank(_cov_spectrum(_rows_normalised(W, "W")), variant)
    if form == "paper":
        return _entropy_erank(np.linalg.svd(W, compute_uv=False), variant)
    raise InputError(f"form must be 'code-centred' or 'paper', got {form!r}")


def align_weight_instance(z, W, y, normalise: bool = True) -> float:
    """Koromilas et al. §5.2, "w-inst" (Table 3 "Instance"): (1/N) sum_i ||u_i - w_hat_{y_i}||^2.

    normalise=True (the authors' code): u_i = z_i/||z_i||, w_hat_c = w_c/||w_c||.
    normalise=False: the Sec 5.2 formula on raw vectors, (1/N) sum_i ||z_i - w_{y_i}||^2.
    """
    Z = _features(z)
    W = _features(W, "W")
    if W.shape[1] != Z.shape[1]:
        raise InputError(f"W has dimension {W.shape[1]} but z has {Z.shape[1]}")
    yy = _labels(y, Z.shape[0], W.shape[0])
    if normalise:
        Z, W = _rows_normalised(Z, "z"), _rows_normalised(W, "W")
    return float(np.mean(np.sum((Z - W[yy]) ** 2, axis=1)))


def align_weight_class(z, W, y, k: int | None = None) -> float:
    """Koromilas et al. §5.2, "w-class" (Table 3 "Weight"): (1/K) sum_c ||w_hat_c - mu_c/||mu_c|| ||^2,
    with mu_c the raw class means of z (the code passes L2-normalised features; z is used as given)."""
    Z = _features(z)
    W = _features(W, "W")
    k = W.shape[0] if k is None else _k(k)
    if W.shape != (k, Z.shape[1]):
        raise InputError(f"W must have shape (k, d) = ({k}, {Z.shape[1]}), got {W.shape}")
    return align_weight_class_from_means(W, class_means(Z, y, k))


def align_weight_class_from_means(W, M) -> float:
    """:func:`align_weight_class` from the (k, d) class means M."""
    W, M = _features(W, "W"), _features(M, "M")
    if W.shape != M.shape:
        raise InputError(f"W is {W.shape} but the class means are {M.shape}")
    return float(np.mean(np.sum((_rows_normalised(W, "W") - _rows_normalised(M, "class means")) ** 2, axis=1)))


def matrix_entropy(G, clip: float = 1e-10) -> float:
    """Koromilas et al. §5.2 (code, after Song et al. 2024 Def. 3.1): H(G) = -tr((G/K) log(G/K)) = -sum lam log lam
    over the eigenvalues lam of (G + G^T)/(2K).

    clip=1e-10 (the code): eigenvalues clipped below at 1e-10 (each zero eigenvalue then adds
    ~2.3e-9). clip=0: exact, eigenvalues <= 0 dropped (0 log 0 = 0).
    """
    G = _square(G, "G")
    ev = np.linalg.eigvalsh((G + G.T) / 2 / G.shape[0])
    if clip > 0:
        ev = np.clip(ev, clip, None)
    else:
        ev = ev[ev > 0]
    return float(-np.sum(ev * np.log(ev)))


def normalised_gram(V) -> np.ndarray:
    """V_hat V_hat^T with the rows of V normalised (unit diagonal), the authors' code's gram()."""
    V = _features(V, "V")
    U = _rows_normalised(V, "V")
    return U @ U.T


def mean_gram_for_information(z, y, k: int, centring: str = "raw-global-mean") -> np.ndarray:
    """G_M of Koromilas et al. §5.2's MIR / HDR (unit diagonal) from features z (the authors pass L2-normalised features).

    centring="raw-global-mean" (the paper's mu_c - mu_G): gram(mu_c - mean_i z_i).
    centring="code": the repository's util.weight_embeddings_information, gram(nrm(nrm(mu_c) - nrm(mean_i z_i)))
      (normalising a vanishing global mean makes it an arbitrary unit vector, which inflates HDR near NC).
    centring="mean-of-means": gram(mu_c - (1/K) sum_c' mu_c') (Papyan / NC2 centring). With imbalanced
      classes only this one gives the ETF Gram (hence HDR = 0) at exact NC: the sample mean is then
      not the centre of the simplex.
    centring="none": gram(mu_c).
    Scale-invariant in z (computed on z scaled by a power of two, module docstring).
    """
    (Z,) = _pow2_scaled(_features(z))
    return mean_gram_for_information_from_means(class_means(Z, y, k), Z.mean(0), centring)


def mean_gram_for_information_from_means(M, sample_mean, centring: str = "raw-global-mean") -> np.ndarray:
    """:func:`mean_gram_for_information` from the (k, d) class means M and the mean of all samples (both of
    features scaled by one power of two, as the array function does)."""
    M = _features(M, "M")
    g = np.asarray(sample_mean, dtype=np.float64)
    if centring == "raw-global-mean":
        return normalised_gram(M - g)
    if centring == "code":
        if np.linalg.norm(g) == 0:
            raise InputError("centring='code' normalises the global mean, which is exactly zero here")
        return normalised_gram(_rows_normalised(M, "class means") - g / np.linalg.norm(g))
    if centring == "mean-of-means":
        return normalised_gram(M - M.mean(0))
    if centring == "none":
        return normalised_gram(M)
    raise InputError(f"centring must be 'raw-global-mean', 'code', 'mean-of-means' or 'none', got {centring!r}")


def mir_from_grams(G_W, G_M, clip: float = 1e-10) -> float:
    """Koromilas et al. §5.2: MIR = (H(G_W) + H(G_M) - H(G_W o G_M)) / min{H(G_W), H(G_M)} (o = Hadamard product),
    H = :func:`matrix_entropy`. At exact NC (both the ETF Gram) MIR = 2 - H(G o G)/log(K-1) < 1, not the optimum 1 of Table 3.
    InputError when H(G_W) or H(G_M) is 0 (rank-one Gram), e.g. always for K = 2 with centred means,
    which are antipodal; the code's clipping would instead divide round-off by round-off."""
    A, B = _square(G_W, "G_W"), _square(G_M, "G_M")
    if A.shape != B.shape:
        raise InputError(f"G_W is {A.shape} but G_M is {B.shape}")
    if min(matrix_entropy(A, 0.0), matrix_entropy(B, 0.0)) <= ENTROPY_ZERO:
        raise InputError("MIR is undefined when H(G_W) or H(G_M) is 0 (a rank-one Gram matrix)")
    h1, h2, h12 = matrix_entropy(A, clip), matrix_entropy(B, clip), matrix_entropy(A * B, clip)
    den = min(h1, h2)
    return float((h1 + h2 - h12) / den)


def hdr_from_grams(G_W, G_M, clip: float = 1e-10) -> float:
    """Koromilas et al. §5.2: HDR = |H(G_W) - H(G_M)| / max{H(G_W), H(G_M)}; 0 at exact NC."""
    A, B = _square(G_W, "G_W"), _square(G_M, "G_M")
    if A.shape != B.shape:
        raise InputError(f"G_W is {A.shape} but G_M is {B.shape}")
    if max(matrix_entropy(A, 0.0), matrix_entropy(B, 0.0)) <= ENTROPY_ZERO:
        raise InputError("HDR is undefined when H(G_W) = H(G_M) = 0 (rank-one Gram matrices)")
    h1, h2 = matrix_entropy(A, clip), matrix_entropy(B, clip)
    den = max(h1, h2)
    return float(abs(h1 - h2) / den)


def mir(W, z, y, k: int | None = None, centring: str = "raw-global-mean", clip: float = 1e-10) -> float:
    """Koromilas et al. §5.2 MIR with G_W = gram(W) and G_M = :func:`mean_gram_for_information` (z, y, k, centring)."""
    W = _features(W, "W")
    k = W.shape[0] if k is None else _k(k)
    return mir_from_grams(normalised_gram(W), mean_gram_for_information(z, y, k, centring), clip)


def hdr(W, z, y, k: int | None = None, centring: str = "raw-global-mean", clip: float = 1e-10) -> float:
    """Koromilas et al. §5.2 HDR with G_W = gram(W) and G_M = :func:`mean_gram_for_information` (z, y, k, centring)."""
    W = _features(W, "W")
    k = W.shape[0] if k is None else _k(k)
    return hdr_from_grams(normalised_gram(W), mean_gram_for_information(z, y, k, centring), clip)


# ------------------------------------------------------------------------------ one-call summary
def nc_summary(z, y, k: int, W=None, tol: float = CLASSIFY_TOL) -> dict:
    """Every metric above in one dict, for logging during training (keys name the variants).

    Keys: geometry (classify_geometry name), delta_of, delta_etf, beta_nc_kini, beta_nc_papyan,
    mean_class_cosine, mean_class_cosine_centred, nc_spread, erank_intra, erank_inter; with W (k, d)
    also delta_to_prototypes (Gill Def. 3 with G* = W W^T), erank_weights (code-centred),
    align_weight_instance (normalised), align_weight_class, mir, hdr (raw-global-mean centring, clip 1e-10).
    A metric that is undefined for these inputs (InputError from its function, e.g. erank_intra at exact
    NC, MIR for k = 2) is NaN and its reason is listed under "undefined". Every value is scale-invariant
    in z, so z is first scaled by a power of two (module docstring). Bad input (shapes, labels,
    an absent class) still raises InputError.
    """
    (Z,) = _pow2_scaled(_features(z))  # every metric here is scale-invariant in z (module docstring)
    k = _k(k)
    yy = _labels(y, Z.shape[0], k)
    G = class_mean_gram(Z, yy, k)  # raises on an absent class
    out: dict = {}
    undefined: dict = {}

    def put(key, fn, *args, **kw):
        try:
            out[key] = fn(*args, **kw)
        except InputError as exc:
            out[key] = float("nan")
            undefined[key] = str(exc)

    if k >= 2:
        cls = classify_geometry(G, tol)
        out["geometry"] = cls["name"]
        out["delta_of"], out["delta_etf"] = cls["delta_of"], cls["delta_etf"]
    else:
        out["geometry"], out["delta_of"], out["delta_etf"] = "other", float("nan"), float("nan")
        undefined["geometry"] = "k = 1"
    put("beta_nc_kini", beta_nc, Z, yy, k, "kini")
    put("beta_nc_papyan", beta_nc, Z, yy, k, "papyan")
    put("mean_class_cosine", mean_class_cosine, Z, yy, k)
    put("mean_class_cosine_centred", mean_class_cosine_centred, Z, yy, k)
    out["nc_spread"] = nc_within_class_spread(Z, yy, k)
    put("erank_intra", erank_intra, Z, yy, k)
    put("erank_inter", erank_inter, Z, yy, k)
    if W is not None:
        Wm = _features(W, "W")
        if Wm.shape != (k, Z.shape[1]):
            raise InputError(f"W must have shape (k, d) = ({k}, {Z.shape[1]}), got {Wm.shape}")
        put("delta_to_prototypes", delta_to_gram, G, Wm @ Wm.T)
        put("erank_weights", erank_weights, Wm)
        put("align_weight_instance", align_weight_instance, Z, Wm, yy)
        put("align_weight_class", align_weight_class, Z, Wm, yy, k)
        put("mir", mir, Wm, Z, yy, k)
        put("hdr", hdr, Wm, Z, yy, k)
    out["undefined"] = undefined
    return out

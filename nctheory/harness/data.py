"""Data for the harness: digits (default, no download), MNIST / CIFAR-10 / CIFAR-100 from disk, synthetic.

Every dataset is loaded whole into one float32 tensor of shape (N, C, H, W) that lives on the training
device (the sets used here fit in GPU memory: CIFAR-10 train is 50,000 x 3 x 32 x 32 x 4 B = 614 MB),
so a batch is an index into that tensor and augmentation runs on the device (airbench style).

Sources
- ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 grey images, 10 classes, bundled with sklearn),
  pixel values 0..16 scaled to [0, 1]; a stratified, seeded train/test split (``test_fraction``).
- ``mnist``: torchvision's on-disk layout ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  (optionally ``.gz``), parsed here from the idx format (big-endian magic 0x00000803 / 0x00000801).
- ``cifar10``: ``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python pickles, key b"data"
  (10000, 3072) uint8 row-major CHW, b"labels").
- ``cifar100``: ``ROOT/cifar-100-python/{train,test}`` (keys b"data", b"fine_labels").
- ``synthetic``: Gaussian class clusters in 1x8x8 image shape, for fast tests.
- ``package.module:factory`` (your own data, :mod:`nctheory.harness.factory`): a callable returning a
  map-style dataset of (image, label) pairs (a torch Dataset, or anything with len() and indexing), or
  a pair (train, test) of them, or {"train": ..., "test": ...}. Images are tensors or arrays of shape
  (C, H, W), (H, W) or (D,) (read as (1, H, W) and (1, 1, D)), or PIL images; labels are integers or
  strings, mapped to 0..k-1 in sorted order (config.json records the mapping). Without a test set the
  training set is split like digits (stratified, seeded, ``test_fraction``).
A missing file is an InputError that names the expected path; torchvision is never imported.

Imbalance (Kini et al. §3), applied to the training split by keeping the first n_c samples of each
class in a seeded random order:
- STEP with ratio R: the first floor(k/2) classes keep n_max samples, the others
  n_min = max(1, round(n_max / R)).
- long-tail with ratio R: n_c = round(n_max * R^{-(c-1)/(k-1)}) for c = 1..k (at least 1).
n_max defaults to the largest count every class can supply; ``n_total`` rescales n_max so the total is
as close as possible to n_total (InputError when a class cannot supply its share).

Batch duplication (Kini et al. §3, footnote 3): every batch B is contrasted together with a second
view of each of its images (a vertical flip by default), so the contrastive set of a batch is
[x_B; view(x_B)] with labels [y_B; y_B]; every class in the batch then has n_{B,c} >= 2.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nctheory.counts import longtail_counts, step_counts
from nctheory.errors import InputError
from nctheory.harness.factory import call_factory, is_factory_spec, resolve_factory

DATASETS = ("digits", "mnist", "cifar10", "cifar100", "synthetic")
IMBALANCES = ("none", "step", "longtail")
AUGMENTS = ("none", "vflip", "hflip", "crop_flip")


@dataclass
class Data:
    """A labelled train/test pair held as tensors (x: float32 (N, C, H, W), y: int64 (N,))."""

    name: str
    k: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def counts(self) -> list[int]:
        return np.bincount(self.y_train.cpu().numpy(), minlength=self.k).tolist()

    def to(self, device) -> "Data":
        return Data(self.name, self.k, self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                    self.y_test.to(device), dict(self.info))


# ----------------------------------------------------------------------------------------------- sources
def _stratified_split(y: np.ndarray, test_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        nt = int(round(test_fraction * idx.size))
        test.append(idx[:nt])
        train.append(idx[nt:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits_arrays(test_fraction: float = 0.25, seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    tr, te = _stratified_split(y, test_fraction, seed)
    return x[tr], y[tr], x[te], y[te], 10


def synthetic_arrays(k: int = 4, n_per_class: int = 32, n_test_per_class: int = 16, shape=(1, 8, 8),
                     noise: float = 0.5, seed: int = 0):
    """k Gaussian clusters: class c has a random mean image m_c (entries N(0,1)) plus N(0, noise^2) noise."""
    if k < 2 or n_per_class < 1:
        raise InputError("synthetic data needs k >= 2 and n_per_class >= 1")
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, *shape)).astype(np.float32)

    def draw(m):
        y = np.repeat(np.arange(k), m)
        x = means[y] + noise * rng.standard_normal((y.size, *shape)).astype(np.float32)
        return x.astype(np.float32), y.astype(np.int64)

    xtr, ytr = draw(n_per_class)
    xte, yte = draw(n_test_per_class)
    return xtr, ytr, xte, yte, k


def _open_maybe_gz(path: Path):
    if path.exists():
        return path.read_bytes()
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return gzip.decompress(gz.read_bytes())
    raise InputError(f"missing file {path} (or {gz.name}); put MNIST in torchvision's layout ROOT/MNIST/raw/")


def read_idx(raw: bytes, path: str = "idx file") -> np.ndarray:
    """Parse an idx file (MNIST format): magic 0x0000 0x08 ndim, ndim big-endian uint32 sizes, uint8 data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InputError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path} is truncated")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise InputError(f"{path} has {len(raw) - header} data bytes, expected {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist_arrays(root):
    raw = Path(root) / "MNIST" / "raw"
    out = []
    for split in ("train", "t10k"):
        x = read_idx(_open_maybe_gz(raw / f"{split}-images-idx3-ubyte"), f"{split}-images")
        y = read_idx(_open_maybe_gz(raw / f"{split}-labels-idx1-ubyte"), f"{split}-labels")
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise InputError(f"MNIST {split} images {x.shape} and labels {y.shape} do not match")
        out += [(x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64)]
    return (*out, 10)


def _unpickle(path: Path, hint: str):
    if not path.exists():
        raise InputError(f"missing file {path}; put {hint} in torchvision's layout under the data root")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as exc:  # a corrupt pickle is bad input, not a crash
        raise InputError(f"cannot read {path}: {exc}") from None


def _cifar_xy(d, label_key, path):
    try:
        x = np.asarray(d["data"], dtype=np.uint8)
        y = np.asarray(d[label_key], dtype=np.int64)
    except (KeyError, TypeError):
        raise InputError(f"{path} lacks the keys 'data' and '{label_key}'") from None
    if x.ndim != 2 or x.shape[1] != 3072 or x.shape[0] != y.shape[0]:
        raise InputError(f"{path}: data {x.shape} / labels {y.shape} are not CIFAR-shaped")
    return x.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, y


def load_cifar10_arrays(root):
    base = Path(root) / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        p = base / f"data_batch_{i}"
        x, y = _cifar_xy(_unpickle(p, "CIFAR-10"), "labels", p)
        xs.append(x)
        ys.append(y)
    p = base / "test_batch"
    xte, yte = _cifar_xy(_unpickle(p, "CIFAR-10"), "labels", p)
    return np.concatenate(xs), np.concatenate(ys), xte, yte, 10


def load_cifar100_arrays(root):
    base = Path(root) / "cifar-100-python"
    p = base / "train"
    xtr, ytr = _cifar_xy(_unpickle(p, "CIFAR-100"), "fine_labels", p)
    p = base / "test"
    xte, yte = _cifar_xy(_unpickle(p, "CIFAR-100"), "fine_labels", p)
    return xtr, ytr, xte, yte, 100


def _item_image(x, spec: str, i: int, what: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        a = x.detach().cpu().float().numpy()
    else:
        try:
            a = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            raise InputError(f"item {i} of the {what} set of --dataset {spec}: the image is a "
                             f"{type(x).__name__}, not an array or tensor") from None
    if a.ndim == 1:
        a = a[None, None, :]
    elif a.ndim == 2:
        a = a[None]
    elif a.ndim != 3:
        raise InputError(f"item {i} of the {what} set of --dataset {spec}: image of shape {a.shape}; "
                         "need (C, H, W), (H, W) or (D,)")
    return a


def _item_label(y, spec: str, i: int, what: str):
    if hasattr(y, "detach") and hasattr(y, "item"):
        if y.numel() != 1:
            raise InputError(f"item {i} of the {what} set of --dataset {spec}: the label has {y.numel()} entries")
        y = y.item()
    elif isinstance(y, np.generic):
        y = y.item()
    if isinstance(y, bool) or not isinstance(y, (int, str, float)):
        raise InputError(f"item {i} of the {what} set of --dataset {spec}: the label is a {type(y).__name__}, "
                         "not an integer or a string")
    return y


def dataset_arrays(ds, spec: str, what: str = "training"):
    """Every (image, label) item of a map-style dataset: (float32 (N, C, H, W), list of labels)."""
    try:
        n = len(ds)
    except TypeError:
        raise InputError(f"--dataset {spec} gave a {type(ds).__name__} without len(): a map-style dataset of "
                         "(image, label) pairs is needed") from None
    if n == 0:
        raise InputError(f"the {what} set of --dataset {spec} is empty")
    xs, ys = [], []
    for i in range(n):
        try:
            item = ds[i]
        except Exception as exc:
            raise InputError(f"item {i} of the {what} set of --dataset {spec}: {type(exc).__name__}: {exc}") from None
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise InputError(f"item {i} of the {what} set of --dataset {spec} is not an (image, label) pair")
        xs.append(_item_image(item[0], spec, i, what))
        ys.append(_item_label(item[1], spec, i, what))
        if xs[-1].shape != xs[0].shape:
            raise InputError(f"--dataset {spec}: item {i} of the {what} set has shape {xs[-1].shape}, item 0 "
                             f"{xs[0].shape}; every image must have the same shape")
    return np.stack(xs).astype(np.float32), ys


def load_factory_arrays(spec: str, root=None, test_fraction: float = 0.25, seed: int = 0):
    """(x_train, y_train, x_test, y_test, k, label mapping) of the dataset factory ``spec``."""
    from nctheory.measure import encode_labels, mapping_note

    obj = call_factory(resolve_factory(spec, "dataset"), spec, "dataset", root=root, seed=seed)
    if isinstance(obj, dict):
        if "train" not in obj or set(obj) - {"train", "test"}:
            raise InputError(f"--dataset {spec} returned a dict: it needs the key 'train' (and optionally 'test')")
        train, test = obj["train"], obj.get("test")
    elif isinstance(obj, (tuple, list)) and len(obj) == 2 and all(hasattr(o, "__getitem__") and hasattr(o, "__len__")
                                                                   and not isinstance(o, (str, bytes)) for o in obj) \
            and not np.isscalar(obj[1]):
        train, test = obj
    else:
        train, test = obj, None
    xtr, raw_tr = dataset_arrays(train, spec, "training")
    ytr, classes = encode_labels(raw_tr, name=f"--dataset {spec} training labels")
    if test is not None:
        xte, raw_te = dataset_arrays(test, spec, "test")
        if xte.shape[1:] != xtr.shape[1:]:
            raise InputError(f"--dataset {spec}: test images {xte.shape[1:]} differ from training images {xtr.shape[1:]}")
        yte, _ = encode_labels(raw_te, classes, f"--dataset {spec} test labels")
    else:
        if not 0 < test_fraction < 1:
            raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
        tr, te = _stratified_split(ytr, test_fraction, seed)
        if te.size == 0:
            raise InputError(f"--dataset {spec} has too few samples for a test split (test_fraction {test_fraction})")
        xtr, ytr, xte, yte = xtr[tr], ytr[tr], xtr[te], ytr[te]
    return xtr, ytr, xte, yte, len(classes), mapping_note(classes)


# ----------------------------------------------------------------------------------------------- imbalance
def imbalance_counts(k: int, kind: str, ratio: float, n_max: int) -> list[int]:
    """Per-class training counts for STEP / long-tail imbalance with ratio R (Kini et al. §3)."""
    if kind not in IMBALANCES:
        raise InputError(f"unknown imbalance {kind!r}; choose one of {', '.join(IMBALANCES)}")
    if not (ratio >= 1 and np.isfinite(ratio)):
        raise InputError(f"imbalance ratio R must be a finite number >= 1, got {ratio}")
    if n_max < 1:
        raise InputError(f"n_max must be >= 1, got {n_max}")
    if kind == "none" or ratio == 1:
        return [int(n_max)] * k
    if kind == "step":
        return step_counts(k, n_max, ratio)
    return longtail_counts(k, n_max, ratio)


def subsample(x, y, k, counts, seed):
    """Keep counts[c] samples of class c (the first ones of a seeded permutation)."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(k):
        idx = np.flatnonzero(y == c)
        if idx.size < counts[c]:
            raise InputError(f"class {c} has {idx.size} training samples, {counts[c]} requested")
        keep.append(rng.permutation(idx)[: counts[c]])
    keep = np.sort(np.concatenate(keep))
    return x[keep], y[keep]


def load_data(name: str = "digits", *, root: str | None = None, imbalance: str = "none", ratio: float = 1.0,
              n_max: int | None = None, n_total: int | None = None, test_fraction: float = 0.25,
              seed: int = 0, normalize: bool = True, synthetic: dict | None = None) -> Data:
    """Load ``name`` as a :class:`Data` on the CPU (move it with ``.to(device)``)."""
    mapping = None
    if is_factory_spec(name):
        xtr, ytr, xte, yte, k, mapping = load_factory_arrays(name, root, test_fraction, seed)
    elif name == "digits":
        if not 0 < test_fraction < 1:
            raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
        xtr, ytr, xte, yte, k = load_digits_arrays(test_fraction, seed)
    elif name == "synthetic":
        xtr, ytr, xte, yte, k = synthetic_arrays(seed=seed, **(synthetic or {}))
    elif name in ("mnist", "cifar10", "cifar100"):
        if not root:
            raise InputError(f"dataset {name} needs --data-root DIR (torchvision's on-disk layout); "
                             "digits needs no download")
        if not Path(root).is_dir():
            raise InputError(f"data root {root} is not a directory")
        xtr, ytr, xte, yte, k = {"mnist": load_mnist_arrays, "cifar10": load_cifar10_arrays,
                                 "cifar100": load_cifar100_arrays}[name](root)
    else:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} or package.module:factory")
    avail = np.bincount(ytr, minlength=k)
    requested = n_max is not None or n_total is not None or (imbalance != "none" and ratio != 1)
    if n_total is not None:
        if n_total < k:
            raise InputError(f"n_total={n_total} is smaller than the number of classes {k}")
        # the n_max whose counts sum closest to n_total
        n_max = min(range(1, int(avail.max()) * 2 + 2),
                    key=lambda m: abs(sum(imbalance_counts(k, imbalance, ratio, m)) - n_total))
    if n_max is None:  # the largest n_max every class can supply
        n_max = int(avail.max())
        while n_max > 1 and any(c > a for c, a in zip(imbalance_counts(k, imbalance, ratio, n_max), avail)):
            n_max -= 1
    counts = imbalance_counts(k, imbalance, ratio, int(n_max))
    if requested:
        xtr, ytr = subsample(xtr, ytr, k, counts, seed + 1)
    x_train, x_test = torch.from_numpy(np.ascontiguousarray(xtr)), torch.from_numpy(np.ascontiguousarray(xte))
    info = {"imbalance": imbalance, "ratio": float(ratio), "n_max": int(n_max)}
    if mapping is not None:
        info["label_mapping"] = mapping
    if normalize:  # per-channel standardisation with training statistics
        mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
        std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-6)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        info["channel_mean"] = mean.flatten().tolist()
        info["channel_std"] = std.flatten().tolist()
    return Data(name, k, x_train.float(), torch.from_numpy(ytr), x_test.float(), torch.from_numpy(yte), info)


# ----------------------------------------------------------------------------------------------- augmentation
def augment(x: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Device-side augmentation of a batch x (n, C, H, W).

    "vflip": flip every image upside down (Kini et al.'s batch-duplication view); "hflip": mirror;
    "crop_flip": random crop with 2-pixel zero padding (H/16 rounded up, at least 1) and random
    horizontal flip with probability 1/2, drawn from ``generator`` so a run is reproducible.
    """
    if kind == "none":
        return x
    if kind == "vflip":
        return torch.flip(x, dims=(2,))
    if kind == "hflip":
        return torch.flip(x, dims=(3,))
    if kind == "crop_flip":
        n, _, h, w = x.shape
        pad = max(1, -(-h // 16))
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dev = x.device
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
        rows = (oy[:, None] + torch.arange(h, device=dev)[None, :])  # (n, h)
        cols = (ox[:, None] + torch.arange(w, device=dev)[None, :])  # (n, w)
        out = xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(x.shape[1], device=dev)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
        flip = torch.rand(n, generator=generator, device=dev) < 0.5
        return torch.where(flip[:, None, None, None], torch.flip(out, dims=(3,)), out)
    raise InputError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTS)}")

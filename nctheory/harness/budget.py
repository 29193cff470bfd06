"""How much memory a training run needs, estimated from its configuration before anything is allocated.

:func:`check_train_memory` refuses (InputError: CLI exit 2, one line naming the flag) a run whose estimate
exceeds the memory limit of :func:`nctheory.validate.check_budget` (``--max-memory``, $NCTHEORY_MAX_MEMORY,
else the memory available now); on a CUDA device the part that lives on the device is also compared with
the device's free memory (``torch.cuda.mem_get_info``). :func:`train_memory` is the estimate itself, in
parts (bytes):

- ``data``: the training and test images, float32, ``n_images * C*H*W * 4``; while loading, the peak is
  ``LOAD_BYTES_PER_ELEMENT`` per image element (synthetic: float64 noise, float32 copies, the
  standardisation) plus the labels.
- ``parameters``: the network's and the loss head's parameters, float32, times 3 (weights, gradients and
  SGD's momentum buffer); a fixed prototype matrix once.
- ``activations``: one forward pass with a graph on ``views * batch_size`` images (full batching, the
  two-pass gradient: one chunk, ``views * chunk_size``, or ``views * n_train`` without chunks): the input views (float32, 3 copies) and the output of every layer, kept for the
  backward pass, plus twice the largest one (the gradients in flight), in float32 (bf16 under autocast),
  from the layer widths of the network built on the ``meta`` device (no memory, no forward pass); for
  ResNet-18 on 512 images of 1x8x8 and on 64 of 3x32x32 the sum of the layer outputs was 268 and 533 MB,
  the measured peak of a forward and backward pass 294 and 531 MB. A network of your own
  (``model: package.module:factory``) is not built here: its parameters and activations are not in the
  estimate.
- ``loss``: :func:`loss_memory` for the batch of ``m`` feature rows: the dense path (the loss as
  :mod:`nctheory.losses` computes it on one (m, d) batch), or for scl / scl_prototypes with full batching
  or a batch of at least TILED_MIN_ROWS rows the tiled kernel the trainer then uses (O(m d)).
- ``measurements``: the per-epoch geometry, the backbone (p) and feature (d) outputs of every training and
  test image in float32 and float64 (``3 * 8 * n_images * (p + d)``), and the largest layer output of an
  ``eval_batch`` chunk.

These are upper-bound estimates for refusing a run that cannot fit, not predictions of the peak: the
ordinary configurations (experiments/, the README's commands, the tests') are far below any limit
(tests/test_train_budget.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nctheory import validate
from nctheory.errors import InputError

FLOAT32 = 4
LOAD_BYTES_PER_ELEMENT = 20  # load_data's peak per image element (16.2 measured for synthetic, 1e6 images of 1x8x8)
LABEL_BYTES = 3 * 8           # int64 labels: drawn, converted, moved
# The dense loss of a batch of m rows against m + c columns (c: the classifier or prototype rows): the
# float32 logits of the training step with their masked copy, exp and gradient, then the float64
# recomputation of the logged sum form; 28.7 bytes per m^2 measured for scl at m = 4000 (forward,
# backward and the float64 pass), 32 used.
DENSE_LOSS_BYTES_PER_LOGIT = 32
# losses with a logit for every pair of the batch (the others have only the m x k sample-class logits)
PAIRWISE_LOSSES = frozenset({"scl", "scl_prototypes"})
# The tiled exact kernel (nctheory.losses.tiled) on m rows of dimension d: no m x m tensor. Measured here
# (peak RSS of scl_tiled forward + backward in float32 and the float64 recomputation of the logged sum form,
# d = 128): 87.5 MiB at m = 8192, 237 MiB at m = 32768, i.e. 49.8 bytes per row element plus 37.7 MiB of
# tiles and workspace; 56 and 48 MiB used.
TILED_BYTES_PER_ROW_ELEMENT = 56
TILED_TILE_BYTES = 48 * 2 ** 20
# the built-in datasets' sizes (train + test images, image shape, classes) before any subsampling
DATASET_SIZES = {"digits": (1797, (1, 8, 8), 10), "mnist": (70000, (1, 28, 28), 10),
                 "cifar10": (60000, (3, 32, 32), 10), "cifar100": (60000, (3, 32, 32), 100)}
_CLI_KEYS = {"width", "feat_dim", "views", "batch_size", "n_max", "n_total", "chunk_size"}  # keys that are CLI flags


def _flag(key: str, value) -> str:
    """A config key as the user sets it: --views 10000 (a flag of `nctheory train`) or mlp_hidden=8 (--set)."""
    if key in _CLI_KEYS:
        return f"--{key.replace('_', '-')} {value}"
    return f"{key}={value}"


@dataclass(frozen=True)
class DataSize:
    """The data a configuration loads: training and test image counts, the image shape, the classes."""

    n_train: int
    n_test: int
    shape: tuple
    k: int

    @property
    def images(self) -> int:
        return self.n_train + self.n_test

    @property
    def elements(self) -> int:
        return self.images * math.prod(self.shape)


def data_size(cfg) -> DataSize | None:
    """The data of ``cfg`` from the configuration alone (None for a dataset of your own, whose size is known
    only once it is loaded). The built-in datasets' training count is an upper bound (digits: its
    stratified split's rounding; n_max / n_total: before the imbalance counts), and so are the test count
    and the image count; synthetic's are exact."""
    if cfg.dataset == "synthetic":
        syn = {"k": 4, "n_per_class": 32, "n_test_per_class": 16, "shape": (1, 8, 8), **(cfg.synthetic or {})}
        k = validate.integer(syn["k"], "synthetic k", lo=2)
        n = validate.integer(syn["n_per_class"], "synthetic n_per_class", lo=1)
        nt = validate.integer(syn["n_test_per_class"], "synthetic n_test_per_class", lo=0)
        shape = syn["shape"]
        if (not isinstance(shape, (list, tuple)) or len(shape) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
            raise InputError(f"synthetic shape must be three positive integers (C, H, W), got {shape!r}")
        return DataSize(k * n, k * nt, tuple(shape), k)
    if cfg.dataset not in DATASET_SIZES:
        return None
    total, shape, k = DATASET_SIZES[cfg.dataset]
    if cfg.dataset == "digits":  # a stratified split: each class's test count is rounded (at most 1/2 off)
        n_test = min(total, max(0, int(total * cfg.test_fraction) + k))
        n_train = min(total, max(0, total - int(total * cfg.test_fraction) + k))
    else:  # MNIST's and CIFAR's own test sets
        n_test = 10000
        n_train = total - n_test
    if cfg.n_total is not None:
        n_train = min(n_train, int(cfg.n_total) + k)
    elif cfg.n_max is not None:
        n_train = min(n_train, int(cfg.n_max) * k)
    return DataSize(n_train, n_test, shape, k)


def batch_rows(cfg, n_train: int) -> int:
    """Rows of one batch's features: views x batch size (views x n_train for full batching)."""
    return cfg.views * (n_train if cfg.batching == "full" else min(cfg.batch_size, n_train))


def forward_rows(cfg, n_train: int) -> int:
    """Rows of one forward pass with a graph: the batch's, or for full batching (the two-pass gradient of
    :func:`nctheory.harness.train.full_batch_backward`) one chunk's, views x chunk_size."""
    if cfg.batching == "full" and cfg.chunk_size is not None:
        return cfg.views * min(int(cfg.chunk_size), n_train)
    return batch_rows(cfg, n_train)


def tiled_loss(cfg, m: int) -> bool:
    """Whether the trainer computes this run's pairwise loss (scl, scl_prototypes) on batches of m rows by the
    tiled kernel: full batching's two-pass gradient always does (LossHead.sum_form(tiled=True)), a mini-batch
    from nctheory.losses.scl.TILED_MIN_ROWS rows on (impl="auto")."""
    from nctheory.losses.scl import TILED_MIN_ROWS

    return cfg.loss in PAIRWISE_LOSSES and (cfg.batching == "full" or m >= TILED_MIN_ROWS)


def loss_memory(loss: str, m: int, k: int, n_w: int = 0, *, d: int | None = None, tiled: bool = False) -> int:
    """Bytes of the loss of one batch of m feature rows, the dense path: m x (m + c) logits for a pairwise
    loss (SCL; c = k prototype rows for scl_prototypes), m x k for the classifier losses, at
    DENSE_LOSS_BYTES_PER_LOGIT each. ``tiled`` (a pairwise loss by the tiled kernel, features of dimension
    ``d``): TILED_BYTES_PER_ROW_ELEMENT x m x (d + c) plus the tiles, O(m d)."""
    if tiled and loss in PAIRWISE_LOSSES:
        if d is None:
            raise ValueError("the tiled estimate needs the feature dimension d")  # a programming error
        return TILED_BYTES_PER_ROW_ELEMENT * int(m) * (int(d) + (k if n_w else 0)) + TILED_TILE_BYTES
    cols = (m + (k if n_w else 0)) if loss in PAIRWISE_LOSSES else k
    return DENSE_LOSS_BYTES_PER_LOGIT * int(m) * int(cols)


def _layer_outputs(model, shape) -> tuple[int, int]:
    """(sum, largest) of the output elements per image of every layer of a built-in network, read from
    its modules' widths and strides: what the forward pass keeps for backward. An in-place ReLU adds
    nothing; F.relu, the residual sum and the normalisation add a copy each."""
    from torch import nn

    from nctheory.harness.models import MLP, BasicBlock, ResNet

    outs = []
    bb = model.backbone
    c, h, w = shape
    if isinstance(bb, MLP):
        for mod in bb.net:
            if isinstance(mod, (nn.Linear, nn.BatchNorm1d)):
                outs.append(mod.out_features if isinstance(mod, nn.Linear) else mod.num_features)
    elif isinstance(bb, ResNet):
        stem = bb.stem[0]
        outs += [stem.out_channels * h * w] * 2  # conv, BatchNorm (the ReLU is in place)
        for blk in bb.layers:
            if isinstance(blk, BasicBlock):
                s = blk.conv1.stride[0]
                h, w = (h - 1) // s + 1, (w - 1) // s + 1
                size = blk.conv1.out_channels * h * w
                outs += [size] * (7 + 2 * len(blk.shortcut))  # conv, bn, relu, conv, bn, sum, relu (+ shortcut)
        outs.append(bb.out_dim)  # the pooled features
    else:  # a network of your own: not estimated
        return 0, 0
    head = model.head
    for mod in (head if isinstance(head, nn.Sequential) else [head]):
        if isinstance(mod, nn.Linear):
            outs.append(mod.out_features)
    outs += [model.feat_dim] * 2  # ReLU / float copy and the normalised features
    return sum(outs), max(outs)


def _model_on_meta(cfg, shape, k, build):
    """The network of ``cfg`` built by ``build(cfg, input_shape, num_classes)`` (the trainer's
    :func:`nctheory.harness.train.model_from_config`) on the meta device (no memory): its parameter count
    and layers."""
    import torch

    from nctheory.harness.factory import is_factory_spec

    if is_factory_spec(cfg.model):
        return None
    with torch.device("meta"):
        return build(cfg, shape, k)


def train_memory(cfg, data: DataSize, build, amp_dtype=None) -> dict:
    """The estimate of a run of ``cfg`` on ``data`` (module docstring): bytes per part, and the sizes behind
    them (``rows``: the batch's feature rows, ``parameters``, ``feat_dim``). ``build(cfg, input_shape,
    num_classes)``: the trainer's network builder (:func:`nctheory.harness.train.model_from_config`; passed
    in, the trainer imports this module); ``amp_dtype``: the autocast dtype of the network (None: float32)."""
    model = _model_on_meta(cfg, data.shape, data.k, build)
    per_image = math.prod(data.shape)
    m, a = batch_rows(cfg, data.n_train), forward_rows(cfg, data.n_train)
    if model is not None:
        from nctheory.losses.catalogue import get_loss

        params = sum(p.numel() for p in model.parameters())
        d, p = model.feat_dim, model.backbone.out_dim
        act_sum, act_max = _layer_outputs(model, data.shape)
        classifier = get_loss(cfg.loss).classifier
        head = data.k * d * (3 if classifier == "learned" else 1 if classifier == "fixed" else 0)
    else:
        params, act_sum, act_max, head = 0, 0, 0, 0
        d = cfg.feat_dim or 0
        p = 0
    act_bytes = FLOAT32 if amp_dtype is None else amp_dtype.itemsize
    parts = {
        "data": FLOAT32 * data.elements,
        "data_loading": LOAD_BYTES_PER_ELEMENT * data.elements + LABEL_BYTES * data.images,
        "parameters": FLOAT32 * (3 * params + head),
        "activations": a * (FLOAT32 * 3 * per_image + act_bytes * (act_sum + 2 * act_max)),
        "loss": loss_memory(cfg.loss, m, data.k, cfg.n_w, d=d or 1, tiled=tiled_loss(cfg, m)),
        "measurements": 3 * 8 * data.images * (p + d) + FLOAT32 * 3 * min(cfg.eval_batch, data.images) * act_max,
    }
    return {"bytes": parts, "rows": m, "forward_rows": a, "parameters": params, "feat_dim": d}


def _largest(cfg, b: dict, est: dict, data: DataSize, parts) -> tuple[str, str]:
    """What the largest of ``parts`` (bytes ``b``) is, and what lowers it (the flags with their values)."""
    name = max(parts, key=lambda k: b[k])
    arch = ([_flag("width", cfg.width)] if cfg.model.startswith("resnet")
            else [_flag("mlp_hidden", cfg.mlp_hidden), _flag("mlp_depth", cfg.mlp_depth)])
    d = [_flag("feat_dim", est["feat_dim"])] if cfg.feat_dim is not None else []
    batch = [_flag("views", cfg.views)] + ([_flag("batch_size", cfg.batch_size)] if cfg.batching != "full" else [])
    if name in ("data", "data_loading"):
        what = f"the data ({data.images} images of {'x'.join(map(str, data.shape))})"
        if cfg.dataset == "synthetic":
            flags = [f"synthetic n_per_class={cfg.synthetic.get('n_per_class', 32)}"]
        else:
            return what, "use fewer images (--n-max N or --n-total N)"
    elif name == "parameters":
        what, flags = f"{est['parameters']} parameters with their gradients and momentum", d + arch
    elif name == "activations":
        chunked = cfg.batching == "full" and cfg.chunk_size is not None
        what = f"the activations of {'a chunk' if chunked else 'a batch'} of {est['forward_rows']} images"
        flags = batch + ([_flag("chunk_size", cfg.chunk_size)] if chunked else []) + arch
    elif name == "loss":
        kind = "tiled" if tiled_loss(cfg, est["rows"]) else "dense"
        what, flags = f"the {kind} loss of a batch of {est['rows']} feature rows", batch
    else:
        what, flags = f"the geometry of {data.images} images' features", d + arch
    tip = "lower " + " or ".join(flags)
    if name == "activations" and cfg.batching == "full" and cfg.chunk_size is None:
        tip += " or set --chunk-size N (the exact two-pass full-batch gradient, one chunk's activations at a time)"
    elif name in ("activations", "loss") and cfg.batching == "full":
        tip += " or train on mini-batches (--batching reshuffle --batch-size B)"
    return what, tip


def check_train_memory(cfg, build, data: DataSize | None = None, device=None, loaded: bool = False,
                       amp_dtype=None) -> dict | None:
    """Refuse (InputError, one line) a run of ``cfg`` whose estimate (:func:`train_memory`) exceeds the memory
    limit; ``build``: as for :func:`train_memory`; ``data``: the data's size (default :func:`data_size`; None
    for a dataset of your own, which is checked once loaded: ``loaded=True``, the data then is in memory
    already and not counted on the host).
    On a CUDA ``device`` the data, parameters, activations, loss and measurements are compared with the
    device's free memory too; ``amp_dtype``: the network's autocast dtype (None: float32). Returns the
    estimate (None when not estimated)."""
    data = data if data is not None else data_size(cfg)
    if data is None:
        return None
    est = train_memory(cfg, data, build, amp_dtype)
    b = dict(est["bytes"])
    if loaded:
        b["data_loading"] = 0
        if not (device is not None and str(device).startswith("cuda")):
            b["data"] = 0
    on_device = ("data", "parameters", "activations", "loss", "measurements")
    cuda = device is not None and str(device).startswith("cuda")
    host = ("data_loading",) if cuda else on_device
    need = max(b["data_loading"], sum(b[k] for k in host)) if not cuda else b["data_loading"]
    what, tip = _largest(cfg, b, est, data, ("data_loading",) + (() if cuda else on_device))
    validate.check_budget(need, f"this training run (mostly {what}; estimate)", tip)
    if cuda:
        import torch

        lim, source = validate.memory_limit()
        if source == "available memory":
            lim, source = torch.cuda.mem_get_info(device)[0], f"free on {device}"
        need = sum(b[k] for k in on_device)
        if need > lim:
            what, tip = _largest(cfg, b, est, data, on_device)
            raise InputError(f"needs ~{validate.format_bytes(need)} on {device} for this training run (mostly "
                             f"{what}; estimate); limit {validate.format_bytes(lim)} ({source}); {tip}")
    return est

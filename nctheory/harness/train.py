"""The training loop: one readable file, top to bottom (nanoGPT / airbench style).

    data on the device -> per-epoch batch plan -> views -> network -> loss (float32) -> SGD step
    -> per-epoch measurements (float64) -> metrics.csv row -> checkpoint

What is optimised and what is logged
- Optimised: the configured loss of each batch in the *mean* form, i.e. the papers' sum form divided
  by the number of anchors of the batch (what the reference SupCon code optimises; with
  ``base_tau`` set, times tau/base_tau as in Khosla et al. and Kini et al. E.4.1). The learning rate
  0.1 of the papers refers to that scale.
- Logged (``loss``): the papers' sum form (Kini et al. Eq. 4: sum over the epoch's batches of L_B),
  recomputed in float64 from the detached features of each batch, and next to it
  ``bound`` = Kini Thm 1 (full batch) / Thm 2 (mini-batches) for exactly those batches with their
  view duplication (:func:`nctheory.bounds.batch_bound`) and ``excess`` = loss - bound. For SCL with
  a ReLU head (features in the non-negative orthant) excess >= 0 always; without ReLU the bound is
  not a theorem and ``summary.json`` says so.
- ``zero_feature_rows``: feature rows of the epoch's batches that were exactly 0 before normalisation
  (a ReLU output with every unit inactive; F.normalize leaves them 0, as the reference SupCon code
  does). Such a row is not a unit vector, so in an epoch with zero_feature_rows > 0 Thm 1/2's bound is
  outside its hypotheses and ``excess`` may be negative. NormFace/NTCE/NONL cannot take a zero row:
  the run stops with a one-line error.
- ``summary.json`` ``plan_check`` (SCL with non-negative features): whether the OF is the unique UFM+ optimum for the batches
  trained on, with their views (Kini Thm 2 / Cor. 2.1 via :func:`nctheory.batching.check_plan`), for
  the first epoch's batches and for the union of all epochs' batches
  (:func:`nctheory.harness.plans.plan_uniqueness`).

Batch duplication (``views`` = 2): the contrastive set of a batch B is [x_B; view(x_B)] with labels
[y_B; y_B]; the bound is computed on that duplicated batch.

Mixed precision: on CUDA the network runs under bf16 autocast with channels_last memory format; the
features are normalised in float32 and every loss / metric is computed in float32 (training) or
float64 (logging, metrics). On CPU everything is float32/float64.

Resume: a checkpoint (model, optimiser, scheduler, epoch, RNG states) is written atomically after
each epoch. Every epoch's batch plan and augmentation randomness are derived from (seed, epoch), so
``resume`` continues with exactly the batches an uninterrupted run would have used, and the metrics
of a killed-and-resumed run equal those of an uninterrupted one (tests/test_harness.py checks it).

Multi-process: under torchrun each rank takes a slice of every global batch and the features are
gathered with a differentiable all_gather (:mod:`nctheory.harness.distributed`), so the loss is the
global-batch loss of the plan. On CUDA BatchNorm layers become SyncBatchNorm (statistics over the
global batch); on CPU (gloo) BatchNorm statistics stay per process, so a BatchNorm network under
several CPU processes is not bit-for-bit the single-process network (the gloo test uses batchnorm=False).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nctheory import losses
from nctheory._json import jsonable
from nctheory.errors import InputError
from nctheory.harness import distributed as D
from nctheory.harness.data import AUGMENTS, DATASETS, IMBALANCES, augment, load_data
from nctheory.harness.models import ARCHS, FEATURE_LAYERS, build_model, count_parameters
from nctheory.harness.plans import SCHEMES, EpochPlans, epoch_seed

# losses that normalise each feature row themselves and refuse a zero row (nctheory.losses.classifier)
UNIT_ROW_LOSSES = ("normface", "ntce", "nonl")
LOSSES = ("scl", "scl_prototypes", "scl_prototypes_limit", "gill_prop1", "ce", "ce_fixed", "normface", "ntce",
          "nonl", "proto")
LEARNED_W = ("ce", "normface", "ntce", "nonl")
FIXED_W = ("scl_prototypes", "scl_prototypes_limit", "gill_prop1", "ce_fixed")


# keys a resumed run may change (they do not alter what is computed up to the checkpoint)
RESUMABLE_CHANGES = frozenset({"epochs", "progress", "device", "eval_every", "eval_batch", "compile", "name"})


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved as config.json; a run is reproduced from it alone."""

    # data
    dataset: str = "digits"
    data_root: str | None = None
    imbalance: str = "none"            # none | step | longtail (Kini et al. §3)
    ratio: float = 1.0                 # imbalance ratio R
    n_max: int | None = None           # majority class size (None: what the data supplies)
    n_total: int | None = None         # alternatively the total number of training samples
    test_fraction: float = 0.25        # digits only
    synthetic: dict = field(default_factory=dict)
    # model
    model: str = "mlp"                 # mlp | resnet18 | resnet34
    width: int = 64                    # ResNet base width (64 = the papers' ResNet)
    mlp_hidden: int = 256
    mlp_depth: int = 2
    batchnorm: bool = True
    feat_dim: int | None = None        # feature dimension d (None: backbone width)
    projection: bool = False           # Khosla et al. 2-layer projector
    relu: bool = True                  # ReLU before normalisation (Kini et al. "SCL+ReLU")
    feature_layer: str = "auto"        # auto | linear | identity: the layer after the backbone when there is
                                       # no projector (identity = penultimate features, >= 0; see models.py)
    normalize: bool = True             # unit-norm features (False only for plain CE, Koromilas Eq. 1)
    # loss
    loss: str = "scl"
    tau: float = 0.1
    base_tau: float | None = None      # optimise (tau/base_tau) * mean form when set
    n_w: int = 0                       # prototype copies per class (scl_prototypes)
    prototypes: str = "etf"            # prototype geometry name for scl_prototypes / ce_fixed
    prototype_options: dict = field(default_factory=dict)
    # batching
    batching: str = "reshuffle"        # full | fixed | reshuffle | class_balanced
    batch_size: int = 128
    bind: bool = False                 # batch-binding (Kini et al. Alg. 1)
    drop_last: bool = False
    views: int = 2                     # batch duplication (Kini et al. §3)
    view_augment: str = "vflip"        # the extra views' transform
    augment: str = "none"              # the first view's transform
    # optimisation
    epochs: int = 20
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"         # constant | cosine | step
    milestones: list = field(default_factory=list)
    gamma: float = 0.1
    seed: int = 0
    # machinery
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    amp: str = "auto"                  # auto (bf16 on cuda) | bf16 | off
    channels_last: str = "auto"        # auto (on cuda) | on | off
    compile: bool = False
    eval_every: int = 1
    eval_batch: int = 1024
    ufm_optimum: bool = True           # distance to the solver's UFM optimum (when nctheory.solvers has it)
    koromilas_metrics: bool = True
    progress: bool = True
    name: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - {"_comment", "description", "sweep"})
        if unknown:
            raise InputError(f"unknown config key(s): {', '.join(unknown)}")
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        def choice(name, options):
            if getattr(self, name) not in options:
                raise InputError(f"{name} must be one of {', '.join(map(str, options))}, got {getattr(self, name)!r}")

        choice("dataset", DATASETS)
        choice("imbalance", IMBALANCES)
        choice("model", ARCHS)
        choice("loss", LOSSES)
        choice("batching", SCHEMES)
        choice("view_augment", AUGMENTS)
        choice("augment", AUGMENTS)
        choice("schedule", ("constant", "cosine", "step"))
        choice("amp", ("auto", "bf16", "off"))
        choice("channels_last", ("auto", "on", "off"))
        choice("feature_layer", FEATURE_LAYERS)
        for name in ("epochs", "views", "eval_every", "eval_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if self.batching != "full" and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise InputError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        for name in ("tau", "lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"{name} must be a positive number, got {v!r}")
        if self.base_tau is not None and not (self.base_tau > 0):
            raise InputError(f"base_tau must be positive, got {self.base_tau!r}")
        if not (0 <= self.momentum < 1) or self.weight_decay < 0:
            raise InputError("momentum must be in [0, 1) and weight_decay >= 0")
        if isinstance(self.n_w, bool) or not isinstance(self.n_w, int) or self.n_w < 0:
            raise InputError(f"n_w must be a non-negative integer, got {self.n_w!r}")
        if self.ratio < 1:
            raise InputError(f"imbalance ratio must be >= 1, got {self.ratio}")


# ------------------------------------------------------------------------------------------ setup helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but torch.cuda.is_available() is False")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {name!r} is not supported (cpu or cuda)")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prototype_matrix(cfg: TrainConfig, k: int, d: int, counts) -> torch.Tensor:
    """Fixed prototypes W (k, d), unit rows, with Gram matrix the configured geometry (nctheory.geometry)."""
    from nctheory import geometry

    W = geometry.prototype_geometry(cfg.prototypes, k, d=d, **cfg.prototype_options)
    W = torch.as_tensor(np.asarray(W, dtype=np.float64))
    if W.shape != (k, d):
        raise InputError(f"prototype geometry {cfg.prototypes!r} gave shape {tuple(W.shape)}, need ({k}, {d}); "
                         f"set feat_dim >= k")
    return W


class LossHead(nn.Module):
    """The loss's own parameters: a learned classifier W (and bias for CE), or fixed prototypes."""

    def __init__(self, cfg: TrainConfig, k: int, d: int, counts):
        super().__init__()
        self.cfg, self.k = cfg, k
        if cfg.loss in LEARNED_W:
            g = torch.Generator().manual_seed(cfg.seed + 17)
            self.W = nn.Parameter(torch.randn(k, d, generator=g) / math.sqrt(d))
            self.b = nn.Parameter(torch.zeros(k)) if cfg.loss == "ce" else None
        elif cfg.loss in FIXED_W:
            self.register_buffer("W", prototype_matrix(cfg, k, d, counts).float())
            self.b = None
        else:
            self.W, self.b = None, None

    def sum_form(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The batch loss in the papers' sum form and its number of anchors."""
        cfg, n = self.cfg, z.shape[0]
        W = None if self.W is None else self.W.to(z.dtype)
        if cfg.loss == "scl":
            return losses.scl(z, y, cfg.tau), n
        if cfg.loss == "scl_prototypes":
            return losses.scl_with_prototypes(z, y, W, cfg.n_w, cfg.tau), n + self.k * cfg.n_w
        if cfg.loss == "scl_prototypes_limit":  # the exact n_w -> oo limit (nctheory.losses.prototype_limit)
            from nctheory.losses.prototype_limit import limit_loss

            return limit_loss(z, y, W, cfg.tau), n
        if cfg.loss == "gill_prop1":  # Gill et al. Prop. 1 as printed (what their Fig. 3 trained)
            from nctheory.losses.prototype_limit import paper_limit_loss

            return paper_limit_loss(z, y, W, cfg.tau), n
        if cfg.loss == "proto":
            return losses.proto_loss(z, y, cfg.tau, k=self.k, reduction="sum"), n
        if cfg.loss == "ce":
            return losses.ce(z, y, W, None if self.b is None else self.b.to(z.dtype), reduction="sum"), n
        if cfg.loss == "ce_fixed":
            return losses.ce_fixed_classifier(z, y, W, cfg.tau, reduction="sum"), n
        fn = {"normface": losses.normface, "ntce": losses.ntce, "nonl": losses.nonl}[cfg.loss]
        return fn(z, y, W, cfg.tau, reduction="sum"), n


def make_optimizer(cfg: TrainConfig, params):
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    elif cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    return opt, sched


def _rng_state(device) -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=jsonable) + "\n")
    os.replace(tmp, path)


@torch.no_grad()
def embed_all(model, x: torch.Tensor, batch: int, amp_dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre-projection, features) of every row of x, in eval mode, as float64 CPU tensors."""
    pre, feats = [], []
    for i in range(0, x.shape[0], batch):
        xb = x[i: i + batch]
        with torch.autocast(device_type=xb.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            f, h = model.embed(xb)
        pre.append(f.float().cpu())
        feats.append(h.float().cpu())
    return torch.cat(pre).double(), torch.cat(feats).double()


# ------------------------------------------------------------------------------------------ the run
class _Interrupt(Exception):
    """Raised by the test hook to simulate a run killed mid-epoch."""


def model_from_config(cfg: TrainConfig, input_shape):
    """The network a run with ``cfg`` trains, for inputs of shape (C, H, W) (InputError on a bad combination)."""
    feat_dim = cfg.feat_dim
    if feat_dim is None and cfg.loss in FIXED_W and cfg.model == "mlp":
        feat_dim = cfg.mlp_hidden
    return build_model(cfg.model, input_shape, width=cfg.width, feat_dim=feat_dim, projection=cfg.projection,
                       relu=cfg.relu, normalize=cfg.normalize, mlp_hidden=cfg.mlp_hidden, mlp_depth=cfg.mlp_depth,
                       batchnorm=cfg.batchnorm, feature_layer=cfg.feature_layer)


def _legacy_feature_layer(cfg: TrainConfig, input_shape) -> TrainConfig:
    """A run saved before ``feature_layer`` existed used the identity head whenever there was no projector
    and d equalled the backbone width, with or without ReLU; "auto" now differs only for relu=False."""
    if cfg.relu or cfg.projection:
        return cfg
    legacy = dataclasses.replace(cfg, feature_layer="identity")
    try:
        model_from_config(legacy, input_shape)
    except InputError:  # d != backbone width: the old head was the same linear layer auto builds
        return cfg
    return legacy


def train(cfg: TrainConfig, out: str | os.PathLike, resume: bool = False, *, _interrupt_after_steps=None) -> dict:
    """Train one configuration, writing the run folder ``out``; returns the summary dict."""
    from nctheory.harness.measure import Measurer
    from nctheory.harness.plots import plot_run

    cfg.validate()
    out = Path(out)
    device = resolve_device(cfg.device)
    distributed = D.init_from_env(device.type)
    rank, world = D.rank_world()
    if distributed and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    is_main = rank == 0
    amp_dtype = torch.bfloat16 if (device.type == "cuda" and cfg.amp == "auto") or cfg.amp == "bf16" else None
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")

    ckpt_path = out / "checkpoint.pt"
    if resume:
        if not ckpt_path.exists():
            raise InputError(f"cannot resume: {ckpt_path} does not exist")
    elif is_main and out.exists() and any(out.iterdir()):
        if (out / "checkpoint.pt").exists() or (out / "metrics.csv").exists():
            raise InputError(f"run folder {out} already holds a run; use --resume or another --out")

    # ---- data, on the device
    seed_everything(cfg.seed)
    data = load_data(cfg.dataset, root=cfg.data_root, imbalance=cfg.imbalance, ratio=cfg.ratio, n_max=cfg.n_max,
                     n_total=cfg.n_total, test_fraction=cfg.test_fraction, seed=cfg.seed,
                     synthetic=cfg.synthetic).to(device)
    if channels_last:
        data.x_train = data.x_train.contiguous(memory_format=torch.channels_last)
        data.x_test = data.x_test.contiguous(memory_format=torch.channels_last)
    k, n = data.k, data.x_train.shape[0]
    y_np = data.y_train.cpu().numpy()
    counts = data.counts
    plans = EpochPlans(y_np, cfg.batching, cfg.batch_size, cfg.seed, cfg.bind, cfg.drop_last)

    # ---- model, loss head, optimiser
    ck = torch.load(ckpt_path, map_location=device, weights_only=False) if resume else None
    if ck is not None and "feature_layer" not in ck["config"]:
        cfg = _legacy_feature_layer(cfg, data.input_shape)
    torch.manual_seed(cfg.seed)
    model = model_from_config(cfg, data.input_shape).to(device)
    d = model.feat_dim
    head = LossHead(cfg, k, d, counts).to(device)
    if is_main:  # only now: bad options are refused above without leaving an empty run folder behind
        out.mkdir(parents=True, exist_ok=True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    opt, sched = make_optimizer(cfg, list(model.parameters()) + list(head.parameters()))
    net = model
    if distributed:
        # the network is DDP-wrapped (its gradient is a sum over the ranks' slices); the loss head is not:
        # every rank evaluates it on the same gathered global batch, so its gradient is already identical
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(net) if cfg.compile else net

    start_epoch = 0
    if resume:
        changed = sorted(key for key, v in ck["config"].items()
                         if key not in RESUMABLE_CHANGES and cfg.to_dict().get(key) != v)
        if changed:
            raise InputError(f"cannot resume {out} with a different configuration ({', '.join(changed)} differ); "
                             "only " + ", ".join(sorted(RESUMABLE_CHANGES)) + " may change")
        model.load_state_dict(ck["model"])
        head.load_state_dict(ck["head"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"], device)
        start_epoch = int(ck["epoch"])
    measurer = Measurer(cfg, data, out, head, is_main, features_nonnegative=model.features_nonnegative)
    if is_main:
        _write_json({"config": cfg.to_dict(), "k": k, "n_train": n, "n_test": int(data.x_test.shape[0]),
                     "counts": counts, "feat_dim": d, "parameters": count_parameters(model) +
                     count_parameters(head), "device": str(device), "world_size": world,
                     "features_nonnegative": model.features_nonnegative,
                     "amp": str(amp_dtype), "channels_last": channels_last, "torch": torch.__version__,
                     "data_info": data.info, "binding_examples": plans.binding_examples}, out / "config.json")
        measurer.open_csv(start_epoch)

    views_fn = [cfg.augment] + [cfg.view_augment] * (cfg.views - 1)
    steps = 0
    t_start = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        # ---- the epoch's batches (deterministic in (seed, epoch))
        plan = plans(epoch)
        gen = torch.Generator(device=device).manual_seed(epoch_seed(cfg.seed + 1, epoch))
        net.train()
        loss_sum, anchors, images, zero_rows, t0 = 0.0, 0, 0, 0, time.time()
        bar = plan
        if cfg.progress and is_main:
            from tqdm import tqdm

            bar = tqdm(plan, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
        for B in bar:
            B = B.to(device)
            sizes = [cfg.views * s for s in D.slice_sizes(B.numel(), world)]
            local = D.split_for_rank(B, rank, world)
            x, y = data.x_train[local], data.y_train[local]
            xv = torch.cat([augment(x, a, gen) for a in views_fn])
            yv = y.repeat(cfg.views)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                z = fwd(xv)
            z = D.gather_rows(z.float(), sizes)
            yv = D.gather_labels(yv, sizes)
            # one device-to-host read per step for both checks: non-finite entries and all-zero rows
            zdet = z.detach()
            nonfinite, zero = torch.stack([(~torch.isfinite(zdet)).sum(), (zdet.abs().sum(dim=1) == 0).sum()]).tolist()
            if nonfinite:
                raise InputError(f"training diverged in epoch {epoch + 1} (non-finite features); "
                                 f"lower the learning rate (lr={cfg.lr})")
            if not cfg.normalize:  # plain CE: unnormalised features, a zero row is an ordinary point
                zero = 0
            if zero and cfg.loss in UNIT_ROW_LOSSES:
                raise InputError(
                    f"training stopped in epoch {epoch + 1}: an image's features are exactly zero before "
                    f"normalisation (every unit of the last ReLU inactive), and {cfg.loss} needs a direction "
                    "for every feature"
                    + ("; feature_layer identity feeds the backbone's ReLU output to the loss, a linear layer "
                       "(feature_layer linear) cannot vanish this way" if isinstance(model.head, nn.Identity)
                       and not cfg.relu else "; try a lower learning rate or a wider last layer"))
            zero_rows += zero
            value, n_anchor = head.sum_form(z, yv)
            scale = (cfg.tau / cfg.base_tau) if cfg.base_tau else 1.0
            loss = value * (scale / n_anchor)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # the logged value: the same batch loss, float64
                zd = z.detach().double()
                loss_sum += float(head.sum_form(zd, yv)[0])
            anchors += n_anchor
            images += B.numel() * cfg.views
            steps += 1
            if _interrupt_after_steps is not None and steps >= _interrupt_after_steps:
                raise _Interrupt(f"interrupted after {steps} steps")
        lr_used = opt.param_groups[0]["lr"]
        sched.step()
        epoch_time = time.time() - t0

        # ---- measurements (every eval_every epochs and at the end)
        row = {"epoch": epoch + 1, "loss": loss_sum, "loss_per_anchor": loss_sum / max(anchors, 1),
               "lr": lr_used, "epoch_seconds": epoch_time,
               "images_per_second": images / max(epoch_time, 1e-9), "n_batches": len(plan),
               "zero_feature_rows": zero_rows}
        row.update(measurer.bound_terms(plan, loss_sum))
        if is_main and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            net.eval()
            row.update(measurer.geometry(model, amp_dtype))
        if is_main:
            measurer.write_row(row)
            _atomic_save({"model": model.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict(), "epoch": epoch + 1, "rng": _rng_state(device),
                          "config": cfg.to_dict()}, ckpt_path)
        if distributed:
            torch.distributed.barrier()

    summary = {}
    if is_main:
        summary = measurer.summary(time.time() - t_start)
        if cfg.loss == "scl" and model.features_nonnegative:
            # Kini Thm 2 / Cor. 2.1 (UFM+): is the OF the unique optimum for the batches trained on?
            from nctheory.harness.plans import plan_uniqueness

            try:
                summary["plan_check"] = plan_uniqueness(plans, y_np, cfg.views, cfg.epochs, d)
            except Exception as exc:  # an optional measurement must not lose a finished run
                summary["plan_check"] = {"error": f"{type(exc).__name__}: {exc}"}
        elif cfg.loss == "scl":
            summary["plan_check"] = {"not_applicable": "signed features: Thm 2 / Cor. 2.1 are about UFM+ "
                                                       "(features in the non-negative orthant)"}
        _write_json(summary, out / "summary.json")
        try:
            plot_run(out)
        except Exception as exc:  # a plotting failure must not lose a finished run
            print(f"warning: plotting failed: {exc}")
    return summary

"""The training loop: one readable file, top to bottom (nanoGPT / airbench style).

    data on the device -> per-epoch batch plan -> views -> network -> loss (float32) -> SGD step
    -> per-epoch measurements (float64) -> metrics.csv row -> checkpoint

What is optimised and what is logged
- Optimised: the configured loss (its entry in :mod:`nctheory.losses.catalogue`, which gives the sum form
  and the anchor count) of each batch in the *mean* form, i.e. the papers' sum form divided
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

Full batch (``batching`` = "full", one process): each epoch's single step is the exact gradient of the
whole training set's loss, by two passes (:func:`full_batch_features`, :func:`full_batch_backward`):
features of every view in chunks of ``chunk_size`` images without a graph, dL/dZ for all of them by the
tiled kernel (O(n d) memory), then every chunk re-forwarded with a graph and back-propagated with its
slice of dL/dZ. It is the full-batch gradient for a network without batch-dependent layers (``norm``
group / frozen / none); with ``norm`` batch and more than one chunk, each chunk has its own BatchNorm
statistics, which differ from the full-batch statistics, so the step is NOT the full-batch gradient of
the BatchNorm network, and the running statistics are updated once per chunk. config.json and
summary.json name the norm and the case (``full_batch_gradient``).

Mixed precision: on CUDA the network runs under bf16 autocast with channels_last memory format; the
features are normalised in float32 and every loss / metric is computed in float32 (training) or
float64 (logging, metrics). On CPU everything is float32/float64.

Resume: a checkpoint (model, optimiser, scheduler, epoch, RNG states) is written atomically after
each epoch. Every epoch's batch plan and augmentation randomness are derived from (seed, epoch), so
``resume`` continues with exactly the batches an uninterrupted run would have used, and the metrics
of a killed-and-resumed run equal those of an uninterrupted one (tests/test_harness.py checks it).
``train(cfg, out)`` on a folder that holds an unfinished run of the same configuration resumes it, on a
finished one returns its summary, and on a folder without a checkpoint starts afresh (:func:`run_status`);
an interrupt (Ctrl-C) raises :class:`TrainingInterrupted`, which says which epoch is saved.

The run folder (:mod:`nctheory.monitor`, shared with :class:`nctheory.Monitor`) also holds the final
network's features, embeddings.npz (train and test, first view, eval mode), for ``nctheory measure``, and
with ``tensorboard`` TensorBoard event files. ``model`` and ``dataset`` may name your own factories
(``package.module:callable``, :mod:`nctheory.harness.factory`).

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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nctheory import geometry
from nctheory.errors import InputError
from nctheory.harness import distributed as D
from nctheory.harness.budget import DataSize, check_train_memory
from nctheory.harness.data import AUGMENTS, DATASETS, IMBALANCES, augment, load_data
from nctheory.harness.factory import is_factory_spec, resolve_factory
from nctheory.harness.measure import Measurer
from nctheory.harness.models import (ARCHS, BATCH_DEPENDENT_NORMS, FEATURE_LAYERS, NORMS, build_model,
                                     count_parameters)
from nctheory.harness.plans import SCHEMES, EpochPlans, epoch_seed, plan_uniqueness
from nctheory.runplots import plot_run
from nctheory.losses.catalogue import LOSSES, get_loss
from nctheory.monitor import check_tensorboard, run_writer, write_json
from nctheory.runfolder import RunLock, atomic_torch_save, clear_unstarted, run_state
from nctheory.schemas import check_train_config
from nctheory.validate import output_dir

# the losses `nctheory train` offers: every catalogue entry that trains (nctheory.losses.catalogue)
TRAIN_LOSSES = tuple(name for name, spec in LOSSES.items() if spec.trains)

# training losses with a pairwise (n x n) term and no tiled kernel (nctheory.losses.tiled): NTCE and NONL
# compare every class prototype with every instance of the batch
DENSE_ONLY_LOSSES = ("ntce", "nonl")

# keys a resumed run may change (they do not alter what is computed up to the checkpoint)
RESUMABLE_CHANGES = frozenset({"epochs", "progress", "device", "eval_every", "eval_batch", "compile", "name",
                               "tensorboard"})


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
    batchnorm: bool = True             # MLP only; False is the older spelling of norm="none"
    norm: str = "batch"                # batch | group | frozen | none (models.py; "batch" is batch-dependent)
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
    chunk_size: int | None = None      # --batching full: images per chunk of the two-pass gradient (None: all)
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
    tensorboard: bool = False          # TensorBoard event files in the run folder (needs tensorboard)
    name: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - {"_comment", "description", "sweep"})
        if unknown:
            raise InputError(f"unknown config key(s): {', '.join(unknown)}")
        d = check_train_config(d)  # every field's type and range (nctheory.schemas), one line each
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def norm_used(self) -> str:
        """The normalisation the network has: ``norm``, or "none" for an MLP built with batchnorm=false (the
        older spelling; validate refuses batchnorm=false for other models)."""
        return self.norm if self.batchnorm else "none"

    def validate(self) -> None:
        def choice(name, options):
            if getattr(self, name) not in options:
                raise InputError(f"{name} must be one of {', '.join(map(str, options))}, got {getattr(self, name)!r}")

        for key, options in (("dataset", DATASETS), ("model", ARCHS)):
            value = getattr(self, key)
            if is_factory_spec(value):  # your own: package.module:factory (harness.factory)
                resolve_factory(value, key)
            elif value not in options:
                raise InputError(f"{key} must be one of {', '.join(options)} or package.module:factory, "
                                 f"got {value!r}")
        choice("imbalance", IMBALANCES)
        check_tensorboard(self.tensorboard)
        self._canonical_loss()
        choice("batching", SCHEMES)
        choice("view_augment", AUGMENTS)
        choice("augment", AUGMENTS)
        choice("schedule", ("constant", "cosine", "step"))
        choice("amp", ("auto", "bf16", "off"))
        choice("channels_last", ("auto", "on", "off"))
        choice("feature_layer", FEATURE_LAYERS)
        choice("norm", NORMS)
        if not self.batchnorm and self.norm not in ("batch", "none"):
            raise InputError(f"batchnorm=false (no normalisation) conflicts with norm={self.norm!r}; set norm only")
        if not self.batchnorm and self.model != "mlp":
            raise InputError(f"batchnorm=false applies to the MLP only (model {self.model!r} keeps its norm "
                             "layers): set norm (batch, group, frozen or none) instead")
        if self.chunk_size is not None:
            if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
                raise InputError(f"chunk_size must be a positive integer or null, got {self.chunk_size!r}")
            if self.batching != "full":
                raise InputError(f"chunk_size is for batching full (the two-pass full-batch gradient), "
                                 f"got batching {self.batching!r}")
            if self.loss in DENSE_ONLY_LOSSES:
                raise InputError(f"loss {self.loss} has no O(n d) tiled form, so its full-batch gradient needs "
                                 f"n x n memory whatever the chunk size; chunk_size is for "
                                 f"{', '.join(n for n in TRAIN_LOSSES if n not in DENSE_ONLY_LOSSES)}")
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

    def _canonical_loss(self) -> None:
        """A training loss of the catalogue; its snake_case name is what config.json stores
        (``scl-prototypes`` becomes ``scl_prototypes``)."""
        try:
            spec = get_loss(self.loss)
        except InputError:
            spec = None
        if spec is None or not spec.trains:
            raise InputError(f"loss must be one of {', '.join(TRAIN_LOSSES)} ('-' may replace '_'), "
                             f"got {self.loss!r}")
        self.loss = spec.name


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
    W = geometry.prototype_vectors(cfg.prototypes, k, d=d, **cfg.prototype_options)
    W = torch.as_tensor(np.asarray(W, dtype=np.float64))
    if W.shape != (k, d):
        raise InputError(f"prototype geometry {cfg.prototypes!r} gave shape {tuple(W.shape)}, need ({k}, {d}); "
                         f"set feat_dim >= k")
    return W


class LossHead(nn.Module):
    """The loss's own parameters (a learned classifier W and CE's bias, or fixed prototypes) and the
    loss itself, from the catalogue entry of ``cfg.loss`` (:mod:`nctheory.losses.catalogue`)."""

    def __init__(self, cfg: TrainConfig, k: int, d: int, counts):
        super().__init__()
        self.cfg, self.k, self.spec = cfg, k, get_loss(cfg.loss)
        if self.spec.classifier == "learned":
            g = torch.Generator().manual_seed(cfg.seed + 17)
            self.W = nn.Parameter(torch.randn(k, d, generator=g) / math.sqrt(d))
            self.b = nn.Parameter(torch.zeros(k)) if self.spec.takes_bias else None
        elif self.spec.classifier == "fixed":
            self.register_buffer("W", prototype_matrix(cfg, k, d, counts).float())
            self.b = None
        else:
            self.W, self.b = None, None

    def sum_form(self, z: torch.Tensor, y: torch.Tensor, tiled: bool = False) -> tuple[torch.Tensor, int]:
        """The batch loss in the papers' sum form and its number of anchors.

        tiled=True: the entries with a tiled kernel (scl, scl_prototypes) by it, ``impl="tiled"`` (O(n d)
        memory, equal to the dense definitions: tests/test_tiled.py); otherwise the catalogue's choice
        ("auto": tiled from nctheory.losses.scl.TILED_MIN_ROWS rows on); every other loss by its catalogue
        entry (those are O(n k) except DENSE_ONLY_LOSSES)."""
        spec, cfg = self.spec, self.cfg
        kw = {"k": self.k}
        if self.W is not None:
            kw["W"] = self.W.to(z.dtype)
        if self.b is not None:
            kw["b"] = self.b.to(z.dtype)
        if spec.takes_tau:
            kw["tau"] = cfg.tau
        if spec.takes_n_w:
            kw["n_w"] = cfg.n_w
        n_anchor = spec.anchors(z.shape[0], self.k, kw.get("n_w", 0))
        if tiled and spec.tiled:
            kw["impl"] = "tiled"
        return spec(z, y, **kw), n_anchor


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


def _checkpoint(cfg: TrainConfig, model, head, opt, sched, epoch: int, device) -> dict:
    """Everything a resumed run needs after ``epoch`` epochs (states, RNGs, the configuration)."""
    return {"model": model.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "epoch": epoch, "rng": _rng_state(device), "config": cfg.to_dict()}


def model_from_config(cfg: TrainConfig, input_shape, num_classes: int | None = None):
    """The network a run with ``cfg`` trains, for inputs of shape (C, H, W) (InputError on a bad combination);
    num_classes is offered to a model factory of your own."""
    feat_dim = cfg.feat_dim
    if feat_dim is None and get_loss(cfg.loss).classifier == "fixed" and cfg.model == "mlp":
        feat_dim = cfg.mlp_hidden
    return build_model(cfg.model, input_shape, width=cfg.width, feat_dim=feat_dim, projection=cfg.projection,
                       relu=cfg.relu, normalize=cfg.normalize, mlp_hidden=cfg.mlp_hidden, mlp_depth=cfg.mlp_depth,
                       batchnorm=cfg.batchnorm, feature_layer=cfg.feature_layer, num_classes=num_classes,
                       norm=cfg.norm)


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


# ------------------------------------------------------------------------------------------ the run's setup
@dataclass(frozen=True)
class Machine:
    """Where a run computes: device, process group, mixed precision and memory format."""

    device: torch.device
    distributed: bool
    rank: int
    world: int
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _machine(cfg: TrainConfig) -> Machine:
    device = resolve_device(cfg.device)
    distributed = D.init_from_env(device.type)
    rank, world = D.rank_world()
    if distributed and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    amp_dtype = torch.bfloat16 if (device.type == "cuda" and cfg.amp == "auto") or cfg.amp == "bf16" else None
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")
    return Machine(device, distributed, rank, world, amp_dtype, channels_last)


@dataclass(frozen=True)
class RunStatus:
    """What a run folder holds for a configuration: "new" (nothing there), "unstarted" (a run killed before its
    first checkpoint: restarted from scratch), "unfinished" (a checkpoint after ``epoch`` < cfg.epochs epochs,
    or at cfg.epochs without summary.json: resumed) or "finished"."""

    state: str
    epoch: int = 0


def config_changes(saved: dict, cfg: TrainConfig) -> list[str]:
    """Keys of a saved configuration that ``cfg`` changes and a resumed run may not (RESUMABLE_CHANGES)."""
    now = cfg.to_dict()
    return sorted(key for key, v in saved.items() if key not in RESUMABLE_CHANGES and now.get(key) != v)


def run_status(out, cfg: TrainConfig) -> RunStatus:
    """The state of run folder ``out`` for ``cfg`` (:func:`nctheory.runfolder.run_state`, read only). InputError
    for a folder that holds something else (a Monitor run, files no run of ``nctheory train`` leaves, a
    summary without its checkpoint), a run of another configuration, or one of more epochs than asked."""
    out = Path(out)
    st = run_state(out)
    if st.kind == "new":
        return RunStatus("new")
    writer = run_writer(out)
    if writer not in (None, "nctheory train"):
        raise InputError(f"{out} holds a run written by {writer}; use another --out")
    if st.kind == "unstarted":
        return RunStatus("unstarted")
    if st.kind == "other":
        raise InputError(f"{out} cannot be used as this run's folder: {st.reason}; use another --out")
    ckpt = out / "checkpoint.pt"
    if not ckpt.exists():
        raise InputError(f"{out} holds a summary.json but no checkpoint.pt; use another --out")
    try:
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        saved, epoch = ck["config"], int(ck["epoch"])
    except Exception as exc:
        raise InputError(f"cannot read {ckpt}: {type(exc).__name__}: {exc}") from None
    changed = config_changes(saved, cfg)
    if changed:
        raise InputError(f"{out} holds a run with a different configuration ({', '.join(changed)} differ); rerun "
                         f"with its options (only {', '.join(sorted(RESUMABLE_CHANGES))} may change) or use "
                         "another --out")
    if epoch > cfg.epochs:
        raise InputError(f"{out} holds a run of {epoch} epochs, more than the {cfg.epochs} asked for; use "
                         f"--epochs {epoch} or more, or another --out")
    if epoch == cfg.epochs and st.kind == "finished":
        return RunStatus("finished", epoch)
    return RunStatus("unfinished", epoch)


def _saved_epoch(ckpt_path: Path, default: int) -> int:
    """The epoch of the checkpoint at ckpt_path (``default`` when there is none or it cannot be read)."""
    try:
        return int(torch.load(ckpt_path, map_location="cpu", weights_only=False)["epoch"])
    except Exception:
        return default


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM under the CLI) during training: ``saved_epoch`` epochs are in ``out``/checkpoint.pt
    (0: nothing saved); ``cause`` is the KeyboardInterrupt caught."""

    def __init__(self, out: Path, saved_epoch: int, epochs: int, cause: BaseException | None = None):
        self.out, self.saved_epoch, self.epochs, self.cause = Path(out), int(saved_epoch), int(epochs), cause
        super().__init__(self.message())

    def message(self, verb: str = "interrupted") -> str:
        if self.saved_epoch == 0:
            return (f"{verb} in epoch 1 of {self.epochs}; no epoch finished, nothing is saved in {self.out}: "
                    "the same command starts afresh")
        return (f"{verb} in epoch {self.saved_epoch + 1} of {self.epochs}; epoch {self.saved_epoch} is saved in "
                f"{self.out / 'checkpoint.pt'}: run the same command again to resume from epoch {self.saved_epoch + 1}")


def _training_data(cfg: TrainConfig, m: Machine):
    """The dataset on the device (seeded by cfg.seed), channels_last when asked for."""
    seed_everything(cfg.seed)
    # the memory estimate before anything is allocated (harness.budget); a dataset of your own once loaded
    known = check_train_memory(cfg, model_from_config, device=m.device, amp_dtype=m.amp_dtype) is not None
    data = load_data(cfg.dataset, root=cfg.data_root, imbalance=cfg.imbalance, ratio=cfg.ratio, n_max=cfg.n_max,
                     n_total=cfg.n_total, test_fraction=cfg.test_fraction, seed=cfg.seed,
                     synthetic=cfg.synthetic)
    if not known:
        size = DataSize(int(data.x_train.shape[0]), int(data.x_test.shape[0]), tuple(data.input_shape), data.k)
        check_train_memory(cfg, model_from_config, size, m.device, loaded=True, amp_dtype=m.amp_dtype)
    data = data.to(m.device)
    if m.channels_last:
        data.x_train = data.x_train.contiguous(memory_format=torch.channels_last)
        data.x_test = data.x_test.contiguous(memory_format=torch.channels_last)
    return data


def _networks(cfg: TrainConfig, data, m: Machine, out: Path):
    """(model, loss head, optimiser, scheduler, the module to call): the DDP-wrapped and/or compiled model."""
    torch.manual_seed(cfg.seed)
    model = model_from_config(cfg, data.input_shape, data.k).to(m.device)
    head = LossHead(cfg, data.k, model.feat_dim, data.counts).to(m.device)
    if m.is_main:  # only now: bad options are refused above without leaving an empty run folder behind
        out.mkdir(parents=True, exist_ok=True)
    if m.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if m.distributed and m.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    opt, sched = make_optimizer(cfg, list(model.parameters()) + list(head.parameters()))
    net = model
    if m.distributed:
        # the network is DDP-wrapped (its gradient is a sum over the ranks' slices); the loss head is not:
        # every rank evaluates it on the same gathered global batch, so its gradient is already identical
        net = nn.parallel.DistributedDataParallel(model, device_ids=[m.device.index] if m.device.type == "cuda" else None)
    return model, head, opt, sched, (torch.compile(net) if cfg.compile else net)


def _restore(ck: dict, cfg: TrainConfig, out: Path, model, head, opt, sched, device) -> int:
    """Load a checkpoint's states (refusing a changed configuration); returns the epoch to start from."""
    changed = config_changes(ck["config"], cfg)
    if changed:
        raise InputError(f"cannot resume {out} with a different configuration ({', '.join(changed)} differ); "
                         "only " + ", ".join(sorted(RESUMABLE_CHANGES)) + " may change")
    model.load_state_dict(ck["model"])
    head.load_state_dict(ck["head"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    _set_rng_state(ck["rng"], device)
    return int(ck["epoch"])


def _load_checkpoint(ckpt_path: Path, cfg: TrainConfig, data, m: Machine) -> tuple[dict, TrainConfig]:
    """The checkpoint to resume from, and cfg as the saved run used it (_legacy_feature_layer)."""
    ck = torch.load(ckpt_path, map_location=m.device, weights_only=False)
    if "feature_layer" not in ck["config"]:
        cfg = _legacy_feature_layer(cfg, data.input_shape)
    return ck, cfg


def _run_info(cfg: TrainConfig, data, model, head, m: Machine, plans) -> dict:
    """config.json: the configuration and what it resolved to on this machine."""
    return {"writer": "nctheory train", "config": cfg.to_dict(), "k": data.k, "n_train": int(data.x_train.shape[0]),
            "n_test": int(data.x_test.shape[0]), "counts": data.counts, "feat_dim": model.feat_dim,
            "parameters": count_parameters(model) + count_parameters(head), "device": str(m.device),
            "world_size": m.world, "features_nonnegative": model.features_nonnegative, "amp": str(m.amp_dtype),
            "channels_last": m.channels_last, "torch": torch.__version__, "data_info": data.info,
            "binding_examples": plans.binding_examples, "norm": cfg.norm_used,
            "full_batch_gradient": full_batch_gradient(cfg) if not m.distributed else
            "one pass: the whole batch's graph (torchrun), the catalogue's loss"}


def _progress(plan, cfg: TrainConfig, m: Machine, epoch: int):
    if cfg.progress and m.is_main:
        return tqdm(plan, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True, position=1)
    return plan


def _epoch_bar(cfg: TrainConfig, m: Machine, start_epoch: int):
    """The run's progress bar: one step per epoch, showing the last epoch's loss, excess and Delta to OF."""
    if cfg.progress and m.is_main:
        return tqdm(total=cfg.epochs, initial=start_epoch, desc="epochs", unit="epoch", dynamic_ncols=True,
                    position=0)
    return None


def _show(bar, row: dict) -> None:
    if bar is None:
        return
    shown = {"loss": row.get("loss"), "excess": row.get("excess"), "Δ_OF": row.get("delta_to_of")}
    bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                    refresh=False)
    bar.update(1)


def _batch_features(fwd, data, B: torch.Tensor, views_fn, gen, cfg: TrainConfig, m: Machine):
    """Features (float32) and labels of batch B's views, the global batch: this rank's slice of the images,
    its views (view-major: [x_B; view(x_B); ...]), the network under autocast, then gathered over ranks."""
    B = B.to(m.device)
    local = D.split_for_rank(B, m.rank, m.world)
    x, y = data.x_train[local], data.y_train[local]
    xv = torch.cat([augment(x, a, gen) for a in views_fn])
    with torch.autocast(device_type=m.device.type, dtype=m.amp_dtype, enabled=m.amp_dtype is not None):
        z = fwd(xv)
    sizes = [cfg.views * s for s in D.slice_sizes(B.numel(), m.world)]
    z = z if z.dtype == torch.float64 else z.float()  # float32 (from bf16 under autocast); a float64 net stays
    return D.gather_rows(z, sizes), D.gather_labels(y.repeat(cfg.views), sizes)


# ------------------------------------------------------------------------------------------ full batch, two passes
def _chunks(B: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, ...]:
    """The batch's images in chunks of cfg.chunk_size (the last one shorter; one chunk when None)."""
    return B.split(cfg.chunk_size or max(B.numel(), 1))


def _batchnorm_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, copy) of every BatchNorm running statistic (running_mean, running_var, num_batches_tracked)."""
    return [(b, b.detach().clone()) for mod in model.modules()
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) for b in mod.buffers()]


def full_batch_features(fwd, model, data, B: torch.Tensor, views_fn, gen, cfg: TrainConfig, m: Machine):
    """Pass 1 of the two-pass full-batch gradient: the features Z (float32, or float64 for a float64 network)
    and labels of batch B's views, computed chunk by chunk without a graph; returns (Z, labels, replay).

    Z is the concatenation over the chunks C_1, C_2, ... of B (cfg.chunk_size images each) of
    [x_C; view(x_C); ...] (view-major within a chunk; the loss does not depend on the order of its rows).
    The network runs in the mode it is in (train mode: BatchNorm uses each chunk's batch statistics, the
    same statistics pass 2 will use); BatchNorm running statistics are restored after the pass, so only
    pass 2 updates them. ``replay`` is the augmentation generator's state before the pass: pass 2
    replays exactly the same views."""
    replay = gen.get_state()
    saved = _batchnorm_buffers(model)
    zs, ys = [], []
    with torch.no_grad():
        for C in _chunks(B, cfg):
            z, y = _batch_features(fwd, data, C, views_fn, gen, cfg, m)
            zs.append(z)
            ys.append(y)
        for buf, copy in saved:
            buf.copy_(copy)
    return torch.cat(zs), torch.cat(ys), replay


def full_batch_backward(fwd, head: LossHead, data, B: torch.Tensor, z: torch.Tensor, yv: torch.Tensor, replay,
                        views_fn, gen, cfg: TrainConfig, m: Machine, scale: float) -> int:
    """Pass 2 of the two-pass full-batch gradient: accumulates into every parameter's .grad the gradient of
    L = scale * L_sum(Z) / n_anchor (the mean form the trainer optimises) and returns n_anchor.

    1. G = dL/dZ (n_rows, d) from the pass-1 features Z as a leaf, by the tiled kernel for scl and
       scl_prototypes (:meth:`LossHead.sum_form` with tiled=True: O(n d) memory, no n x n tensor); the loss
       head's own parameters (a learned classifier) get their gradient in the same backward.
    2. Each chunk C is re-forwarded with a graph (same mode, same views: ``replay``) and back-propagated
       with its slice: z_C.backward(G_C). By the chain rule, dL/dtheta = sum_C (dz_C/dtheta)^T G_C, which
       is the full-batch gradient whenever z_C depends on the images of C only, i.e. for a network
       without batch-dependent layers (norm group / frozen / none).
    With norm "batch" and more than one chunk this is NOT the full-batch gradient of the BatchNorm
    network: each chunk is normalised with its own batch statistics (in both passes, consistently), which
    differ from the full batch's, and the running statistics are updated once per chunk. With one chunk
    (chunk_size None or >= n) it is exact for BatchNorm too. Peak memory: Z and G (O(n d)) plus one chunk's
    activations."""
    leaf = z.detach().requires_grad_(True)
    value, n_anchor = head.sum_form(leaf, yv, tiled=True)
    (value * (scale / n_anchor)).backward()
    G = leaf.grad
    gen.set_state(replay)
    start = 0
    for C in _chunks(B, cfg):
        zc, _ = _batch_features(fwd, data, C, views_fn, gen, cfg, m)
        zc.backward(G[start:start + zc.shape[0]].to(zc.dtype))
        start += zc.shape[0]
    return n_anchor


def full_batch_gradient(cfg: TrainConfig) -> str | None:
    """What a step of this run computes under --batching full (config.json / summary.json), None otherwise."""
    if cfg.batching != "full":
        return None
    chunks = "one chunk (the whole batch)" if cfg.chunk_size is None else f"chunks of {cfg.chunk_size} images"
    text = (f"two-pass: features in {chunks} without a graph, the loss gradient w.r.t. all features by the tiled "
            f"kernel, each chunk re-forwarded and back-propagated with its slice")
    if cfg.norm_used in BATCH_DEPENDENT_NORMS and cfg.chunk_size is not None and not is_factory_spec(cfg.model):
        return text + ("; norm batch: each chunk is normalised with its own BatchNorm statistics, so this is NOT "
                       "the full-batch gradient (exact only if the chunk holds the whole batch)")
    return text + f"; norm {cfg.norm_used}: the exact full-batch gradient" + (
        " (for your own model: exact only if it has no batch-dependent layer)" if is_factory_spec(cfg.model) else "")


def _zero_rows(z: torch.Tensor, cfg: TrainConfig, model, epoch: int) -> int:
    """Feature rows of the batch that are exactly 0 before normalisation; InputError on non-finite features
    or on a zero row for a loss that needs every row's direction (one device-to-host read for both)."""
    zdet = z.detach()
    nonfinite, zero = torch.stack([(~torch.isfinite(zdet)).sum(), (zdet.abs().sum(dim=1) == 0).sum()]).tolist()
    if nonfinite:
        raise InputError(f"training diverged in epoch {epoch + 1} (non-finite features); "
                         f"lower the learning rate (lr={cfg.lr})")
    if not cfg.normalize:  # plain CE: unnormalised features, a zero row is an ordinary point
        return 0
    if zero and get_loss(cfg.loss).unit_rows:
        raise InputError(
            f"training stopped in epoch {epoch + 1}: an image's features are exactly zero before "
            f"normalisation (every unit of the last ReLU inactive), and {cfg.loss} needs a direction "
            "for every feature"
            + ("; feature_layer identity feeds the backbone's ReLU output to the loss, a linear layer "
               "(feature_layer linear) cannot vanish this way" if isinstance(model.head, nn.Identity)
               and not cfg.relu else "; try a lower learning rate or a wider last layer"))
    return zero


def _finish(cfg: TrainConfig, out: Path, measurer, plans, y_np, model, seconds: float, amp_dtype) -> dict:
    """embeddings.npz, summary.json (with Kini Thm 2's check of the batches trained on, for SCL on UFM+) and
    the plots."""
    model.eval()
    measurer.save_embeddings(model, amp_dtype)
    summary = measurer.summary(seconds)
    summary["embeddings"] = "embeddings.npz (keys features, labels, test_features, test_labels)"
    summary["norm"] = cfg.norm_used
    if cfg.batching == "full":
        summary["full_batch_gradient"] = json.loads((out / "config.json").read_text()).get("full_batch_gradient")
    if cfg.loss == "scl" and model.features_nonnegative:
        # Kini Thm 2 / Cor. 2.1 (UFM+): is the OF the unique optimum for the batches trained on?
        try:
            summary["plan_check"] = plan_uniqueness(plans, y_np, cfg.views, cfg.epochs, model.feat_dim)
        except Exception as exc:  # an optional measurement must not lose a finished run
            summary["plan_check"] = {"error": f"{type(exc).__name__}: {exc}"}
    elif cfg.loss == "scl":
        summary["plan_check"] = {"not_applicable": "signed features: Thm 2 / Cor. 2.1 are about UFM+ "
                                                   "(features in the non-negative orthant)"}
    write_json(summary, out / "summary.json")
    try:
        plot_run(out)
    except Exception as exc:  # a plotting failure must not lose a finished run
        print(f"warning: plotting failed: {exc}", file=sys.stderr)
    return summary


# ------------------------------------------------------------------------------------------ the run
# Test hook: called with the number of steps done after every optimiser step (tests/test_harness.py sets
# it to simulate a run killed mid-epoch); None in normal use.
_step_hook = None


def train(cfg: TrainConfig | dict, out: str | os.PathLike, resume: bool | None = None) -> dict:
    """Train one configuration, writing the run folder ``out``; returns the summary dict.

    resume=None (default): continue an unfinished run of the same configuration in ``out``, return the summary
    of a finished one, restart one killed before its first checkpoint, start afresh in a new folder
    (:func:`run_status`). resume=True: ``out`` must hold a checkpoint; resume=False: ``out`` must hold no run.
    The folder is locked while training (:class:`nctheory.runfolder.RunLock`: a second process is refused at
    once). Ctrl-C raises :class:`TrainingInterrupted`. ``cfg`` may be a config dict (TrainConfig.from_dict).
    A run whose memory estimate exceeds the limit is refused before anything is allocated
    (:func:`nctheory.harness.budget.check_train_memory`)."""
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    cfg.validate()
    out, m = Path(out), _machine(cfg)
    if m.is_main:
        output_dir(out, "--out")
    lock = RunLock(out).acquire() if m.is_main else None
    try:
        return _train(cfg, out, m, resume)
    finally:
        if lock is not None:
            lock.release()


def _folder_state(cfg: TrainConfig, out: Path, m: Machine, resume: bool | None):
    """The locked run folder's state (runfolder.run_status) checked against ``resume``; an unstarted run
    (killed before its first checkpoint) is cleared for a clean start. A finished run is left as it is."""
    status = run_status(out, cfg)
    if resume is True and status.state in ("new", "unstarted"):
        raise InputError(f"cannot resume: {out / 'checkpoint.pt'} does not exist")
    if resume is False and status.state != "new":
        raise InputError(f"run folder {out} already holds a run; use --resume or another --out")
    if status.state == "finished":
        return status
    if m.distributed:  # every rank has read the folder's state before rank 0 clears an unstarted run
        torch.distributed.barrier()
    if m.distributed and cfg.chunk_size is not None:
        raise InputError("chunk_size (the two-pass full-batch gradient) runs in one process; under torchrun "
                         "--batching full takes the whole batch's graph in one pass")
    if m.is_main and status.state == "unstarted":
        clear_unstarted(out)  # killed before its first checkpoint: exactly those files go, then a clean start
    return status


def _train(cfg: TrainConfig, out: Path, m: Machine, resume: bool | None) -> dict:
    """:func:`train` with the folder locked: its state, the setup, then the loop."""
    status = _folder_state(cfg, out, m, resume)
    if status.state == "finished":
        return json.loads((out / "summary.json").read_text())
    ckpt_path = out / "checkpoint.pt"
    data = _training_data(cfg, m)
    y_np = data.y_train.cpu().numpy()
    plans = EpochPlans(y_np, cfg.batching, cfg.batch_size, cfg.seed, cfg.bind, cfg.drop_last)
    ck, cfg = _load_checkpoint(ckpt_path, cfg, data, m) if status.state == "unfinished" else (None, cfg)
    model, head, opt, sched, fwd = _networks(cfg, data, m, out)
    start_epoch = _restore(ck, cfg, out, model, head, opt, sched, m.device) if ck is not None else 0
    measurer = Measurer(cfg, data, out, head, m.is_main, features_nonnegative=model.features_nonnegative,
                        feat_dim=model.feat_dim)
    if m.is_main:
        write_json(_run_info(cfg, data, model, head, m, plans), out / "config.json")
        measurer.open_csv(start_epoch)

    views_fn = [cfg.augment] + [cfg.view_augment] * (cfg.views - 1)
    scale = (cfg.tau / cfg.base_tau) if cfg.base_tau else 1.0  # the reference SupCon scaling
    two_pass = cfg.batching == "full" and not m.distributed  # full_batch_features / full_batch_backward
    steps, t_start, saved = 0, time.time(), start_epoch
    bar = _epoch_bar(cfg, m, start_epoch)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            # ---- the epoch's batches (deterministic in (seed, epoch))
            plan = plans(epoch)
            gen = torch.Generator(device=m.device).manual_seed(epoch_seed(cfg.seed + 1, epoch))
            fwd.train()
            loss_sum, anchors, images, zero_rows, t0 = 0.0, 0, 0, 0, time.time()
            for B in _progress(plan, cfg, m, epoch):
                opt.zero_grad(set_to_none=True)
                if two_pass:  # --batching full: features without a graph, tiled dL/dZ, chunks re-forwarded
                    z, yv, replay = full_batch_features(fwd, model, data, B, views_fn, gen, cfg, m)
                    zero_rows += _zero_rows(z, cfg, model, epoch)
                    n_anchor = full_batch_backward(fwd, head, data, B, z, yv, replay, views_fn, gen, cfg, m, scale)
                else:
                    z, yv = _batch_features(fwd, data, B, views_fn, gen, cfg, m)
                    zero_rows += _zero_rows(z, cfg, model, epoch)
                    # ---- the loss in its mean form (float32)
                    value, n_anchor = head.sum_form(z, yv)
                    (value * (scale / n_anchor)).backward()
                opt.step()  # ---- one SGD step
                with torch.no_grad():  # the logged value: the same batch loss in the sum form, float64
                    loss_sum += float(head.sum_form(z.detach().double(), yv, tiled=two_pass)[0])
                anchors += n_anchor
                images += B.numel() * cfg.views
                steps += 1
                if _step_hook is not None:
                    _step_hook(steps)
            lr_used = opt.param_groups[0]["lr"]
            sched.step()
            epoch_time = time.time() - t0

            # ---- measurements (every eval_every epochs and at the end), metrics row, checkpoint
            row = {"epoch": epoch + 1, "loss": loss_sum, "loss_per_anchor": loss_sum / max(anchors, 1),
                   "lr": lr_used, "epoch_seconds": epoch_time,
                   "images_per_second": images / max(epoch_time, 1e-9), "n_batches": len(plan),
                   "zero_feature_rows": zero_rows, **measurer.bound_terms(plan, loss_sum)}
            if m.is_main and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                fwd.eval()
                row.update(measurer.geometry(model, m.amp_dtype))
            if m.is_main:
                measurer.write_row(row)
                atomic_torch_save(_checkpoint(cfg, model, head, opt, sched, epoch + 1, m.device), ckpt_path)
                saved = epoch + 1
                _show(bar, row)
            if m.distributed:
                torch.distributed.barrier()
    except KeyboardInterrupt as exc:
        if m.is_main:  # the checkpoint on disk says which epoch is saved (the interrupt may fall between
            saved = _saved_epoch(ckpt_path, saved)  # its write and the bookkeeping after it)
        raise TrainingInterrupted(out, saved, cfg.epochs, exc) from None
    finally:
        if bar is not None:
            bar.close()
        if m.is_main:
            measurer.folder.close()

    return _finish(cfg, out, measurer, plans, y_np, model, time.time() - t_start, m.amp_dtype) if m.is_main else {}

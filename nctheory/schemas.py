"""Declared types and ranges of every config field (checked by :func:`nctheory.validate.check_fields`).

``TRAIN_CONFIG`` covers every field of :class:`nctheory.harness.train.TrainConfig` (tests/test_validate.py
checks that the keys are exactly the dataclass's fields and that each kind matches its annotation); the
choices of the string fields (datasets, losses, schemes, ...) stay with the modules that define them and
are checked by ``TrainConfig.validate``. Ranges here are those the definitions need (tau > 0, momentum in
[0, 1), ...); how large a run may be is a memory estimate (:func:`nctheory.validate.check_budget`), not a
range.

This module imports nothing heavy (no torch), so a config is checked before any library is loaded.
"""

from __future__ import annotations

from nctheory.runfolder import MAX_EPOCH
from nctheory.validate import SEED_MAX, Field, check_fields

# synthetic data (nctheory.harness.data.synthetic_arrays; its seed is the run's seed, not a key here)
SYNTHETIC = {
    "k": Field("int", lo=2, doc="number of classes"),
    "n_per_class": Field("int", lo=1, doc="training samples per class"),
    "n_test_per_class": Field("int", lo=0, doc="test samples per class"),
    "shape": Field("list", item=Field("int", lo=1), doc="image shape (C, H, W)"),
    "noise": Field("real", lo=0.0, doc="standard deviation of the noise around each class mean"),
}

_POS_INT = Field("int", lo=1)
_STR = Field("str")
_BOOL = Field("bool")

TRAIN_CONFIG = {
    # data
    "dataset": _STR,
    "data_root": Field("str", nullable=True),
    "imbalance": _STR,
    "ratio": Field("real", lo=1.0, doc="imbalance ratio R >= 1"),
    "n_max": Field("int", lo=1, nullable=True),
    "n_total": Field("int", lo=1, nullable=True),
    "test_fraction": Field("real", lo=0.0, hi=1.0, lo_open=True, hi_open=True),
    "synthetic": Field("dict", fields=SYNTHETIC),
    # model
    "model": _STR,
    "width": _POS_INT,
    "mlp_hidden": _POS_INT,
    "mlp_depth": _POS_INT,
    "batchnorm": _BOOL,
    "norm": _STR,
    "feat_dim": Field("int", lo=1, nullable=True),
    "projection": _BOOL,
    "relu": _BOOL,
    "feature_layer": _STR,
    "normalize": _BOOL,
    # loss
    "loss": _STR,
    "tau": Field("real", lo=0.0, lo_open=True),
    "base_tau": Field("real", lo=0.0, lo_open=True, nullable=True),
    "n_w": Field("int", lo=0),
    "prototypes": _STR,
    "prototype_options": Field("dict"),
    # batching
    "batching": _STR,
    "batch_size": _POS_INT,
    "chunk_size": Field("int", lo=1, nullable=True,
                        doc="images per chunk of the two-pass full-batch gradient (batching full; null: one chunk)"),
    "bind": _BOOL,
    "drop_last": _BOOL,
    "views": _POS_INT,
    "view_augment": _STR,
    "augment": _STR,
    # optimisation
    "epochs": Field("int", lo=1, hi=MAX_EPOCH),
    "lr": Field("real", lo=0.0, lo_open=True),
    "momentum": Field("real", lo=0.0, hi=1.0, hi_open=True),
    "weight_decay": Field("real", lo=0.0),
    "schedule": _STR,
    "milestones": Field("list", item=Field("int", lo=1, hi=MAX_EPOCH), increasing=True,
                        doc="epochs after which the step schedule multiplies the learning rate by gamma"),
    "gamma": Field("real", lo=0.0, lo_open=True),
    "seed": Field("int", lo=0, hi=SEED_MAX),
    # machinery
    "device": _STR,
    "amp": _STR,
    "channels_last": _STR,
    "compile": _BOOL,
    "eval_every": _POS_INT,
    "eval_batch": _POS_INT,
    "ufm_optimum": _BOOL,
    "koromilas_metrics": _BOOL,
    "progress": _BOOL,
    "tensorboard": Field("bool", doc="TensorBoard event files in the run folder (needs the tensorboard package)"),
    "name": _STR,
}

# keys a config file may hold besides the TrainConfig fields (cmd_train handles "sweep")
TRAIN_CONFIG_EXTRA_KEYS = ("_comment", "description", "sweep")


def check_train_config(d: dict, *, where: str | None = None) -> dict:
    """A config dict (a file's keys, a sweep entry merged with it, --set overrides) checked field by field
    against :data:`TRAIN_CONFIG`; returns the normalised dict (extra keys passed through unchecked)."""
    return check_fields(d, TRAIN_CONFIG, where=where, ignore=TRAIN_CONFIG_EXTRA_KEYS)

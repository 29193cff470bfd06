"""The training harness on tiny synthetic runs: models, data, run folder, bound, resume exactness, bad input."""

from __future__ import annotations

import csv
import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch

from nctheory import bounds
from nctheory.cli import main as cli_main
from nctheory.errors import InputError
from nctheory.harness import data as hdata
from nctheory.monitor import COLUMNS, TIMING_COLUMNS
from nctheory.harness.models import build_model
from nctheory.runplots import read_metrics
from nctheory.harness import train as train_module
from nctheory.harness.train import TrainConfig, train

TINY = dict(dataset="synthetic", synthetic={"k": 3, "n_per_class": 8, "n_test_per_class": 4}, model="mlp",
            mlp_hidden=16, mlp_depth=1, feat_dim=8, batch_size=8, epochs=3, tau=0.5, progress=False)


def cfg(**kw):
    return TrainConfig(**{**TINY, **kw})


# ------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("arch,shape", [("resnet18", (1, 8, 8)), ("resnet34", (3, 32, 32)), ("mlp", (1, 28, 28))])
def test_models_give_unit_features(arch, shape):
    torch.manual_seed(0)
    m = build_model(arch, shape, width=4, relu=True, projection=True, feat_dim=6, mlp_hidden=8).eval()
    f, h = m.embed(torch.randn(5, *shape))
    assert h.shape == (5, 6)
    assert torch.allclose(h.norm(dim=1), torch.ones(5), atol=1e-6)
    assert (h >= 0).all()  # ReLU before normalisation: non-negative orthant (Kini UFM+)
    assert f.shape[0] == 5


def test_resnet_is_cifar_style():
    m = build_model("resnet18", (3, 32, 32), width=64)
    stem = m.backbone.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())
    n_params = sum(p.numel() for p in m.backbone.parameters())
    assert 11.0e6 < n_params < 11.3e6  # the CIFAR ResNet-18 has 11.17M parameters
    m34 = build_model("resnet34", (3, 32, 32), width=64)
    assert 21.2e6 < sum(p.numel() for p in m34.backbone.parameters()) < 21.4e6  # 21.28M


def test_no_relu_features_take_negative_values():
    torch.manual_seed(0)
    m = build_model("mlp", (1, 8, 8), relu=False, feat_dim=8, mlp_hidden=16)
    assert (m(torch.randn(16, 1, 8, 8)) < 0).any()


def test_without_relu_the_features_are_signed_unless_identity_is_asked_for():
    """The backbones end in a ReLU: with an identity head, --no-relu features would be non-negative, i.e.
    SCL+ReLU in disguise. auto puts a linear layer there; identity (penultimate features) is explicit."""
    torch.manual_seed(0)
    x = torch.randn(32, 1, 8, 8)
    for arch in ("mlp", "resnet18"):
        kw = dict(width=4, mlp_hidden=16)
        signed = build_model(arch, (1, 8, 8), relu=False, **kw)  # feat_dim = backbone width
        assert not signed.features_nonnegative and (signed(x) < 0).any()
        pen = build_model(arch, (1, 8, 8), relu=False, feature_layer="identity", **kw)
        assert pen.features_nonnegative and (pen(x) >= 0).all()
        relu = build_model(arch, (1, 8, 8), relu=True, **kw)
        assert relu.features_nonnegative and isinstance(relu.head, torch.nn.Identity)
    with pytest.raises(InputError, match="identity"):
        build_model("mlp", (1, 8, 8), relu=False, feature_layer="identity", feat_dim=8, mlp_hidden=16)
    with pytest.raises(InputError, match="feature_layer"):
        build_model("mlp", (1, 8, 8), feature_layer="conv")


def test_resume_of_a_run_saved_before_feature_layer(tmp_path, capsys):
    """Runs saved before feature_layer existed used the identity head without ReLU (d = backbone width):
    they resume with that head, not with the linear layer 'auto' now builds, from the API and the CLI."""
    run = tmp_path / "old"
    c = dict(relu=False, feat_dim=None, koromilas_metrics=False, ufm_optimum=False)
    train(cfg(**c, feature_layer="identity", epochs=2), run)
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    del ck["config"]["feature_layer"]
    torch.save(ck, run / "checkpoint.pt")
    info = json.loads((run / "config.json").read_text())
    del info["config"]["feature_layer"]
    (run / "config.json").write_text(json.dumps(info))
    assert cli_main(["train", "--resume", "--out", str(run), "--epochs", "3", "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 3
    assert json.loads((run / "config.json").read_text())["config"]["feature_layer"] == "identity"
    # a new run without ReLU gets the linear layer and cannot be resumed as identity
    train(cfg(**c, epochs=1), tmp_path / "new")
    with pytest.raises(InputError, match="feature_layer"):
        train(cfg(**c, feature_layer="identity", epochs=2), tmp_path / "new", resume=True)


def test_zero_feature_row_stops_training_with_a_clear_error(tmp_path, monkeypatch):
    """An all-zero feature row (every unit of the last ReLU inactive) has no direction: a loss that needs
    one stops the run with a one-line InputError naming the cause, not its internal 'z has a zero row'."""
    from nctheory.harness import models

    orig = models.SphereNet.embed

    def dead_first_row(self, x):
        f, h = orig(self, x)
        h = h.clone()
        h[0] = 0.0
        return f, h

    monkeypatch.setattr(models.SphereNet, "embed", dead_first_row)
    with pytest.raises(InputError, match="features are exactly zero before normalisation.*feature_layer identity"):
        train(cfg(loss="normface", relu=False, feature_layer="identity", feat_dim=None, epochs=1),
              tmp_path / "z")
    # SCL takes the zero row as given (as the reference code does) and the run records it: that epoch's
    # bound is outside Thm 2's hypotheses (unit features)
    s = train(cfg(relu=True, epochs=2, koromilas_metrics=False, ufm_optimum=False), tmp_path / "scl")
    rows = read_metrics(tmp_path / "scl")
    # one forced per batch (the tiny 8-unit ReLU head also zeroes a row of its own now and then)
    assert all(r["zero_feature_rows"] >= r["n_batches"] for r in rows)
    assert s["epochs_with_zero_feature_rows"] == [1, 2]


def test_bad_model_is_input_error():
    with pytest.raises(InputError):
        build_model("vgg", (1, 8, 8))
    with pytest.raises(InputError):
        build_model("mlp", (1, 8))


# ------------------------------------------------------------------------------------------ data
def test_imbalance_counts_follow_kini():
    assert hdata.imbalance_counts(4, "step", 10, 100) == [100, 100, 10, 10]
    lt = hdata.imbalance_counts(5, "longtail", 100, 1000)  # n_c = n_1 R^{-(c-1)/(k-1)}
    assert lt == [round(1000 * 100 ** (-c / 4)) for c in range(5)] == [1000, 316, 100, 32, 10]
    assert hdata.imbalance_counts(3, "none", 7, 5) == [5, 5, 5]
    with pytest.raises(InputError):
        hdata.imbalance_counts(3, "step", 0.5, 5)


def test_digits_default_and_imbalance():
    d = hdata.load_data("digits")
    assert d.k == 10 and d.input_shape == (1, 8, 8)
    assert d.x_train.shape[0] + d.x_test.shape[0] == 1797
    s = hdata.load_data("digits", imbalance="step", ratio=10, n_max=100)
    assert s.counts == [100] * 5 + [10] * 5
    with pytest.raises(InputError):
        hdata.load_data("digits", imbalance="step", ratio=10, n_max=500)  # a class cannot supply 500


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()


def test_mnist_and_cifar_parsers(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, m in (("train", 20), ("t10k", 6)):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (m, 28, 28))))
        (raw / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(m) % 10)))
    d = hdata.load_data("mnist", root=str(tmp_path))
    assert d.input_shape == (1, 28, 28) and d.x_train.shape[0] == 20 and d.k == 10
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(c10 / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8), "labels": [0, 1, 2, 3]}, f)
    d = hdata.load_data("cifar10", root=str(tmp_path))
    assert d.input_shape == (3, 32, 32) and d.x_train.shape[0] == 20
    with pytest.raises(InputError, match="cifar-100-python"):
        hdata.load_data("cifar100", root=str(tmp_path))
    with pytest.raises(InputError, match="data-root"):
        hdata.load_data("mnist")
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(InputError):
        hdata.load_data("mnist", root=str(tmp_path))


def test_augmentations():
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    assert torch.equal(hdata.augment(x, "vflip"), x.flip(2))
    g = torch.Generator().manual_seed(0)
    y = hdata.augment(x, "crop_flip", g)
    assert y.shape == x.shape
    with pytest.raises(InputError):
        hdata.augment(x, "rotate")


# ------------------------------------------------------------------------------------------ runs
def test_run_folder_and_bound(tmp_path):
    s = train(cfg(relu=True), tmp_path / "run")
    run = tmp_path / "run"
    for f in ("config.json", "metrics.csv", "summary.json", "checkpoint.pt", "loss.png", "geometry.png",
              "gram_final.npy", "gram_final.png"):
        assert (run / f).exists(), f
    with open(run / "metrics.csv") as f:
        assert next(csv.reader(f)) == COLUMNS
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:  # Kini Thm 2 with ReLU: the loss of the batches seen is never below their bound
        assert r["loss"] >= r["bound"] - 1e-9 * abs(r["bound"])
        assert 0 <= r["delta_to_of"] <= 2 and 0 <= r["ncc_test"] <= 1
    assert s["bound_is_theorem"] is True and s["final"]["epoch"] == 3
    cfgj = json.loads((run / "config.json").read_text())
    assert cfgj["counts"] == [8, 8, 8] and cfgj["config"]["loss"] == "scl"


def test_gpu_precision_path_bf16_channels_last_on_cpu(tmp_path):
    """The CUDA defaults (bf16 autocast + channels_last) run the same code on CPU: features stay unit-norm
    float32, the loss and bound are float64 and Thm 2 still holds for the batches seen (ReLU)."""
    c = cfg(model="resnet18", width=4, relu=True, amp="bf16", channels_last="on", epochs=2,
            koromilas_metrics=False, ufm_optimum=False)
    s = train(c, tmp_path / "bf16")
    info = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert info["amp"] == "torch.bfloat16" and info["channels_last"] is True
    for r in read_metrics(tmp_path / "bf16"):
        assert np.isfinite(r["loss"]) and r["loss"] >= r["bound"] - 1e-9 * abs(r["bound"])
    assert np.isfinite(s["final"]["delta_to_of"])
    model = build_model("resnet18", (1, 8, 8), width=4, feat_dim=8, relu=True).to(memory_format=torch.channels_last)
    x = torch.randn(5, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        f, h = model.embed(x)
    assert h.dtype == torch.float32 and torch.allclose(h.norm(dim=1), torch.ones(5), atol=1e-6)
    assert (h >= 0).all()


def test_plan_check_of_the_batches_trained_on(tmp_path):
    """summary.json says whether the OF is the unique UFM+ optimum for the run's batches (with views):
    a fixed partition into batches of 4 (8 views, 3 classes) splits classes; binding repairs it."""
    base = dict(relu=True, batching="fixed", batch_size=4, koromilas_metrics=False, ufm_optimum=False)
    fixed = train(cfg(**base), tmp_path / "fixed")["plan_check"]
    bound = train(cfg(**base, bind=True), tmp_path / "bind")["plan_check"]
    full = train(cfg(relu=True, batching="full", epochs=1, koromilas_metrics=False, ufm_optimum=False),
                 tmp_path / "full")["plan_check"]
    assert fixed["first_epoch"]["unique"] is False and fixed["all_epochs"]["unique"] is False
    assert fixed["first_epoch"]["disconnected_classes"] and fixed["all_epochs"]["batches"] == 3 * fixed["first_epoch"]["batches"]
    assert bound["first_epoch"]["unique"] is True and bound["all_epochs"]["unique"] is True
    assert full["first_epoch"]["unique"] is True and full["views"] == 2 and full["dim"] == 8
    # the same answer as `check-batches` on the plan written out by hand
    from nctheory.batching import Plan, check_plan
    from nctheory.harness.plans import EpochPlans

    y = np.repeat(np.arange(3), 8)
    ep = EpochPlans(y, "fixed", 4, 0, False)
    batches = [np.concatenate([b.numpy(), b.numpy() + y.size]) for b in ep(0)]
    assert check_plan(Plan.from_batches(np.tile(y, 2), batches), dim=8).unique is False
    assert "plan_check" not in train(cfg(loss="ce", epochs=1, koromilas_metrics=False), tmp_path / "ce")
    # the theorems' setting is non-negative features, whichever way they arise
    one = dict(epochs=1, batching="fixed", batch_size=4, koromilas_metrics=False, ufm_optimum=False)
    signed = train(cfg(relu=False, **one), tmp_path / "signed")
    assert "not_applicable" in signed["plan_check"] and signed["bound_is_theorem"] is False
    assert signed["features_nonnegative"] is False
    pen = train(cfg(relu=False, feat_dim=None, feature_layer="identity", **one), tmp_path / "pen")
    assert pen["features_nonnegative"] is True and pen["bound_is_theorem"] is True
    assert pen["plan_check"]["first_epoch"]["unique"] is False


def test_full_batch_bound_is_thm1_of_duplicated_counts(tmp_path):
    train(cfg(batching="full", epochs=1, koromilas_metrics=False, ufm_optimum=False), tmp_path / "fb")
    (row,) = read_metrics(tmp_path / "fb")
    assert row["n_batches"] == 1
    assert row["bound"] == pytest.approx(bounds.full_batch_bound([16, 16, 16], tau=0.5), rel=1e-12)


class _Interrupt(Exception):
    """Raised by the step hook to simulate a run killed mid-epoch."""


def test_resume_after_kill_gives_identical_metrics(tmp_path, monkeypatch):
    """A run killed mid-epoch 3 (of 4) and resumed from its last checkpoint equals an uninterrupted run."""
    c = cfg(epochs=4, batching="reshuffle", augment="crop_flip", koromilas_metrics=False, ufm_optimum=False)
    train(c, tmp_path / "a")
    steps_per_epoch = read_metrics(tmp_path / "a")[0]["n_batches"]

    def kill(steps):
        if steps >= 2 * steps_per_epoch + 1:
            raise _Interrupt(f"interrupted after {steps} steps")

    with monkeypatch.context() as mp:
        mp.setattr(train_module, "_step_hook", kill)
        with pytest.raises(_Interrupt):
            train(c, tmp_path / "b")
    assert len(read_metrics(tmp_path / "b")) == 2
    train(c, tmp_path / "b", resume=True)
    ra, rb = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert len(ra) == len(rb) == 4
    for x, y in zip(ra, rb):
        for col in COLUMNS:
            if col not in TIMING_COLUMNS:
                assert x[col] == y[col] or (x[col] != x[col] and y[col] != y[col]), (col, x[col], y[col])
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the summary's seconds_all_epochs counts every epoch, the two before the resume included
    sb_summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert sb_summary["seconds_all_epochs"] == pytest.approx(sum(float(r["epoch_seconds"]) for r in rb))
    assert sb_summary["seconds_all_epochs"] >= sum(float(r["epoch_seconds"]) for r in rb[:2]) > 0


def test_resume_control_different_seed_differs(tmp_path):
    """Control for the resume test: a different seed changes the metrics, so equality is not vacuous."""
    train(cfg(epochs=1, koromilas_metrics=False, ufm_optimum=False), tmp_path / "a")
    train(cfg(epochs=1, seed=1, koromilas_metrics=False, ufm_optimum=False), tmp_path / "b")
    assert read_metrics(tmp_path / "a")[0]["loss"] != read_metrics(tmp_path / "b")[0]["loss"]


@pytest.mark.parametrize("loss,extra", [("scl_prototypes", {"n_w": 5}), ("scl_prototypes_limit", {}),
                                        ("gill_prop1", {}), ("ce", {"normalize": False}), ("ce_fixed", {}),
                                        ("normface", {}), ("ntce", {}), ("nonl", {"batching": "full"}),
                                        ("proto", {})])
def test_every_loss_trains(tmp_path, loss, extra):
    relu = loss.startswith("scl")  # Koromilas' normalised losses have no ReLU head (and refuse zero rows)
    s = train(cfg(loss=loss, epochs=1, relu=relu, koromilas_metrics=True, ufm_optimum=False, **extra),
              tmp_path / loss)
    f = s["final"]
    assert np.isfinite(f["loss"]) and "bound" not in f
    assert ("delta_to_prototypes" in f) == (loss in ("scl_prototypes", "scl_prototypes_limit", "gill_prop1",
                                                     "ce_fixed"))
    assert np.isfinite(f["erank_inter"])


def test_batching_schemes_and_binding(tmp_path):
    train(cfg(epochs=1, batching="fixed", bind=True, koromilas_metrics=False, ufm_optimum=False), tmp_path / "b")
    c = json.loads((tmp_path / "b" / "config.json").read_text())
    assert sorted(int(k) for k in c["binding_examples"]) == [0, 1, 2]
    (row,) = read_metrics(tmp_path / "b")
    assert row["n_batches"] == 3  # 24 samples in batches of 8, each with the 3 binding examples added


# ------------------------------------------------------------------------------------------ CLI and bad input
def test_cli_train_plot_compare(tmp_path, capsys):
    base = ["train", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "8", "--no-progress",
            "--set", "synthetic={\"k\": 3, \"n_per_class\": 6}", "--set", "ufm_optimum=false", "--json"]
    assert cli_main(base + ["--out", str(tmp_path / "r1")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["epochs"] == 2
    assert cli_main(base + ["--out", str(tmp_path / "r2"), "--no-relu", "--name", "norelu"]) == 0
    capsys.readouterr()
    assert cli_main(["plot", str(tmp_path / "r1"), "--json"]) == 0
    assert any(p.endswith("loss.png") for p in json.loads(capsys.readouterr().out)[str(tmp_path / "r1")])
    png = tmp_path / "cmp.png"
    assert cli_main(["compare", str(tmp_path / "r1"), str(tmp_path / "r2"), "--out", str(png), "--json"]) == 0
    assert png.exists() and len(json.loads(capsys.readouterr().out)["runs"]) == 2
    # values at given epochs, as JSON and as a Markdown table; they are the metrics.csv values
    r1 = read_metrics(tmp_path / "r1")
    assert cli_main(["compare", str(tmp_path / "r1"), str(tmp_path / "r2"), "--metric", "loss", "--at", "1,2",
                     "--out", str(png), "--json"]) == 0
    at = json.loads(capsys.readouterr().out)["at"]
    r1p, r2p = str(tmp_path / "r1"), str(tmp_path / "r2")  # runs are named as given (sweeps share run names)
    assert [(a["run"], a["epoch"]) for a in at] == [(r1p, 1), (r1p, 2), (r2p, 1), (r2p, 2)]
    assert at[0]["loss"] == r1[0]["loss"] and at[1]["loss"] == r1[1]["loss"]
    assert cli_main(["compare", str(tmp_path / "r1"), "--metric", "loss", "--at", "2,9", "--markdown",
                     "--out", str(png)]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0] == "| run | epoch | loss |" and md[3] == f"| {r1p} | 9 | - |"
    for bad in ("0", "", "x"):
        assert cli_main(["compare", str(tmp_path / "r1"), "--at", bad, "--out", str(png)]) == 2
    # the same command again on the finished run: nothing retrained, its summary reported, exit 0
    before = (tmp_path / "r1" / "metrics.csv").read_text()
    assert cli_main(base + ["--out", str(tmp_path / "r1")]) == 0
    again = capsys.readouterr()
    assert json.loads(again.out) == json.loads((tmp_path / "r1" / "summary.json").read_text())
    assert (tmp_path / "r1" / "metrics.csv").read_text() == before
    # the same command with another loss-relevant option on that folder: refused, exit 2, one line
    assert cli_main(base + ["--out", str(tmp_path / "r1"), "--tau", "0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "different configuration (tau differ)" in err and "\n" not in err
    # --resume without --config continues the run with its saved configuration, here extended to 3 epochs
    assert cli_main(["train", "--resume", "--out", str(tmp_path / "r1"), "--epochs", "3", "--no-progress",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 3
    assert len(read_metrics(tmp_path / "r1")) == 3
    # resuming with a changed loss-relevant key is refused
    assert cli_main(["train", "--resume", "--out", str(tmp_path / "r1"), "--tau", "0.3", "--epochs", "4"]) == 2


def test_cli_bad_input_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"dataset": "digits", "lerning_rate": 0.1}')
    assert cli_main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "lerning_rate" in capsys.readouterr().err
    assert cli_main(["train", "--dataset", "imagenet", "--out", str(tmp_path / "y")]) == 2
    assert cli_main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path), "--out", str(tmp_path / "z")]) == 2
    assert cli_main(["train", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert cli_main(["train", "--tau", "-1", "--out", str(tmp_path / "t")]) == 2
    assert cli_main(["plot", str(tmp_path)]) == 2
    (tmp_path / "notjson.json").write_text("{")
    assert cli_main(["train", "--config", str(tmp_path / "notjson.json")]) == 2


def test_loss_names_come_from_the_catalogue(tmp_path, capsys):
    """`--loss scl-prototypes` is the catalogue's scl_prototypes and config.json stores it snake_case; the
    reference SupCon mean form is not a separate training loss (it is scl with base_tau); unknown names
    are refused with the list of training losses."""
    assert TrainConfig.from_dict({**TINY, "loss": "scl-prototypes", "n_w": 2}).loss == "scl_prototypes"
    args = ["train", "--dataset", "synthetic", "--set", 'synthetic={"k": 3, "n_per_class": 4}', "--epochs", "1",
            "--batch-size", "6", "--no-progress", "--set", "ufm_optimum=false", "--set", "koromilas_metrics=false",
            "--set", "mlp_hidden=16", "--loss", "scl-prototypes", "--n-w", "2", "--out", str(tmp_path / "r"),
            "--json"]
    assert cli_main(args) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["loss"] == "scl_prototypes"
    for bad in ("supcon_mean", "scl_prototype"):
        with pytest.raises(InputError, match="scl_prototypes_limit"):
            TrainConfig.from_dict({"loss": bad})


def test_experiment_configs_are_valid(monkeypatch):
    """Every experiments/*.json parses into TrainConfigs and builds its network (each sweep entry, digits
    input shape, narrow width), so `--config` will not exit 2 part-way through a sweep. The repository root
    is on the path, as the configs naming a dataset factory of experiments/datasets/ need."""
    from pathlib import Path

    from nctheory.harness.train import model_from_config

    root = Path(__file__).parent.parent / "experiments"
    monkeypatch.syspath_prepend(str(root.parent))
    names = ["kini_fig3", "kini_fig6_batching", "gill_fig2", "gill_fig3", "koromilas_table3", "kini_fig3_whole_digits"]
    files = [root / f"{n}.json" for n in names]
    assert sorted(files) == sorted(root.glob("*.json"))
    for f in files:
        d = json.loads(f.read_text())
        sweep = d.pop("sweep", [{}])
        for s in sweep:
            c = TrainConfig.from_dict({**d, **s, "width": 4})
            model = model_from_config(c, (1, 8, 8))
            # a run without ReLU either has signed features or asked for the penultimate ones explicitly
            assert model.features_nonnegative == (c.relu or c.feature_layer == "identity"), (f.name, s)


def test_sigkill_then_resume_from_the_command_line(tmp_path):
    """The literal case: `nctheory train` killed with SIGKILL mid-run, then `--resume`: same metrics."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["--dataset", "synthetic", "--set", 'synthetic={"k": 3, "n_per_class": 8}', "--epochs", "40",
            "--batch-size", "8", "--no-progress", "--set", "ufm_optimum=false", "--set", "koromilas_metrics=false",
            "--set", "mlp_hidden=16", "--tau", "0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nctheory", "train", *args, "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 4:  # header + 3 epochs
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(read_metrics(tmp_path / "killed"))
    assert 3 <= done < 40
    # the resumed and the uninterrupted runs use the same process setup as the killed one: a different
    # thread count changes float summation order (seen: 1e-8 relative in epoch 1, before any kill)
    resume = [sys.executable, "-m", "nctheory", "train", "--resume", "--out", str(tmp_path / "killed"), "--no-progress"]
    assert subprocess.run(resume, env=env, stdout=subprocess.DEVNULL).returncode == 0
    straight = [sys.executable, "-m", "nctheory", "train", *args, "--out", str(tmp_path / "straight")]
    assert subprocess.run(straight, env=env, stdout=subprocess.DEVNULL).returncode == 0
    ra, rb = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "killed")
    assert len(ra) == len(rb) == 40
    for x, y in zip(ra, rb):
        for col in COLUMNS:
            if col not in TIMING_COLUMNS:
                assert x[col] == y[col] or (x[col] != x[col] and y[col] != y[col]), (col, x["epoch"], x[col], y[col])

"""The training run's memory estimate (nctheory.harness.budget, issue 15 item 2) and the trainer's warnings.

A run too large for the memory limit is refused before anything is allocated, by the CLI (exit 2, one line
naming the flag) and by the library entry ``nctheory.harness.train.train`` (InputError); the ordinary
configurations (experiments/, the README's commands, the fuzz tests' fast config) are far below the limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nctheory.cli import main
from nctheory.errors import InputError
from nctheory.harness import budget
from nctheory.harness import train as train_mod
from nctheory.harness.models import count_parameters
from nctheory.harness.train import TrainConfig, model_from_config, train
from nctheory.validate import memory_limit_set

REPO = Path(__file__).resolve().parent.parent
FAST = {"dataset": "synthetic", "synthetic": {"k": 2, "n_per_class": 4, "n_test_per_class": 2},
        "ufm_optimum": False, "koromilas_metrics": False, "mlp_hidden": 8, "batch_size": 4, "epochs": 1,
        "progress": False}
FAST_ARGS = ["--dataset", "synthetic", "--set", 'synthetic={"k": 2, "n_per_class": 4, "n_test_per_class": 2}',
             "--set", "ufm_optimum=false", "--set", "koromilas_metrics=false", "--set", "mlp_hidden=8",
             "--batch-size", "4", "--epochs", "1", "--no-progress", "--json"]
# issue 15's examples: (config change, the flag the refusal names)
TOO_LARGE = [({"views": 10**8}, "--views 100000000"), ({"feat_dim": 10**7}, "--feat-dim 10000000"),
             ({"model": "resnet18", "width": 100000}, "--width 100000"),
             ({"synthetic": {"k": 2, "n_per_class": 10**8}}, "n_per_class=100000000")]


# experiments/datasets/whole_digits.py (a dataset of your own, sized only once loaded): all of digits, no test split
WHOLE_DIGITS = budget.DataSize(1797, 0, (1, 8, 8), 10)


def total(cfg: TrainConfig) -> int:
    data = budget.data_size(cfg) or (WHOLE_DIGITS if cfg.dataset.endswith(":whole_digits") else None)
    return sum(budget.train_memory(cfg, data, model_from_config)["bytes"].values())


@pytest.mark.parametrize("change,flag", TOO_LARGE, ids=[f for _, f in TOO_LARGE])
def test_library_train_refuses_a_run_beyond_the_limit(tmp_path, change, flag):
    with memory_limit_set("2G"), pytest.raises(InputError, match=flag) as exc:
        train({**FAST, **change}, tmp_path / "r")
    assert "\n" not in str(exc.value) and "limit 2.0 GB (--max-memory)" in str(exc.value)
    assert not (tmp_path / "r").exists()  # refused before the run folder was made


def test_cli_max_memory_refuses_with_one_line(tmp_path, capsys):
    rc = main(["train", *FAST_ARGS, "--max-memory", "10k", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "limit 10.0 kB (--max-memory)" in err, err
    assert not (tmp_path / "r").exists()


def _configs(path: Path):
    d = json.loads(path.read_text())
    for entry in d.pop("sweep", None) or [{}]:
        yield f"{path.name}:{entry.get('name', '')}", {k: v for k, v in {**d, **entry}.items() if k != "name"}


ORDINARY = [c for p in sorted((REPO / "experiments").glob("*.json")) for c in _configs(p)]


@pytest.mark.parametrize("name,d", ORDINARY, ids=[n for n, _ in ORDINARY])
def test_ordinary_configs_are_far_below_any_limit(name, d):
    """experiments/ configs (on digits, as committed) need at most 2.5 GB by the estimate (kini_fig3's
    full batch of 2 x 1000 images through ResNet-18); a limit of 4 GB lets every one of them through."""
    cfg = TrainConfig.from_dict(d)
    assert total(cfg) < 4e9
    with memory_limit_set("4G"):
        budget.check_train_memory(cfg, model_from_config)


def test_readme_and_fuzz_commands_are_far_below_any_limit():
    """The README's `nctheory train --dataset digits` (the defaults), the fuzz tests' fast config, and
    experiments/README.md's MNIST / CIFAR-10 commands with the GPU's bf16 activations."""
    assert total(TrainConfig.from_dict({})) < 1e8
    assert total(TrainConfig.from_dict(FAST)) < 1e6
    for path, change in (("kini_fig3.json", {"dataset": "mnist"}), ("kini_fig6_batching.json", {"dataset": "cifar10"})):
        for _, d in _configs(REPO / "experiments" / path):
            cfg = TrainConfig.from_dict({**d, **change})
            est = budget.train_memory(cfg, budget.data_size(cfg), model_from_config, torch.bfloat16)
            assert sum(est["bytes"].values()) < 16e9, (path, est)


@pytest.mark.parametrize("d", [{"model": "mlp", "feat_dim": 32}, {"model": "mlp", "mlp_depth": 3},
                               {"model": "resnet18", "width": 8}, {"model": "resnet34", "width": 4, "projection": True},
                               {"model": "resnet18", "width": 8, "loss": "ce"}])
def test_parameters_are_those_of_the_network_built(d):
    """One definition: the meta-device network the estimate counts is the network the trainer builds."""
    cfg = TrainConfig.from_dict({**FAST, **d})
    data = budget.data_size(cfg)
    est = budget.train_memory(cfg, data, model_from_config)
    model = model_from_config(cfg, data.shape, data.k)
    assert est["parameters"] == count_parameters(model)
    assert est["feat_dim"] == model.feat_dim


@pytest.mark.parametrize("d", [{}, {"test_fraction": 0.5}, {"n_max": 50, "imbalance": "step", "ratio": 10.0},
                               {"n_total": 300}, FAST,
                               {**FAST, "synthetic": {"k": 3, "n_per_class": 5, "shape": [3, 4, 4]}}])
def test_data_size_bounds_the_data_loaded(d):
    """Before loading: the image shape and the classes exactly, the training and test counts upper bounds
    (exact for synthetic data)."""
    from nctheory.harness.data import load_data

    cfg = TrainConfig.from_dict(d)
    size = budget.data_size(cfg)
    data = load_data(cfg.dataset, imbalance=cfg.imbalance, ratio=cfg.ratio, n_max=cfg.n_max, n_total=cfg.n_total,
                     test_fraction=cfg.test_fraction, seed=cfg.seed, synthetic=cfg.synthetic)
    n_train, n_test = int(data.x_train.shape[0]), int(data.x_test.shape[0])
    assert size.shape == tuple(data.input_shape) and size.k == data.k
    assert size.n_train >= n_train and size.n_test >= n_test
    if cfg.dataset == "synthetic":
        assert (size.n_train, size.n_test) == (n_train, n_test)


@pytest.mark.parametrize("arch,shape", [("mlp", (1, 8, 8)), ("resnet18", (1, 8, 8)), ("resnet18", (3, 32, 32)),
                                        ("resnet34", (3, 9, 9))])
def test_layer_outputs_follow_the_forward_pass(arch, shape):
    """The layer walk (widths and strides read from the modules) against a real forward pass: its module
    outputs (the convolutions', BatchNorms' and linear layers', hooked) are at least half and at most all of
    the walk's count, which adds the functional ReLUs, residual sums and normalisation; the largest is the
    largest module output (a wrong stride would be off by a factor of 4)."""
    cfg = TrainConfig.from_dict({"model": arch, "width": 4, "mlp_hidden": 16})
    model = model_from_config(cfg, shape, 3)
    seen = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: seen.append(o[0].numel()))
             for mod in model.modules() if isinstance(mod, (nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d, nn.Linear))]
    model(torch.randn(2, *shape))
    for h in hooks:
        h.remove()
    walked, largest = budget._layer_outputs(model, shape)
    assert sum(seen) <= walked <= 2 * sum(seen)
    assert largest == max(seen)


def test_loss_estimate_is_dense_pairs_for_scl_and_classes_for_classifiers():
    assert budget.loss_memory("scl", 100, 3) == budget.DENSE_LOSS_BYTES_PER_LOGIT * 100 * 100
    assert budget.loss_memory("scl_prototypes", 100, 3, n_w=2) == budget.DENSE_LOSS_BYTES_PER_LOGIT * 100 * 103
    assert budget.loss_memory("ce", 100, 3) == budget.DENSE_LOSS_BYTES_PER_LOGIT * 100 * 3
    a, b = (TrainConfig.from_dict({**FAST, "views": v}) for v in (2, 4))
    la, lb = (budget.train_memory(c, budget.data_size(c), model_from_config)["bytes"]["loss"] for c in (a, b))
    assert lb == 4 * la  # twice the rows: four times the logits


def test_a_dataset_of_your_own_is_estimated_once_loaded(tmp_path, monkeypatch):
    """A dataset factory's size is known only once it is loaded: the trainer checks the estimate then,
    before the network and the batches exist."""
    (tmp_path / "own_data.py").write_text(
        "import torch\n"
        "def data(seed):\n"
        "    x = torch.randn(12, 1, 4, 4, generator=torch.Generator().manual_seed(seed))\n"
        "    return [(x[i], i % 2) for i in range(8)], [(x[i], i % 2) for i in range(8, 12)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    d = {**FAST, "dataset": "own_data:data", "synthetic": {}}
    assert budget.data_size(TrainConfig.from_dict(d)) is None
    with memory_limit_set("2G"), pytest.raises(InputError, match="--views 100000000"):
        train({**d, "views": 10**8}, tmp_path / "r")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------ warnings
def test_a_plotting_failure_warns_on_stderr_and_json_stays_pure(tmp_path, capsys, monkeypatch):
    """A failing plot (e.g. matplotlib missing) must not lose the run, and its warning goes to stderr:
    `train --json` prints only the summary's JSON on stdout."""
    def no_plots(out):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(train_mod, "plot_run", no_plots)
    rc = main(["train", *FAST_ARGS, "--out", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert rc == 0
    summary = json.loads(out)  # nothing but the JSON on stdout
    assert summary["epochs"] == 1
    assert "warning: plotting failed: No module named 'matplotlib'" in err


def test_a_failing_sweep_overlay_warns_on_stderr_and_json_stays_pure(tmp_path, capsys, monkeypatch):
    import nctheory.runplots

    def broken(*a, **k):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(train_mod, "plot_run", broken)
    monkeypatch.setattr(nctheory.runplots, "compare_runs", broken)
    cfg = tmp_path / "sweep.json"
    cfg.write_text(json.dumps({**FAST, "sweep": [{"name": "a"}, {"name": "b", "seed": 1}]}))
    rc = main(["train", "--config", str(cfg), "--out", str(tmp_path / "s"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert [r["run"] for r in json.loads(out)] == [str(tmp_path / "s" / "a"), str(tmp_path / "s" / "b")]
    assert "warning: the sweep's overlay" in err and err.count("warning: plotting failed") == 2


@pytest.mark.parametrize("d,words", [
    ({"dataset": "mnist", "model": "resnet18", "batching": "full"}, ["activations", "--views 2", "--width 64",
                                                                      "--chunk-size N"]),
    ({"dataset": "mnist", "model": "resnet18", "batching": "full", "chunk_size": 60000},
     ["activations of a chunk", "--chunk-size 60000", "--batching reshuffle"]),
    ({"dataset": "cifar10"}, ["the data (60000 images of 3x32x32)", "--n-max N or --n-total N"]),
    ({"model": "mlp", "mlp_hidden": 100000, "mlp_depth": 4}, ["parameters", "mlp_hidden=100000", "mlp_depth=4"]),
])
def test_the_refusal_says_what_is_large_and_what_lowers_it(d, words):
    with memory_limit_set("1G"), pytest.raises(InputError) as exc:
        budget.check_train_memory(TrainConfig.from_dict(d), model_from_config)
    msg = str(exc.value)
    assert "\n" not in msg and "limit 1.0 GB (--max-memory)" in msg and all(w in msg for w in words), msg


def test_full_batch_is_estimated_by_chunk_and_tiled_loss():
    """--batching full runs the two-pass gradient: activations of one chunk (views x chunk_size rows) and the
    tiled loss, O(m d), so a whole CIFAR-10 training set in full batch fits where the dense form could not."""
    cfg = TrainConfig.from_dict({"dataset": "cifar10", "model": "resnet18", "width": 16, "batching": "full",
                                 "chunk_size": 256, "views": 2, "loss": "scl"})
    data = budget.data_size(cfg)
    est = budget.train_memory(cfg, data, model_from_config)
    m = 2 * data.n_train
    assert est["rows"] == m and est["forward_rows"] == 2 * 256
    assert est["bytes"]["loss"] == budget.TILED_BYTES_PER_ROW_ELEMENT * m * est["feat_dim"] + budget.TILED_TILE_BYTES
    assert est["bytes"]["loss"] < budget.loss_memory("scl", m, 10) / 100  # the dense form: 320 GB
    one_chunk = budget.train_memory(TrainConfig.from_dict({**cfg.__dict__, "chunk_size": None}), data,
                                    model_from_config)
    assert one_chunk["bytes"]["activations"] > 100 * est["bytes"]["activations"]


def test_full_batch_refusal_suggests_a_chunk_size(tmp_path):
    cfg = {"dataset": "cifar10", "model": "resnet18", "width": 16, "batching": "full", "views": 2, "loss": "scl",
           "progress": False}
    with memory_limit_set("8G"), pytest.raises(InputError, match=r"activations of a batch .*--chunk-size N"):
        train(cfg, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_ten_thousand_views_fit_by_the_tiled_loss():
    """Issue 15's example `train --views 10000` (batch 4: 40,000 feature rows): the dense loss would need
    51 GB; the trainer's loss is the tiled kernel from TILED_MIN_ROWS rows on, so the estimate is O(m d) and
    the run is not refused for its loss."""
    cfg = TrainConfig.from_dict({**FAST, "views": 10000})
    data = budget.data_size(cfg)
    est = budget.train_memory(cfg, data, model_from_config)
    assert est["rows"] == 40000
    assert budget.loss_memory("scl", 40000, 2) > 50e9  # the dense form
    assert est["bytes"]["loss"] == budget.TILED_BYTES_PER_ROW_ELEMENT * 40000 * est["feat_dim"] + budget.TILED_TILE_BYTES
    with memory_limit_set("4G"):
        budget.check_train_memory(cfg, model_from_config)

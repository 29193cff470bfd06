"""Bring your own run: nctheory.Monitor from a hand-written loop, your own --model / --dataset factories,
embeddings.npz -> nctheory measure, resume by rerunning the same command, TensorBoard, the Lightning callback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import nctheory
from nctheory import bounds
from nctheory import measure as ms
from nctheory.batching import PlanBatchSampler, make_plan
from nctheory.cli import main as cli_main
from nctheory.errors import InputError
from nctheory.runplots import read_metrics
from nctheory.harness.train import TrainConfig, train
from nctheory.losses import scl, scl_batches
from nctheory.monitor import COLUMNS, tensorboard_available

SMALL = ["--dataset", "synthetic", "--set", 'synthetic={"k": 3, "n_per_class": 8}', "--batch-size", "8",
         "--no-progress", "--set", "ufm_optimum=false", "--set", "koromilas_metrics=false", "--set", "mlp_hidden=16",
         "--tau", "0.5"]


def _user_loop(out, epochs=3, plan=None, names=False, **monitor_kw):
    """A training loop as a researcher writes it: own data, own network, own optimiser, SCL from nctheory."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(10)
    x = torch.randn(4, 12, generator=g)[y] + 0.7 * torch.randn(40, 12, generator=g)
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU())
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    labels = np.array(["ant", "bee", "cat", "dog"])[y.numpy()] if names else y
    monitor = nctheory.Monitor(out, tau=0.5, plan=plan, **monitor_kw)
    sampler = PlanBatchSampler(y.numpy(), scheme="reshuffle", batch_size=10, seed=0)
    rows = []
    for epoch in range(1, epochs + 1):
        for b in sampler:
            z = torch.nn.functional.normalize(net(x[b]), dim=1)
            loss = scl(z, y[b], 0.5) / len(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            H = torch.nn.functional.normalize(net(x), dim=1)
        rows.append(monitor.log_epoch(epoch, H, labels, test_features=H[:8], test_labels=labels[:8],
                                      lr=opt.param_groups[0]["lr"]))
    return monitor, H, y, rows


def test_monitor_from_a_user_loop_writes_a_run_folder_that_plot_and_compare_read(tmp_path, capsys):
    monitor, H, y, rows = _user_loop(tmp_path / "mine", names=True)
    summary = monitor.close()
    run = tmp_path / "mine"
    for f in ("config.json", "metrics.csv", "summary.json", "gram_final.npy", "embeddings.npz", "loss.png",
              "geometry.png"):
        assert (run / f).exists(), f
    got = read_metrics(run)
    assert [r["epoch"] for r in got] == [1, 2, 3] and list(got[0]) == COLUMNS
    last = got[-1]
    # the row measures exactly the features given: full-batch SCL, Kini Thm 1 for the counts, Delta to OF
    Hd = H.double()
    assert last["loss"] == pytest.approx(float(scl(Hd, y, 0.5)), rel=1e-12)
    assert last["bound"] == pytest.approx(bounds.full_batch_bound([10] * 4, 0.5), rel=1e-14)
    assert last["excess"] == pytest.approx(last["loss"] - last["bound"], rel=1e-12)
    rep = ms.measure(run / "embeddings.npz", tau=0.5, ufm=False)
    assert last["delta_to_of"] == pytest.approx(rep["delta_to_of"], rel=1e-12)
    assert rep["label_mapping"] == ["ant", "bee", "cat", "dog"]
    info = json.loads((run / "config.json").read_text())
    assert info["writer"] == "nctheory.Monitor" and info["label_mapping"] == ["ant", "bee", "cat", "dog"]
    # ReLU features with unit rows: the bound is a theorem for every logged epoch (none had a zero row)
    assert [r["zero_feature_rows"] for r in got] == [0, 0, 0]
    assert summary["bound_is_theorem"] is True and summary["final"]["epoch"] == 3
    # plot and compare read it, next to a run of `nctheory train`
    assert cli_main(["train", *SMALL, "--epochs", "2", "--out", str(tmp_path / "trained")]) == 0
    capsys.readouterr()
    assert cli_main(["plot", str(run), "--json"]) == 0
    assert any(p.endswith("loss.png") for p in json.loads(capsys.readouterr().out)[str(run)])
    assert cli_main(["compare", str(run), str(tmp_path / "trained"), "--out", str(tmp_path / "c.png"),
                     "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["runs"]) == {str(run), str(tmp_path / "trained")}
    # train refuses to write over a Monitor folder; Monitor refuses a folder that holds a run
    assert cli_main(["train", *SMALL, "--epochs", "1", "--out", str(run)]) == 2
    with pytest.raises(InputError, match="already holds a run"):
        nctheory.Monitor(run, tau=0.5)
    with pytest.raises(InputError, match="nctheory train"):
        nctheory.Monitor(tmp_path / "trained", tau=0.5)


def test_monitor_with_a_plan_gives_thm2_of_the_epochs_batches(tmp_path):
    y = np.arange(4).repeat(10)
    plan = make_plan(y, "fixed", batch_size=10, epochs=2, seed=3)
    monitor, H, yt, rows = _user_loop(tmp_path / "p", epochs=3, plan=plan, ufm_optimum=False)
    monitor.close()
    Hd = H.double()
    ep = plan.epochs[(3 - 1) % 2]  # epoch 3 uses the plan's epochs cyclically: its first one
    assert rows[-1]["loss"] == pytest.approx(float(scl_batches(Hd, yt, ep, 0.5)), rel=1e-12)
    assert rows[-1]["bound"] == pytest.approx(bounds.batch_bound(y, ep, 0.5), rel=1e-14)
    assert rows[-1]["n_batches"] == len(ep) and rows[-1]["excess"] >= 0
    # explicit batches win over the plan; a sampler with replacement: multiset batches (copies)
    m2 = nctheory.Monitor(tmp_path / "q", tau=0.5, ufm_optimum=False, plots=False)
    r = m2.log_epoch(1, Hd, yt, batches=[[0, 1, 2, 10, 11], [3, 4, 12, 13, 20]])
    assert r["bound"] == pytest.approx(bounds.batch_bound(y, [[0, 1, 2, 10, 11], [3, 4, 12, 13, 20]], 0.5))
    drawn = [[0, 0, 1, 10, 10], [3, 12, 12, 20, 21]]
    r = m2.log_epoch(2, Hd, yt, batches=drawn, multiset=True)
    assert r["bound"] == pytest.approx(bounds.batch_bound(y, drawn, 0.5, multiset=True), rel=1e-14)
    assert r["loss"] == pytest.approx(float(scl_batches(Hd, yt, drawn, 0.5, multiset=True)), rel=1e-12)
    m2.close()


def test_monitor_resume_and_bad_input(tmp_path):
    H = torch.nn.functional.normalize(torch.rand(12, 4), dim=1)
    y = torch.arange(3).repeat(4)
    m = nctheory.Monitor(tmp_path / "r", tau=0.5, ufm_optimum=False, plots=False)
    for e in (1, 2, 3):
        m.log_epoch(e, H, y)
    m.close()
    # a restarted script continues from its own checkpoint (epoch 2): rows from epoch 3 on are replaced
    m = nctheory.Monitor(tmp_path / "r", tau=0.5, ufm_optimum=False, plots=False, resume=True)
    m.log_epoch(3, H * 1.0, y)
    m.log_epoch(4, H, y)
    m.close()
    assert [r["epoch"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3, 4]
    m = nctheory.Monitor(tmp_path / "bad", tau=0.5, ufm_optimum=False, plots=False)
    m.log_epoch(1, H, y)
    for args, match in (((1, H, y), "epochs must increase"), ((0, H, y), "epoch must be an integer >= 1"),
                        ((5, H, y[:5]), "labels for 12 feature rows"), ((5, H[:, :, None], y), "2-dimensional"),
                        ((5, H, torch.full((12,), 7)), "not a class of the training labels"),
                        ((5, H, y, [[0, 0, 1]]), "repeats a sample")):
        with pytest.raises(InputError, match=match):
            m.log_epoch(*args)
    with pytest.raises(InputError, match="tau"):
        nctheory.Monitor(tmp_path / "t", tau=0)


def test_own_model_and_dataset_factories_and_measure_on_the_saved_embeddings(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_research.py").write_text(textwrap.dedent('''
        import torch

        class Net(torch.nn.Module):
            def __init__(self, in_features):
                super().__init__()
                self.f = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, 12), torch.nn.ReLU(),
                                             torch.nn.Linear(12, 6))
            def forward(self, x):
                return self.f(x)

        def model(input_shape, num_classes):
            c, h, w = input_shape
            return Net(c * h * w)

        def data(seed):
            g = torch.Generator().manual_seed(seed)
            y = ["red", "green", "blue"] * 10
            means = {"red": 0.0, "green": 1.0, "blue": -1.0}
            x = torch.stack([means[c] + 0.3 * torch.randn(1, 4, 4, generator=g) for c in y])
            return [(x[i], y[i]) for i in range(24)], [(x[i], y[i]) for i in range(24, 30)]

        not_callable = 3

        def broken():
            return "a string"
    '''))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    args = ["train", "--model", "my_research:model", "--dataset", "my_research:data", "--epochs", "2",
            "--batch-size", "8", "--no-progress", "--tau", "0.5", "--out", str(out), "--json"]
    assert cli_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    info = json.loads((out / "config.json").read_text())
    assert info["data_info"]["label_mapping"] == ["blue", "green", "red"] and info["feat_dim"] == 6
    assert info["counts"] == [8, 8, 8] and info["n_test"] == 6
    assert summary["features_nonnegative"] is True  # relu head (default) on the user's signed features
    # the saved embeddings give `nctheory measure` the trainer's last geometry row (one definition)
    assert cli_main(["measure", str(out / "embeddings.npz"), "--tau", "0.5", "--json", "--no-ufm"]) == 0
    rep = json.loads(capsys.readouterr().out)
    f = summary["final"]
    for key, got in (("delta_to_of", rep["delta_to_of"]), ("beta_nc", rep["metrics"]["kini2023"]["beta_nc"]),
                     ("ncc_train", rep["ncc_accuracy"]["train"]), ("ncc_test", rep["ncc_accuracy"]["test"])):
        assert got == pytest.approx(f[key], rel=1e-12), key
    with np.load(out / "embeddings.npz") as z:
        assert sorted(z.files) == ["features", "labels", "test_features", "test_labels"]
        assert z["features"].shape == (24, 6) and z["features"].dtype == np.float32
    # bad factories: exit 2, one line
    for model, dataset in (("nosuchmodule:model", "digits"), ("my_research:missing", "digits"),
                           ("my_research:not_callable", "digits"), ("my_research:broken", "digits"),
                           ("mlp", "my_research:broken"), ("mlp", "my_research:model"), ("my_research", "digits")):
        capsys.readouterr()
        code = cli_main(["train", "--model", model, "--dataset", dataset, "--epochs", "1", "--no-progress",
                         "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip().splitlines()  # a "training ... -> RUN" line may come first
        assert code == 2 and err[-1].startswith("nctheory train: error:") and len(err) <= 2, (model, dataset, err)


def _interrupt_when(proc, path, lines):
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return True
        time.sleep(0.02)
    return False


def test_ctrl_c_names_the_saved_epoch_and_the_same_command_resumes(tmp_path):
    """SIGINT mid-run: exit 130 and one line naming the saved epoch; the same command again resumes (no
    --resume) and ends with the metrics of an uninterrupted run; once more: finished, nothing retrained."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nctheory", "train", *SMALL, "--epochs", "30", "--out", str(tmp_path / "i")]
    # SIGINT back to its default in the child: a suite run as a background job (no job control) starts with
    # SIGINT ignored, which the child would inherit, and Python installs its Ctrl-C handler only over SIG_DFL
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert _interrupt_when(proc, tmp_path / "i" / "metrics.csv", 4), "the run finished before the interrupt"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    # metrics.csv may hold one row more than the checkpoint (interrupted between the two writes)
    saved = torch.load(tmp_path / "i" / "checkpoint.pt", weights_only=False)["epoch"]
    assert saved >= 2 and len(read_metrics(tmp_path / "i")) in (saved, saved + 1)
    line = err.strip().splitlines()[-1]
    assert f"epoch {saved} is saved" in line and "run the same command again to resume" in line, line
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and f"resuming after epoch {saved}" in again.stderr
    straight = [*cmd[:-1], str(tmp_path / "s")]
    assert subprocess.run(straight, env=env, stdout=subprocess.DEVNULL).returncode == 0
    ra, rb = read_metrics(tmp_path / "s"), read_metrics(tmp_path / "i")
    assert len(ra) == len(rb) == 30
    for a, b in zip(ra, rb):
        assert a["loss"] == b["loss"] and a["delta_to_of"] == b["delta_to_of"], a["epoch"]
    before = (tmp_path / "i" / "metrics.csv").read_text()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "finished (30 epochs)" in done.stderr
    assert (tmp_path / "i" / "metrics.csv").read_text() == before


def test_a_folder_without_a_checkpoint_restarts_cleanly(tmp_path):
    """A run killed before its first checkpoint leaves config.json and a header-only metrics.csv: the same
    command starts afresh instead of refusing."""
    c = TrainConfig(**{**dict(dataset="synthetic", synthetic={"k": 3, "n_per_class": 6}, mlp_hidden=16,
                              batch_size=6, epochs=1, progress=False, ufm_optimum=False, koromilas_metrics=False)})
    out = tmp_path / "k"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "metrics.csv").write_text(",".join(COLUMNS) + "\n")
    s = train(c, out)
    assert s["epochs"] == 1 and (out / "checkpoint.pt").exists()
    with pytest.raises(InputError, match="already holds a run"):
        train(c, out, resume=False)
    assert train(c, out) == json.loads((out / "summary.json").read_text())  # finished: reported


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard is not installed")
def test_tensorboard_event_files(tmp_path):
    c = TrainConfig(dataset="synthetic", synthetic={"k": 3, "n_per_class": 6}, mlp_hidden=16, batch_size=6,
                    epochs=2, progress=False, ufm_optimum=False, koromilas_metrics=False, tensorboard=True)
    train(c, tmp_path / "tb")
    assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    m = nctheory.Monitor(tmp_path / "mtb", tau=0.5, tensorboard=True, ufm_optimum=False, plots=False)
    m.log_epoch(1, torch.nn.functional.normalize(torch.rand(6, 3), dim=1), [0, 0, 1, 1, 2, 2])
    m.close()
    assert list((tmp_path / "mtb" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.skipif(tensorboard_available(), reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(InputError, match="pip install tensorboard"):
        TrainConfig(tensorboard=True).validate()
    assert cli_main(["train", *SMALL, "--epochs", "1", "--tensorboard", "--out", str(tmp_path / "x")]) == 2


def test_lightning_callback(tmp_path):
    """Skips only when PyTorch Lightning is absent; CI installs the lightning extra (.ci/run)."""
    L = pytest.importorskip("lightning.pytorch")
    from nctheory.lightning import NCTheoryCallback

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU())

        def forward(self, x):
            return torch.nn.functional.normalize(self.net(x), dim=1)

        def training_step(self, batch, _):
            x, y = batch
            return scl(self(x), y, 0.5) / len(y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat(8)
    x = torch.randn(3, 6, generator=g)[y] + 0.5 * torch.randn(24, 6, generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True)
    cb = NCTheoryCallback(tmp_path / "pl", tau=0.5, ufm_optimum=False)
    trainer = L.Trainer(max_epochs=3, callbacks=[cb], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    module = Module()
    trainer.fit(module, loader)
    rows = read_metrics(tmp_path / "pl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    with torch.no_grad():
        H = module(x).double()
    assert rows[-1]["loss"] == pytest.approx(float(scl(H, y, 0.5)), rel=1e-6)  # float32 features, float64 loss
    assert (tmp_path / "pl" / "summary.json").exists() and (tmp_path / "pl" / "loss.png").exists()

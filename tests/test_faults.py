"""Fault tests with real processes (issue 15, items 3 and 5): concurrent lock holders, a kill before the
first checkpoint, a kill during a metrics.csv rewrite, SIGTERM to `verify --jobs 2`, and workers that
die with their parent.

The run-folder layer is exercised through tests/standin_trainer.py (the sequence train.py is to adopt).
The same faults against the real `nctheory train`, which follows that sequence (harness/train.py), are at
the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nctheory import runfolder as R
from nctheory.errors import InputError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STANDIN = [sys.executable, str(HERE / "standin_trainer.py")]
sys.path.insert(0, str(HERE))
import standin_trainer as standin  # noqa: E402
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _start(args, **kw):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, **kw)


def _wait_for_line(proc, word: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{word} not printed; stderr: {proc.stderr.read() if proc.poll() is not None else ''}")


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().split(")")[-1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _uninterrupted(tmp_path, epochs=4) -> dict:
    ref = tmp_path / "reference"
    subprocess.run(STANDIN + [str(ref), "--epochs", str(epochs)], check=True, env=ENV, capture_output=True)
    return {p.name: p.read_bytes() for p in ref.iterdir()}


# ------------------------------------------------------------------------------------------ the lock
def test_two_concurrent_holders_second_refused_at_once(tmp_path):
    run = tmp_path / "run"
    a = _start(STANDIN + [str(run), "--epochs", "3", "--pause-before-checkpoint", "60"])
    try:
        _wait_for_line(a, "READY")
        t0 = time.time()
        b = subprocess.run(STANDIN + [str(run), "--epochs", "3", "--resume"], env=ENV, capture_output=True, text=True)
        assert b.returncode == 2 and time.time() - t0 < 10
        assert f"is in use by pid {a.pid} on " in b.stderr and b.stderr.count("\n") == 1
        with pytest.raises(InputError):  # the same from this process
            R.RunLock(run).acquire()
    finally:
        _kill(a)
    assert R.lock_holder(run) is None  # the kernel released the dead holder's lock; the file may remain
    with R.RunLock(run):
        pass


# ------------------------------------------------------------------------------------------ kills
def test_kill_before_the_first_checkpoint_restarts_cleanly(tmp_path):
    run = tmp_path / "run"
    a = _start(STANDIN + [str(run), "--epochs", "4", "--pause-before-checkpoint", "60"])
    _wait_for_line(a, "READY")
    _kill(a)
    assert not (run / "checkpoint.pt").exists() and R.run_state(run).kind == "unstarted"
    # rerun (with or without --resume: there is nothing to resume) ends as an uninterrupted run does
    b = subprocess.run(STANDIN + [str(run), "--epochs", "4", "--resume"], env=ENV, capture_output=True, text=True)
    assert b.returncode == 0, b.stderr
    got = {p.name: p.read_bytes() for p in run.iterdir()}
    assert got == _uninterrupted(tmp_path)


def test_kill_during_a_metrics_rewrite_leaves_the_old_file(tmp_path):
    run = tmp_path / "run"
    a = _start(STANDIN + [str(run), "--epochs", "4", "--pause-in-rewrite", "3"])
    _wait_for_line(a, "HALF")
    _kill(a)
    # byte for byte epoch 2's complete file, not half of epoch 3's
    assert (run / "metrics.csv").read_bytes() == standin._csv_text([standin.row(e) for e in (1, 2)]).encode()
    assert R.read_metrics_csv(run / "metrics.csv").epochs == [1, 2]
    assert R.run_state(run).kind == "resumable"
    b = subprocess.run(STANDIN + [str(run), "--epochs", "4", "--resume"], env=ENV, capture_output=True, text=True)
    assert b.returncode == 0, b.stderr
    got = {p.name: p.read_bytes() for p in run.iterdir() if not p.name.endswith(".tmp")}
    assert got == _uninterrupted(tmp_path)
    # the dead writer's temporary file is the only leftover, and it has the reserved temporary name
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == \
        [p.name for p in run.iterdir() if R._is_temp(p.name)]


def test_control_an_in_place_rewrite_is_torn_by_the_same_kill(tmp_path):
    """The previous test can fail: the same kill against an in-place rewrite (train.py's today) tears the file."""
    run = tmp_path / "run"
    a = _start(STANDIN + [str(run), "--epochs", "4", "--pause-in-rewrite", "3", "--naive"])
    _wait_for_line(a, "HALF")
    _kill(a)
    text = (run / "metrics.csv").read_bytes().decode()
    old, new = (standin._csv_text([standin.row(e) for e in range(1, m + 1)]) for m in (2, 3))
    assert text not in (old, new), "an in-place rewrite killed half-way left the old or the new file"


def test_resume_repairs_rows_after_the_checkpoint_and_refuses_missing_rows(tmp_path):
    run = tmp_path / "run"
    subprocess.run(STANDIN + [str(run), "--epochs", "3"], check=True, env=ENV, capture_output=True)
    (run / "summary.json").unlink()
    R.atomic_write_json(run / "checkpoint.pt", {"epoch": 2})  # killed between epoch 3's row and checkpoint
    b = subprocess.run(STANDIN + [str(run), "--epochs", "4", "--resume"], env=ENV, capture_output=True, text=True)
    assert b.returncode == 0 and R.read_metrics_csv(run / "metrics.csv").epochs == [1, 2, 3, 4]
    (run / "metrics.csv").write_text("epoch,loss,epoch_seconds\r\n")  # header only, checkpoint at 4
    b = subprocess.run(STANDIN + [str(run), "--epochs", "6", "--resume"], env=ENV, capture_output=True, text=True)
    assert b.returncode == 2 and "checkpoint is at epoch 4" in b.stderr and b.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------ signals
VERIFY_JOBS_2 = [sys.executable, "-m", "nctheory", "verify", "--jobs", "2", "--only", "kini2023.thm1",
                 "--only", "kini2023.remark1", "--only", "graf2021.balanced_etf", "--report", "-", "--no-progress"]


def _verify_with_workers(proc) -> list:
    """Wait (at most 90 s) until the running `verify --jobs 2` has its workers: the pool's two and the spawn
    start method's resource tracker, 3 children; then one more second. Returns their pids."""
    deadline = time.time() + 90
    workers = []
    while time.time() < deadline and proc.poll() is None:
        workers = _children(proc.pid)
        if len(workers) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None and len(workers) >= 3, "verify finished or started no workers"
    time.sleep(1.0)
    return workers


def test_sigterm_to_verify_jobs_2_stops_its_workers(tmp_path):
    proc = _start(VERIFY_JOBS_2, cwd=tmp_path)
    workers = []
    try:
        workers = _verify_with_workers(proc)
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            _kill(proc)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "nctheory verify: terminated"
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)], "worker processes still running after SIGTERM"


def test_sigkill_to_verify_jobs_2_leaves_no_worker(tmp_path):
    """kill -9 of `verify --jobs 2` runs no clean-up in the parent at all: its workers, started with
    nctheory.cli.signals.worker_initializer, get SIGTERM from the kernel (PR_SET_PDEATHSIG) and end."""
    proc = _start(VERIFY_JOBS_2, cwd=tmp_path)
    workers = []
    try:
        workers = _verify_with_workers(proc)
    finally:
        _kill(proc)  # SIGKILL
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)], "worker processes outlived their SIGKILLed parent"


WORKER_PARENT = r"""
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from nctheory.cli.signals import worker_initializer

def pid_and_sleep(_):
    return os.getpid()

if __name__ == "__main__":
    pool = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=worker_initializer)
    pids = set(pool.map(pid_and_sleep, range(8)))
    print(" ".join(map(str, sorted(pids))), flush=True)
    time.sleep(120)
"""


def test_worker_initializer_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(WORKER_PARENT)
    proc = _start([sys.executable, str(script)])
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert pids and all(_alive(p) for p in pids), line
        os.kill(pids[0], signal.SIGINT)  # Ctrl-C reaches workers too: they ignore it (the parent stops them)
        time.sleep(0.5)
        assert _alive(pids[0])
    finally:
        _kill(proc)  # SIGKILL: no clean-up in the parent at all
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "workers outlived their SIGKILLed parent"


def test_sigterm_in_process_is_a_one_line_exit_143(capsys, monkeypatch):
    """The dispatcher turns SIGTERM into Terminated (a KeyboardInterrupt) inside any command."""
    from nctheory.cli import main
    import nctheory.cli.cmd_bound as cmd_bound

    def run(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    monkeypatch.setattr(cmd_bound, "run", run)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["bound", "--counts", "2,2"]) == 143
    assert capsys.readouterr().err == "nctheory bound: terminated\n"
    assert signal.getsignal(signal.SIGTERM) == before


# ------------------------------------------------------------------------------------------ the real trainer
TRAIN = [sys.executable, "-m", "nctheory", "train", "--dataset", "synthetic", "--set",
         'synthetic={"k": 2, "n_per_class": 4, "n_test_per_class": 2}', "--set", "ufm_optimum=false", "--set",
         "koromilas_metrics=false", "--set", "mlp_hidden=8", "--batch-size", "4", "--no-progress", "--json"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch run of the real trainer (in-process), copied by the tests that damage or lock it."""
    from nctheory.cli import main

    run = tmp_path_factory.mktemp("real") / "run"
    assert main(TRAIN[3:] + ["--epochs", "1", "--out", str(run)]) == 0
    return run


def test_real_train_second_process_on_a_folder_in_use(trained, tmp_path, capsys):
    """The folder is locked as a running trainer holds it (RunLock); the second train must exit 2 at once."""
    import shutil

    from nctheory.cli import main

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    capsys.readouterr()
    with R.RunLock(run):
        rc = main(["train", "--resume", "--out", str(run), "--epochs", "2", "--no-progress", "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and "is in use by pid" in err, err


def test_real_train_folder_without_checkpoint_restarts(tmp_path):
    from nctheory.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}}))
    (run / "metrics.csv").write_text("epoch,loss\r\n")  # what a kill before the first checkpoint leaves
    assert main(TRAIN[3:] + ["--epochs", "1", "--out", str(run)]) == 0


def test_real_train_resume_with_header_only_metrics_refused(trained, tmp_path, capsys):
    import shutil

    from nctheory.cli import main

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text(lines[0])
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--no-progress", "--json"]) == 2

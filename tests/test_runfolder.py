"""nctheory.runfolder: the lock, atomic writes, the metrics.csv reader/repairer, write protection and
clean restarts (fault tests with real processes: tests/test_faults.py)."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from nctheory import runfolder as R
from nctheory.errors import InputError

COLS = ["epoch", "loss", "epoch_seconds"]


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


def write_metrics(path: Path, rows, header=COLS, end="\r\n"):
    lines = [",".join(header)] + [",".join(str(v) for v in r) for r in rows]
    path.write_text(end.join(lines) + (end if rows or True else ""))


# ------------------------------------------------------------------------------------------ the lock
def test_lock_second_holder_refused_at_once_with_pid(tmp_path):
    run = tmp_path / "run"
    with R.RunLock(run) as lock:
        assert lock.held and run.is_dir()
        info = json.loads((run / R.LOCK_NAME).read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(InputError) as ei:
            R.RunLock(run).acquire()
        assert f"run folder {run} is in use by pid {os.getpid()} on " in one_line(ei)
        assert R.lock_holder(run).pid == os.getpid()
    assert R.lock_holder(run) is None and not (run / R.LOCK_NAME).exists()


def test_lock_removes_the_folder_it_created_when_left_empty(tmp_path):
    with R.RunLock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with R.RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "config.json").write_text("{}")
    assert (tmp_path / "kept" / "config.json").exists()


def test_lock_stale_file_of_a_dead_process_does_not_block(tmp_path):
    (tmp_path / R.LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "gone", "since": "then"}))
    assert R.lock_holder(tmp_path) is None
    with R.RunLock(tmp_path) as lock:
        assert lock.held


def test_lock_refused_in_child_process_while_parent_holds(tmp_path):
    with R.RunLock(tmp_path):
        pid = os.fork()
        if pid == 0:  # the child: a separate open file description, so flock conflicts
            try:
                R.RunLock(tmp_path).acquire()
                os._exit(1)
            except InputError as exc:
                os._exit(0 if "is in use by pid" in str(exc) else 2)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0


def test_lock_folder_errors(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError):
        R.RunLock(tmp_path / "f").acquire()
    with pytest.raises(InputError) as ei:
        R.RunLock(tmp_path / "absent", create=False).acquire()
    assert "does not exist" in one_line(ei)


# ------------------------------------------------------------------------------------------ atomic writes
def test_atomic_writes_every_kind(tmp_path):
    import torch

    from nctheory.plotting import pyplot

    R.atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    R.atomic_write_csv(tmp_path / "m.csv", COLS, [{"epoch": 1, "loss": 0.5}])
    assert list(csv.DictReader(open(tmp_path / "m.csv", newline=""))) == [{"epoch": "1", "loss": "0.5",
                                                                          "epoch_seconds": ""}]
    R.atomic_write_text(tmp_path / "t.txt", "hé\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "hé\n"
    R.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    R.atomic_save_npy(tmp_path / "g.npy", np.eye(3))
    assert np.array_equal(np.load(tmp_path / "g.npy"), np.eye(3)) and not (tmp_path / "g.npy.npy").exists()
    R.atomic_torch_save({"epoch": 3}, tmp_path / "checkpoint.pt")
    assert torch.load(tmp_path / "checkpoint.pt")["epoch"] == 3
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    magic = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}
    for ext, head in magic.items():
        R.atomic_savefig(fig, tmp_path / f"p{ext}")
        assert (tmp_path / f"p{ext}").read_bytes().startswith(head)
    plt.close(fig)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_keeps_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        R.atomic_write_text(tmp_path / "x", "1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o644


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        R.atomic_write(target, boom)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    with pytest.raises(TypeError):  # json cannot serialise: nothing touched
        R.atomic_write_json(target, {"x": object()})
    assert target.read_text() == "old"


def test_atomic_write_through_symlink_and_refuses_non_regular(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("a")
    os.symlink(real, tmp_path / "link.txt")
    R.atomic_write_text(tmp_path / "link.txt", "b")
    assert real.read_text() == "b" and (tmp_path / "link.txt").is_symlink()
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError) as ei:
        R.atomic_write_text(tmp_path / "d", "x")
    assert "it is a folder" in one_line(ei)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError):
        R.atomic_write_text(tmp_path / "fifo", "x")
    with pytest.raises(InputError) as ei:
        R.atomic_write_text(tmp_path / "nodir" / "x", "x")
    assert "cannot write" in one_line(ei)


# ------------------------------------------------------------------------------------------ metrics.csv
def test_read_metrics_good_file(tmp_path):
    p = tmp_path / "metrics.csv"
    write_metrics(p, [(1, 0.5, 0.1), (2, 0.4, 0.1)])
    chk = R.read_metrics_csv(p)
    assert chk.epochs == [1, 2] and chk.header == COLS and not chk.dropped and chk.last_epoch == 2


@pytest.mark.parametrize("epoch,match", [
    ("1.5", "epoch '1.5' is not an epoch number"), ("1e308", "epoch '1e308' is not an epoch number"),
    ("inf", "epoch 'inf' is not an epoch number"), ("nan", "not an epoch number"), ("x", "epoch 'x' is not a number"),
    ("", "epoch '' is not a number"), ("0", "epoch '0' is not an epoch number"), ("-2", "not an epoch number"),
    ("1000000001", "not an epoch number"),
])
def test_read_metrics_non_integer_and_absurd_epochs_refused(tmp_path, epoch, match):
    p = tmp_path / "metrics.csv"
    write_metrics(p, [(1, 0.5, 0.1), (epoch, 0.4, 0.1)])
    with pytest.raises(InputError) as ei:
        R.read_metrics_csv(p)
    assert match in one_line(ei) and "line 3" in str(ei.value)


def test_read_metrics_epoch_written_as_float_whole_number_accepted(tmp_path):
    p = tmp_path / "metrics.csv"
    write_metrics(p, [(1, 0.5, 0.1), ("2.0", 0.4, 0.1)])
    assert R.read_metrics_csv(p).epochs == [1, 2]


def test_read_metrics_duplicated_epochs_two_trains_refused(tmp_path):
    """Issue 15: two trains in one folder wrote epochs 1-7 twice and compare accepted it."""
    p = tmp_path / "metrics.csv"
    write_metrics(p, [(e, 0.5, 0.1) for e in range(1, 8)] * 2)
    with pytest.raises(InputError) as ei:
        R.read_metrics_csv(p)
    assert "epoch 1 appears twice (lines 2 and 9); two runs may have written this folder" in one_line(ei)


@pytest.mark.parametrize("epochs,match", [
    ([1, 2, 4], "epoch 4 (epoch(s) 3 missing)"), ([2, 3], "epoch 2 (epoch(s) 1 missing)"),
    ([1, 3, 2], "epoch(s) 2 missing"),
])
def test_read_metrics_missing_rows_refused(tmp_path, epochs, match):
    p = tmp_path / "metrics.csv"
    write_metrics(p, [(e, 0.5, 0.1) for e in epochs])
    with pytest.raises(InputError) as ei:
        R.read_metrics_csv(p)
    assert match in one_line(ei)


def test_read_metrics_header_only_empty_and_not_csv(tmp_path):
    p = tmp_path / "metrics.csv"
    write_metrics(p, [])
    with pytest.raises(InputError) as ei:
        R.read_metrics_csv(p)
    assert "holds no epoch yet" in one_line(ei)
    p.write_text("")
    with pytest.raises(InputError) as ei:
        R.read_metrics_csv(p)
    assert "is empty" in one_line(ei)
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError):
        R.read_metrics_csv(p)
    p.write_text("a,b\n1,2\n")
    with pytest.raises(InputError) as ei:
        R.read_metrics_csv(p)
    assert "no 'epoch' column" in one_line(ei)
    p.write_text("epoch,loss\n1,2,3\n")
    with pytest.raises(InputError) as ei:
        R.read_metrics_csv(p)
    assert "line 2 has 3 fields, the header 2" in one_line(ei)
    p.unlink()
    p.mkdir()
    with pytest.raises(InputError):
        R.read_metrics_csv(p)


def test_read_metrics_torn_last_line_dropped(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("epoch,loss,epoch_seconds\r\n1,0.5,0.1\r\n2,0.4")
    chk = R.read_metrics_csv(p)
    assert chk.epochs == [1] and chk.dropped == ["a torn last line (line 3)"]


def test_repair_drops_rows_after_the_checkpoint_and_rewrites_atomically(tmp_path):
    p = tmp_path / "metrics.csv"
    write_metrics(p, [(e, 0.5, 0.1) for e in range(1, 6)])
    chk = R.repair_metrics_csv(p, 3, fieldnames=COLS)
    assert chk.epochs == [1, 2, 3] and "epoch(s) 4-5 after the checkpoint's epoch 3" in chk.dropped[0]
    assert R.read_metrics_csv(p).epochs == [1, 2, 3]


def test_repair_leaves_a_consistent_file_untouched(tmp_path):
    p = tmp_path / "metrics.csv"
    write_metrics(p, [(1, 0.5, 0.1), (2, 0.4, 0.1)])
    ino, mtime = p.stat().st_ino, p.stat().st_mtime_ns
    assert R.repair_metrics_csv(p, 2, fieldnames=COLS).dropped == []
    assert (p.stat().st_ino, p.stat().st_mtime_ns) == (ino, mtime)


def test_repair_header_only_file_with_checkpoint_at_29_refused(tmp_path):
    """Issue 15: a header-only metrics.csv resumed to a 29-row '40-epoch' run."""
    p = tmp_path / "metrics.csv"
    write_metrics(p, [])
    with pytest.raises(InputError) as ei:
        R.repair_metrics_csv(p, 29)
    assert "has no rows but the checkpoint is at epoch 29 (epoch(s) 1-29 missing)" in one_line(ei)
    write_metrics(p, [(e, 0.5, 0.1) for e in range(1, 11)])
    with pytest.raises(InputError) as ei:
        R.repair_metrics_csv(p, 29)
    assert "has rows for epochs 1-10 but the checkpoint is at epoch 29 (epoch(s) 11-29 missing)" in one_line(ei)
    p.unlink()
    with pytest.raises(InputError) as ei:
        R.repair_metrics_csv(p, 3)
    assert "is missing but the checkpoint is at epoch 3" in one_line(ei)
    p.write_text("")
    with pytest.raises(InputError) as ei:
        R.repair_metrics_csv(p, 3)
    assert "is empty but the checkpoint is at epoch 3" in one_line(ei)


def test_repair_repeated_identical_rows_collapsed_different_refused(tmp_path):
    p = tmp_path / "metrics.csv"
    rows = [(e, 0.5 / e, 0.1) for e in range(1, 8)]
    write_metrics(p, rows + [(e, v, 0.2) for e, v, _ in rows])  # the same epochs again, other timings
    chk = R.repair_metrics_csv(p, 7)
    assert chk.epochs == list(range(1, 8)) and len(chk.dropped) == 7
    assert R.read_metrics_csv(p).epochs == list(range(1, 8))
    write_metrics(p, rows + [(1, 9.9, 0.1)])
    with pytest.raises(InputError) as ei:
        R.repair_metrics_csv(p, 7)
    assert "epoch 1 appears twice (lines 2 and 9) with different values" in one_line(ei)


def test_repair_non_integer_epoch_refused_even_after_the_checkpoint(tmp_path):
    p = tmp_path / "metrics.csv"
    write_metrics(p, [(1, 0.5, 0.1), (1.5, 0.4, 0.1)])
    with pytest.raises(InputError) as ei:
        R.repair_metrics_csv(p, 1)
    assert "epoch '1.5'" in one_line(ei)


def test_repair_torn_last_line_and_columns(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("epoch,loss\r\n1,0.5\r\n2,0.4\r\n3,0.")
    chk = R.repair_metrics_csv(p, 2, fieldnames=COLS)
    assert chk.epochs == [1, 2] and chk.header == COLS
    assert list(csv.DictReader(open(p, newline="")))[0] == {"epoch": "1", "loss": "0.5", "epoch_seconds": ""}
    p.write_text("epoch,loss,alien\r\n1,0.5,3\r\n")
    with pytest.raises(InputError) as ei:
        R.repair_metrics_csv(p, 1, fieldnames=COLS)
    assert "column(s) alien that the trainer does not write" in one_line(ei)


def test_trainer_written_metrics_pass_the_reader(tmp_path):
    """The reader accepts exactly what Measurer writes (its writer, its columns)."""
    from nctheory.harness.measure import COLUMNS, _fmt

    p = tmp_path / "metrics.csv"
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for e in (1, 2):
            w.writerow({c: _fmt(v) for c, v in {"epoch": e, "loss": 1.0 / e, "geometry": "other"}.items()})
    chk = R.read_metrics_csv(p, fieldnames=COLUMNS)
    assert chk.epochs == [1, 2] and chk.dropped == []


# ------------------------------------------------------------------------------------------ protection
def test_check_may_write(tmp_path):
    R.check_may_write(tmp_path / "metrics.csv", "--out")  # not a run folder: anything goes
    (tmp_path / "config.json").write_text("{}")
    for name in R.RUN_DATA_FILES + (R.LOCK_NAME,):
        with pytest.raises(InputError) as ei:
            R.check_may_write(tmp_path / name, "--out", force=True)
        assert "only its trainer writes it" in one_line(ei)
    (tmp_path / "loss.png").write_bytes(b"")
    with pytest.raises(InputError) as ei:
        R.check_may_write(tmp_path / "loss.png", "--out")
    assert "use --force" in one_line(ei)
    R.check_may_write(tmp_path / "loss.png", "--out", force=True)
    R.check_may_write(tmp_path / "other.png", "--out")


def test_plot_file_names_are_the_harness_panels():
    from nctheory.harness.plots import PANELS

    assert set(R.RUN_PLOT_FILES) == {p[0] for p in PANELS} | {"gram_final.png"}


# ------------------------------------------------------------------------------------------ restarts
def test_run_state_kinds(tmp_path):
    assert R.run_state(tmp_path / "absent").kind == "new"
    assert R.run_state(tmp_path).kind == "new"
    (tmp_path / "config.json").write_text("{}")
    write_metrics(tmp_path / "metrics.csv", [])
    assert R.run_state(tmp_path).kind == "unstarted"
    write_metrics(tmp_path / "metrics.csv", [(1, 0.5, 0.1)])  # killed between the first row and checkpoint
    assert R.run_state(tmp_path).kind == "unstarted"
    (tmp_path / ".metrics.csv.0123456789ab.tmp").write_text("torn")
    (tmp_path / "checkpoint.pt.tmp").write_text("torn")
    assert R.run_state(tmp_path).kind == "unstarted"
    write_metrics(tmp_path / "metrics.csv", [(1, 0.5, 0.1), (2, 0.4, 0.1)])
    st = R.run_state(tmp_path)
    assert st.kind == "other" and "rows beyond epoch 1" in st.reason
    write_metrics(tmp_path / "metrics.csv", [(1, 0.5, 0.1)])
    (tmp_path / "notes.txt").write_text("mine")
    assert R.run_state(tmp_path).kind == "other"
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert R.run_state(tmp_path).kind == "resumable"
    (tmp_path / "summary.json").write_text("{}")
    assert R.run_state(tmp_path).kind == "finished"
    with pytest.raises(InputError):
        R.run_state(tmp_path / "config.json")


def test_clear_unstarted_removes_only_the_run_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    write_metrics(tmp_path / "metrics.csv", [(1, 0.5, 0.1)])
    (tmp_path / ".config.json.0123456789ab.tmp").write_text("")
    with R.RunLock(tmp_path):
        removed = R.clear_unstarted(tmp_path)
        assert sorted(removed) == [".config.json.0123456789ab.tmp", "config.json", "metrics.csv"]
        assert sorted(os.listdir(tmp_path)) == [R.LOCK_NAME]
    assert R.clear_unstarted(tmp_path / "absent") == []


def test_clear_unstarted_refuses_runs_and_foreign_folders(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(InputError) as ei:
        R.clear_unstarted(tmp_path)
    assert "is not an unstarted run (resumable); nothing removed" in one_line(ei)
    (tmp_path / "checkpoint.pt").unlink()
    (tmp_path / "data.npy").write_bytes(b"")
    with pytest.raises(InputError):
        R.clear_unstarted(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "data.npy").exists()

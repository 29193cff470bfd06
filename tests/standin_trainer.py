"""A stand-in trainer for the fault tests: the run-folder sequence nctheory/harness/train.py is to adopt
(nctheory.runfolder), with a trivial "model" so that a test can kill it at a chosen point in a second.

    python standin_trainer.py OUT --epochs N [--resume] [--pause-before-checkpoint S]
                              [--pause-in-rewrite E] [--naive]

The sequence (one call each, in this order):

    validate.output_dir(out, "--out")                  # not a file, not under one, writable
    with runfolder.RunLock(out):                       # a second process: exit 2 at once
        state = runfolder.run_state(out)
        unstarted -> runfolder.clear_unstarted(out)    # killed before its first checkpoint: restart
        resumable/finished without --resume, other -> InputError
        --resume: checkpoint epoch E; runfolder.repair_metrics_csv(out / "metrics.csv", E, fieldnames=COLUMNS)
        atomic_write_json(config.json); atomic_write_csv(metrics.csv) (header + kept rows)
        every epoch: rows.append(row); atomic_write_csv(metrics.csv, COLUMNS, rows); atomic checkpoint
        atomic_write_json(summary.json)

The "checkpoint" is JSON ({"epoch": e}) written with atomic_write_json, so the script needs no torch.
Each epoch's row is a function of the epoch alone, so a killed-and-restarted (or resumed) run must end
with exactly the files of an uninterrupted one. ``--pause-before-checkpoint S``: print READY and sleep S
seconds after epoch 1's row, before its checkpoint. ``--pause-in-rewrite E``: in epoch E's rewrite of
metrics.csv, write half of the file, print HALF and sleep. ``--naive``: rewrite metrics.csv in place
(open 'w'), the way train.py does today, for the control test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nctheory import runfolder, validate  # noqa: E402
from nctheory.errors import InputError  # noqa: E402

COLUMNS = ["epoch", "loss", "epoch_seconds"]


def row(e: int) -> dict:
    return {"epoch": e, "loss": repr(1.0 / e), "epoch_seconds": "0.0"}


def _csv_text(rows) -> str:
    return "\r\n".join([",".join(COLUMNS)] + [",".join(str(r[c]) for c in COLUMNS) for r in rows]) + "\r\n"


def write_metrics(path: Path, rows, *, pause: bool, naive: bool) -> None:
    text = _csv_text(rows).encode()
    half = len(text) // 2

    def write(f):
        if pause:
            f.write(text[:half])
            f.flush()
            print("HALF", flush=True)
            time.sleep(60)
        f.write(text[half:] if pause else text)

    if naive:
        with open(path, "wb") as f:
            write(f)
    else:
        runfolder.atomic_write(path, write)


def train(out: Path, epochs: int, resume: bool, pause_before_checkpoint: float, pause_in_rewrite: int,
          naive: bool) -> None:
    out = validate.output_dir(out, "--out")
    with runfolder.RunLock(out):
        state = runfolder.run_state(out)
        if state.kind == "unstarted":
            runfolder.clear_unstarted(out)
        elif state.kind == "other":
            raise InputError(f"{out} is not a run folder this trainer can use: {state.reason}")
        elif state.kind in ("resumable", "finished") and not resume:
            raise InputError(f"run folder {out} already holds a run; use --resume or another --out")
        start, rows = 0, []
        if resume and state.kind in ("resumable", "finished"):
            start = int(json.loads((out / "checkpoint.pt").read_text())["epoch"])
            rows = runfolder.repair_metrics_csv(out / "metrics.csv", start, fieldnames=COLUMNS).rows
        runfolder.atomic_write_json(out / "config.json", {"config": {"epochs": epochs}})
        runfolder.atomic_write_csv(out / "metrics.csv", COLUMNS, rows)
        for e in range(start + 1, epochs + 1):
            rows.append(row(e))
            write_metrics(out / "metrics.csv", rows, pause=e == pause_in_rewrite, naive=naive)
            if e == 1 and pause_before_checkpoint:
                print("READY", flush=True)
                time.sleep(pause_before_checkpoint)
            runfolder.atomic_write_json(out / "checkpoint.pt", {"epoch": e})
        runfolder.atomic_write_json(out / "summary.json", {"epochs": epochs})


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--pause-before-checkpoint", type=float, default=0.0)
    p.add_argument("--pause-in-rewrite", type=int, default=0)
    p.add_argument("--naive", action="store_true")
    a = p.parse_args(argv)
    try:
        train(Path(a.out), a.epochs, a.resume, a.pause_before_checkpoint, a.pause_in_rewrite, a.naive)
    except InputError as exc:
        print(f"standin: error: {exc}", file=sys.stderr)
        return 2
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

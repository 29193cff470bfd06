"""Benchmark: `nctheory measure` against n -- peak memory and time, streamed from a .npy file side by side with
the same features held whole in memory.

For each n a float32 (n, d) .npy file of unit, non-negative rows of k classes is written, then each mode runs
in a fresh subprocess (so one mode's allocations and imports cannot inflate another's peak):

    streamed   measure(path, chunk_rows=C): the file read C rows at a time (nctheory.measure.NpyRows)
    whole      measure(np.load(path), chunk_rows=n): every row in memory and one chunk (the loss as one n x n tile)

Two workloads: the statistics and metrics only (--no-loss, O(n d (d + k)) time) and with the full-batch loss
(O(n^2 d) time, so smaller n). Memory is the child's peak resident set during the call (VmHWM, reset just
before it through /proc/self/clear_refs, minus VmRSS then: every page touched counts, the features loaded by
"whole" included), next to the tracemalloc peak of numpy / Python allocations and
nctheory.measure.memory_estimate (the budget `--max-memory` is checked against). Time is wall and process CPU
time (the machine is shared: CPU time is the steadier number). The certified UFM optimum is off (its time does
not depend on n).

    OMP_NUM_THREADS=1 python benchmarks/bench_measure.py [--d 256] [--k 100] [--n 10000,40000,160000,640000]
        [--loss-n 2000,8000,16000] [--chunk 4096] [--json out.json]

Results measured on the project machine are recorded in benchmarks/RESULTS-measure.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
from nctheory.measure import measure, memory_estimate

def status(key):  # kB -> MiB, from /proc/self/status (VmRSS: now, VmHWM: the peak since the last reset)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024

path, mode, chunk, loss = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
rng = np.random.default_rng(0)
measure(np.abs(rng.standard_normal((8, 4))), np.arange(8) % 2, tau=0.1, ufm=False)  # warm-up: imports, first calls
y = np.load(path.replace(".npy", "_labels.npy"))
n, d = np.load(path, mmap_mode="r").shape
with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS (Linux >= 4.0)
    f.write("5")
rss0 = status("VmRSS:")
tracemalloc.start()
t0, c0 = time.perf_counter(), time.process_time()
if mode == "whole":
    x, chunk = np.load(path), n            # every row in memory (float32, counted here) and one chunk
r = measure(path if mode == "streamed" else x, y, tau=0.1, chunk_rows=chunk, loss=loss, ufm=False)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
_, traced = tracemalloc.get_traced_memory()
k = len(r["counts"])
print(json.dumps({"seconds": dt, "cpu_seconds": cpu, "peak_rss_mib": status("VmHWM:") - rss0,
                  "traced_mib": traced / 2**20, "estimate_mib": memory_estimate(n, d, k, min(chunk, n), loss) / 2**20,
                  "loss_sum": r["loss"].get("sum"), "delta_to_of": r["delta_to_of"], "excess": r["excess"]}))
"""


def write_features(folder: Path, n: int, d: int, k: int, seed: int = 0) -> Path:
    """Unit non-negative float32 rows, class c's rows around a class direction, written in blocks."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = np.abs(rng.standard_normal((k, d)))
    path = folder / f"features_{n}.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for a in range(0, n, 65536):
        b = min(a + 65536, n)
        block = centres[y[a:b]] + np.abs(rng.standard_normal((b - a, d)))
        mm[a:b] = block / np.linalg.norm(block, axis=1, keepdims=True)
    mm.flush()
    del mm
    np.save(folder / f"features_{n}_labels.npy", y)
    return path


def run_child(path: Path, mode: str, chunk: int, loss: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(chunk), "1" if loss else "0"],
                         env=env, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--n", default="10000,40000,160000,640000", help="sizes for the statistics-only workload")
    ap.add_argument("--loss-n", default="2000,8000,16000", help="sizes for the workload with the full-batch loss")
    ap.add_argument("--whole-max", type=int, default=160000, help="largest n run whole (in memory, one chunk)")
    ap.add_argument("--whole-loss-max", type=int, default=8000, help="largest n whose loss is run as one tile")
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for loss, sizes, whole_max in ((False, args.n, args.whole_max), (True, args.loss_n, args.whole_loss_max)):
            for n in [int(v) for v in sizes.split(",") if v]:
                path = write_features(Path(tmp), n, args.d, args.k)
                for mode in ("streamed", "whole"):
                    if mode == "whole" and n > whole_max:
                        continue
                    r = {"n": n, "d": args.d, "k": args.k, "loss": loss, "mode": mode,
                         "chunk": args.chunk if mode == "streamed" else n,
                         "file_mib": path.stat().st_size / 2**20, **run_child(path, mode, args.chunk, loss)}
                    results.append(r)
                    print(_line(r), flush=True)
                path.unlink()
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "load_average": os.getloadavg()}, indent=2))
    print(f"load average (1, 5, 15 min): {tuple(round(v, 2) for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    return results


def _line(r: dict) -> str:
    if "error" in r:
        return f"{r['n']:>8} {r['mode']:<9} {'loss' if r['loss'] else 'stats':<6} error: {r['error']}"
    return (f"{r['n']:>8} {r['mode']:<9} {'loss' if r['loss'] else 'stats':<6} file {r['file_mib']:7.1f} MiB "
            f"{r['seconds']:8.2f} s  cpu {r['cpu_seconds']:8.2f} s  peak RSS {r['peak_rss_mib']:7.1f} MiB  traced "
            f"{r['traced_mib']:7.1f} MiB  estimate {r['estimate_mib']:7.1f} MiB  Δ_OF {r['delta_to_of']:.9f}"
            + (f"  loss {r['loss_sum']:.10g}" if r["loss"] else ""))


if __name__ == "__main__":
    main()

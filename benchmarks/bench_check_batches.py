"""Benchmark: `check_plan` on a CIFAR-100-sized plan (50,000 samples, 100 classes, 200 epochs, batch 1024).

For each scheme: time to build the plan, to write and read it as npz, and to check it (with the binding
fix, which re-checks the fixed plan, for non-unique plans), and the peak of Python/numpy allocations
during the check (tracemalloc). Also the process's peak RSS (resource), which includes torch's import.

    OMP_NUM_THREADS=1 python benchmarks/bench_check_batches.py [--epochs 200] [--n 50000] [--k 100] [--batch 1024]

Results measured on the project machine are recorded in benchmarks/RESULTS-check-batches.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nctheory.batching import check_plan, load_plan, make_plan, save_plan


def measure(fn):
    gc.collect()
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, (dt, cpu), peak / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--schemes", default="reshuffle,fixed,fixed+bind,class_balanced,reshuffle+drop_last")
    args = ap.parse_args()
    y = np.arange(args.n) % args.k
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.schemes.split(","):
            parts = spec.split("+")
            scheme, opts = parts[0], set(parts[1:])
            t0 = time.perf_counter()
            plan = make_plan(y, scheme=scheme, batch_size=args.batch, epochs=args.epochs, seed=0,
                             bind="bind" in opts, drop_last="drop_last" in opts,
                             m_per_class=max(1, args.batch // args.k))  # class_balanced: k classes x m fill a batch
            t_make = time.perf_counter() - t0
            f = Path(tmp) / "plan.npz"
            t0 = time.perf_counter()
            save_plan(plan, f)
            t_save = time.perf_counter() - t0
            size = f.stat().st_size / 2**20
            del plan
            gc.collect()
            (plan), t_load, mem_load = measure(lambda: load_plan(f))
            res, t_check, mem_check = measure(lambda: check_plan(plan, with_fix=True))
            res_k, t_check_k, mem_check_k = measure(lambda: check_plan(plan, dim=args.k, with_fix=False))
            rows.append(dict(scheme=spec, batches=plan.num_batches, entries=plan.indices.size, make=t_make,
                             save=t_save, mb=size, load=t_load, mem_load=mem_load, check=t_check,
                             mem_check=mem_check, unique=res.unique, check_k=t_check_k, mem_k=mem_check_k,
                             unique_k=res_k.unique,
                             fix=None if res.fix is None else res.fix["verified_unique"]))
            del plan, res, res_k
            gc.collect()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"n = {args.n}, k = {args.k}, epochs = {args.epochs}, batch = {args.batch}")
    hdr = (f"{'scheme':<22} {'batches':>7} {'entries':>9} {'make s':>7} {'npz MB':>7} {'load s':>7} {'check s':>8} {'cpu s':>6} "
           f"{'peak MiB':>9} {'unique':>7} {'fix ok':>6} {'d=k s':>7} {'cpu s':>6} {'d=k MiB':>8} {'uniq d=k':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['scheme']:<22} {r['batches']:>7} {r['entries']:>9} {r['make']:>7.2f} {r['mb']:>7.1f} {r['load'][0]:>7.2f} "
              f"{r['check'][0]:>8.2f} {r['check'][1]:>6.2f} {r['mem_check']:>9.0f} {str(r['unique']):>7} {str(r['fix']):>6} {r['check_k'][0]:>7.2f} {r['check_k'][1]:>6.2f} "
              f"{r['mem_k']:>8.0f} {str(r['unique_k']):>8}")
    print(f"load average during the run (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} CPUs")
    print(f"process peak RSS (incl. torch import and plan generation): {rss:.0f} MiB")


if __name__ == "__main__":
    main()

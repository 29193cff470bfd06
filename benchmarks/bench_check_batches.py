"""Benchmark: `check_plan` on a CIFAR-100-sized plan (50,000 samples, 100 classes, 200 epochs, batch 1024).

For each scheme: time to build the plan, to write and read it as npz, and to check it (with the binding
fix, which re-checks the fixed plan, for non-unique plans), and the peak of Python/numpy allocations
during the check (tracemalloc). Also the process's peak RSS (resource), which includes torch's import.

    OMP_NUM_THREADS=1 python benchmarks/bench_check_batches.py [--epochs 200] [--n 50000] [--k 100] [--batch 1024]

Many tiny classes (issue 15: memory that grew with the square of the class count):

    OMP_NUM_THREADS=1 python benchmarks/bench_check_batches.py --many-classes 5000,10000,20000,40000

builds, for each K, K classes x 2 samples and a JSON plan of one of two shapes (``--shape``):
``pairs`` (issue 15's file: every class's two samples form one batch, K batches of 2; 1.0 MB at
K = 40,000) or ``reshuffle`` (one reshuffled epoch in batches of 256), and runs ``nctheory
check-batches PLAN --json`` on it in a fresh child process (so its peak RSS is the check's alone),
under an address-space cap (``--mem-cap-gb``) that turns a blow-up into a reported MemoryError
instead of a swapping machine.

Results measured on the project machine are recorded in benchmarks/RESULTS-check-batches.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nctheory.batching import Plan, check_plan, load_plan, make_plan, save_plan


def measure(fn):
    gc.collect()
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, (dt, cpu), peak / 2**20


def _child(path: str, cap_gb: float, no_fix: bool) -> None:
    """Run `nctheory check-batches PATH --json [--no-fix]` here; print wall time and peak RSS as JSON."""
    if cap_gb > 0:
        lim = int(cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    import contextlib
    import io

    from nctheory.cli import main as cli

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"rss_before_mib": rss0}
    t0 = time.perf_counter()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            out["exit"] = cli(["check-batches", path, "--json"] + (["--no-fix"] if no_fix else []))
    except MemoryError:
        out["exit"] = "MemoryError"
    out["wall_s"] = time.perf_counter() - t0
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        js = json.loads(buf.getvalue())
        out["unique"] = js["unique"]
        out["num_missing_class_pairs"] = js.get("num_missing_class_pairs", len(js["missing_class_pairs"]))
    except Exception:
        pass
    print(json.dumps(out))


def many_classes(ks, per_class: int, batch: int, cap_gb: float, timeout: float, no_fix: bool, shape: str) -> None:
    what = "one batch per class" if shape == "pairs" else f"reshuffle, batch {batch}, 1 epoch"
    print(f"K classes x {per_class} samples, {what}; `check-batches PLAN --json"
          f"{' --no-fix' if no_fix else ''}` in a child process (address-space cap {cap_gb:g} GiB)")
    hdr = f"{'K':>7} {'n':>7} {'plan MB':>8} {'exit':>12} {'wall s':>8} {'peak RSS MiB':>13} {'RSS after import MiB':>21}"
    print(hdr)
    print("-" * len(hdr))
    with tempfile.TemporaryDirectory() as tmp:
        for K in ks:
            y = np.repeat(np.arange(K), per_class)
            f = Path(tmp) / f"many{K}.json"
            if shape == "pairs":
                save_plan(Plan.from_batches(y, np.arange(y.size).reshape(K, per_class)), f)
            else:
                save_plan(make_plan(y, scheme="reshuffle", batch_size=batch, epochs=1, seed=0), f)
            try:
                r = subprocess.run([sys.executable, __file__, "--_child", str(f), "--mem-cap-gb", str(cap_gb)]
                                   + (["--no-fix"] if no_fix else []),
                                   capture_output=True, text=True, timeout=timeout)
                res = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {"exit": f"rc {r.returncode}"}
            except subprocess.TimeoutExpired:
                res = {"exit": f"timeout {timeout:g}s"}
            print(f"{K:>7} {y.size:>7} {f.stat().st_size / 1e6:>8.2f} {str(res.get('exit')):>12} "
                  f"{res.get('wall_s', float('nan')):>8.2f} {res.get('peak_rss_mib', float('nan')):>13.0f} "
                  f"{res.get('rss_before_mib', float('nan')):>21.0f}", flush=True)
    print(f"load average during the run (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} CPUs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--schemes", default="reshuffle,fixed,fixed+bind,class_balanced,reshuffle+drop_last")
    ap.add_argument("--many-classes", default=None, metavar="K1,K2,...",
                    help="the many-tiny-classes benchmark instead (K classes x --per-class samples)")
    ap.add_argument("--per-class", type=int, default=2)
    ap.add_argument("--shape", choices=["pairs", "reshuffle"], default="pairs",
                    help="many-classes mode: one batch per class (issue 15's plan) or a reshuffled epoch")
    ap.add_argument("--mem-cap-gb", type=float, default=8.0, help="address-space cap of each child check")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per child check")
    ap.add_argument("--no-fix", action="store_true", help="many-classes mode: check without the binding fix")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        return _child(args._child, args.mem_cap_gb, args.no_fix)
    if args.many_classes:
        return many_classes([int(k) for k in args.many_classes.split(",")], args.per_class,
                            256 if args.batch == 1024 else args.batch, args.mem_cap_gb, args.timeout,
                            args.no_fix, args.shape)
    y = np.arange(args.n) % args.k
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.schemes.split(","):
            parts = spec.split("+")
            scheme, opts = parts[0], set(parts[1:])
            t0 = time.perf_counter()
            m = max(1, args.batch // args.k)  # class_balanced: k classes x m fill a batch
            # class_balanced needs a multiple of m: 1020 = 102 groups of 10, the same batches that 1024 gave
            # before that rule (only k = 100 classes have groups)
            bsz = args.batch if scheme != "class_balanced" else m * (args.batch // m)
            plan = make_plan(y, scheme=scheme, batch_size=bsz, epochs=args.epochs, seed=0,
                             bind="bind" in opts, drop_last="drop_last" in opts, m_per_class=m)
            t_make = time.perf_counter() - t0
            f = Path(tmp) / "plan.npz"
            t0 = time.perf_counter()
            save_plan(plan, f)
            t_save = time.perf_counter() - t0
            size = f.stat().st_size / 2**20
            del plan
            gc.collect()
            plan, t_load, mem_load = measure(lambda: load_plan(f))
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

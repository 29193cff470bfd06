"""Solve time against n and k for the three UFM solvers (nctheory.solvers), side by side.

    python benchmarks/bench_solvers.py [--quick] [--device cpu|cuda] [--out FILE.md]

Rows: full-batch SCL (Kini Eq. 2), tau = 1 unless stated; 'gram' = exact Gram program (Clarabel),
'reduced' = symmetry-reduced program (orbits of equal-size classes, or every class its own orbit),
'riemannian' = first-order solver (restarts x iterations; wall time of all restarts). Every certified
row also prints the relative gap of its certificate; a failed solve prints its error instead of a time.
Times are wall-clock on whatever machine runs this (OMP_NUM_THREADS as set by the caller).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def bench_gram(rows, sizes):
    from nctheory.losses.gram import scl_form
    from nctheory.solvers.gram import solve_gram

    for k, m in sizes:
        counts = [m] * k
        y = _labels(counts)
        for relu in (False, True):
            t0 = time.perf_counter()
            form = scl_form(y, 1.0)
            t1 = time.perf_counter()
            try:
                r = solve_gram(form, y=y, nonneg=relu)
                rows.append(("gram", f"balanced {k}x{m}", y.size, k, relu, time.perf_counter() - t0,
                             f"rel gap {r.rel_gap:.1e}, build {t1 - t0:.2f}s, {r.solver}, {r.geometry['name']}"))
            except Exception as exc:  # a benchmark records failures instead of stopping
                rows.append(("gram", f"balanced {k}x{m}", y.size, k, relu, float("nan"), f"{type(exc).__name__}: {exc}"))


def bench_reduced(rows, ks_step, ks_lt):
    from nctheory.solvers.reduced import solve_reduced

    for k in ks_step:
        counts = [5000] * (k // 2) + [500] * (k - k // 2)
        for relu in (False, True):
            t0 = time.perf_counter()
            r = solve_reduced(counts, 0.1, relu)
            rows.append(("reduced (orbits)", "STEP 5000/500, tau 0.1", sum(counts), k, relu, time.perf_counter() - t0,
                         f"rel gap {r.rel_gap:.1e}, {r.geometry['name']}"))
    for k in ks_lt:
        counts = [max(2, int(round(5000 * 100 ** (-(c / (k - 1)))))) for c in range(k)]
        for relu in (False, True):
            t0 = time.perf_counter()
            try:
                r = solve_reduced(counts, 0.1, relu, orbits="classes")
                rows.append(("reduced (classes)", "long-tail R=100, tau 0.1", sum(counts), k, relu,
                             time.perf_counter() - t0, f"rel gap {r.rel_gap:.1e}, {r.geometry['name']}"))
            except Exception as exc:
                rows.append(("reduced (classes)", "long-tail R=100, tau 0.1", sum(counts), k, relu, float("nan"),
                             f"{type(exc).__name__}: {exc}"))


def bench_riemannian(rows, sizes, device, restarts):
    from nctheory.solvers.riemannian import loss_objective, solve_riemannian

    for k, m, d, bs in sizes:
        counts = [m] * k
        y = _labels(counts)
        batches = None
        if bs:
            rng = np.random.default_rng(0)
            perm = rng.permutation(y.size)
            batches = [perm[i:i + bs] for i in range(0, y.size, bs)]
        for relu in (False, True):
            t0 = time.perf_counter()
            try:
                r = solve_riemannian(loss_objective("scl", y, tau=1.0, batches=batches), y.size, d, nonneg=relu,
                                     restarts=restarts, device=device, max_iter=3000)
                secs = time.perf_counter() - t0
                check = ""
                if not bs:  # cross-check against the certified reduced program
                    from nctheory.solvers.reduced import solve_reduced

                    ref = solve_reduced(counts, 1.0, relu).value
                    check = f", value {r.value:.10g} vs reduced {ref:.10g} (rel. diff {(r.value - ref) / ref:.1e})"
                rows.append(("riemannian", f"{'mini-batch bs=' + str(bs) if bs else 'full batch'}, d={d}", y.size, k, relu,
                             secs, f"{r.converged}/{r.restarts} stationary, iters {r.iterations}, spread {r.spread:.1e}, "
                             f"{r.device}{check}"))
            except Exception as exc:
                rows.append(("riemannian", f"{'mini-batch bs=' + str(bs) if bs else 'full batch'}, d={d}", y.size, k, relu,
                             float("nan"), f"{type(exc).__name__}: {str(exc)[:120]}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", choices=["gram", "reduced", "riemannian"], default=None)
    a = ap.parse_args()
    rows = []
    if a.only in (None, "gram"):
        bench_gram(rows, [(3, 2), (3, 4), (3, 8), (3, 16)] if a.quick else
                   [(3, 2), (3, 4), (3, 8), (3, 16), (3, 32), (2, 12), (4, 6), (8, 3), (12, 2)])
    if a.only in (None, "reduced"):
        bench_reduced(rows, [10, 100] if a.quick else [10, 100, 1000], [5, 10] if a.quick else [5, 10, 20, 50])
    if a.only in (None, "riemannian"):
        sizes = [(3, 4, 12, 0), (10, 10, 16, 0)] if a.quick else \
            [(3, 4, 12, 0), (10, 10, 16, 0), (10, 100, 16, 0), (10, 100, 16, 100), (10, 500, 32, 250)]
        bench_riemannian(rows, sizes, a.device, 2)
    head = ("| solver | problem | n | k | relu | seconds | notes |\n|---|---|---|---|---|---|---|")
    lines = [head] + [f"| {s} | {p} | {n} | {k} | {r} | {t:.3f} | {note} |" for s, p, n, k, r, t, note in rows]
    env = f"python {platform.python_version()}, {platform.machine()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    text = env + "\n\n" + "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()

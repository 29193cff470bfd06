"""Cost of SCL with n_w prototype copies: multiplicities (ours) vs explicit concatenation.

Gill et al. §2: with prototypes the loss needs n^2/2 + nk inner products for any n_w. This measures
forward+backward time of nctheory.losses.scl_with_prototypes at n_w in {1, 10, 100, 1000} next to
scl() on the explicitly concatenated batch (n + k n_w rows), same inputs, interleaved repeats,
median of the repeats. The target (issue 2): n_w = 1000 within 10% of n_w = 1 at n=1024, k=10,
d=128.

    python benchmarks/bench_prototypes_cost.py [--device cpu|cuda] [--dtype float64|float32] [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from nctheory.losses import scl, scl_with_prototypes


def timed(fn, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--nw", default="1,10,100,1000")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-concat", action="store_true", help="skip the explicit-concatenation baseline")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    z0 = torch.nn.functional.normalize(torch.randn(args.n, args.d, generator=g, dtype=dtype), dim=1).to(args.device)
    W = torch.nn.functional.normalize(torch.randn(args.k, args.d, generator=g, dtype=dtype), dim=1).to(args.device)
    y = torch.randint(0, args.k, (args.n,), generator=g).to(args.device)
    nws = [int(v) for v in args.nw.split(",")]

    def ours(nw):
        z = z0.clone().requires_grad_(True)
        scl_with_prototypes(z, y, W, nw, 0.1).backward()

    def concat(nw):
        z = z0.clone().requires_grad_(True)
        zc = torch.cat([z] + [W] * nw)
        yc = torch.cat([y] + [torch.arange(args.k, device=args.device)] * nw)
        scl(zc, yc, 0.1).backward()

    for nw in nws:  # warm-up
        ours(nw)
    times = {("ours", nw): [] for nw in nws}
    if not args.no_concat:
        times.update({("concat", nw): [] for nw in nws})
    for _ in range(args.repeats):
        for nw in nws:
            times[("ours", nw)].append(timed(lambda: ours(nw), args.device))
            if not args.no_concat:
                times[("concat", nw)].append(timed(lambda: concat(nw), args.device))
    med = {key: statistics.median(v) for key, v in times.items()}
    best = {key: min(v) for key, v in times.items()}  # robust to interference from other processes
    print(f"# scl_with_prototypes cost: n={args.n} k={args.k} d={args.d} {args.dtype} on {args.device} "
          f"({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads), median of {args.repeats}, forward+backward")
    print("| n_w | batch rows (concat) | ours ms (median) | ours ms (min) | ours / ours(n_w=1), min | concat ms | concat / ours |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    base = best[("ours", nws[0])]
    for nw in nws:
        o = med[("ours", nw)]
        row = f"| {nw} | {args.n + args.k * nw} | {o * 1e3:.1f} | {best[('ours', nw)] * 1e3:.1f} | {best[('ours', nw)] / base:.3f} |"
        if not args.no_concat:
            c = med[("concat", nw)]
            row += f" {c * 1e3:.1f} | {c / o:.1f}x |"
        else:
            row += " - | - |"
        print(row)


if __name__ == "__main__":
    main()

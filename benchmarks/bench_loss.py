"""SupCon loss at scale: the tiled exact loss against two dense ones, forward + backward, side by side.

Four implementations of the same number (the reference SupCon mean form, contrast_mode "all",
2 views, labels y_j = j mod 100, tau = base_tau = 0.1) on the same features:

- ``tiled``     nctheory.losses.tiled.supcon_mean_tiled (O(n d) memory, symmetric tiles);
- ``reference`` nctheory.losses.reference.supcon_dense: the reference SupCon computation (Khosla et al.'s
                SupConLoss as SupContrast computes it) with its n x n matrices: positive mask,
                self-exclusion mask, logits minus the detached row max, exp, log-probabilities, mean over
                positives (guarded: anchors without positives divide by 1);
- ``nctheory``  nctheory.losses.supcon_mean(..., impl="dense"), the dense definition (losses.scl's
                dense code);
- ``module``    nctheory.losses.SupConLoss (impl="auto": the dense code below
                nctheory.losses.scl.TILED_MIN_ROWS contrast rows, the tiled kernel from there on).

n is the number of contrast rows (n/2 samples x 2 views), d = 128, float32 by default. Each
(implementation, n) runs in a fresh subprocess: it allocates the inputs, records its resident set
size (VmRSS) as the baseline, resets the peak (Linux /proc/self/clear_refs; otherwise the peak since
start is used), runs one warm-up and ``--repeats`` timed forward+backward passes, and reports
peak RSS (VmHWM, or ru_maxrss) minus the baseline, the median wall time, the median CPU time of the
process (time.process_time: less sensitive than wall time to other jobs on a shared machine) and the
1-minute load average before and after. On CUDA the memory is
torch.cuda.max_memory_allocated minus the allocation after the inputs, and the time is taken
between synchronisations. A dense configuration whose estimated peak (the measured peak of the
previous size times (n/n_prev)^2, else ``--dense-bytes-per-n2``) exceeds ``--mem-fraction`` of
the memory available at start is skipped and reported as such. The values of the
implementations are compared (float32: 1e-4 relative) so that the benchmark cannot compare
different losses.

    python benchmarks/bench_loss.py                      # the recorded table (benchmarks/RESULTS-loss.md)
    python benchmarks/bench_loss.py --smoke              # every configuration once at tiny n (CI)
    python benchmarks/bench_loss.py --sizes 16384 --impls tiled --tiles 256,512,1024,2048   # tile sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ("tiled", "reference", "nctheory", "module")
TAU = 0.1
N_CLASSES = 100


# ---------------------------------------------------------------- one configuration (subprocess)
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_kb() -> int:
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(args) -> dict:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT))
    from nctheory.losses import SupConLoss, supcon_mean
    from nctheory.losses.reference import supcon_dense
    from nctheory.losses.tiled import supcon_mean_tiled

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    n, impl = args.n, args.impl
    bsz = n // 2
    g = torch.Generator().manual_seed(0)
    f = F.normalize(torch.randn(bsz, 2, args.dim, generator=g), dim=2).to(device=device, dtype=dtype)
    f.requires_grad_(True)
    y = (torch.arange(bsz) % N_CLASSES).to(device)

    def loss():
        if impl == "tiled":
            return supcon_mean_tiled(f, y, TAU, TAU, tile=args.tile)
        if impl == "reference":
            return supcon_dense(f, y, temperature=TAU, base_temperature=TAU)
        if impl == "module":
            return module(f, y)
        return supcon_mean(f, y, TAU, TAU, impl="dense")

    module = SupConLoss(TAU, base_temperature=TAU)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        value = loss()
        value.backward()
        f.grad = None
        return float(value.detach())

    cuda = device.type == "cuda"
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        reset = True
    else:
        base = _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reset = _reset_peak_rss()
    times, cpu = [], []
    value = None
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for r in range(args.repeats + 1):  # run 0 is the warm-up (its memory counts, its time does not)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        value = step()
        sync()
        if r > 0:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak_mb = (_peak_rss_kb() - base) / 1024
    return {"impl": impl, "n": n, "dim": args.dim, "dtype": args.dtype, "device": args.device,
            "tile": args.tile if impl == "tiled" else None, "threads": args.threads, "value": value,
            "peak_mb": peak_mb, "peak_reset": reset, "times_s": times, "median_s": statistics.median(times),
            "cpu_s": statistics.median(cpu), "load1": [load0, load1]}


# ---------------------------------------------------------------- driver
def _mem_available_mb() -> float:
    kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                kb = int(line.split()[1])
    except OSError:
        pass
    return kb / 1024 if kb else float("inf")


def _run_one(args, impl, n, tile, timeout):
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--n", str(n), "--dim", str(args.dim),
           "--dtype", args.dtype, "--device", args.device, "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--tile", str(tile)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{impl} n={n} failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _table(rows):
    ref = {r["n"]: r for r in rows if r["impl"] == "reference" and not r.get("skipped")}
    out = ["| impl | tile | n | peak MB | median s | CPU s | mem / reference | time / reference | load (1 min) | value |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("skipped"):
            out.append(f"| {r['impl']} | | {r['n']} | skipped: {r['skipped']} | | | | | | |")
            continue
        b = ref.get(r["n"])
        mr = f"{r['peak_mb'] / b['peak_mb']:.4f}" if b and b["peak_mb"] > 0 else "-"
        tr = f"{r['median_s'] / b['median_s']:.3f}" if b else "-"
        load = "-" if r["load1"][0] is None else f"{r['load1'][0]:.2f}-{r['load1'][1]:.2f}"
        out.append(f"| {r['impl']} | {r['tile'] or ''} | {r['n']} | {r['peak_mb']:.1f} | {r['median_s']:.3f} "
                   f"| {r['cpu_s']:.3f} | {mr} | {tr} | {load} | {r['value']:.6f} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="4096,8192,16384,32768,65536")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--tiles", default=None, help="comma list of tile edges for the tiled loss (default: its DEFAULT_TILE)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every configuration this many times, round-robin over the implementations of "
                         "one n, each in a fresh process; the table keeps the fastest round's median (the "
                         "least disturbed by other jobs) and the largest peak")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    ap.add_argument("--mem-fraction", type=float, default=0.8)
    ap.add_argument("--dense-bytes-per-n2", type=float, default=36.0,
                    help="peak bytes per n^2 assumed for a dense loss before one size has been measured")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", default=None, help="write every row to this file")
    ap.add_argument("--smoke", action="store_true", help="every configuration once at tiny n")
    # worker mode (one configuration, in its own process)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tile", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    sys.path.insert(0, str(ROOT))
    from nctheory.losses.tiled import DEFAULT_TILE

    sizes = [int(s) for s in args.sizes.split(",")]
    tiles = [int(t) for t in args.tiles.split(",")] if args.tiles else [DEFAULT_TILE]
    impls = [i for i in args.impls.split(",") if i]
    if args.smoke:
        sizes, tiles, args.repeats, args.dim = [2 * 37], [8], 1, 16  # 37 samples: not a multiple of the tile
    bad = [i for i in impls if i not in IMPLS]
    if bad:
        ap.error(f"unknown implementation(s) {bad}; choose from {IMPLS}")
    budget_mb = args.mem_fraction * _mem_available_mb()
    import torch

    print(f"# bench_loss: torch {torch.__version__}, device {args.device}, {args.dtype}, d = {args.dim}, "
          f"threads {args.threads}, repeats {args.repeats}, python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}; memory budget for dense runs {budget_mb:.0f} MB",
          flush=True)
    rows, last = [], {}
    for n in sizes:
        configs = [(impl, tile) for impl in impls for tile in (tiles if impl == "tiled" else [0])]
        runs = {c: [] for c in configs}
        for c in configs:
            impl = c[0]
            if impl not in ("tiled", "module"):
                prev = last.get(impl)
                est = prev[1] * (n / prev[0]) ** 2 if prev else args.dense_bytes_per_n2 * n * n / 2**20
                if est > budget_mb:
                    runs[c] = {"impl": impl, "n": n, "tile": None, "skipped":
                               f"estimated {est / 1024:.1f} GB > {budget_mb / 1024:.1f} GB budget"}
                    print(f"skip {impl} n={n}: estimated {est:.0f} MB > {budget_mb:.0f} MB", flush=True)
        for rnd in range(args.rounds):
            for c in configs:
                if isinstance(runs[c], dict):
                    continue
                r = _run_one(args, c[0], n, c[1], args.timeout)
                runs[c].append(r)
                if c[0] not in ("tiled", "module"):
                    last[c[0]] = (n, r["peak_mb"])
                print(f"{c[0]:9s} tile={r['tile'] or '-':>5} n={n:6d} round {rnd}  peak {r['peak_mb']:9.1f} MB  "
                      f"median {r['median_s']:8.3f} s  cpu {r['cpu_s']:8.3f} s  load {r['load1']}  "
                      f"value {r['value']:.6f}", flush=True)
        for c in configs:
            if isinstance(runs[c], dict):
                rows.append(runs[c])
                continue
            best = dict(min(runs[c], key=lambda r: r["median_s"]))
            best["peak_mb"] = max(r["peak_mb"] for r in runs[c])
            best["rounds"] = [{k: r[k] for k in ("median_s", "cpu_s", "peak_mb", "load1", "times_s")} for r in runs[c]]
            rows.append(best)
    # the implementations compute one number: check it (float32: 1e-4 relative)
    for n in sizes:
        vals = [r["value"] for r in rows if r["n"] == n and not r.get("skipped")]
        if vals and max(vals) - min(vals) > 1e-4 * max(abs(v) for v in vals):
            raise SystemExit(f"n={n}: implementations disagree: {vals}")
    print()
    print(_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

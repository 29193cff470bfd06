"""Benchmark: SCL training-step throughput and loss cost (side by side, same process, ratios).

Part A -- images/s, steps/s and peak CUDA memory (max_memory_allocated over the warm-up and timed
steps) of one SCL training step of a CIFAR-size ResNet-18 (3x32x32 inputs, two views per image, SCL
sum form / anchors, SGD lr 0.1 momentum 0.9), in
    fp32                      strict IEEE float32, contiguous (NCHW) memory format: TF32 disabled for
                              convolutions and matmuls (torch's default lets cuDNN convolutions use TF32
                              on Ampere/Hopper, which would make "fp32" partly a 10-bit-mantissa format);
    fp32-default              float32 with torch's default math flags (cuDNN convolutions may use TF32),
                              NCHW (the harness with `--amp off` on a GPU also keeps channels_last unless
                              `--set channels_last=off`);
    bf16+cl                   bf16 autocast + channels_last (the harness's CUDA setting);
    bf16+cl+compile           the same with torch.compile (with --compile).
The issue's target: on an H100, bf16+cl (or +compile) >= 2.5x the fp32 images/s. Both ratios are printed:
against strict fp32 and against fp32 with torch's defaults.

Part B -- the loss alone: ``nctheory.losses.scl`` (float32, sum form) against the reference SupCon
computation, dense (``nctheory.losses.reference.supcon_dense``: mask matrices, logits minus row max,
log-probabilities over all non-self entries, mean over positives, tau/base_tau scaling), forward +
backward, time and peak CUDA memory, for 2 x batch anchors of dimension 128 at batch 1024..8192.

    python benchmarks/bench_train_step.py                 # GPU sizes when CUDA is present
    python benchmarks/bench_train_step.py --tiny          # CPU smoke run (what CI can afford)
    python benchmarks/bench_train_step.py --json out.json

Never a timed test: the numbers are printed (and optionally saved) for experiments/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from nctheory.harness.models import build_model
from nctheory.losses import scl
from nctheory.losses.reference import supcon_dense


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_step(device, batch, steps, warmup, mode, width):
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    if mode == "fp32":  # strict float32: no TF32 anywhere
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return _bench_step(device, batch, steps, warmup, mode, width)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def _bench_step(device, batch, steps, warmup, mode, width):
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 32, 32), width=width, relu=True).to(device)
    channels_last = mode.startswith("bf16")
    amp = torch.bfloat16 if channels_last else None  # CPU autocast supports bf16 too (smoke runs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if mode.endswith("compile") else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch, device=device) % 10
    yv = y.repeat(2)

    def step():
        xv = torch.cat([x, torch.flip(x, dims=(2,))])
        with torch.autocast(device_type=device.type, dtype=amp, enabled=amp is not None):
            z = fwd(xv)
        loss = scl(z.float(), yv, 0.1) / z.shape[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"mode": mode, "batch": batch, "views": 2, "images_per_s": 2 * batch * steps / dt,
            "steps_per_s": steps / dt, "ms_per_step": 1000 * dt / steps, "peak_MiB": peak}


def bench_loss(device, batch, dim, reps, which):
    torch.manual_seed(0)
    f = F.normalize(torch.randn(batch, 2, dim, device=device), dim=2).requires_grad_(True)
    y = torch.arange(batch, device=device) % 100
    yv = y.repeat(2)

    def run():
        if which == "nctheory.scl":
            z = torch.cat(torch.unbind(f, dim=1))
            loss = scl(z, yv, 0.1) / z.shape[0]
        else:
            loss = supcon_dense(f, y, temperature=0.1, base_temperature=0.1)
        loss.backward()
        f.grad = None
        return float(loss.detach())

    value = run()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        run()
    sync(device)
    dt = (time.perf_counter() - t0) / reps
    mem = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else None
    return {"loss": which, "batch": batch, "anchors": 2 * batch, "dim": dim, "ms": 1000 * dt, "peak_MiB": mem,
            "value": value}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke run)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--batch", type=int, default=None, help="images per step in part A")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    a = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    tiny = a.tiny or device.type == "cpu"
    batch = a.batch or (8 if tiny else 512)
    width = 8 if tiny else 64
    steps, warmup = (3, 1) if tiny else (30, 10)
    modes = ["fp32", "fp32-default", "bf16+cl"] + (["bf16+cl+compile"] if a.compile else [])
    rows_a = [bench_step(device, batch, steps, warmup, m, width) for m in modes]
    base, base_default = rows_a[0]["images_per_s"], rows_a[1]["images_per_s"]
    print(f"\nA. ResNet-18 (width {width}) SCL training step, batch {batch} x 2 views, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({platform.processor() or 'cpu'})"))
    print(f"{'mode':<18}{'images/s':>12}{'steps/s':>9}{'ms/step':>10}{'peak MiB':>10}{'x fp32':>8}{'x fp32-default':>16}")
    for r in rows_a:
        r["speedup_vs_fp32"] = r["images_per_s"] / base
        r["speedup_vs_fp32_default"] = r["images_per_s"] / base_default
        mem = f"{r['peak_MiB']:.0f}" if r["peak_MiB"] is not None else "n/a"
        print(f"{r['mode']:<18}{r['images_per_s']:>12.1f}{r['steps_per_s']:>9.2f}{r['ms_per_step']:>10.2f}{mem:>10}"
              f"{r['speedup_vs_fp32']:>8.2f}{r['speedup_vs_fp32_default']:>16.2f}")

    sizes = [64, 128] if tiny else [1024, 2048, 4096, 8192]
    rows_b = []
    for b in sizes:
        for which in ("nctheory.scl", "reference SupCon"):
            try:
                rows_b.append(bench_loss(device, b, 128, 3 if tiny else 10, which))
            except torch.OutOfMemoryError:
                rows_b.append({"loss": which, "batch": b, "anchors": 2 * b, "dim": 128, "ms": None,
                               "peak_MiB": None, "value": None, "error": "out of memory"})
                torch.cuda.empty_cache()
    print(f"\nB. loss forward+backward, 2 views, d = 128, tau = 0.1 (ours: sum form / anchors; reference: "
          f"mean form, tau/base_tau = 1), device {device}")
    print(f"{'loss':<18}{'batch':>7}{'anchors':>9}{'ms':>10}{'peak MiB':>10}{'value':>12}")
    for r in rows_b:
        ms = f"{r['ms']:.2f}" if r["ms"] is not None else "OOM"
        mem = f"{r['peak_MiB']:.0f}" if r.get("peak_MiB") is not None else "n/a"
        val = f"{r['value']:.6f}" if r["value"] is not None else "-"
        print(f"{r['loss']:<18}{r['batch']:>7}{r['anchors']:>9}{ms:>10}{mem:>10}{val:>12}")
    print("(equal values: both compute the same mean-form loss; the ratio of ms / MiB is the comparison)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"device": str(device), "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                                               else platform.processor() or "cpu"),
                       "torch": torch.__version__, "train_step": rows_a, "loss": rows_b}, fh, indent=2)


if __name__ == "__main__":
    main()

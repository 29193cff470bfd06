"""The GPU benchmark script at CPU smoke sizes: it runs, every mode is timed, and our SCL equals the
reference SupCon computation it is compared with (a benchmark of two different losses would be void)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_step.py"


def test_bench_train_step_tiny_runs_and_compares_equal_losses(tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench.json"
    monkeypatch.setattr("sys.argv", [str(BENCH), "--tiny", "--device", "cpu", "--json", str(out)])
    runpy.run_path(str(BENCH), run_name="__main__")
    res = json.loads(out.read_text())
    modes = [r["mode"] for r in res["train_step"]]
    assert modes == ["fp32", "fp32-default", "bf16+cl"]
    for r in res["train_step"]:
        assert r["images_per_s"] > 0 and r["speedup_vs_fp32"] > 0
    by_batch = {}
    for r in res["loss"]:
        assert r["ms"] > 0
        by_batch.setdefault(r["batch"], {})[r["loss"]] = r["value"]
    for b, v in by_batch.items():
        assert v["nctheory.scl"] == pytest.approx(v["reference SupCon"], rel=1e-5), b
    assert "B. loss forward+backward" in capsys.readouterr().out


def test_strict_fp32_mode_turns_tf32_off_and_restores_the_flags(monkeypatch):
    """On a GPU the 'fp32' baseline must not use TF32 (torch lets cuDNN convolutions use it by default);
    the flags are set for that mode only and restored afterwards, also when the step raises."""
    import torch

    mod = runpy.run_path(str(BENCH))  # the functions, without running main
    seen, fail = {}, []

    def record(device, batch, steps, warmup, mode, width):
        seen[mode] = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        if fail:
            raise RuntimeError("boom")
        return {"mode": mode}

    bench_step = mod["bench_step"]
    monkeypatch.setitem(bench_step.__globals__, "_bench_step", record)
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
        bench_step(torch.device("cpu"), 2, 1, 0, "fp32", 4)
        assert seen["fp32"] == (False, False)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
        bench_step(torch.device("cpu"), 2, 1, 0, "fp32-default", 4)
        assert seen["fp32-default"] == (True, True)
        fail.append(True)
        with pytest.raises(RuntimeError):
            bench_step(torch.device("cpu"), 2, 1, 0, "fp32", 4)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before

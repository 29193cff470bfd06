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
    assert res["train_step"][0]["speedup_vs_fp32"] == 1.0
    by_batch = {}
    for r in res["loss"]:
        assert r["ms"] > 0
        by_batch.setdefault(r["batch"], {})[r["loss"]] = r["value"]
    for b, v in by_batch.items():
        assert v["nctheory.scl"] == pytest.approx(v["reference SupCon"], rel=1e-5), b
    assert "B. loss forward+backward" in capsys.readouterr().out

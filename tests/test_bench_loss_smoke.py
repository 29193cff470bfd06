"""benchmarks/bench_loss.py --smoke: every implementation runs once at tiny n in its own subprocess,
reports a memory and a time, and all of them compute the same loss (else the comparison is void)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loss.py"


@pytest.mark.slow
def test_bench_loss_smoke_runs_every_configuration(tmp_path):
    out = tmp_path / "rows.json"
    p = subprocess.run([sys.executable, str(BENCH), "--smoke", "--json", str(out)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert sorted(r["impl"] for r in rows) == ["module", "nctheory", "reference", "tiled"]
    for r in rows:
        assert r["n"] == 74 and r["peak_mb"] >= 0 and r["median_s"] > 0 and len(r["times_s"]) == 1
    ref = next(r["value"] for r in rows if r["impl"] == "reference")
    for r in rows:
        assert r["value"] == pytest.approx(ref, rel=1e-5)  # float32, different summation orders
    assert "| tiled | 8 | 74 |" in p.stdout


def test_bench_loss_skips_dense_sizes_over_the_memory_budget(tmp_path):
    """A dense configuration estimated above the budget is reported as skipped, not run."""
    out = tmp_path / "rows.json"
    p = subprocess.run([sys.executable, str(BENCH), "--sizes", "64", "--impls", "reference", "--dim", "8",
                        "--repeats", "1", "--mem-fraction", "1e-9", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["impl"] == "reference" and "budget" in row["skipped"]

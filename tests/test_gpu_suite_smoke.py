"""benchmarks/gpu_suite.sh --smoke: every item of the GPU suite runs (one step, tiny sizes, CPU), each
writes its result file, its RESULTS section goes to the out folder and not to the committed RESULTS
files, and a failing item makes the suite fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
ITEMS = {"loss": "loss.json", "train_step": "train_step.json", "kini_fig3": "kini_fig3.md", "gill_fig3": "gill_fig3.md"}
SECTIONS = {"RESULTS-loss.md": ["loss"], "RESULTS-train-step.md": ["train_step"], "RESULTS.md": ["kini_fig3", "gill_fig3"]}


def committed_results() -> dict[str, bytes]:
    """Every RESULTS*.md of the tree (benchmarks/, experiments/), by path, with its bytes."""
    files = list((ROOT / "benchmarks").glob("RESULTS*.md")) + list((ROOT / "experiments").glob("RESULTS*.md"))
    return {str(p.relative_to(ROOT)): p.read_bytes() for p in files}


def suite(*args, python=sys.executable, timeout=900):
    env = dict(os.environ, PYTHON=python)
    return subprocess.run(["bash", str(SUITE), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def status(out: Path) -> dict[str, int]:
    rows = [ln.split("\t") for ln in (out / "status.tsv").read_text().splitlines()[1:]]
    return {r[0]: int(r[1]) for r in rows}


@pytest.mark.slow
def test_smoke_runs_every_item_and_keeps_the_committed_results(tmp_path):
    before = committed_results()
    gpu_results = sorted((ROOT / "benchmarks" / "gpu_results").glob("*")) if (ROOT / "benchmarks" / "gpu_results").exists() else []
    out = tmp_path / "suite"
    p = suite("--smoke", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    assert status(out) == {item: 0 for item in ITEMS}
    for item, f in ITEMS.items():
        assert (out / f).stat().st_size > 0, item
    loss = json.loads((out / "loss.json").read_text())
    assert {r["impl"] for r in loss["rows"]} == {"tiled", "reference", "nctheory", "module"}
    step = json.loads((out / "train_step.json").read_text())
    assert [r["mode"] for r in step["train_step"]] == ["fp32", "fp32-default", "bf16+cl"]
    for name in ("kini_fig3", "gill_fig3"):
        table = (out / f"{name}.md").read_text().splitlines()
        assert table[0].startswith("| run | epoch |") and len(table) >= 3, table  # header, rule, one row at least
    for f, items in SECTIONS.items():
        text = (out / f).read_text()
        assert text.count("## ") == len(items) and "CPU smoke run" in text, f
    assert "All items succeeded." in (out / "SUMMARY.md").read_text()
    # nothing appended to (or created among) the committed RESULTS files, nothing written to gpu_results/
    assert committed_results() == before
    after = sorted((ROOT / "benchmarks" / "gpu_results").glob("*")) if (ROOT / "benchmarks" / "gpu_results").exists() else []
    assert after == gpu_results


def test_a_failing_item_fails_the_suite_and_appends_nothing(tmp_path):
    before = committed_results()
    out = tmp_path / "fail"
    p = suite("--smoke", "--only", "train_step", "--out", str(out), python=shutil.which("false"))
    assert p.returncode == 1, p.stderr
    assert status(out) == {"train_step": 1}
    assert "FAILED" in p.stderr and "Failed: train_step." in (out / "SUMMARY.md").read_text()
    assert not (out / "RESULTS-train-step.md").exists()
    assert committed_results() == before


def test_bad_arguments_exit_2(tmp_path):
    assert suite("--bogus").returncode == 2
    assert suite("--smoke", "--only", "nope", "--out", str(tmp_path / "x")).returncode == 2


def test_without_cuda_and_without_smoke_exit_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the suite would run")
    p = suite("--out", str(tmp_path / "gpu"))
    assert p.returncode == 2 and "no CUDA device" in p.stderr
    assert not (tmp_path / "gpu" / "status.tsv").exists()

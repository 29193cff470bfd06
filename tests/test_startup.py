"""Start-up: the commands that do not solve import only the heavy modules they need (issue 14, item 5).

``benchmarks/bench_startup.py --smoke`` runs each of its commands once, in a fresh process, under a
wrapper that runs the CLI's ``main`` and then lists which of torch, cvxpy, sympy, scipy and matplotlib are
in ``sys.modules``. Not a timed test: what is checked is which modules were imported, and that every
command succeeded (so the list is the list of a command that did its work).

What each command needs, and why:
- ``--help`` (which builds every subcommand's parser), ``bound`` (Kini Thm 1 / Thm 2 in numpy) and
  ``make-plan``: none of them;
- ``check-batches``: scipy (the alignment components are scipy.sparse.csgraph's connected components);
- ``derive --list``: sympy (the derivation registry is filled by importing the derivation modules);
- ``plot`` and ``compare``: matplotlib (they write PNGs).
``verify --list`` is not among them: the claims registry is filled by importing every claim module, and
those import torch, cvxpy, sympy and hypothesis at module level (the benchmark reports what it imports).
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_startup.py"

NEEDS = {
    "--help": set(),
    "check-batches": {"scipy"},
    "bound --counts": set(),
    "bound --plan": set(),
    "make-plan": set(),
    "derive --list": {"sympy"},
    "plot": {"matplotlib"},
    "compare": {"matplotlib"},
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("startup")
    bench = runpy.run_path(str(BENCH))
    assert bench["main"](["--smoke", "--out", str(out)]) == 0
    return bench, json.loads((out / "startup.json").read_text()), (out / "startup.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(NEEDS))
def test_command_imports_only_the_heavy_modules_it_needs(smoke, command):
    _, res, _ = smoke
    row = next(r for r in res["rows"] if r["command"] == command)
    assert row["after_exit"] == 0, row
    assert set(row["after_heavy"]) <= NEEDS[command], (command, row["after_heavy"])


@pytest.mark.slow
def test_smoke_table_lists_every_command_with_a_time(smoke):
    bench, res, md = smoke
    assert [r["command"] for r in res["rows"]] == [c for c, _ in bench["COMMANDS"]]
    assert set(NEEDS) <= {c for c, _ in bench["COMMANDS"]}
    for r in res["rows"]:
        assert r["after_s"] > 0 and r["after_exit"] == 0, r
    assert md.count("\n| `nctheory ") == len(res["rows"])


def test_the_wrapper_sees_an_import_the_command_makes(tmp_path):
    """The probe can fail: a process that has imported torch is reported with torch."""
    bench = runpy.run_path(str(BENCH))
    code, mods, _ = bench["heavy_modules"](["--help"], tmp_path)
    assert code == 0 and "torch" not in mods
    import subprocess

    wrapper = "import torch\n" + bench["WRAPPER"]
    p = subprocess.run([sys.executable, "-c", wrapper, "--help"], cwd=tmp_path, capture_output=True, text=True,
                       env=bench["_env"](bench["ROOT"]), timeout=300)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("NCTHEORY-HEAVY-MODULES")][-1]
    assert "torch" in line.split()[1:]

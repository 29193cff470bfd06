"""README.md's "Use it on your own run" snippets, run as written, each group in a fresh folder.

A snippet is a fenced ``python`` or ``bash`` block right after a marker line ``<!-- snippet: NAME -->``
(``file=F``: the block is written to F instead of run). The blocks of one NAME run in order in one folder:
python blocks with this checkout's interpreter (this repository first on the path), bash blocks with
``bash -e`` and ``nctheory`` meaning this checkout's command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"<!-- snippet: (?P<name>[\w-]+)(?: file=(?P<file>[\w./-]+))? -->\n```(?P<lang>python|bash)\n"
                  r"(?P<code>.*?)```", re.S)
REQUIRED = {"measure", "monitor", "train", "supconloss"}  # issue 13's entry points written on this branch


def snippets() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in MARK.finditer((ROOT / "README.md").read_text()):
        out.setdefault(m["name"], []).append(m.groupdict())
    return out


def test_the_readme_has_the_snippets():
    assert REQUIRED <= set(snippets()), sorted(snippets())


@pytest.mark.parametrize("name", sorted(snippets()))
def test_readme_snippet_runs(name, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for block in snippets()[name]:
        if block["file"]:
            (tmp_path / block["file"]).write_text(block["code"])
            continue
        if block["lang"] == "python":
            cmd = [sys.executable, "-c", block["code"]]
        else:
            prelude = f'nctheory() {{ "{sys.executable}" -m nctheory "$@"; }}\n'
            cmd = ["bash", "-e", "-c", prelude + block["code"]]
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{name} ({block['lang']}) failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"

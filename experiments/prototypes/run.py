"""Regenerate experiments/prototypes/: the learnt geometries of Gill et al. Fig. 3 (issue 6, "Done when").

    python experiments/prototypes/run.py            # ~1-2 min on one CPU core

For each geometry (etf, minority-angles t=0.5, majority-collapse; k = 10, tau = 0.1) it runs

    nctheory prototypes --geometry G --k 10 --R 1,10,100 --nw 0,10,100,1000,inf --tau 0.1 \
        --json --plot experiments/prototypes/G.png  > experiments/prototypes/G.json

plus the printed Prop. 1 limit (--limit-form paper) and a large-n_w convergence check, and writes the
tables of RESULTS.md from those JSON files (RESULTS.md's prose is written by hand around them).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from nctheory.cli import main

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the plots are named relative to the repository root in the JSON files
GEOMS = ("etf", "minority-angles", "majority-collapse")


def cli_json(argv) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"nctheory {' '.join(argv)} exited {code}")
    return json.loads(buf.getvalue())


def main_() -> None:
    tables = []
    with contextlib.chdir(ROOT):
        for g in GEOMS:
            tables.append(geometry(g))
    (HERE / "tables.md").write_text("\n\n".join(tables) + "\n")
    print((HERE / "tables.md").read_text())


def geometry(g: str) -> str:
    """Run one geometry's commands, write its JSON files, return its table."""
    argv = ["prototypes", "--geometry", g, "--k", "10", "--R", "1,10,100", "--nw", "0,10,100,1000,inf",
            "--tau", "0.1", "--json", "--plot", str((HERE / f"{g}.png").relative_to(ROOT))]
    out = cli_json(argv)
    (HERE / f"{g}.json").write_text(json.dumps(out, indent=1))
    paper = cli_json(["prototypes", "--geometry", g, "--k", "10", "--nw", "inf", "--tau", "0.1",
                      "--limit-form", "paper", "--json"])
    big = {"results": []}
    for R in ("1", "100"):
        for nw in ("10000", "100000"):
            try:
                big["results"] += cli_json(["prototypes", "--geometry", g, "--k", "10", "--R", R, "--nw", nw,
                                            "--tau", "0.1", "--json"])["results"]
            except SystemExit as exc:  # not certified (exit 3): recorded, never a number
                big["results"].append({"R": float(R), "n_w": int(nw), "not_certified": str(exc)})
    (HERE / f"{g}_paper_limit.json").write_text(json.dumps(paper, indent=1))
    (HERE / f"{g}_large_nw.json").write_text(json.dumps(big, indent=1))
    return table(g, out, paper, big)


def table(g: str, out: dict, paper: dict, big: dict) -> str:
    rows = out["results"]
    nws = list(dict.fromkeys(str(r["n_w"]) for r in rows))
    lines = [f"### {g}", "", "Delta_G* (Gill Def. 3) / max |G_M - G_*| / min within-class cosine:", "",
             "| R | batch counts (maj/min) | " + " | ".join(f"n_w = {n}" for n in nws) + " |",
             "|---|---|" + "---|" * len(nws)]
    for R in (1.0, 10.0, 100.0):
        sel = [r for r in rows if r["R"] == R]
        cells = [f"{r['delta_to_target']:.4f} / {r['max_entry_error']:.4f} / {min(r['within_class_cosine']):.4f}"
                 for r in sel]
        lines.append(f"| {R:g} | {sel[0]['counts'][0]}/{sel[0]['counts'][-1]} | " + " | ".join(cells) + " |")
    p = paper["results"][0]
    lines += ["", f"Prop. 1 as printed (n_w = inf, --limit-form paper): Delta_G* = {p['delta_to_target']:.4f}, "
                  f"max |G_M - G_*| = {p['max_entry_error']:.4f}.",
              "Large n_w (derived limit is the n_w = inf column): " +
              ", ".join(f"R={r['R']:g} n_w={r['n_w']}: " + (f"{r['delta_to_target']:.4f}"
                                                              if "not_certified" not in r else "not certified (solver)")
                        for r in big["results"]) + "."]
    last = [r for r in rows if r["n_w"] == "inf"][0]
    GM = np.asarray(last["G_M"])
    lines += ["", "n_w = inf, G_M (rows 0-4 majorities, 5-9 minorities), first majority and first minority rows:",
              "", "    " + np.array2string(GM[0], precision=3, suppress_small=True, max_line_width=200),
              "    " + np.array2string(GM[5], precision=3, suppress_small=True, max_line_width=200)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main_())

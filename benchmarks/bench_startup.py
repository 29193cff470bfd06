"""Benchmark: start-up of the `nctheory` commands that do not solve (wall time, fresh process each run).

Each command of ``COMMANDS`` is run as ``python -m nctheory ARGS`` in a new process, ``--repeat`` times
(default 5), and the best wall time is reported (the best, not the mean: on a shared machine the other
runs measure the other jobs). One more run under a small wrapper (:data:`WRAPPER`: it runs the CLI's
``main`` and then reports which of :data:`HEAVY` are in ``sys.modules``) lists the heavy modules the
command imported; tests/test_startup.py uses the same wrapper to assert that they are only the ones the
command needs.

    python benchmarks/bench_startup.py                          # this tree, best of 5
    python benchmarks/bench_startup.py --before /tmp/main-copy  # that tree and this one, side by side
    python benchmarks/bench_startup.py --smoke --out DIR        # one run each (tests/test_startup.py)

``--before TREE`` runs the same commands with ``PYTHONPATH=TREE`` (e.g. ``git archive main | tar -x -C
TREE``), interleaved with this tree's runs, so both see the same machine load; the table gives both
times and their ratio. The inputs (a plan, two run folders) are written once to a temporary folder by
this tree's code and read by both trees. The machine's load average is printed before and after.

Never a timed test: the numbers go to benchmarks/RESULTS-startup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "cvxpy", "sympy", "scipy", "matplotlib")

# The CLI's main, then one line naming the heavy modules now in sys.modules (the command's output and
# exit code are unchanged; the line is the last one on stderr).
WRAPPER = (
    "import sys\n"
    "from nctheory.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "except SystemExit as e:\n"
    "    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)\n"
    "sys.stdout.flush()\n"
    f"print('NCTHEORY-HEAVY-MODULES ' + ' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    "sys.exit(code)\n"
)

# (label, arguments with {tmp} for the prepared folder). Each reads what `prepare` wrote.
COMMANDS = [
    ("--help", ["--help"]),
    ("check-batches", ["check-batches", "{tmp}/plan.json"]),
    ("bound --counts", ["bound", "--counts", "100,100,10,10"]),
    ("bound --plan", ["bound", "--plan", "{tmp}/plan.json"]),
    ("make-plan", ["make-plan", "--counts", "40,40,40,40", "--batch-size", "32", "--bind", "--out", "{tmp}/made.json"]),
    ("derive --list", ["derive", "--list"]),
    ("plot", ["plot", "{tmp}/runA"]),
    ("compare", ["compare", "{tmp}/runA", "{tmp}/runB", "--out", "{tmp}/compare.png"]),
    ("verify --list", ["verify", "--list"]),
]


def prepare(tmp: Path) -> None:
    """The inputs of COMMANDS: a bound fixed plan of 4 x 40 samples (plan.json) and two small run folders
    (metrics.csv of 3 epochs and config.json, as `nctheory train` writes them)."""
    import numpy as np

    from nctheory.batching import make_plan, save_plan
    from nctheory.monitor import RunFolder

    y = np.repeat(np.arange(4), 40)
    save_plan(make_plan(y, scheme="fixed", batch_size=32, epochs=1, seed=0, bind=True), tmp / "plan.json")
    for name, r in (("runA", 10), ("runB", 1)):
        p = tmp / name
        p.mkdir()
        folder = RunFolder(p)
        folder.open_metrics()
        for e in (1, 2, 3):
            folder.write_row({"epoch": e, "loss": 10.0 / e, "bound": 1.0, "excess": 10.0 / e - 1.0,
                              "delta_to_of": 0.5 / e, "ncc_test": 0.4})
        (p / "config.json").write_text(json.dumps({"counts": [5 * r, 5], "config": {"name": name, "tau": 1.0}}))


def _env(tree: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _argv(args: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in args]


def heavy_modules(args: list[str], tmp: Path, tree: Path = ROOT,
                  python: str = sys.executable) -> tuple[int, list[str], float]:
    """(exit code, the modules of HEAVY in sys.modules after the command, wall seconds) of one run of the
    command under WRAPPER in a fresh process."""
    t0 = time.perf_counter()
    p = subprocess.run([python, "-c", WRAPPER, *_argv(args, tmp)], cwd=tmp, env=_env(tree), capture_output=True,
                       text=True, timeout=300)
    dt = time.perf_counter() - t0
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("NCTHEORY-HEAVY-MODULES")]
    if not lines:
        raise RuntimeError(f"nctheory {' '.join(args)} (PYTHONPATH={tree}) did not finish: exit {p.returncode}\n"
                           f"{p.stderr[-2000:]}")
    return p.returncode, lines[-1].split()[1:], dt


def wall_time(args: list[str], tmp: Path, tree: Path = ROOT, python: str = sys.executable) -> float:
    """Wall seconds of one `python -m nctheory ARGS` in a fresh process (exit code must be 0)."""
    t0 = time.perf_counter()
    p = subprocess.run([python, "-m", "nctheory", *_argv(args, tmp)], cwd=tmp, env=_env(tree),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"nctheory {' '.join(args)} (PYTHONPATH={tree}) exited {p.returncode}: {p.stderr[-2000:]}")
    return dt


def _cleanup(tmp: Path) -> None:
    for f in ("made.json", "compare.png"):  # the outputs of the previous run: every run writes a new file
        (tmp / f).unlink(missing_ok=True)


def bench(trees: dict[str, Path], repeat: int, tmp: Path, smoke: bool = False) -> list[dict]:
    """One row per command: exit code and heavy modules per tree, and the best of ``repeat`` wall times
    of `python -m nctheory` (smoke: the wrapper's one run is the time)."""
    rows = []
    for label, args in COMMANDS:
        row = {"command": label, "args": args}
        times: dict[str, list[float]] = {name: [] for name in trees}
        for name, tree in trees.items():
            _cleanup(tmp)
            code, mods, dt = heavy_modules(args, tmp, tree)
            row[f"{name}_exit"], row[f"{name}_heavy"] = code, mods
            if smoke:
                times[name].append(dt)
        for _ in range(0 if smoke else repeat):  # interleaved: both trees see the same load
            for name, tree in trees.items():
                _cleanup(tmp)
                times[name].append(wall_time(args, tmp, tree))
        for name in trees:
            row[f"{name}_s"] = min(times[name])
            row[f"{name}_all_s"] = [round(t, 3) for t in times[name]]
        rows.append(row)
        print(f"  {label}: " + ", ".join(f"{n} {row[f'{n}_s']:.2f} s" for n in trees), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], trees: dict[str, Path]) -> str:
    names = list(trees)
    head = "| command | " + " | ".join(f"{n} s (best)" for n in names)
    sep = "|---|" + "---:|" * len(names)
    if len(names) == 2:
        head += " | after / before"
        sep += "---:|"
    head += " | " + " | ".join(f"heavy modules ({n})" for n in names) + " |"
    sep += "---|" * len(names)
    out = [head, sep]
    for r in rows:
        cells = [f"`nctheory {' '.join(a if '{tmp}' not in a else a.replace('{tmp}/', '') for a in r['args'])}`"]
        cells += [f"{r[f'{n}_s']:.2f}" for n in names]
        if len(names) == 2:
            cells.append(f"{r[f'{names[1]}_s'] / r[f'{names[0]}_s']:.2f}")
        cells += [", ".join(r[f"{n}_heavy"]) or "none" for n in names]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", metavar="TREE", help="a checkout to compare with (run as PYTHONPATH=TREE)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per command and tree; the best is reported")
    ap.add_argument("--smoke", action="store_true", help="one run per command (CI): the wrapper's run is timed")
    ap.add_argument("--out", metavar="DIR", help="write startup.md and startup.json there")
    a = ap.parse_args(argv)
    repeat = 1 if a.smoke else a.repeat
    trees = {"after": ROOT} if not a.before else {"before": Path(a.before).resolve(), "after": ROOT}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nct-startup-") as d:
        tmp = Path(d)
        prepare(tmp)
        rows = bench(trees, repeat, tmp, smoke=a.smoke)
    load1 = os.getloadavg()
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "repeat": repeat, "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in load1],
            "trees": {k: str(v) for k, v in trees.items()},
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    how = ("smoke: one run each, under the module-listing wrapper" if a.smoke
           else f"best of {repeat} fresh `python -m nctheory` processes each")
    md = (table(rows, trees) + f"\n\n{how}; "
          f"load average (1, 5, 15 min) {tuple(info['load_before'])} before, {tuple(info['load_after'])} after, "
          f"on {info['cpus']} CPUs; Python {info['python']}; {info['date']}\n")
    print(md)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "startup.md").write_text(md)
        (out / "startup.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`nctheory verify`: run every registered claim's check and report the verdicts.

Inputs are checked before any claim runs: ``--report`` (:func:`nctheory.validate.output_file`: a .md,
.markdown or .txt file, not a folder, its folder exists and is writable, never a run folder's file),
``--jobs`` and ``--only``. The report is written atomically (:func:`nctheory.runfolder.atomic_write_text`:
a kill leaves the old report or the new one). With ``--jobs N`` the claims run in worker processes
started with :func:`nctheory.cli.signals.worker_initializer`: they ignore Ctrl-C (the parent stops them)
and die with their parent, even a SIGKILLed one; SIGTERM to the parent stops them as Ctrl-C does.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from nctheory.errors import InputError

NAME = "verify"
HELP = "run the executable theorems and print the claims table with verdicts and evidence"
DESCRIPTION = (
    "Run the check of every registered claim (or those matching --only) and print the claims table. "
    "Exit 0 when every check ran and gave its committed verdict; 1 when a check crashed or its verdict "
    "changed. A refuted claim is a finding, not a failure: it exits 0 with verdict 'refuted'."
)


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print a JSON list of claim objects")
    p.add_argument("--markdown", action="store_true",
                   help="print the verdict table as Markdown (the README's table is this output)")
    p.add_argument("--only", action="append", metavar="PATTERN", help="claim ids to run (glob, repeatable)")
    p.add_argument("--budget", default="standard", choices=["quick", "standard", "full"], help="search effort")
    p.add_argument("--report", default="nctheory_verify_report.md", metavar="FILE.md",
                   help="where to write the Markdown report, .md, .markdown or .txt (default: %(default)s; "
                        "'-' for none)")
    p.add_argument("--list", action="store_true", help="list registered claim ids and exit")
    p.add_argument("--no-progress", action="store_true", help="do not print progress to stderr")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run N claims at a time in worker processes (0 = one per CPU core; default 1). The "
                        "verdicts do not depend on N; the report lists the claims in the same order")


def _run_in_worker(claim_id: str, level: str, threads: int) -> dict:
    """One claim in a worker process: its JSON row (the same as the sequential path produces)."""
    import torch

    from nctheory.claims.registry import Budget, run_claim

    torch.set_num_threads(threads)
    return run_claim(claim_id, Budget.named(level)).to_json()


def _pool(jobs: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from nctheory.cli.signals import worker_initializer

    # spawn, not fork: the parent may already hold torch / BLAS thread pools, which fork does not copy safely;
    # the initializer makes a worker ignore Ctrl-C and die with its parent (nctheory.cli.signals)
    return ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=worker_initializer)


def _kill(pool) -> None:
    """Stop a pool now (Ctrl-C): cancel queued claims and terminate the workers instead of waiting for them."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _run_parallel(chosen, budget, jobs: int, progress: bool) -> list[dict]:
    """Claims defined in nctheory.claims run in worker processes (a spawned worker imports them itself);
    any other registered claim (e.g. one defined by the caller) runs here, so the verdicts do not depend
    on --jobs. A worker that dies (a crash, not an exception: those are reported by run_claim) breaks
    the pool; the claims it took down are re-run one per fresh worker, so only the culprit is blamed."""
    import os
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    from nctheory.claims.registry import Result, run_claim

    remote = [c for c in chosen if c.module.startswith("nctheory.claims.")]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    rows: dict[str, dict] = {}
    done = 0

    def report(c):
        nonlocal done
        done += 1
        if progress:
            r = rows[c.id]
            print(f"[{done}/{len(chosen)}] {c.id}: {r['verdict']} ({r['seconds']} s)", file=sys.stderr, flush=True)

    broken = []
    pool = _pool(jobs)
    try:
        futures = {pool.submit(_run_in_worker, c.id, budget.level, threads): c for c in remote}
        for c in chosen:  # claims the workers cannot import run here meanwhile
            if c not in remote:
                rows[c.id] = run_claim(c, budget).to_json()
                report(c)
        for fut in as_completed(futures):
            c = futures[fut]
            try:
                rows[c.id] = fut.result()
            except BrokenProcessPool:
                broken.append(c)
                continue
            report(c)
    except KeyboardInterrupt:
        _kill(pool)
        raise
    pool.shutdown(wait=True)
    for c in broken:  # one claim per fresh worker: the one that dies again is the culprit
        single = _pool(1)
        try:
            rows[c.id] = single.submit(_run_in_worker, c.id, budget.level, threads).result()
        except BrokenProcessPool as exc:
            rows[c.id] = Result(c, None, 0.0, error=f"the worker process died while checking this claim "
                                                     f"({type(exc).__name__})").to_json()
        except KeyboardInterrupt:
            _kill(single)
            raise
        single.shutdown(wait=True)
        report(c)
    return [rows[c.id] for c in chosen]


REPORT_SUFFIXES = (".md", ".markdown", ".txt")


def run(args) -> int:
    from nctheory.claims.registry import Budget, load_all, run_claim
    from nctheory.validate import output_file

    if args.report != "-" and not args.list:
        output_file(args.report, "--report", suffixes=REPORT_SUFFIXES)
    if args.jobs < 0:  # an int (argparse)
        raise InputError(f"--jobs must be >= 0 (0 = one per CPU core), got {args.jobs}")
    claims = load_all()
    if args.only:
        chosen = [c for cid, c in claims.items() if any(fnmatch.fnmatchcase(cid, pat) for pat in args.only)]
        if not chosen:
            raise InputError(f"no registered claim matches {args.only}; `nctheory verify --list` shows the ids")
    else:
        chosen = list(claims.values())
    if args.list:
        for c in chosen:
            print(f"{c.id}\t{c.source}")
        return 0
    import os

    jobs = min(args.jobs or (os.cpu_count() or 1), len(chosen))
    budget = Budget.named(args.budget)
    if jobs > 1:
        rows = _run_parallel(chosen, budget, jobs, not args.no_progress)
    else:
        rows = []
        for i, c in enumerate(chosen, 1):
            if not args.no_progress:
                print(f"[{i}/{len(chosen)}] {c.id} ...", file=sys.stderr, flush=True)
            rows.append(run_claim(c, budget).to_json())
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print(verdict_table(rows))
    else:
        print(table(rows))
    if args.report != "-":
        from nctheory.runfolder import atomic_write_text

        path = Path(args.report)
        atomic_write_text(path, markdown_report(rows, budget.level))  # an OSError is an InputError there
        if not (args.json or args.markdown):
            print(f"\nreport written to {path}")
    bad = [r for r in rows if not r["matches_expected"]]
    if bad and not (args.json or args.markdown):
        for r in bad:
            why = r.get("error") or f"verdict {r['verdict']!r}, committed {r['expected']!r}"
            print(f"CHANGED OR FAILED: {r['id']}: {why}", file=sys.stderr)
    return 1 if bad else 0


def _kinds(r) -> str:
    return ", ".join(dict.fromkeys(c["kind"] for c in r.get("checks", [])))


def verdict_table(rows) -> str:
    """The Markdown verdict table (README.md holds this output): one row per claim, its verdict, the kinds of
    its checks and its source, then the counts. ``rows`` are `verify --json` rows (or the registry's
    committed verdicts in the same shape, see :func:`committed_rows`)."""
    out = ["| claim | verdict | checks | source |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['id']}` | {r['verdict']} | {_kinds(r)} | {r['source']} |")
    counts = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    out += ["", f"{len(rows)} claims: " + ", ".join(f"{counts[v]} {v}" for v in
                                                     ("confirmed", "confirmed-under-hypotheses", "refuted", "unchecked")
                                                     if v in counts) + "."]
    return "\n".join(out)


def committed_rows() -> list[dict]:
    """Rows of every registered claim with its committed verdict, in the shape of `verify --json` rows: when
    `verify` exits 0 these are its verdicts, so the README table can be checked without running the claims."""
    from nctheory.claims.registry import load_all

    return [{"id": c.id, "verdict": c.expected, "source": str(c.source),
             "checks": [{"kind": k.kind} for k in c.checks]} for c in load_all().values()]


def table(rows) -> str:
    w = max(len(r["id"]) for r in rows)
    vw = max(len(r["verdict"]) for r in rows)
    lines = [f"{'claim'.ljust(w)}  {'verdict'.ljust(vw)}  evidence", "-" * (w + vw + 60)]
    for r in rows:
        flag = "" if r["matches_expected"] else "  [!]"
        ev = r["evidence"].replace("\n", " ")
        if len(ev) > 160:
            ev = ev[:157] + "..."
        lines.append(f"{r['id'].ljust(w)}  {r['verdict'].ljust(vw)}  [{_kinds(r)}] {ev}{flag}")
    counts = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines.append("")
    lines.append("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f"   ({len(rows)} claims)")
    return "\n".join(lines)


def markdown_report(rows, level: str) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = ["# nctheory verdict report\n", f"Generated {now}, budget `{level}`.\n",
           "| claim | source | verdict | checks | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["matches_expected"] else " (changed!)"
        out.append(f"| `{r['id']}` | {r['source']} | **{r['verdict']}**{mark} | {_kinds(r)} | {r['seconds']} |")
    for r in rows:
        out.append(f"\n## `{r['id']}`: {r['verdict']}\n")
        out.append(f"*Source:* {r['source']}\n")
        out.append("*Hypotheses as stated:*\n")
        out.extend(f"- {h}" for h in r["hypotheses"])
        out.append(f"\n*Statement:* {r['statement']}\n")
        out.append(f"*Evidence:* {r['evidence']}\n")
        if r.get("counterexample") is not None:
            out.append("*Smallest counterexample:*\n\n```json\n" + json.dumps(r["counterexample"], indent=1) + "\n```\n")
        if r.get("corrected_statement"):
            out.append(f"*Corrected statement:* {r['corrected_statement']}\n")
        if r.get("used_beyond"):
            out.append(f"*Used beyond its hypotheses:* {r['used_beyond']}\n")
        if r.get("derivations"):
            out.append(f"*Derivations:* {', '.join(f'`nctheory derive {d}`' for d in r['derivations'])}\n")
        for c in r.get("checks", []):
            line = f"- *{c['kind']} check* `{c['name']}`: {c['verdict']} ({c['seconds']} s)"
            if c.get("violation") is not None:
                line += (f"; its counterexample re-evaluates to a violation of {c['violation']:.3g} "
                         f"(tolerance {c['tolerance']:g}: {c['tolerance_reason']})")
            out.append(line)
        if r.get("checks"):
            out.append("")
        if r.get("details"):
            out.append("<details><summary>numbers</summary>\n\n```json\n" + json.dumps(r["details"], indent=1)
                       + "\n```\n</details>\n")
        out.append(f"*Checked by:* {', '.join(r['tests'])}\n")
    return "\n".join(out) + "\n"

"""`nctheory bound`: Kini et al.'s lower bound on SCL in UFM+ for a plan (Thm 2) or class counts (Thm 1).

Both come from :mod:`nctheory.bounds` (one definition). The default is the corrected bound: classes
appearing once in a batch (or n_c = 1) contribute 0, as they do to the loss; ``stated`` in the JSON
is the paper's formula as printed over every class present (not a lower bound when a class appears
once in a batch of more than 1 + e^{1/tau} samples). Plans with views count every view; multiset
plans (batches repeating a sample) count every copy (the derivation: interaction.py, section 4).
Class ids of any size are ranked first (the mapping is reported when they are not 0..k-1).
"""

from __future__ import annotations

import json

from nctheory.counts import counts_from_text

NAME = "bound"
HELP = "Kini Thm 2's lower bound for a batching plan (--plan) or Thm 1's for class counts (--counts)"


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--plan", metavar="PLAN", help="plan file (.json or .npz): Thm 2 over its batches")
    src.add_argument("--counts", metavar="N1,N2,...", help="class sizes: Thm 1 (full batch)")
    p.add_argument("--tau", type=float, default=1.0, help="temperature (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from nctheory.bounds import batch_bound, full_batch_bound

    if args.plan is not None:
        from nctheory.batching import load_plan

        plan = load_plan(args.plan)
        batches = plan.batches
        kw = {"multiset": plan.multiset, "views": plan.views}
        bound = batch_bound(plan.labels, batches, args.tau, **kw)
        stated = batch_bound(plan.labels, batches, args.tau, stated=True, **kw)
        out = {"theorem": "Kini et al. 2023 Thm 2", "bound": bound, "stated": stated, "tau": args.tau,
               "n": plan.n, "num_batches": plan.num_batches}
        if plan.views != 1 or plan.multiset:
            out.update({"views": plan.views, "multiset": plan.multiset})
        note = plan.label_note()
        if note:
            out["label_note"] = note
    else:
        counts = counts_from_text(args.counts).tolist()
        bound = full_batch_bound(counts, args.tau)
        stated = full_batch_bound(counts, args.tau, stated=True)
        out = {"theorem": "Kini et al. 2023 Thm 1", "bound": bound, "stated": stated, "tau": args.tau,
               "counts": counts}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{out['theorem']} lower bound (tau = {args.tau:g}): {bound:.10g}")
        if out.get("views", 1) != 1 or out.get("multiset"):
            print(f"  counting {out['views']} view(s) per sample" + (" and every copy of a repeated sample"
                                                                    if out["multiset"] else ""))
        if out.get("label_note"):
            print(f"  {out['label_note']}")
        if stated != bound:
            print(f"  paper's formula as printed: {stated:.10g} (classes appearing once included; see --help)")
    return 0

"""`nctheory make-plan`: write a batching plan of a standard scheme (see nctheory.batching.schemes).

The output path is checked first (nctheory.validate.output_file: .json or .npz, a writable folder,
never a run folder's own file). The plan's size is estimated from the counts before anything is
drawn (nctheory.batching.plan_size); a plan beyond the entry or batch limits, or beyond --max-memory
(every command's option; default: the available memory), is refused with the estimate (exit 2). Views are written as the plan attribute "views" (no
duplicated indices), so --views costs nothing here.
"""

from __future__ import annotations

import json

import numpy as np

from nctheory.counts import counts_from_text
from nctheory.errors import InputError

NAME = "make-plan"
HELP = "generate a batching plan (full, fixed, reshuffle, class_balanced, weighted; drop_last, views, batch-binding)"


def add_arguments(p):
    from nctheory.batching.schemes import PLAN_SCHEMES

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", metavar="FILE", help="labels: .json list, .npy, .npz (array 'labels') or text")
    src.add_argument("--counts", metavar="N1,N2,...", help="class sizes: labels 0..k-1 in blocks")
    p.add_argument("--scheme", default="reshuffle", choices=list(PLAN_SCHEMES),
                   help="weighted: n draws with replacement, each class equally likely (a multiset plan)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="a non-negative integer (default 0)")
    p.add_argument("--drop-last", action="store_true")
    p.add_argument("--views", type=int, default=1, help="views per sample, a plan attribute (default 1)")
    p.add_argument("--m-per-class", type=int, default=2,
                   help="class_balanced: samples per class per batch (batch size must be a multiple)")
    p.add_argument("--bind", action="store_true", help="batch-binding (Kini Alg. 1)")
    p.add_argument("--out", "-o", required=True, metavar="PLAN", help="output file (.json or .npz)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def run(args) -> int:
    from nctheory.batching import make_plan, read_labels, save_plan
    from nctheory.batching.plan import MAX_INDEX_ENTRIES
    from nctheory.validate import output_file

    output_file(args.out, "--out", suffixes=(".json", ".npz"))  # checked before any work (run folders too)
    if args.labels:
        y = read_labels(args.labels)
    else:
        counts = counts_from_text(args.counts, min_count=1)
        n = int(np.sum(counts))
        if n > MAX_INDEX_ENTRIES:  # every epoch holds every sample at least once: refuse before allocating
            raise InputError(f"--counts sum to {n:.3g} samples: one epoch alone exceeds the plan limit of "
                             f"{MAX_INDEX_ENTRIES:.3g} batch entries")
        y = np.repeat(np.arange(len(counts)), counts)
    plan = make_plan(y, scheme=args.scheme, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                     bind=args.bind, drop_last=args.drop_last, views=args.views, m_per_class=args.m_per_class,
                     fmt="npz" if args.out.endswith(".npz") else "json")
    save_plan(plan, args.out)
    summ = {"out": args.out, **plan.summary(), "scheme": args.scheme}
    if args.json:
        print(json.dumps(summ, indent=1))
    else:
        extra = (f", {summ['views']} views" if summ["views"] != 1 else "") + (", multiset" if summ["multiset"] else "")
        print(f"wrote {args.out}: n = {summ['n']}, k = {summ['k']}, {summ['num_batches']} batches in "
              f"{summ['num_epochs']} epoch(s), batch sizes {summ['batch_size_min']}..{summ['batch_size_max']}{extra}")
    return 0

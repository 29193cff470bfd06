"""`nctheory make-plan`: write a batching plan of a standard scheme (see nctheory.batching.schemes)."""

from __future__ import annotations

import json

import numpy as np

from nctheory.counts import counts_from_text
from nctheory.errors import InputError

NAME = "make-plan"
HELP = "generate a batching plan (full, fixed, reshuffle, class_balanced; drop_last, views, batch-binding)"


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", metavar="FILE", help="labels: .json list, .npy, .npz (array 'labels') or text")
    src.add_argument("--counts", metavar="N1,N2,...", help="class sizes: labels 0..k-1 in blocks")
    p.add_argument("--scheme", default="reshuffle", choices=["full", "fixed", "reshuffle", "class_balanced"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drop-last", action="store_true")
    p.add_argument("--views", type=int, default=1, help="batch duplication: views per sample (default 1)")
    p.add_argument("--m-per-class", type=int, default=2, help="class_balanced: samples per class per batch")
    p.add_argument("--bind", action="store_true", help="batch-binding (Kini Alg. 1)")
    p.add_argument("--out", "-o", required=True, metavar="PLAN", help="output file (.json or .npz)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def run(args) -> int:
    from nctheory.batching import make_plan, read_labels, save_plan

    if args.labels:
        y = read_labels(args.labels)
    else:
        counts = counts_from_text(args.counts, min_count=1)
        y = np.repeat(np.arange(len(counts)), counts)
    if not (args.out.endswith(".json") or args.out.endswith(".npz")):
        raise InputError("--out must end in .json or .npz")
    plan = make_plan(y, scheme=args.scheme, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                     bind=args.bind, drop_last=args.drop_last, views=args.views, m_per_class=args.m_per_class)
    save_plan(plan, args.out)
    summ = {"out": args.out, **plan.summary(), "scheme": args.scheme}
    if args.json:
        print(json.dumps(summ, indent=1))
    else:
        print(f"wrote {args.out}: n = {summ['n']}, k = {summ['k']}, {summ['num_batches']} batches in "
              f"{summ['num_epochs']} epoch(s), batch sizes {summ['batch_size_min']}..{summ['batch_size_max']}")
    return 0

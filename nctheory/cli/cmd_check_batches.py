"""`nctheory check-batches PLAN`: is the OF the unique optimum geometry of UFM+ with mini-batch SCL?

The condition is derived exactly from Kini et al. Thm 2's equality conditions under the project's
no-positive convention (see :mod:`nctheory.batching.interaction`): alignment only within a class that
appears at least twice in a batch holding another class, orthogonality only between two samples of
different classes in a common batch where at least one of them has a positive. Plans with
``views`` are decided on their expansion; multiset plans (batches that repeat a sample, e.g. from a
sampler with replacement) with the copies' semantics (interaction.py, section 4): counts count copies.
Exit 0: unique; 1: not unique (a witness is reported); 2: bad input; 3: undecided (see the reason).
"""

from __future__ import annotations

import json

from nctheory.errors import SolverError

NAME = "check-batches"
HELP = "decide whether a batching plan makes the OF the unique SCL optimum (Kini Cor. 2.1, exact)"
DESCRIPTION = (
    "Read a plan (JSON {labels, batches|epochs} or npz {labels, indices, offsets[, epoch_offsets]}) and "
    "decide whether the orthogonal frame is the unique optimum geometry of UFM+ with mini-batch SCL. "
    "Reports per class its alignment components (witness samples), the class pairs never constrained "
    "to be orthogonal, a non-OF optimum when there is one, and a fix (binding examples to add). "
    "Plans may carry 'views' and be multisets ('multiset': true: batches repeat samples, each a copy). "
    "Exit 0 unique, 1 not unique, 2 bad input, 3 undecided."
)


def add_arguments(p):
    p.add_argument("plan", metavar="PLAN", help="plan file (.json or .npz)")
    p.add_argument("--dim", type=int, default=None, metavar="D",
                   help="embedding dimension d (>= k); default: the plan's 'dim' key, else unbounded")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-fix", action="store_true", help="do not compute the binding fix")


def run(args) -> int:
    # --max-memory (every command's, set by the dispatcher) bounds the check: beyond it, exit 2 with
    # what the plan needs (nctheory.validate.memory_limit)
    from nctheory.batching import check_plan, load_plan

    plan = load_plan(args.plan)
    dim = args.dim if args.dim is not None else plan.meta.get("dim")
    res = check_plan(plan, dim=dim, with_fix=not args.no_fix)
    note = plan.label_note()
    if args.json:
        out = res.to_json()
        if note:
            out["label_note"] = note
        print(json.dumps(out, indent=1))
    else:
        print(render(res, note))
    if res.unique is None:
        raise SolverError(res.reason)
    return 0 if res.unique else 1


def render(res, label_note: str | None = None) -> str:
    d = "unbounded" if res.dim is None else str(res.dim)
    st = res.stats
    n_text = (f"{res.n} samples" if st.get("views", 1) == 1
              else f"{st['samples']} samples x {st['views']} views = {res.n} feature rows")
    lines = [f"plan: n = {n_text}, k = {res.k} classes, {st['num_batches']} batches "
             f"({st['num_epochs']} epoch(s)), d = {d}"]
    if st.get("multiset"):
        lines.append(f"multiset: {st['repeated_entries']} batch entries repeat a sample of their batch "
                     f"(each a copy with the same feature; counts count copies)")
    if label_note:
        lines.append(label_note)
    if res.stats["unused_samples"]:
        lines.append(f"samples in no batch: {res.stats['unused_samples']}")
    lines.append("")
    lines.append(f"{'class':>8}  {'components':>10}  witness (component sizes: first samples)")
    items = list(res.class_super_nodes.items())
    if len(items) > 40:  # many classes: show the disconnected ones only
        n_conn = sum(1 for _, r in items if r == 1)
        lines.append(f"{'':>8}  {'':>10}  {n_conn} of {len(items)} classes connected; disconnected ones below")
        items = [(c, r) for c, r in items if r > 1][:30]
    for c, r in items:
        wit = ""
        if r > 1:
            comps = next(x for x in res.disconnected_classes if x["class"] == c)["components"]
            wit = "; ".join(f"{x['size']}: {x['examples']}" for x in comps[:4])
            if r > 4:
                wit += f"; ... ({r} in all)"
        lines.append(f"{c:>8}  {r:>10}  {'connected' if r == 1 else wit}")
    lines.append("")
    if res.num_missing_class_pairs:
        shown = ", ".join(f"({a},{b})" for a, b in res.missing_class_pairs[:20])
        more = "" if res.num_missing_class_pairs <= 20 else f" ... ({res.num_missing_class_pairs} in all)"
        lines.append(f"class pairs never constrained to be orthogonal: {shown}{more}")
    else:
        lines.append("every class pair is constrained to be orthogonal")
    pc = res.paper_conditions
    if pc["conditions_hold"] is None:
        lines.append(f"paper's Cor. 2.1 on the Def. 4 graph: not decided ({pc['not_counted']})")
    else:
        lines.append(f"paper's Cor. 2.1 on the Def. 4 graph: conditions {'hold' if pc['conditions_hold'] else 'fail'}")
    verdict = {True: "UNIQUE: the OF is the unique optimum geometry",
               False: "NOT UNIQUE: an optimum that is not an OF exists",
               None: "UNDECIDED"}[res.unique]
    lines.append("")
    lines.append(f"verdict: {verdict}")
    lines.append(f"reason:  {res.reason}")
    if res.witness:
        lines.append(f"witness: {res.witness['kind']}: {res.witness['description']} (d >= {res.witness['dim_needed']})")
    if res.fix and res.fix.get("scope") is None:
        lines.append(f"fix:     not attempted ({res.fix['skipped']})")
    elif res.fix:
        f = res.fix
        be = list(f["binding_examples"].items())
        shown = "{" + ", ".join(f"class {c}: sample {i}" for c, i in be[:10]) + (", ..." if len(be) > 10 else "") + "}"
        lines.append(f"fix:     add binding examples {shown} to every batch ({f['scope']}, "
                     f"{f['added_per_batch']} per batch)"
                     + (f" and put the {f['num_unused_samples']} unused samples in a batch" if f['num_unused_samples'] else "")
                     + f"; verified unique: {f['verified_unique']}")
    return "\n".join(lines)

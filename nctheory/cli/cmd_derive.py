"""`nctheory derive NAME`: print a symbolic derivation step by step, the derived result next to the
paper's statement, and whether they agree (exit 0 agree, 1 disagree)."""

from __future__ import annotations

import json

from nctheory.errors import InputError

NAME = "derive"
HELP = "run a sympy derivation (Kini bounds, Gill prototype limit, Koromilas/Gill equivalences) and compare with the paper"
DESCRIPTION = (
    "Print a derivation step by step (pretty text, or --latex), then the derived result next to the paper's "
    "statement and whether they agree. Exit 0 when they agree, 1 when they disagree (a finding: the "
    "conditions say exactly when), 2 for an unknown name. `nctheory derive --list` lists the names; "
    "NAME 'all' runs every derivation (exit 1 if any disagrees)."
)


def add_arguments(p):
    p.add_argument("name", nargs="?", metavar="NAME", help="derivation name (see --list), or 'all'")
    p.add_argument("--list", action="store_true", help="list the derivations and exit")
    p.add_argument("--latex", action="store_true", help="print the expressions as LaTeX")
    p.add_argument("--json", action="store_true", help="print the derivation(s) as JSON")


def _render(d, latex: bool) -> str:
    out = [f"== {d.name}: {d.title}", f"source: {d.source}", ""]
    for i, s in enumerate(d.steps, 1):
        body = s.latex() if latex else s.pretty()
        out.append(f"[{i}] {body}")
    import sympy as sp

    fmt = sp.latex if latex else (lambda e: sp.pretty(e, use_unicode=False, num_columns=140))
    out += ["", "derived:", "    " + fmt(d.derived).replace("\n", "\n    "),
            "paper states:", "    " + fmt(d.stated).replace("\n", "\n    "),
            f"agree: {'yes' if d.agree else 'NO'}"]
    if d.conditions:
        out.append(f"conditions: {d.conditions}")
    return "\n".join(out)


def run(args) -> int:
    from nctheory.symbolic.registry import all_derivations

    ders = all_derivations()
    if args.list:
        if args.json:
            print(json.dumps([{"name": k, "title": t} for k, (t, _) in ders.items()], indent=2))
        else:
            w = max(len(k) for k in ders)
            for k, (t, _) in ders.items():
                print(f"{k.ljust(w)}  {t}")
        return 0
    if not args.name:
        raise InputError("give a derivation NAME or --list")
    names = list(ders) if args.name == "all" else [args.name]
    for nm in names:
        if nm not in ders:
            raise InputError(f"unknown derivation {nm!r}; `nctheory derive --list` shows the names")
    results = [ders[nm][1]() for nm in names]
    if args.json:
        payload = [d.to_json() for d in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        print("\n\n".join(_render(d, args.latex) for d in results))
    return 0 if all(d.agree for d in results) else 1

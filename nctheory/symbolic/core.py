"""The record every symbolic derivation returns, and the registry `nctheory derive` reads.

A :class:`Derivation` is a list of :class:`Step` s (a sentence and, where there is one, the sympy
expression it produces), the derived result, the paper's statement as printed, whether the two agree
(decided by sympy: ``simplify(derived - stated) == 0`` under the stated hypotheses, or a sign
decision), and the exact conditions under which they differ. Derivations are built by functions
registered with :func:`derivation` (:mod:`nctheory.symbolic.registry` collects them all); they never read a closed form from the paper except as the
``stated`` side of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import sympy as sp


@dataclass
class Step:
    text: str
    expr: Any = None  # a sympy expression/relation, or None for a sentence-only step

    def pretty(self) -> str:
        if self.expr is None:
            return self.text
        return f"{self.text}\n    {sp.pretty(self.expr, use_unicode=False, num_columns=140).replace(chr(10), chr(10) + '    ')}"

    def latex(self) -> str:
        if self.expr is None:
            return self.text
        return f"{self.text}\n    $$ {sp.latex(self.expr)} $$"

    def to_json(self) -> dict:
        return {"text": self.text, "expr": None if self.expr is None else str(self.expr),
                "latex": None if self.expr is None else sp.latex(self.expr)}


@dataclass
class Derivation:
    name: str
    title: str
    source: str
    steps: list[Step]
    derived: Any
    stated: Any
    agree: bool
    conditions: str = ""
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        from nctheory._json import jsonable

        return {"name": self.name, "title": self.title, "source": self.source,
                "steps": [s.to_json() for s in self.steps],
                "derived": str(self.derived), "derived_latex": sp.latex(self.derived) if self.derived is not None else None,
                "stated": str(self.stated), "stated_latex": sp.latex(self.stated) if self.stated is not None else None,
                "agree": bool(self.agree), "conditions": self.conditions, "details": jsonable(self.details)}


_DERIVATIONS: dict[str, tuple[str, Callable[[], Derivation]]] = {}


def derivation(name: str, title: str):
    """Register ``fn() -> Derivation`` under ``name`` (shown by ``nctheory derive --list``)."""

    def deco(fn):
        _DERIVATIONS[name] = (title, fn)
        return fn

    return deco


def registered() -> dict[str, tuple[str, Callable[[], Derivation]]]:
    """The derivations registered so far, by name (:func:`nctheory.symbolic.registry.all_derivations`
    imports every derivation module first)."""
    return dict(sorted(_DERIVATIONS.items()))


def is_zero(expr) -> bool:
    """True when sympy proves expr == 0 (simplify; then, as a second attempt, expand_log with force=True,
    which splits log(x y) = log x + log y without checking signs: valid here because every log argument
    in these derivations is a sum of positive terms (counts >= 1 times exponentials) under the hypotheses)."""
    e = sp.simplify(expr)
    if e == 0:
        return True
    e = sp.simplify(sp.expand_log(sp.expand(e), force=True))
    return e == 0

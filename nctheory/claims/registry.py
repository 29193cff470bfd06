"""The claims registry: every checked statement of a paper is registered here exactly once.

A claim is a paper's statement (id, source, hypotheses exactly as stated, statement) plus one check
function that returns a :class:`Verdict` with evidence. The check is the executable theorem; the
tests in ``proofs/`` call it through :func:`assert_claim`, and ``nctheory verify`` calls it directly.

Verdicts
--------
``confirmed``
    the statement holds as stated, under its stated hypotheses, checked the strongest way that
    works (symbolic identity, certified optimum, counterexample search). Where the check also
    probed outside the hypotheses, what it found is in ``details`` (a hypothesis that is needed is
    not a defect of the statement).
``confirmed-under-hypotheses``
    holds under the stated hypotheses, but the statement is used beyond them (by the paper itself,
    or in the practice it addresses) where it fails: the smallest counterexample outside the
    hypotheses is in ``counterexample`` and the corrected statement in ``corrected_statement``.
``refuted``
    a counterexample *inside* the stated hypotheses (recorded the same way).
``unchecked``
    registered but no check could decide it (the evidence says why).

Each claim also records ``expected``: the verdict the project established and committed to. A check
whose verdict differs from ``expected`` fails its proofs/ test and makes ``nctheory verify`` exit 1,
so a change of verdict is never silent; changing ``expected`` is a reviewed, committed decision.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from nctheory._json import jsonable  # noqa: F401  (re-exported: claim modules use it)

VERDICTS = ("confirmed", "confirmed-under-hypotheses", "refuted", "unchecked")


@dataclass
class Verdict:
    """The outcome of one check: a verdict and the evidence for it."""

    verdict: str
    evidence: str
    details: dict[str, Any] = field(default_factory=dict)
    counterexample: dict[str, Any] | None = None
    corrected_statement: str | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; expected one of {VERDICTS}")
        if self.verdict in ("confirmed-under-hypotheses", "refuted") and self.counterexample is None:
            raise ValueError(f"verdict {self.verdict!r} needs a counterexample")


@dataclass(frozen=True)
class Budget:
    """How hard a check may work. ``examples`` bounds each hypothesis search; ``level`` lets a check
    choose grid sizes ("quick" for smoke runs, "standard" for verify and CI, "full" for long runs)."""

    level: str = "standard"
    examples: int = 200
    seed: int = 0

    @staticmethod
    def named(level: str) -> "Budget":
        sizes = {"quick": 40, "standard": 200, "full": 2000}
        if level not in sizes:
            raise ValueError(f"unknown budget {level!r}; expected one of {sorted(sizes)}")
        return Budget(level=level, examples=sizes[level])


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    hypotheses: tuple[str, ...]
    statement: str
    expected: str
    tests: tuple[str, ...]
    check: Callable[[Budget], Verdict]
    module: str


_REGISTRY: dict[str, Claim] = {}


def claim(
    id: str,
    *,
    source: str,
    hypotheses: list[str] | tuple[str, ...],
    statement: str,
    expected: str,
    tests: list[str] | tuple[str, ...] | None = None,
):
    """Register ``fn(budget) -> Verdict`` as the check of claim ``id``.

    ``tests`` defaults to the proofs/ test named after the claim: ``proofs/test_<paper>.py`` is not
    assumed; the default is the test function ``test_<id with dots and dashes as underscores>``
    found anywhere under proofs/.
    """
    if expected not in VERDICTS:
        raise ValueError(f"claim {id}: unknown expected verdict {expected!r}")

    def deco(fn: Callable[[Budget], Verdict]):
        if id in _REGISTRY and _REGISTRY[id].check.__qualname__ != fn.__qualname__:
            raise ValueError(f"claim {id} registered twice ({_REGISTRY[id].module} and {fn.__module__})")
        _REGISTRY[id] = Claim(
            id=id,
            source=source,
            hypotheses=tuple(hypotheses),
            statement=statement,
            expected=expected,
            tests=tuple(tests) if tests else (f"proofs/::{test_name(id)}",),
            check=fn,
            module=fn.__module__,
        )
        return fn

    return deco


def test_name(claim_id: str) -> str:
    return "test_" + claim_id.replace(".", "_").replace("-", "_")


def load_all() -> dict[str, Claim]:
    """Import every module of nctheory.claims (each registers its claims) and return the registry."""
    import nctheory.claims as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"nctheory.claims.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def get(claim_id: str) -> Claim:
    claims = load_all()
    if claim_id not in claims:
        from nctheory.errors import InputError

        raise InputError(f"unknown claim {claim_id!r}; `nctheory verify --list` shows the registered ids")
    return claims[claim_id]


@dataclass
class Result:
    claim: Claim
    verdict: Verdict | None
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the check ran and its verdict is the committed one."""
        return self.error is None and self.verdict is not None and self.verdict.verdict == self.claim.expected

    def to_json(self) -> dict[str, Any]:
        c, v = self.claim, self.verdict
        out = {
            "id": c.id,
            "source": c.source,
            "hypotheses": list(c.hypotheses),
            "statement": c.statement,
            "verdict": v.verdict if v else "unchecked",
            "expected": c.expected,
            "matches_expected": self.ok,
            "evidence": v.evidence if v else f"check raised an error: {self.error}",
            "details": jsonable(v.details) if v else {},
            "counterexample": jsonable(v.counterexample) if v else None,
            "corrected_statement": v.corrected_statement if v else None,
            "tests": list(c.tests),
            "seconds": round(self.seconds, 3),
        }
        if self.error:
            out["error"] = self.error
        return out


def run_claim(claim_or_id: Claim | str, budget: Budget | None = None) -> Result:
    c = get(claim_or_id) if isinstance(claim_or_id, str) else claim_or_id
    budget = budget or Budget()
    t0 = time.perf_counter()
    try:
        v = c.check(budget)
        if not isinstance(v, Verdict):
            raise TypeError(f"check of {c.id} returned {type(v).__name__}, not Verdict")
        return Result(c, v, time.perf_counter() - t0)
    except Exception as exc:  # a crashing check is reported, never hidden
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return Result(c, None, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc} [{tb}]")


def assert_claim(claim_id: str, budget: Budget | None = None) -> Verdict:
    """The body of every proofs/ test: run the check and require the committed verdict."""
    r = run_claim(claim_id, budget)
    if r.error:
        raise AssertionError(f"{claim_id}: check raised {r.error}")
    assert r.verdict is not None
    assert r.verdict.verdict == r.claim.expected, (
        f"{claim_id}: verdict changed from {r.claim.expected!r} to {r.verdict.verdict!r}\n"
        f"evidence: {r.verdict.evidence}\ncounterexample: {r.verdict.counterexample}"
    )
    return r.verdict

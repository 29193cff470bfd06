"""The claims registry: every checked statement of a paper is declared here exactly once.

A claim is a paper's statement: an id, its source (paper, section, equation: :class:`Source`), the
hypotheses exactly as stated and the statement. Any number of *checks* attach evidence to it, each of
one kind (:data:`CHECK_KINDS`): ``symbolic`` (a sympy identity or derivation), ``certified`` (an optimum
with a rigorous certificate, or an exhaustive enumeration), ``exact`` (an exact computation at given
points: autograd, operation counts), ``search`` (a counterexample search with shrinking, random or
first-order), ``empirical`` (recorded training runs or benchmarks). Each check returns a :class:`Verdict`;
the claim's verdict combines them by the rule below. ``nctheory verify`` runs every claim, and
``proofs/test_claims.py`` is one test per claim id, generated from this registry.

The verdict rule (the same for every claim)
-------------------------------------------
Inside / outside. A claim's *hypotheses* are those the paper states for the statement, plus the
paper's standing assumptions (say Kini et al.'s n_c, n_{B,c} >= 2 of §2). Where the statement sets its
own literal example (a plan, a configuration), that setting is inside by definition, even where it
breaks a standing assumption, and is judged as printed: nothing the paper does elsewhere (batch
duplication, say) is read into it, so every claim of the same shape gets the same reading (other
readings may be reported, never used to decide). Whatever lies beyond the hypotheses is *outside*.

``confirmed``
    the statement holds inside its hypotheses, checked the strongest way that works. A check may also
    have found that it fails outside them; that shows a hypothesis is needed, is recorded (as
    ``counterexample`` when re-evaluable, else in ``details``) and is no defect of the statement.
``confirmed-under-hypotheses``
    it holds inside, fails outside, *and* the statement is used outside: the paper itself, or a named
    practice it addresses, applies it beyond its hypotheses. The verdict must cite that place
    (``used_beyond``: a paper section, or the practice by name); without such a citation the verdict
    is ``confirmed``. The smallest counterexample outside and a corrected statement are recorded.
``refuted``
    a counterexample inside the hypotheses (the literal setting included), recorded the same way.
``unchecked``
    no check could decide it: the statement is not well defined as printed, or the evidence at hand
    (for an empirical claim, the scale of the recorded runs) cannot decide it. The evidence says which.

Empirical claims (kind ``empirical``) are judged from the recorded runs by a criterion stated in the
evidence: ``confirmed`` when the runs show what the paper reports, at the recorded scale (which the
evidence states); ``unchecked`` when they do not show it at that scale, since a run smaller than the
paper's is no counterexample to a claim about the paper's scale; ``refuted`` only from a run at the
paper's scale.

Combining checks. A claim's verdict is the strongest finding of its checks: ``refuted`` if any check
refutes it, else ``confirmed-under-hypotheses`` if any check gives that, else ``confirmed`` if any
check confirms it, else ``unchecked``. The decisive check supplies the counterexample, the corrected
statement and ``used_beyond``; every check's verdict and evidence are reported.

Counterexamples are re-evaluated. A check whose verdict records a counterexample declares a
:class:`Witness`: a function that recomputes, from the recorded counterexample alone (after a JSON
round trip, i.e. exactly as the report prints it), how far the statement is violated there, and a
tolerance above rounding with its reason. :func:`run_claim` refuses (reports an error for) a
counterexample that does not re-evaluate to a violation larger than its tolerance, so a floating-point
tie is never recorded as a disagreement.

Each claim and each check records ``expected``: the verdict the project established and committed to
(a check's defaults to its claim's). A verdict that differs from it fails the claim's proofs/ test and
makes ``nctheory verify`` exit 1, so a change of verdict is never silent; changing ``expected`` is a
reviewed, committed decision.

Registering: ``@claim(id, source=cite(...), hypotheses=[...], statement=..., expected=...)`` on a function
``check(budget) -> Verdict`` declares the claim with that function as its first check; ``declare(...)``
declares a claim without a check; ``@check(id, kind=...)`` attaches another check (from any module of
this package; it is resolved when :func:`load_all` has imported them all).
"""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nctheory._json import jsonable  # noqa: F401  (re-exported: claim modules use it)

VERDICTS = ("confirmed", "confirmed-under-hypotheses", "refuted", "unchecked")
CHECK_KINDS = ("symbolic", "certified", "exact", "search", "empirical")
# strongest finding first: the order in which the combination rule picks the claim's verdict
_FINDING_ORDER = ("refuted", "confirmed-under-hypotheses", "confirmed", "unchecked")
# modules of this package that register no claims
_NOT_CLAIM_MODULES = {"registry", "search"}


# ---------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Paper:
    key: str
    authors: str
    title: str
    year: int
    where_published: str

    def __str__(self) -> str:
        first = self.authors.split(",")[0].split()[-1]
        return f"{first} et al. {self.year}"


PAPERS = {p.key: p for p in (
    Paper("kini2023", "Ganesh Ramachandra Kini, Vala Vakilian, Tina Behnia, Jaidev Gill, Christos Thrampoulidis",
          "Symmetric Neural-Collapse Representations with Supervised Contrastive Loss: The Impact of ReLU and "
          "Batching", 2023, "preprint, 20 October 2023"),
    Paper("gill2023", "Jaidev Gill, Vala Vakilian, Christos Thrampoulidis",
          "Engineering the Neural Collapse Geometry of Supervised-Contrastive Loss", 2023, "preprint, 3 October 2023"),
    Paper("koromilas2026", "Panagiotis Koromilas, Theodoros Giannakopoulos, Mihalis A. Nicolaou, Yannis Panagakis",
          "Neural Collapse by Design: Learning Class Prototypes on the Hypersphere", 2026, "arXiv 2605.20302"),
    Paper("graf2021", "Florian Graf, Christoph Hofer, Marc Niethammer, Roland Kwitt",
          "Dissecting Supervised Contrastive Learning", 2021, "ICML 2021"),
)}


@dataclass(frozen=True)
class Source:
    """Where a statement is printed: the paper (a key of :data:`PAPERS`), its section and statement
    ("§4.2, Theorem 2"), and its equation ("Eq. (5)"; empty when it has none). ``note`` says anything
    the reader needs about how the statement was read (e.g. a plan reconstructed from the text)."""

    paper: str
    where: str
    equation: str = ""
    note: str = ""

    def __post_init__(self):
        if self.paper not in PAPERS:
            raise ValueError(f"unknown paper {self.paper!r}; known: {sorted(PAPERS)}")
        if not self.where:
            raise ValueError("a source needs its section / statement")

    def __str__(self) -> str:
        parts = [str(PAPERS[self.paper]), self.where] + ([self.equation] if self.equation else [])
        return ", ".join(parts) + (f" [{self.note}]" if self.note else "")

    def to_json(self) -> dict:
        p = PAPERS[self.paper]
        return {"paper": p.key, "authors": p.authors, "title": p.title, "year": p.year,
                "published": p.where_published, "where": self.where, "equation": self.equation, "note": self.note}


def cite(paper: str, where: str, equation: str = "", note: str = "") -> Source:
    return Source(paper, where, equation, note)


# ---------------------------------------------------------------------------------------------- verdicts
@dataclass
class Verdict:
    """The outcome of one check: a verdict and the evidence for it. ``used_beyond`` (required for
    ``confirmed-under-hypotheses``) cites where the statement is used outside its hypotheses."""

    verdict: str
    evidence: str
    details: dict[str, Any] = field(default_factory=dict)
    counterexample: dict[str, Any] | None = None
    corrected_statement: str | None = None
    used_beyond: str | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; expected one of {VERDICTS}")
        if self.verdict in ("confirmed-under-hypotheses", "refuted") and self.counterexample is None:
            raise ValueError(f"verdict {self.verdict!r} needs a counterexample")
        if self.verdict == "confirmed-under-hypotheses" and not self.used_beyond:
            raise ValueError("verdict 'confirmed-under-hypotheses' needs used_beyond: the paper section or named "
                             "practice where the statement is used beyond its hypotheses (else it is 'confirmed')")


@dataclass(frozen=True)
class Witness:
    """How a recorded counterexample is re-evaluated: ``violation(counterexample) -> float`` recomputes,
    from the counterexample as recorded (JSON), by how much the statement fails there; it must exceed
    ``tolerance`` (a bound on rounding and solver error, explained by ``reason``)."""

    violation: Callable[[dict], float]
    tolerance: float
    reason: str

    def __post_init__(self):
        if not (self.tolerance >= 0 and math.isfinite(self.tolerance)):
            raise ValueError(f"a witness tolerance must be finite and >= 0, got {self.tolerance}")
        if not self.reason:
            raise ValueError("a witness tolerance needs its reason")


def reevaluate(witness: Witness, counterexample: dict) -> float:
    """The violation of the statement at ``counterexample`` as recorded: after a JSON round trip."""
    data = json.loads(json.dumps(jsonable(counterexample)))
    v = float(witness.violation(data))
    if not math.isfinite(v):
        raise ValueError(f"the witness returned a non-finite violation {v}")
    return v


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


# ---------------------------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Check:
    """One check attached to a claim: ``fn(budget) -> Verdict`` of a kind, the verdict committed for it,
    and the witness that re-evaluates its counterexample (needed whenever it records one)."""

    claim_id: str
    name: str
    kind: str
    fn: Callable[[Budget], Verdict]
    module: str
    expected: str | None = None
    witness: Witness | None = None


@dataclass(frozen=True)
class Claim:
    id: str
    source: Source | str
    hypotheses: tuple[str, ...]
    statement: str
    expected: str
    module: str
    checks: tuple[Check, ...] = ()
    derivations: tuple[str, ...] = ()

    @property
    def tests(self) -> tuple[str, ...]:
        return (f"proofs/test_claims.py::test_claim[{self.id}]",)

    def expected_of(self, chk: Check) -> str:
        return chk.expected or self.expected


_REGISTRY: dict[str, Claim] = {}
_PENDING: list[Check] = []   # checks attached to claims declared in a module not imported yet


def _caller_module(depth: int = 2) -> str:
    return sys._getframe(depth).f_globals.get("__name__", "?")


def _check_verdict_name(v, what):
    if v is not None and v not in VERDICTS:
        raise ValueError(f"{what}: unknown expected verdict {v!r}")


def declare(id: str, *, source: Source | str, hypotheses, statement: str, expected: str,
            derivations=(), module: str | None = None) -> Claim:
    """Declare claim ``id`` (checks attach with :func:`check`). Declaring the same id twice with a
    different statement is an error."""
    _check_verdict_name(expected, f"claim {id}")
    if expected is None:
        raise ValueError(f"claim {id}: expected verdict missing")
    module = module or _caller_module()
    new = Claim(id=id, source=source, hypotheses=tuple(hypotheses), statement=statement, expected=expected,
                module=module, derivations=tuple(derivations))
    old = _REGISTRY.get(id)
    if old is not None:
        if (old.module, old.statement) != (new.module, new.statement):
            raise ValueError(f"claim {id} declared twice ({old.module} and {module})")
        return old
    _REGISTRY[id] = new
    _attach_pending()
    return new


def _attach(chk: Check) -> None:
    c = _REGISTRY[chk.claim_id]
    kept = tuple(x for x in c.checks if (x.module, x.name) != (chk.module, chk.name))
    order = {k: i for i, k in enumerate(CHECK_KINDS)}
    checks = tuple(sorted(kept + (chk,), key=lambda x: (order[x.kind], x.module, x.name)))
    _REGISTRY[chk.claim_id] = Claim(**{**c.__dict__, "checks": checks})


def _attach_pending() -> None:
    for chk in [p for p in _PENDING if p.claim_id in _REGISTRY]:
        _PENDING.remove(chk)
        _attach(chk)


def check(claim_id: str, *, kind: str, expected: str | None = None, witness: Witness | None = None):
    """Attach ``fn(budget) -> Verdict`` as a check of kind ``kind`` to claim ``claim_id``."""
    if kind not in CHECK_KINDS:
        raise ValueError(f"check of {claim_id}: unknown kind {kind!r}; expected one of {CHECK_KINDS}")
    _check_verdict_name(expected, f"check of {claim_id}")

    def deco(fn: Callable[[Budget], Verdict]):
        chk = Check(claim_id=claim_id, name=fn.__qualname__, kind=kind, fn=fn, module=fn.__module__,
                    expected=expected, witness=witness)
        if claim_id in _REGISTRY:
            _attach(chk)
        else:
            _PENDING.append(chk)
        return fn

    return deco


def claim(id: str, *, source: Source | str, hypotheses, statement: str, expected: str, kind: str = "search",
          derivations=(), witness: Witness | None = None, check_expected: str | None = None):
    """Declare claim ``id`` and register the decorated ``fn(budget) -> Verdict`` as its first check."""

    def deco(fn: Callable[[Budget], Verdict]):
        declare(id, source=source, hypotheses=hypotheses, statement=statement, expected=expected,
                derivations=derivations, module=fn.__module__)
        return check(id, kind=kind, expected=check_expected, witness=witness)(fn)

    return deco


def test_name(claim_id: str) -> str:
    """The proofs/ test of a claim: ``test_claim[<id>]`` in proofs/test_claims.py (parametrised by id)."""
    return f"test_claim[{claim_id}]"


def claim_modules() -> list[str]:
    """The modules of this package that register claims (every module but the registry and helpers)."""
    here = Path(__file__).resolve().parent
    pkg = __name__.rpartition(".")[0]
    return [f"{pkg}.{m.name}" for m in pkgutil.iter_modules([str(here)])
            if m.name not in _NOT_CLAIM_MODULES and not m.name.startswith("_")]


def load_all() -> dict[str, Claim]:
    """Import every claim module of this package (each declares its claims and attaches its checks)
    and return the registry. A check attached to a claim nobody declared is an error."""
    for name in claim_modules():
        importlib.import_module(name)
    _attach_pending()
    if _PENDING:
        raise ValueError(f"checks attached to undeclared claims: {sorted({p.claim_id for p in _PENDING})}")
    return dict(sorted(_REGISTRY.items()))


def get(claim_id: str) -> Claim:
    claims = load_all()
    if claim_id not in claims:
        from nctheory.errors import InputError

        raise InputError(f"unknown claim {claim_id!r}; `nctheory verify --list` shows the registered ids")
    return claims[claim_id]


# ---------------------------------------------------------------------------------------------- running
@dataclass
class CheckResult:
    check: Check
    expected: str
    verdict: Verdict | None
    seconds: float
    error: str | None = None
    violation: float | None = None   # the re-evaluated violation at the recorded counterexample

    @property
    def ok(self) -> bool:
        return self.error is None and self.verdict is not None and self.verdict.verdict == self.expected

    def to_json(self) -> dict[str, Any]:
        v, w = self.verdict, self.check.witness
        out = {"name": self.check.name, "kind": self.check.kind, "module": self.check.module,
               "verdict": v.verdict if v else "unchecked", "expected": self.expected, "matches_expected": self.ok,
               "evidence": v.evidence if v else f"check raised an error: {self.error}",
               "counterexample": jsonable(v.counterexample) if v else None,
               "violation": self.violation, "tolerance": w.tolerance if w and self.violation is not None else None,
               "tolerance_reason": w.reason if w and self.violation is not None else None,
               "seconds": round(self.seconds, 3)}
        if self.error:
            out["error"] = self.error
        return out


def _run_check(c: Claim, chk: Check, budget: Budget) -> CheckResult:
    t0 = time.perf_counter()
    exp = c.expected_of(chk)
    try:
        v = chk.fn(budget)
        if not isinstance(v, Verdict):
            raise TypeError(f"check {chk.name} of {c.id} returned {type(v).__name__}, not Verdict")
    except Exception as exc:  # a crashing check is reported, never hidden
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return CheckResult(chk, exp, None, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc} [{tb}]")
    res = CheckResult(chk, exp, v, time.perf_counter() - t0)
    if v.counterexample is not None:
        if chk.witness is None:
            res.error = (f"check {chk.name} records a counterexample but declares no witness to re-evaluate it")
            return res
        try:
            res.violation = reevaluate(chk.witness, v.counterexample)
        except Exception as exc:
            res.error = f"re-evaluating the counterexample of {chk.name} failed: {type(exc).__name__}: {exc}"
            return res
        if not res.violation > chk.witness.tolerance:
            res.error = (f"the counterexample of {chk.name} re-evaluates to a violation {res.violation:.3g}, not above "
                         f"its tolerance {chk.witness.tolerance:g} ({chk.witness.reason})")
    res.seconds = time.perf_counter() - t0
    return res


def combine(results: list[CheckResult]) -> Verdict | None:
    """The claim's verdict from its checks' verdicts (module docstring: the strongest finding)."""
    done = [r for r in results if r.verdict is not None]
    if not done:
        return None
    top = min(done, key=lambda r: _FINDING_ORDER.index(r.verdict.verdict))
    if len(done) == 1:
        return top.verdict
    ev = " ".join(f"[{r.check.kind} check {r.check.name}: {r.verdict.verdict}] {r.verdict.evidence}" for r in done)
    cex = top.verdict.counterexample
    if cex is None:
        cex = next((r.verdict.counterexample for r in done if r.verdict.counterexample is not None), None)
    corr = top.verdict.corrected_statement or next(
        (r.verdict.corrected_statement for r in done if r.verdict.corrected_statement), None)
    return Verdict(top.verdict.verdict, ev, details={r.check.name: r.verdict.details for r in done},
                   counterexample=cex, corrected_statement=corr, used_beyond=top.verdict.used_beyond)


@dataclass
class Result:
    claim: Claim
    verdict: Verdict | None
    seconds: float
    error: str | None = None
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check ran, gave its committed verdict, and the claim's verdict is the committed one."""
        return (self.error is None and self.verdict is not None and self.verdict.verdict == self.claim.expected
                and all(r.ok for r in self.checks))

    def to_json(self) -> dict[str, Any]:
        c, v = self.claim, self.verdict
        src = c.source
        out = {
            "id": c.id,
            "source": str(src),
            "citation": src.to_json() if isinstance(src, Source) else None,
            "hypotheses": list(c.hypotheses),
            "statement": c.statement,
            "verdict": v.verdict if v else "unchecked",
            "expected": c.expected,
            "matches_expected": self.ok,
            "evidence": v.evidence if v else f"check raised an error: {self.error}",
            "details": jsonable(v.details) if v else {},
            "counterexample": jsonable(v.counterexample) if v else None,
            "corrected_statement": v.corrected_statement if v else None,
            "used_beyond": v.used_beyond if v else None,
            "checks": [r.to_json() for r in self.checks],
            "derivations": list(c.derivations),
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
    if not c.checks:
        return Result(c, None, 0.0, error=f"claim {c.id} has no check attached")
    results = [_run_check(c, chk, budget) for chk in c.checks]
    errors = [f"{r.check.name}: {r.error}" for r in results if r.error]
    return Result(c, combine(results), time.perf_counter() - t0, error="; ".join(errors) or None, checks=results)


def assert_claim(claim_id: str, budget: Budget | None = None) -> Result:
    """The body of every proofs/ test: run the checks and require the committed verdicts."""
    r = run_claim(claim_id, budget)
    if r.error:
        raise AssertionError(f"{claim_id}: {r.error}")
    assert r.verdict is not None
    assert r.verdict.verdict == r.claim.expected, (
        f"{claim_id}: verdict changed from {r.claim.expected!r} to {r.verdict.verdict!r}\n"
        f"evidence: {r.verdict.evidence}\ncounterexample: {r.verdict.counterexample}")
    for cr in r.checks:
        assert cr.ok, (f"{claim_id}: check {cr.check.name} ({cr.check.kind}) changed from {cr.expected!r} to "
                       f"{cr.verdict.verdict!r}\nevidence: {cr.verdict.evidence}")
    return r

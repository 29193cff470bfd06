"""The claims registry: declared claims, attached checks, the combination rule, re-evaluated counterexamples."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from nctheory.claims import registry
from nctheory.claims.registry import (CHECK_KINDS, PAPERS, Source, Verdict, Witness, check, cite, declare, run_claim)

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_claims():
    """Claims registered for one test only (the real ones are imported first, then restored)."""
    registry.load_all()
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    registry._PENDING.clear()


def _declare(cid, expected):
    return declare(cid, source=cite("kini2023", "§4.1, Theorem 1", "Eq. (3)"), hypotheses=["h"], statement="st",
                   expected=expected)


_W = Witness(lambda cex: float(cex["gap"]), 1e-9, "a float64 difference of O(1) numbers")


def _attach(cid, name, verdict, expected=None, cex=None, witness=_W, kind="search", used_beyond=None):
    def fn(budget):
        return Verdict(verdict, f"{name} says {verdict}", counterexample=cex, used_beyond=used_beyond)

    fn.__qualname__ = name
    check(cid, kind=kind, expected=expected, witness=witness)(fn)


def test_every_claim_is_declared_once_with_a_source_and_checks():
    try:  # the derivation registry: nctheory.symbolic.registry since issue 11, re-exported by the package before
        from nctheory.symbolic.registry import all_derivations
    except ImportError:
        from nctheory.symbolic import all_derivations

    claims = registry.load_all()
    assert "kini2023.thm1" in claims and "kini2023.thm1_certified" not in claims  # merged: one statement
    derivations = set(all_derivations())
    attached = []
    for cid, c in claims.items():
        assert isinstance(c.source, Source) and c.source.paper in PAPERS and c.source.where, cid
        assert c.statement and c.hypotheses and c.expected in registry.VERDICTS, cid
        assert c.checks, f"claim {cid} has no check"
        for k in c.checks:
            assert k.kind in CHECK_KINDS and k.claim_id == cid and k.module.startswith("nctheory.claims."), (cid, k)
        assert len({k.name for k in c.checks}) == len(c.checks), cid
        assert set(c.derivations) <= derivations, (cid, c.derivations)
        attached += list(c.derivations)
    # every sympy derivation supports exactly one claim (the one it derives)
    assert sorted(attached) == sorted(derivations)


def test_proofs_are_generated_from_the_registry():
    proofs = sorted(p.name for p in (ROOT / "proofs").glob("test_*.py"))
    assert proofs == ["test_claims.py"]
    text = (ROOT / "proofs" / "test_claims.py").read_text()
    assert "CLAIM_IDS = list(load_all())" in text and "kini2023" not in text  # no claim is named there


def test_the_registry_does_not_import_the_claims_package():
    tree = ast.parse((ROOT / "nctheory" / "claims" / "registry.py").read_text())
    names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
            [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in names if m and m.startswith("nctheory.claims")], names


@pytest.mark.parametrize("verdicts, combined", [
    (["confirmed", "refuted"], "refuted"),
    (["confirmed", "confirmed-under-hypotheses"], "confirmed-under-hypotheses"),
    (["confirmed-under-hypotheses", "refuted"], "refuted"),
    (["confirmed", "unchecked"], "confirmed"),
    (["unchecked", "unchecked"], "unchecked"),
])
def test_the_claim_verdict_is_the_strongest_finding_of_its_checks(fake_claims, verdicts, combined):
    _declare("test.combine", combined)
    for i, v in enumerate(verdicts):
        needs = v in ("refuted", "confirmed-under-hypotheses")
        _attach("test.combine", f"check_{i}", v, expected=v, cex={"gap": 1.0} if needs else None,
                used_beyond="a named practice" if v == "confirmed-under-hypotheses" else None)
    r = run_claim("test.combine")
    assert r.error is None and r.ok, r.error
    assert r.verdict.verdict == combined
    assert [c.verdict.verdict for c in r.checks] == verdicts
    if combined in ("refuted", "confirmed-under-hypotheses"):
        assert r.verdict.counterexample == {"gap": 1.0}


def test_a_check_that_changes_its_own_verdict_fails_the_claim(fake_claims):
    _declare("test.percheck", "confirmed")
    _attach("test.percheck", "check_a", "confirmed")
    _attach("test.percheck", "check_b", "unchecked", expected="confirmed")  # committed confirmed, now unchecked
    r = run_claim("test.percheck")
    assert r.verdict.verdict == "confirmed" and not r.ok
    with pytest.raises(AssertionError, match="check_b"):
        registry.assert_claim("test.percheck")


def test_a_check_attached_before_its_claim_is_declared_is_resolved(fake_claims):
    _attach("test.later", "check_early", "confirmed")
    assert "test.later" not in registry._REGISTRY
    _declare("test.later", "confirmed")
    assert [k.name for k in registry._REGISTRY["test.later"].checks] == ["check_early"]
    assert run_claim("test.later").ok


def test_checks_are_ordered_strongest_kind_first(fake_claims):
    _declare("test.order", "confirmed")
    for kind in ("empirical", "search", "symbolic", "certified"):
        _attach("test.order", f"check_{kind}", "confirmed", kind=kind)
    assert [k.kind for k in registry._REGISTRY["test.order"].checks] == ["symbolic", "certified", "search", "empirical"]


def test_a_counterexample_must_re_evaluate_above_its_tolerance(fake_claims):
    _declare("test.tie", "refuted")
    _attach("test.tie", "check_tie", "refuted", cex={"gap": 1e-16})  # a floating-point tie
    r = run_claim("test.tie")
    assert not r.ok and "not above its tolerance" in r.error
    _declare("test.nowitness", "refuted")
    _attach("test.nowitness", "check_x", "refuted", cex={"gap": 1.0}, witness=None)
    r = run_claim("test.nowitness")
    assert not r.ok and "declares no witness" in r.error
    _declare("test.good", "refuted")
    _attach("test.good", "check_good", "refuted", cex={"gap": 0.3})
    r = run_claim("test.good")
    assert r.ok and r.checks[0].violation == 0.3


def test_the_counterexample_is_re_evaluated_as_recorded(fake_claims):
    """The witness sees the counterexample after a JSON round trip: numpy values become plain lists and floats."""
    import numpy as np

    seen = {}

    def violation(cex):
        seen.update(cex)
        return float(np.sum(cex["v"]))

    _declare("test.json", "refuted")
    _attach("test.json", "check_json", "refuted", cex={"v": np.array([0.5, 0.25])},
            witness=Witness(violation, 0.1, "sums of two floats"))
    assert run_claim("test.json").ok and seen == {"v": [0.5, 0.25]}


def test_confirmed_under_hypotheses_needs_a_cited_use_beyond_the_hypotheses():
    with pytest.raises(ValueError, match="used_beyond"):
        Verdict("confirmed-under-hypotheses", "holds inside, fails outside", counterexample={"x": 1})
    v = Verdict("confirmed-under-hypotheses", "e", counterexample={"x": 1}, used_beyond="Kini et al. App. E.6")
    assert v.used_beyond


def test_sources_cite_papers_inside_the_repository():
    """A claim's texts cite the paper itself (section, equation); no review-trail tags, no paths outside the
    repository, in the claims or in the docs this registry's verdicts are written into."""
    bad = re.compile(r"FLAG-\d|\.\./shared|shared/papers|-spec\.md|relu-batching\.md|prototypes\.md|nc-by-design"
                     r"|/work/")
    for c in registry.load_all().values():
        for text in (str(c.source), c.statement, *c.hypotheses):
            assert not bad.search(text), (c.id, text)
    # the package, the proofs, the tests (this one names the patterns), the experiments and the docs
    files = [*(ROOT / "nctheory").rglob("*.py"), *(ROOT / "proofs").rglob("*.py"),
             *(p for p in (ROOT / "tests").glob("*.py") if p.name != pathlib.Path(__file__).name),
             *(ROOT / "experiments").rglob("*.md"), *(ROOT / "experiments").rglob("*.json"),
             *(ROOT / "experiments").rglob("*.py"), ROOT / "README.md", ROOT / "DEVELOPERS.md",
             *(ROOT / "benchmarks").glob("*.md")]
    for f in files:
        hits = [ln for ln in f.read_text().splitlines() if bad.search(ln)]
        assert not hits, (f.name, hits[:3])


def test_the_readme_verdict_table_is_the_verify_table():
    """README.md's table is `nctheory verify --markdown` output; its rows equal the committed verdicts, which are a
    run's whenever `nctheory verify` exits 0."""
    from nctheory.cli.cmd_verify import committed_rows, verdict_table

    text = (ROOT / "README.md").read_text()
    begin, end = "<!-- verdict table: nctheory verify --markdown -->\n", "\n<!-- end verdict table -->"
    assert begin in text and end in text
    block = text.split(begin, 1)[1].split(end, 1)[0]
    assert block == verdict_table(committed_rows())

"""The claims registry, `nctheory verify`, and the CLI conventions every subcommand shares."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nctheory.claims import registry
from nctheory.claims.registry import Budget, Verdict, Witness, assert_claim, claim, run_claim
from nctheory.cli import build_parser, main


@pytest.fixture
def fake_claims(monkeypatch):
    """Claims registered for one test only (the real ones are imported first, then restored)."""
    registry.load_all()
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def test_verdict_requires_counterexample_for_negative_verdicts():
    with pytest.raises(ValueError):
        Verdict("refuted", "no counterexample given")
    with pytest.raises(ValueError):
        Verdict("maybe", "unknown verdict")
    with pytest.raises(ValueError, match="used_beyond"):
        Verdict("confirmed-under-hypotheses", "x", counterexample={"n": 1})
    assert Verdict("refuted", "x", counterexample={"n": 1}).verdict == "refuted"


_WITNESS = Witness(lambda cex: float(cex["x"]), 0.5, "an integer count: 0 or >= 1")


def test_assert_claim_fails_when_the_verdict_changes(fake_claims):
    @claim("test.changes", source="s", hypotheses=["h"], statement="st", expected="confirmed", witness=_WITNESS)
    def _check(budget):
        return Verdict("refuted", "found one", counterexample={"x": 1})

    with pytest.raises(AssertionError, match="verdict changed"):
        assert_claim("test.changes")


def test_a_crashing_check_is_reported_not_hidden(fake_claims):
    @claim("test.crash", source="s", hypotheses=[], statement="st", expected="confirmed")
    def _check(budget):
        raise ZeroDivisionError("boom")

    r = run_claim("test.crash")
    assert not r.ok and "ZeroDivisionError" in r.error
    with pytest.raises(AssertionError, match="boom"):
        assert_claim("test.crash")


def test_verify_json_lists_kini_thm1_confirmed_with_evidence(capsys, tmp_path):
    code = main(["verify", "--only", "kini2023.thm1", "--json", "--budget", "quick", "--no-progress",
                 "--report", str(tmp_path / "r.md")])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    (row,) = rows
    assert row["id"] == "kini2023.thm1" and row["verdict"] == "confirmed"
    assert {"id", "source", "verdict", "evidence"} <= set(row)
    assert "Equality at NC+OF" in row["evidence"]
    report = (tmp_path / "r.md").read_text()
    assert "kini2023.thm1" in report and "confirmed" in report


def test_verify_exits_1_when_a_verdict_changes(fake_claims, capsys, tmp_path):
    @claim("test.regressed", source="s", hypotheses=[], statement="st", expected="confirmed")
    def _check(budget):
        return Verdict("unchecked", "could not decide")

    assert main(["verify", "--only", "test.regressed", "--no-progress", "--report", "-"]) == 1


def test_verify_jobs_gives_the_same_rows_in_the_same_order(capsys):
    """--jobs N runs claims in spawned worker processes; verdicts, evidence and order are those of --jobs 1."""
    argv = ["verify", "--only", "kini2023.remark3", "--only", "kini2023.remark2", "--json", "--budget", "quick",
            "--no-progress", "--report", "-"]
    assert main(argv) == 0
    seq = json.loads(capsys.readouterr().out)
    assert main(argv + ["--jobs", "2"]) == 0
    par = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in par] == [r["id"] for r in seq] == ["kini2023.remark2", "kini2023.remark3"]
    for a, b in zip(seq, par):
        assert (a["verdict"], a["evidence"], a["counterexample"]) == (b["verdict"], b["evidence"], b["counterexample"])
    assert main(["verify", "--jobs", "-1", "--no-progress"]) == 2
    assert "--jobs must be >= 0" in capsys.readouterr().err


def _worker_that_dies_on_remark3(claim_id, level, threads):
    """Stands in for cmd_verify._run_in_worker in spawned workers (imported there by module name)."""
    import os

    from nctheory.cli import cmd_verify

    if claim_id == "kini2023.remark3":
        os._exit(17)  # a hard crash, not an exception: the worker process dies
    return cmd_verify._run_in_worker(claim_id, level, threads)


def test_verify_jobs_blames_only_the_claim_whose_worker_died(monkeypatch, capsys):
    from nctheory.cli import cmd_verify

    monkeypatch.setattr(cmd_verify, "_run_in_worker", _worker_that_dies_on_remark3)
    code = main(["verify", "--only", "kini2023.remark2", "--only", "kini2023.remark3", "--json", "--budget",
                 "quick", "--no-progress", "--report", "-", "--jobs", "2"])
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert code == 1  # the workers did run: one of them died
    assert rows["kini2023.remark2"]["matches_expected"] is True
    assert "worker process died while checking this claim" in rows["kini2023.remark3"]["error"]


def test_verify_jobs_runs_caller_defined_claims_in_process(fake_claims, capsys):
    """A claim registered by the caller (not importable in a spawned worker) runs in the parent: the verdict
    and the exit code are those of --jobs 1, including a changed verdict."""
    @claim("test.parentonly", source="s", hypotheses=[], statement="st", expected="confirmed")
    def _ok(budget):
        return Verdict("confirmed", "fine")

    @claim("test.regressed2", source="s", hypotheses=[], statement="st", expected="confirmed")
    def _changed(budget):
        return Verdict("unchecked", "could not decide")

    argv = ["verify", "--only", "test.parentonly", "--only", "kini2023.remark2", "--json", "--budget", "quick",
            "--no-progress", "--report", "-", "--jobs", "2"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["kini2023.remark2", "test.parentonly"]
    assert all(r["matches_expected"] for r in rows)
    assert main(argv + ["--only", "test.regressed2"]) == 1
    capsys.readouterr()


def test_verify_unknown_claim_is_bad_input(capsys):
    assert main(["verify", "--only", "no.such.claim", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no registered claim" in err


def test_every_subcommand_has_help():
    parser, handlers = build_parser()
    assert "verify" in handlers
    for name in handlers:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0


def test_usage_errors_are_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "nctheory", "verify", "--budget", "huge"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_budget_names():
    assert Budget.named("quick").examples < Budget.named("standard").examples < Budget.named("full").examples
    with pytest.raises(ValueError):
        Budget.named("huge")

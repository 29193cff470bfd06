"""Long solver and prototype runs show progress on stderr when it is a terminal, and nothing otherwise;
stdout (--json) is unchanged either way."""
import io
import json
import sys

import pytest

from nctheory.cli import main


class _Terminal(io.StringIO):
    def isatty(self):
        return True


SOLVE = ["solve", "--loss", "scl", "--counts", "10,2,2", "--tau", "1", "--json"]
PROTO = ["prototypes", "--geometry", "etf", "--k", "3", "--R", "1,10", "--nw", "0,inf", "--json"]


@pytest.mark.parametrize("argv,lines,first", [(SOLVE, 1, "solving scl (UFM, n = 14, k = 3) by reduced"),
                                              (PROTO, 4, "[1/4] R = 1, n_w = 0")])
def test_progress_on_a_terminal(monkeypatch, capsys, argv, lines, first):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(argv) == 0
    out = capsys.readouterr().out
    json.loads(out)  # stdout is the JSON alone
    notes = term.getvalue().splitlines()
    assert len(notes) == lines, notes
    assert all(n.startswith("[") and " s] " in n for n in notes)
    assert notes[0].split(" s] ", 1)[1].startswith(first), notes[0]


@pytest.mark.parametrize("argv", [SOLVE, PROTO])
def test_no_progress_when_stderr_is_not_a_terminal(capsys, argv):
    assert main(argv) == 0
    cap = capsys.readouterr()
    json.loads(cap.out)
    assert cap.err == ""

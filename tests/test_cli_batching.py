"""The batching commands through the CLI: exit codes 0/1/2, JSON keys, one-line errors for bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nctheory.batching import load_plan
from nctheory.cli import main

PLANS = Path(__file__).resolve().parents[1] / "examples" / "plans"


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_exit_codes_and_json(capsys):
    code, out, _ = run(["check-batches", str(PLANS / "kini2023_fig15_binding.json"), "--json"], capsys)
    assert code == 0
    js = json.loads(out)
    assert js["unique"] is True and js["disconnected_classes"] == [] and js["missing_class_pairs"] == []
    code, out, _ = run(["check-batches", str(PLANS / "kini2023_fig5.json"), "--json"], capsys)
    assert code == 1
    js = json.loads(out)
    assert js["unique"] is False and js["missing_class_pairs"] == [[1, 2]]
    assert js["disconnected_classes"][0]["class"] == 0
    assert js["disconnected_classes"][0]["num_components"] == 2
    assert js["fix"]["verified_unique"] is True
    code, out, _ = run(["check-batches", str(PLANS / "kini2023_fig5.json")], capsys)
    assert code == 1 and "NOT UNIQUE" in out and "fix:" in out


def test_dim_option(capsys):
    f = str(PLANS / "cor21_only_if_fails_at_d_eq_k.json")
    assert run(["check-batches", f], capsys)[0] == 0  # the plan's "dim": 2
    assert run(["check-batches", f, "--dim", "3"], capsys)[0] == 1
    code, _, err = run(["check-batches", f, "--dim", "1"], capsys)
    assert code == 2 and "no OF exists" in err


BAD = [
    ("unknown index", '{"labels": [0, 1], "batches": [[0, 5]]}', "only 2 labels"),
    ("negative index", '{"labels": [0, 1], "batches": [[0, -1]]}', "negative"),
    ("duplicate index", '{"labels": [0, 1], "batches": [[1, 1]]}', "repeats"),
    ("empty batch", '{"labels": [0, 1], "batches": [[0, 1], []]}', "empty"),
    ("labels shorter", '{"labels": [0], "batches": [[0, 1]]}', "only 1 labels"),
    ("non-integer label", '{"labels": [0, "a"], "batches": [[0, 1]]}', "integers"),
    ("float label", '{"labels": [0, 0.5], "batches": [[0, 1]]}', "integers"),
    ("malformed json", '{"labels": [0, 1], "batches": [[0, 1]', "malformed JSON"),
    ("not an object", '[[0, 1]]', "object"),
    ("non-integer index", '{"labels": [0, 1], "batches": [[0, "1"]]}', "non-integer"),
    ("nan", '{"labels": [0, NaN], "batches": [[0, 1]]}', "integers"),
]


@pytest.mark.parametrize("case, text, msg", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("cmd", [["check-batches"], ["bound", "--tau", "1", "--plan"]])
def test_bad_input_one_line_exit_2(case, text, msg, cmd, tmp_path, capsys):
    f = write(tmp_path, "p.json", text)
    code, out, err = run(cmd + [f], capsys)
    assert code == 2, (case, out, err)
    assert err.count("\n") == 1 and msg in err and "Traceback" not in err


def test_bad_npz_and_enormous_files(tmp_path, capsys, monkeypatch):
    g = tmp_path / "bad.npz"
    g.write_bytes(b"PK\x03\x04" + bytes(100))
    code, _, err = run(["check-batches", str(g)], capsys)
    assert code == 2 and "malformed npz" in err and err.count("\n") == 1
    h = tmp_path / "obj.npz"
    np.savez(h, labels=np.array([0, 1], dtype=object), indices=np.array([0, 1]), offsets=np.array([0, 2]))
    code, _, err = run(["check-batches", str(h)], capsys)
    assert code == 2 and err.count("\n") == 1
    # an enormous JSON file: refused by size before it is read (sparse file, no disk cost)
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(65 * 2**20)
    code, _, err = run(["check-batches", str(big)], capsys)
    assert code == 2 and "limited to" in err
    # an npz whose arrays exceed the limit: refused from the zip directory, before decompression
    import nctheory.batching.plan as planmod

    ok = tmp_path / "ok.npz"
    np.savez_compressed(ok, labels=np.zeros(1000, np.int64), indices=np.zeros(1, np.int64), offsets=np.array([0, 1]))
    monkeypatch.setattr(planmod, "MAX_NPZ_BYTES", 4000)
    code, _, err = run(["check-batches", str(ok)], capsys)
    assert code == 2 and "the limit is" in err
    code, _, err = run(["check-batches", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "does not exist" in err


def test_subprocess_no_traceback(tmp_path):
    f = write(tmp_path, "p.json", '{"labels": [0, 1], "batches": [[0, 7]]}')
    r = subprocess.run([sys.executable, "-m", "nctheory", "check-batches", f], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_bound_plan_and_counts(capsys, tmp_path):
    code, out, _ = run(["bound", "--counts", "10,2,2", "--json"], capsys)
    assert code == 0
    b = json.loads(out)["bound"]
    want = sum(nc * math.log(nc - 1 + (14 - nc) * math.exp(-1)) for nc in (10, 2, 2))
    assert abs(b - want) < 1e-12
    code, out, _ = run(["bound", "--plan", str(PLANS / "kini2023_remark1_two_views.json"), "--tau", "0.5", "--json"],
                       capsys)
    js = json.loads(out)
    # each batch: 2 classes x 2 views -> 4 * log(1 + 2 e^{-2})
    assert code == 0 and abs(js["bound"] - 3 * 4 * math.log(1 + 2 * math.exp(-2))) < 1e-12
    code, out, _ = run(["bound", "--plan", str(PLANS / "kini2023_remark1_pairs.json"), "--json"], capsys)
    js = json.loads(out)
    assert js["bound"] == 0.0 and js["stated"] < 0  # every class once per batch: loss and bound are 0
    assert run(["bound", "--counts", "1,x"], capsys)[0] == 2
    assert run(["bound", "--counts", "3,3", "--tau", "-1"], capsys)[0] == 2


def test_make_plan_then_check(tmp_path, capsys):
    out = str(tmp_path / "p.npz")
    code, js, _ = run(["make-plan", "--counts", "8,4,3", "--scheme", "fixed", "--batch-size", "5", "--epochs", "4",
                       "--out", out, "--json"], capsys)
    assert code == 0 and json.loads(js)["num_epochs"] == 4
    assert run(["check-batches", out], capsys)[0] == 1
    outb = str(tmp_path / "pb.json")
    assert run(["make-plan", "--counts", "8,4,3", "--scheme", "fixed", "--batch-size", "5", "--bind", "--out", outb],
               capsys)[0] == 0
    assert run(["check-batches", outb], capsys)[0] == 0
    outv = str(tmp_path / "pv.json")
    assert run(["make-plan", "--counts", "3,3", "--scheme", "reshuffle", "--batch-size", "2", "--views", "2",
                "--epochs", "3", "--out", outv], capsys)[0] == 0
    written = json.loads(Path(outv).read_text())
    assert written["labels"] == [0, 0, 0, 1, 1, 1] and written["views"] == 2  # views: an attribute, not indices
    assert all(max(b) < 6 for ep in written["epochs"] for b in ep)
    lab = tmp_path / "labels.json"
    lab.write_text("[0, 1, 1, 0.5]")
    code, _, err = run(["make-plan", "--labels", str(lab), "--out", str(tmp_path / "x.json")], capsys)
    assert code == 2 and err.count("\n") == 1
    code, _, err = run(["make-plan", "--counts", "3,3", "--batch-size", "0", "--out", str(tmp_path / "x.json")], capsys)
    assert code == 2 and "batch_size" in err


def test_undecided_exits_3(tmp_path, capsys):
    f = write(tmp_path, "u.json", '{"labels": [0,0,0,1,1], "batches": [[0,1,2],[0,3,4],[1,3,4],[2,3,4]], "dim": 3}')
    code, _, err = run(["check-batches", f], capsys)
    assert code == 3 and "undecided" in err and err.count("\n") == 1


# ---- issue 15: tiny inputs that used to blow up; each gets exit 2 with one line or the right answer -----------
def one_line_exit_2(code, err, *msgs):
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for m in msgs:
        assert m in err, err


def test_many_tiny_classes_plan_answers_within_a_memory_limit(tmp_path, capsys):
    K = 40_000
    f = tmp_path / "many.json"
    labels = [c for c in range(K) for _ in range(2)]
    f.write_text(json.dumps({"labels": labels, "batches": [[2 * c, 2 * c + 1] for c in range(K)]}))
    assert 0.9e6 < f.stat().st_size < 1.2e6           # the 1.1 MB file
    code, out, err = run(["check-batches", str(f), "--json", "--max-memory", "256M"], capsys)
    js = json.loads(out)
    assert code == 1 and js["num_missing_class_pairs"] == K * (K - 1) // 2 and js["unique"] is False
    assert js["fix"]["scope"] is None and "binding would add" in js["fix"]["skipped"]
    code, out, _ = run(["check-batches", str(f), "--max-memory", "256M"], capsys)
    assert code == 1 and f"({K * (K - 1) // 2} in all)" in out and "fix:     not attempted" in out
    code, _, err = run(["check-batches", str(f), "--max-memory", "lots"], capsys)
    one_line_exit_2(code, err, "--max-memory")


def test_check_batches_refuses_beyond_max_memory_with_the_need(tmp_path, capsys):
    f = str(tmp_path / "p.npz")
    assert run(["make-plan", "--counts", ",".join(["2"] * 3000), "--batch-size", "1000", "--epochs", "3",
                "--out", f], capsys)[0] == 0
    code, _, err = run(["check-batches", f, "--max-memory", "64K"], capsys)
    one_line_exit_2(code, err, "needs ~", "limit 64.0 kB (--max-memory)")


def test_sparse_label_values_one_rule_everywhere(tmp_path, capsys):
    f = write(tmp_path, "big.json", '{"labels": [0, 500000000], "batches": [[0, 1]]}')   # the 95-byte plan
    code, out, _ = run(["bound", "--plan", f, "--json"], capsys)
    js = json.loads(out)
    assert code == 0 and js["bound"] == 0.0 and "500000000 -> 1" in js["label_note"]
    g = write(tmp_path, "huge.json", '{"labels": [0, 0, 1000000000000000, 1000000000000000], "batches": [[0, 1, 2, 3]]}')
    code, out, _ = run(["bound", "--plan", g, "--json"], capsys)
    want = 4 * math.log(1 + 2 * math.exp(-1))
    assert code == 0 and abs(json.loads(out)["bound"] - want) < 1e-12
    code, out, _ = run(["check-batches", g, "--json"], capsys)
    js = json.loads(out)
    assert code == 0 and js["classes"] == [0, 10**15] and "label_note" in js
    code, out, _ = run(["solve", "--loss", "scl", "--plan", g, "--relu", "--json"], capsys)
    js = json.loads(out)
    assert code == 0 and js["k"] == 2 and abs(js["value"] - want) < 1e-6
    code, _, err = run(["bound", "--plan", write(tmp_path, "x.json", '{"labels": [0, 99999999999999999999], '
                                                                    '"batches": [[0, 1]]}')], capsys)
    one_line_exit_2(code, err, "int64")


def test_make_plan_refuses_impossible_requests_in_one_line(tmp_path, capsys):
    out = str(tmp_path / "p.json")
    for argv, msg in ((["--epochs", "1000000000"], "limit is"), (["--seed", "-1"], "seed"),
                      (["--scheme", "class_balanced", "--batch-size", "2", "--m-per-class", "4"], "multiple"),
                      (["--epochs", "0"], "epochs"), (["--max-memory", "1K", "--epochs", "100"], "--max-memory")):
        code, _, err = run(["make-plan", "--counts", "3,3"] + argv + ["--out", out], capsys)
        one_line_exit_2(code, err, msg)
    # views are an attribute: --views 1e8 writes a tiny plan; check-batches refuses to expand it, bound answers
    code, _, _ = run(["make-plan", "--counts", "3,3", "--batch-size", "3", "--views", "100000000", "--out", out], capsys)
    assert code == 0 and Path(out).stat().st_size < 300
    code, _, err = run(["check-batches", out], capsys)
    one_line_exit_2(code, err, "views make")
    code, js, _ = run(["bound", "--plan", out, "--json"], capsys)
    assert code == 0 and json.loads(js)["views"] == 10**8 and math.isfinite(json.loads(js)["bound"])


def test_views_example_is_native_and_equals_its_expansion(capsys):
    p = load_plan(PLANS / "kini2023_remark1_two_views.json")
    e = p.expanded()
    assert p.views == 2 and e.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert [b.tolist() for b in e.batches] == [[0, 1, 3, 4], [0, 2, 3, 5], [1, 2, 4, 5]]
    code, out, _ = run(["check-batches", str(PLANS / "kini2023_remark1_two_views.json")], capsys)
    assert code == 0 and "3 samples x 2 views = 6 feature rows" in out


def test_multiset_plans_are_checked_never_refused(tmp_path, capsys):
    f = write(tmp_path, "m.json", '{"labels": [0, 1], "multiset": true, "batches": [[0, 0, 1]]}')
    code, out, _ = run(["check-batches", f], capsys)
    assert code == 0 and "multiset: 1 batch entries repeat" in out
    code, out, _ = run(["bound", "--plan", f, "--tau", "0.5", "--json"], capsys)
    assert code == 0 and abs(json.loads(out)["bound"] - 2 * math.log(1 + math.exp(-2))) < 1e-12
    g = write(tmp_path, "nomark.json", '{"labels": [0, 1], "batches": [[0, 0, 1]]}')
    code, _, err = run(["check-batches", g], capsys)
    one_line_exit_2(code, err, '"multiset": true')
    # a recorded WeightedRandomSampler plan, saved and checked through the CLI
    import torch

    from nctheory.batching import record_plan

    y = np.repeat(np.arange(4), [30, 5, 3, 2])
    w = 1.0 / np.bincount(y)[y]
    ds = torch.utils.data.TensorDataset(torch.arange(y.size))
    for seed in range(5):
        s = torch.utils.data.WeightedRandomSampler(w, y.size, generator=torch.Generator().manual_seed(seed))
        p = record_plan(torch.utils.data.DataLoader(ds, batch_size=10, sampler=s), y, epochs=2, views=2)
        out = str(tmp_path / f"rec{seed}.npz")
        p.save(out)
        for cmd in (["check-batches", out], ["check-batches", out, "--dim", "4"], ["bound", "--plan", out]):
            assert run(cmd, capsys)[0] in (0, 1, 3)
    code, _, _ = run(["make-plan", "--counts", "30,5,3,2", "--scheme", "weighted", "--batch-size", "8",
                      "--epochs", "3", "--out", str(tmp_path / "w.json")], capsys)
    assert code == 0 and json.loads((tmp_path / "w.json").read_text())["multiset"] is True
    assert run(["check-batches", str(tmp_path / "w.json")], capsys)[0] in (0, 1)

"""nctheory.validate and nctheory.schemas: every validator, with issue 15's examples that fall to one.

Each failure must be an InputError whose message is ONE line naming the flag/field and what was given.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nctheory import validate as V
from nctheory.errors import InputError
from nctheory.schemas import SYNTHETIC, TRAIN_CONFIG, check_train_config


def refused(fn, *args, match: str | None = None, **kw) -> str:
    """Call fn, expect InputError with a one-line message (containing ``match``); return the message."""
    with pytest.raises(InputError) as ei:
        fn(*args, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    if match is not None:
        assert match in msg, msg
    return msg


# ------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value,why", [
    (True, "the boolean True"), (False, "the boolean False"), (np.bool_(True), "the boolean True"),
    ("0.1", "the string '0.1'"), ("True", "the string 'True'"), (None, "null"), ([0.1], "a list of 1"),
    (1 + 2j, "complex"), ({"a": 1}, "an object"),
])
def test_real_refuses_non_numbers_tau_string_0_1_and_true(value, why):
    msg = refused(V.real, value, "tau", lo=0.0, lo_open=True)
    assert msg.startswith("tau must be a number > 0, got") and why in msg


@pytest.mark.parametrize("value", [0.1, 1, np.float32(0.5), np.float64(2.0), np.int64(3)])
def test_real_accepts_real_scalars_as_float(value):
    v = V.real(value, "tau", lo=0.0, lo_open=True)
    assert type(v) is float and v == float(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_real_refuses_non_finite_weight_decay_nan(value):
    refused(V.real, value, "weight_decay", lo=0.0, match="weight_decay must be a finite number >= 0")


def test_real_non_finite_allowed_only_when_asked():
    assert V.real(math.inf, "t", finite=False) == math.inf
    refused(V.real, math.nan, "t", finite=False, match="got nan")  # NaN is in no interval


@pytest.mark.parametrize("value,lo,hi,lo_open,hi_open,ok", [
    (0.0, 0.0, 1.0, False, True, True), (1.0, 0.0, 1.0, False, True, False), (0.0, 0.0, None, True, False, False),
    (1.0, 1.0, None, False, False, True), (0.999, 1.0, None, False, False, False), (5.0, None, 5.0, False, False, True),
])
def test_real_ranges_open_and_closed(value, lo, hi, lo_open, hi_open, ok):
    if ok:
        assert V.real(value, "x", lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open) == value
    else:
        refused(V.real, value, "x", lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, match="x must be a number")


def test_real_momentum_range_message():
    assert refused(V.real, 1.0, "momentum", lo=0.0, hi=1.0, hi_open=True) == \
        "momentum must be a number in [0, 1), got 1.0"


def test_real_parse_str_only_where_documented():
    assert V.real("0.25", "--tau", parse_str=True) == 0.25
    refused(V.real, "True", "--tau", parse_str=True, match="the string 'True'")
    refused(V.real, "nan", "--tau", parse_str=True, match="finite")
    refused(V.real, "", "--tau", parse_str=True)


def test_real_int_beyond_float_range():
    refused(V.real, 10**400, "x", match="too large")


def test_real_allow_none():
    assert V.real(None, "base_tau", allow_none=True) is None
    refused(V.real, None, "base_tau", match="null")


@pytest.mark.parametrize("value,why", [
    ("x", "the string 'x'"), (1.5, "1.5"), (2.0, "2.0"), (True, "the boolean True"), (None, "null"),
    ("10", "the string '10'"),
])
def test_integer_refuses_seed_string_x_floats_and_bools(value, why):
    msg = refused(V.integer, value, "seed", lo=0)
    assert msg.startswith("seed must be an integer >= 0, got") and why in msg


def test_integer_accepts_ints_and_numpy_ints():
    assert V.integer(np.int64(7), "n") == 7 and type(V.integer(np.uint8(7), "n")) is int
    assert V.integer(10**30, "n") == 10**30  # exact


def test_integer_range_make_plan_seed_minus_1():
    assert refused(V.integer, -1, "--seed", lo=0, hi=V.SEED_MAX) == \
        f"--seed must be an integer in [0, {V.SEED_MAX}], got -1"


def test_integer_parse_str():
    assert V.integer(" 12 ", "--k", parse_str=True) == 12
    for bad in ("1e3", "1.0", "0x10", "True", ""):
        refused(V.integer, bad, "--k", parse_str=True, match="--k must be an integer")


@pytest.mark.parametrize("value", [0, 1, "true", "false", None, 1.0])
def test_boolean_refuses_non_bools(value):
    refused(V.boolean, value, "relu", match="relu must be true or false")


def test_boolean_accepts_bools():
    assert V.boolean(True, "relu") is True and V.boolean(np.bool_(False), "relu") is False


def test_text_and_choices():
    assert V.text("etf", "--geometry", choices=["etf", "of"]) == "etf"
    refused(V.text, "x", "--geometry", choices=["etf", "of"], match="--geometry must be one of etf, of, got 'x'")
    refused(V.text, 3, "name", match="name must be a string, got 3")
    refused(V.text, "  ", "name", nonempty=True, match="must not be empty")


def test_number_list():
    assert V.number_list("10,2,2", "--counts", lo=1) == [10, 2, 2]
    assert V.number_list("0.1, 0.5", "--tau", kind="real", lo=0.0, lo_open=True) == [0.1, 0.5]
    refused(V.number_list, "1,,2", "--counts", match="without empty entries")
    refused(V.number_list, "1,x", "--counts", match="--counts entry 2 must be an integer")
    refused(V.number_list, "0", "--counts", lo=1, match="--counts entry 1 must be an integer >= 1, got 0")
    refused(V.number_list, "", "--counts", match="at least 1")
    refused(V.number_list, "1,2,3", "--counts", max_len=2, match="1 to 2")
    refused(V.number_list, "0.1,nan", "--tau", kind="real", match="finite")


# ------------------------------------------------------------------------------------------- arrays
def test_real_array_refuses_complex_features():
    refused(V.real_array, np.ones((2, 3), dtype=complex), "features", match="features must be an array of real "
            "numbers, got complex values")
    refused(V.real_array, torch.ones(2, 3, dtype=torch.complex64), "features", match="complex")


def test_real_array_refuses_bool_object_string():
    refused(V.real_array, np.ones(3, dtype=bool), "x", match="got booleans")
    refused(V.real_array, torch.ones(3, dtype=torch.bool), "x", match="got booleans")
    refused(V.real_array, np.array(["a", "b"]), "x", match="got strings")
    refused(V.real_array, np.array([1, None], dtype=object), "x", match="non-numeric")
    refused(V.real_array, "abc", "x", match="got the string 'abc'")
    refused(V.real_array, [[1, 2], [3]], "x", match="rectangular")


def test_real_array_shape_and_ndim():
    a = V.real_array([[1, 2, 3]], "W", shape=(None, 3))
    assert isinstance(a, np.ndarray) and a.shape == (1, 3)
    refused(V.real_array, np.ones(3), "gram_final.npy", ndim=2, match="must be a 2-dimensional array, got shape (3,)")
    refused(V.real_array, np.ones((2, 4)), "W", shape=(None, 3), match="must have shape (*, 3), got (2, 4)")
    refused(V.real_array, np.ones((0, 3)), "features", min_size=1, match="at least 1 entry, got 0")


def test_real_array_finiteness_numpy_and_torch_checked_in_place():
    x = np.ones((3, 2))
    x[1, 1] = np.nan
    refused(V.real_array, x, "features", match="features must be finite, got 1 non-finite entry")
    t = torch.ones(4, 2, dtype=torch.float16)
    assert V.real_array(t, "features") is t  # checked without a copy, returned as is
    t[0, 0] = float("inf")
    refused(V.real_array, t, "features", match="finite")
    assert V.real_array(x, "features", finite=False) is not None
    assert V.real_array(np.arange(3), "x").dtype.kind == "i"  # integer arrays are real


def test_int_array_uint64_max_reported_as_itself_not_minus_1():
    msg = refused(V.int_array, np.array([0, 2**64 - 1], dtype=np.uint64), "labels")
    assert "18446744073709551615" in msg and "-1" not in msg


def test_int_array_refuses_floats_bools_and_ranges():
    refused(V.int_array, np.array([0.0, 1.0]), "labels", match="labels must hold integers, got float64 values")
    refused(V.int_array, np.array([True, False]), "labels", match="got booleans")
    refused(V.int_array, [0, -1], "labels", lo=0, match="labels must be >= 0, found -1")
    refused(V.int_array, [0, 9], "labels", hi=5, match="labels must be <= 5, found 9")
    refused(V.int_array, [[0, 1]], "labels", match="1-dimensional")
    out = V.int_array(torch.tensor([1, 2], dtype=torch.int32), "labels")
    assert out.dtype == np.int64 and out.tolist() == [1, 2]


def test_labels_bool_labels_refused():
    refused(V.labels, torch.tensor([True, False]), "labels", match="booleans")


def test_labels_huge_values_refused_before_any_bincount(monkeypatch):
    """Labels 0, 0, 1e15, 1e15 (issue 15: bound/solve tried to allocate 7 PiB): refused with the number of
    distinct labels; nothing the size of the largest label is allocated."""
    def no_bincount(*a, **k):
        raise AssertionError("bincount called")

    monkeypatch.setattr(np, "bincount", no_bincount)
    msg = refused(V.labels, np.array([0, 0, 10**15, 10**15]), "labels")
    assert "1000000000000001 classes" in msg and "only 2 distinct label(s)" in msg and "relabel them 0..1" in msg
    msg = refused(V.labels, np.array([0, 5 * 10**8]), "labels", max_classes=10**6)
    assert "500000001 classes (at most 1000000)" in msg


def test_labels_with_k_and_ok_cases():
    assert V.labels([0, 1, 1, 2], "labels", k=3).tolist() == [0, 1, 1, 2]
    refused(V.labels, [0, 3], "labels", k=3, match="labels must be class indices in [0, 3), found 3")
    refused(V.labels, [], "labels", match="at least 1 entry")
    refused(V.labels, [0, -2], "labels", match="labels must be >= 0, found -2")


# ------------------------------------------------------------------------------------------- config fields
CONFIG_EXAMPLES = [  # issue 15: "Config and flag types"
    ({"momentum": "0.9"}, "momentum must be a number in [0, 1), got the string '0.9'"),
    ({"ratio": "x"}, "ratio must be a number >= 1, got the string 'x'"),
    ({"base_tau": "a"}, "base_tau must be a number > 0 or null, got the string 'a'"),
    ({"seed": "x"}, "seed must be an integer in [0, 9223372036854775807], got the string 'x'"),
    ({"synthetic": "k=3"}, "synthetic must be an object (JSON {...}), got the string 'k=3'"),
    ({"synthetic": {"k": 3, "n_per_clas": 6}}, "unknown synthetic key(s): n_per_clas"),
    ({"synthetic": {"k": "3"}}, "synthetic.k must be an integer >= 2, got the string '3'"),
    ({"milestones": "x"}, "milestones must be a list of integers, got the string 'x'"),
    ({"milestones": [300, 200]}, "milestones must be strictly increasing, got [300, 200]"),
    ({"milestones": [0]}, "milestones[0] must be an integer in [1, 1000000000], got 0"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0, got nan"),
    ({"tau": "0.1"}, "tau must be a number > 0, got the string '0.1'"),
    ({"tau": True}, "tau must be a number > 0, got the boolean True"),
    ({"epochs": 1.5}, "epochs must be an integer in [1, 1000000000], got 1.5"),
    ({"views": 0}, "views must be an integer >= 1, got 0"),
    ({"relu": 1}, "relu must be true or false, got 1"),
    ({"name": 5}, "name must be a string, got 5"),
    ({"lerning_rate": 0.1}, "unknown config key(s): lerning_rate"),
]


@pytest.mark.parametrize("d,message", CONFIG_EXAMPLES, ids=[next(iter(d)) + "=" + repr(next(iter(d.values())))
                                                             for d, _ in CONFIG_EXAMPLES])
def test_train_config_fields_refused_with_their_name(d, message):
    msg = refused(check_train_config, d)
    assert msg.startswith(message), msg


def test_train_config_schema_covers_every_field_with_its_annotated_type():
    from nctheory.harness.train import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(TRAIN_CONFIG) == set(fields)
    kinds = {"int": "int", "float": "real", "bool": "bool", "str": "str", "list": "list", "dict": "dict"}
    for name, f in fields.items():
        ann = str(f.type).replace(" ", "")
        nullable = ann.endswith("|None")
        base = ann.removesuffix("|None")
        assert kinds[base] == TRAIN_CONFIG[name].kind, name
        assert nullable == TRAIN_CONFIG[name].nullable, name


def test_train_config_defaults_and_experiment_configs_pass():
    from nctheory.harness.train import TrainConfig

    d = TrainConfig().to_dict()
    assert check_train_config(d) == d
    for f in sorted((Path(__file__).parent.parent / "experiments").glob("*.json")):
        cfg = json.loads(f.read_text())
        sweep = cfg.pop("sweep", [{}])
        for s in sweep:
            check_train_config({**cfg, **s})


def test_synthetic_schema_matches_synthetic_arrays_signature():
    import inspect

    from nctheory.harness.data import synthetic_arrays

    params = set(inspect.signature(synthetic_arrays).parameters) - {"seed"}  # the run's seed is passed
    assert set(SYNTHETIC) == params


def test_check_fields_normalises_numpy_scalars_and_passes_extra_keys():
    out = check_train_config({"epochs": np.int64(3), "tau": np.float32(0.5), "sweep": [{"name": "a"}]})
    assert type(out["epochs"]) is int and type(out["tau"]) is float and out["sweep"] == [{"name": "a"}]
    refused(V.check_fields, [1, 2], TRAIN_CONFIG, match="config must be an object")


# ------------------------------------------------------------------------------------------- paths
def test_input_file(tmp_path):
    f = tmp_path / "plan.json"
    f.write_text("{}")
    assert V.input_file(f, "--plan", suffixes=(".json",)) == f
    refused(V.input_file, tmp_path / "nope.json", "--plan", match="does not exist")
    refused(V.input_file, tmp_path, "--plan", match="is a folder, not a file")
    refused(V.input_file, f, "--plan", suffixes=(".npz",), match="expected a .npz file")
    refused(V.input_file, f, "--plan", max_bytes=1, match="the limit is 1 B")
    refused(V.input_file, f / "x", "--plan", match="a part of the path is a file")
    refused(V.input_file, "", "--plan", match="must not be empty")
    refused(V.input_file, 3, "--plan", match="must be a path")


def test_input_file_fifo_refused(tmp_path):
    fifo = tmp_path / "labels.json"
    os.mkfifo(fifo)
    refused(V.input_file, fifo, "--labels", match="is not a regular file")


def test_input_dir(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch\n")
    assert V.input_dir(tmp_path, "RUN", must_contain=["metrics.csv"], what="run folder") == tmp_path
    refused(V.input_dir, tmp_path / "x", "RUN", match="does not exist")
    refused(V.input_dir, tmp_path / "metrics.csv", "RUN", what="run folder", match="is not a run folder (it is a file)")
    refused(V.input_dir, tmp_path, "RUN", must_contain=["checkpoint.pt"], what="run folder",
            match="no checkpoint.pt")


def test_output_file_compare_out_missing_folder_proc_and_bad_extension(tmp_path):
    assert V.output_file(tmp_path / "x.png", "--out") == tmp_path / "x.png"
    refused(V.output_file, tmp_path / "nodir" / "x.png", "--out", match="the folder")
    refused(V.output_file, "/proc/x.png", "--out", match="cannot write in /proc")
    refused(V.output_file, tmp_path / "x.xyz", "--out",
            match="unsupported file extension '.xyz'; use .png, .pdf or .svg")


def test_output_file_compare_out_adir_has_no_extension(tmp_path):
    refused(V.output_file, tmp_path / "adir", "--out", match="has no file extension; use .png, .pdf or .svg")
    (tmp_path / "realdir").mkdir()
    refused(V.output_file, tmp_path / "realdir", "--out", match="is a folder; give a file name such as")
    (tmp_path / "d.png").mkdir()
    refused(V.output_file, tmp_path / "d.png", "--out", match="is a folder")


def test_output_file_under_a_file_and_non_regular_targets(tmp_path):
    (tmp_path / "f").write_text("x")
    refused(V.output_file, tmp_path / "f" / "x.png", "--plot", match="--plot")
    os.mkfifo(tmp_path / "p.png")
    refused(V.output_file, tmp_path / "p.png", "--plot", match="exists and is not a regular file")


def test_output_file_any_suffix_and_root(tmp_path):
    assert V.output_file(tmp_path / "plan", "--out", suffixes=None) == tmp_path / "plan"
    (tmp_path / "run").mkdir()
    refused(V.output_file, tmp_path / "x.png", "--plot", root=tmp_path / "run", match="leads outside")


def test_output_file_compare_out_run_metrics_csv_refused_even_with_force(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch\n1\n")
    (run / "loss.png").write_bytes(b"png")
    for force in (False, True):
        refused(V.output_file, run / "metrics.csv", "--out", suffixes=None, force=force,
                match="is the data of the run in")
    refused(V.output_file, run / "loss.png", "--out", match="use --force to replace it")
    assert V.output_file(run / "loss.png", "--out", force=True) == run / "loss.png"
    assert V.output_file(run / "new.png", "--out") == run / "new.png"  # a new file next to the run's own


def test_output_file_probe_leaves_nothing_behind(tmp_path):
    V.output_file(tmp_path / "x.png", "--out")
    assert list(tmp_path.iterdir()) == []


def test_output_dir_train_out_under_a_file_on_a_file_and_in_proc(tmp_path):
    (tmp_path / "f").write_text("x")
    refused(V.output_dir, tmp_path / "f", "--out", match="--out " + str(tmp_path / "f") + " is a file, not a folder")
    refused(V.output_dir, tmp_path / "f" / "run", "--out", match="is a file, not a folder")
    refused(V.output_dir, "/proc/run", "--out", match="cannot write in /proc")
    assert V.output_dir(tmp_path / "a" / "b" / "run", "--out") == tmp_path / "a" / "b" / "run"
    assert not (tmp_path / "a").exists()  # creates nothing


@pytest.mark.parametrize("name", ["../../escape", "..", ".", "/abs", "a/b", "a\\b", ""])
def test_child_name_sweep_entry_escape_refused(tmp_path, name):
    refused(V.child_name, tmp_path, name, 'sweep entry "name"')


def test_child_name_and_inside(tmp_path):
    assert V.child_name(tmp_path, "run1", "name") == Path(os.path.realpath(tmp_path / "run1"))
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path, tmp_path / "out" / "link")
    refused(V.inside, tmp_path / "out", "link/x", "name", match="leads outside")
    refused(V.inside, tmp_path / "out", "../x", "name", match="leads outside")
    assert V.inside(tmp_path / "out", "x/y", "name") == Path(os.path.realpath(tmp_path / "out" / "x" / "y"))


# ------------------------------------------------------------------------------------------- memory budget
@pytest.mark.parametrize("text,n", [("8G", 8 * 10**9), ("8GB", 8 * 10**9), ("512M", 512 * 10**6),
                                    ("1.5GiB", int(1.5 * 2**30)), ("100000", 100000), ("2 kb", 2000),
                                    (4096, 4096)])
def test_parse_bytes(text, n):
    assert V.parse_bytes(text) == n


@pytest.mark.parametrize("text", ["8Q", "", "-1G", "0", "G", "1e400G", True])
def test_parse_bytes_refused(text):
    refused(V.parse_bytes, text, match="--max-memory")


def test_format_and_estimate_bytes():
    assert V.format_bytes(11.2e9) == "11.2 GB" and V.format_bytes(512) == "512 B"
    assert V.format_bytes(7.2e15) == "7.2 PB"
    assert V.estimate_bytes((40000, 40000)) == 40000 * 40000 * 8
    assert V.estimate_bytes((10**15, 10**15), dtype="float64") == 8 * 10**30  # exact, no overflow
    assert V.estimate_bytes(10, (2, 3), dtype="int32", copies=2) == (10 + 6) * 4 * 2


def test_check_budget_message_of_the_brief():
    assert refused(V.check_budget, 11.2e9, "40000 classes (dense class graph)", "use --no-fix", limit="8G") == \
        "needs ~11.2 GB for 40000 classes (dense class graph); limit 8.0 GB (--max-memory); use --no-fix"
    assert V.check_budget(1000, "x", limit=2000) == 2000


def test_memory_limit_precedence(monkeypatch):
    monkeypatch.delenv("NCTHEORY_MAX_MEMORY", raising=False)
    n, src = V.memory_limit()
    assert src == "available memory" and 0 < n <= (V._meminfo_available() or n)
    monkeypatch.setenv("NCTHEORY_MAX_MEMORY", "3G")
    assert V.memory_limit() == (3 * 10**9, "NCTHEORY_MAX_MEMORY")
    with V.memory_limit_set("2G"):
        assert V.memory_limit() == (2 * 10**9, "--max-memory")
        refused(V.check_budget, 2.5e9, "a plan", match="limit 2.0 GB (--max-memory)")
        assert V.memory_limit("1G") == (10**9, "--max-memory")
    assert V.memory_limit()[1] == "NCTHEORY_MAX_MEMORY"
    with V.memory_limit_set(None):
        assert V.memory_limit()[1] == "NCTHEORY_MAX_MEMORY"


def test_available_bytes_respects_rlimit_as():
    """Under RLIMIT_AS, what is available is at most the address space left (the fuzz tests rely on it)."""
    code = ("import resource, nctheory.validate as V; vm = int([l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('VmSize:')][0]) * 1024; resource.setrlimit(resource.RLIMIT_AS, (vm + 300 * 10**6, "
            "resource.RLIM_INFINITY)); print(V.available_bytes())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert 0 <= int(out.stdout) <= 300 * 10**6


def test_cli_max_memory_flag_on_every_subcommand(capsys):
    from nctheory.cli import build_parser, main

    parser, handlers = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert any("--max-memory" in a.option_strings for a in p._actions), name
    assert main(["bound", "--counts", "3,3", "--max-memory", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-memory must be a size" in err

"""The README's Layout section matches the tree: every module and subpackage of nctheory/ is named there
(a package by its folder, a top-level module by its path or, on a neighbour's line, its file name), and
every path it names exists."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Layout\n\n```\n(.*?)^```", text, re.S | re.M)
    assert m, "README.md has no '## Layout' section with a code block"
    return m.group(1)


def test_every_module_is_in_the_layout():
    block = _layout_block()
    names = set(re.findall(r"[\w./]+", block))
    missing = []
    for p in sorted((ROOT / "nctheory").iterdir()):
        if p.name.startswith("__") or p.name.startswith("_") and p.suffix == ".py":
            continue
        if p.is_dir() and (p / "__init__.py").exists():
            if f"nctheory/{p.name}/" not in names:
                missing.append(f"nctheory/{p.name}/")
        elif p.suffix == ".py" and f"nctheory/{p.name}" not in names and p.name not in names:
            missing.append(f"nctheory/{p.name}")
    assert not missing, f"README Layout does not name: {missing}"


def test_every_named_path_exists():
    block = _layout_block()
    firsts = [line.split()[0] for line in block.splitlines() if line and not line.startswith(" ")]
    absent = [f for f in firsts if not (ROOT / f).exists()]
    assert not absent, f"README Layout names paths that do not exist: {absent}"
    # the files a line names inside its package (e.g. "catalogue.py" on the losses line) exist there
    for line in block.splitlines():
        if line and not line.startswith(" "):
            folder = ROOT / line.split()[0]
            base = folder if folder.is_dir() else folder.parent
        for f in re.findall(r"\b(\w+\.py)\b", line):
            assert (base / f).exists() or (ROOT / "nctheory" / f).exists(), f"README Layout: {f} not in {base}"

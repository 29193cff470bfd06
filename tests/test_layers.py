"""The package's layers, enforced: every import inside nctheory/ (at module level and inside functions)
must follow the dependency order written in DEVELOPERS.md, and no module-level import cycle may exist.

DEVELOPERS.md is the one definition of the order: its fenced block that starts with the line
``layer: may import`` lists, for each unit (a top-level module or package of nctheory), the units it
may import. This test parses that block, so the written order and the enforced one cannot drift.

An import inside a function counts like any other: hiding an import in a function keeps Python from
failing at import time, it does not change which layer depends on which.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "nctheory"


def read_layers(text: str) -> dict[str, set[str]]:
    """{unit: units it may import} from DEVELOPERS.md's block that starts with ``layer: may import``.
    Lines ``a, b: x, y`` say that units a and b may import x and y (``-``: nothing of nctheory);
    ``name = x, y`` defines a group usable on later right-hand sides. ``#`` starts a comment."""
    m = re.search(r"```\nlayer: may import\n(.*?)```", text, re.S)
    if not m:
        raise AssertionError("DEVELOPERS.md has no fenced block starting with 'layer: may import'")
    allowed: dict[str, set[str]] = {}
    groups: dict[str, set[str]] = {}
    for line in m.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        sep = "=" if "=" in line else ":"
        lhs, rhs = (part.strip() for part in line.split(sep, 1))
        deps: set[str] = set()
        for name in (w.strip() for w in rhs.split(",")):
            if name and name != "-":
                deps |= groups.get(name, {name})
        if sep == "=":
            groups[lhs] = deps
        else:
            for u in (w.strip() for w in lhs.split(",")):
                allowed[u] = deps
    return allowed


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_sources() -> dict[str, tuple[str, bool]]:
    """{module name: (source, is_package)} of every module under nctheory/."""
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, source: str, is_package: bool, modules: set[str]) -> set[str]:
    """The nctheory modules that ``name`` imports anywhere in its source (functions included).
    ``from P import X`` where P.X is a module counts as an import of P.X (not of P's __init__)."""
    out: set[str] = set()
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "nctheory"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "nctheory":
                continue
            subs = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules}
            out |= subs if subs and len(subs) == len(node.names) else subs | {mod}
    return out


def unit(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "nctheory"


def violations(sources: dict[str, tuple[str, bool]], allowed: dict[str, set[str]]) -> list[str]:
    modules = set(sources)
    bad = []
    for name, (src, is_pkg) in sources.items():
        u = unit(name)
        if u not in allowed:
            bad.append(f"{name}: unit {u!r} is not in DEVELOPERS.md's layer table")
            continue
        for target in sorted(imports_of(name, src, is_pkg, modules)):
            t = unit(target)
            if t != u and t not in allowed[u]:
                bad.append(f"{name} imports {target}: {u} may import only {sorted(allowed[u]) or 'nothing'}")
    return bad


def cycles(sources: dict[str, tuple[str, bool]]) -> list[list[str]]:
    """Strongly connected components (size > 1) of the module import graph (function-level imports
    included; a package's __init__ importing its own submodules is an ordinary edge)."""
    import networkx as nx

    modules = set(sources)
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for name, (src, is_pkg) in sources.items():
        for target in imports_of(name, src, is_pkg, modules):
            if target in modules and target != name:
                g.add_edge(name, target)
    return [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]


@pytest.fixture(scope="module")
def allowed():
    return read_layers((ROOT / "DEVELOPERS.md").read_text())


def test_every_import_follows_the_written_layers(allowed):
    assert violations(package_sources(), allowed) == []


def test_no_import_cycle():
    assert cycles(package_sources()) == []


def test_an_injected_back_import_is_caught(allowed):
    src = package_sources()
    src["nctheory.losses._injected"] = ("def f():\n    from nctheory.solvers import gram\n    return gram\n", False)
    src["nctheory.geometry_injected"] = ("import nctheory.harness.train\n", False)
    bad = violations(src, allowed)
    assert any(b.startswith("nctheory.losses._injected imports nctheory.solvers.gram") for b in bad), bad
    assert any("geometry_injected" in b for b in bad), bad  # an unknown unit is refused too
    src2 = package_sources()
    src2["nctheory.metrics_a"] = ("from nctheory import metrics_b\n", False)
    src2["nctheory.metrics_b"] = ("def g():\n    import nctheory.metrics_a\n", False)
    assert ["nctheory.metrics_a", "nctheory.metrics_b"] in cycles(src2)


@pytest.mark.parametrize("unit_name", ["cli", "harness"])
def test_nothing_imports_the_cli_or_the_harness(allowed, unit_name):
    users = sorted(u for u, deps in allowed.items() if unit_name in deps and u not in ("cli", "__main__"))
    assert users == [], f"{users} may import {unit_name} according to DEVELOPERS.md"

"""The package's layers (docs/architecture.md): no module imports a higher layer, and no two
modules import each other, directly or through others. Function-level imports count; imports
under ``if TYPE_CHECKING:`` (annotations only) do not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STEER = Path(__file__).resolve().parents[1] / "steer"

#: Layer of each top-level area of ``steer/``, lowest first. A module may import its own area and
#: any area of a lower or equal rank... except that equal ranks are separate areas that must not
#: know each other (checked below). ``evaluation`` (sampling, held-out scoring, pass@k) is generic
#: and sits below the countdown ``testbed``, which uses it.
RANK = {
    "errors": 0,
    "core": 0,
    "data": 1,
    "models": 1,
    "preflight": 2,
    "rewards": 2,
    "evaluation": 3,
    "integrations": 3,
    "testbed": 4,
    "train": 5,
    "analysis": 6,
    "cli": 9,
}


def area(mod: str) -> str:
    """``steer.train.trainer`` -> ``train``; command-line modules (``steer.cli``, ``*.cli``,
    ``*_cli``, ``__main__``) form the top layer whatever their folder."""
    parts = mod.split(".")
    if parts[-1] in ("cli", "__main__") or parts[-1].endswith("_cli"):
        return "cli"
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(STEER.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imports(path: Path, modules: set[str]) -> set[str]:
    """The steer modules ``path`` imports (``from steer.x import y`` counts ``steer.x.y`` when
    that is a module, else ``steer.x``)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("steer")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("steer"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m in modules}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in STEER.rglob("*.py")}
    modules = set(paths)
    return {m: imports(p, modules) for m, p in paths.items()}


def test_every_area_has_a_layer(graph):
    assert {area(m) for m in graph} <= set(RANK) | {"steer"}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        a = area(mod)
        for dep in deps:
            b = area(dep)
            if a == b or b == "steer" or a == "steer":
                continue
            if RANK[b] > RANK[a] or (RANK[b] == RANK[a] and a != "cli"):
                bad.append(f"{mod} ({a}) imports {dep} ({b})")
    return sorted(bad)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles between modules; a package's ``__init__`` that re-exports its submodules is the
    package's face, not a participant (a submodule importing its own package is not counted)."""

    def deps(m: str) -> set[str]:
        return {d for d in graph.get(m, ()) if not m.startswith(d + ".")}

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(deps(m)):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_no_import_from_a_higher_layer(graph):
    bad = upward_imports(graph)
    assert not bad, "\n".join(bad)


def test_no_import_cycle(graph):
    cycles = import_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_can_fail():
    """The rules on a made-up graph: an upward import, an import between two areas of one rank
    and a cycle through three modules are found; a command-line module may import anything."""
    fake = {
        "steer.core.a": {"steer.train.b"},  # upward
        "steer.testbed.c": {"steer.core.a"},
        "steer.evaluation.d": {"steer.integrations.e"},  # same rank, other area
        "steer.integrations.e": set(),
        "steer.train.cli": {"steer.analysis.f"},  # allowed
        "steer.analysis.f": set(),
        "steer.train.x": {"steer.train.y"},
        "steer.train.y": {"steer.train.z"},
        "steer.train.z": {"steer.train.x"},
    }
    assert upward_imports(fake) == [
        "steer.core.a (core) imports steer.train.b (train)",
        "steer.evaluation.d (evaluation) imports steer.integrations.e (integrations)",
    ]
    assert import_cycles(fake) == [["steer.train.x", "steer.train.y", "steer.train.z", "steer.train.x"]]
    assert import_cycles({"steer.core": {"steer.core.a"}, "steer.core.a": {"steer.core"}}) == []

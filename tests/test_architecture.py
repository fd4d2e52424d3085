"""The package layout holds: data flows one way, and no module imports another in a cycle,
counting imports inside functions (a hidden cycle is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prognos"

# Who may import whom: a package imports only packages of a lower rank (or its own). training
# registers what it trained, so the registry ranks below it. storage,
# config, fleet and errors sit below everything; the cli sits on top. monitoring reads what the
# ingestion core and the model produce and is shown by serving (its /monitoring routes and
# gauges), so it ranks below the two edges.
RANK = {
    "errors": 0,
    "config": 0,
    "fleet": 1,
    "storage": 1,
    "data": 2,
    "features": 3,
    "models": 4,
    "registry": 5,
    "training": 6,
    # Fleet scale on Spark: runs features, models and training's cut points per asset group and
    # reads the lake (storage); only the cli (and later flows) drive it, so it sits just above
    # training and below everything that serves or schedules.
    "spark": 6.5,
    "ingestion": 7,
    "monitoring": 8,
    "alerting": 8.5,
    "planning": 8.6,
    "reports": 8.7,
    "serving": 9,
    "streaming": 9,
    "flows": 10,
    "cli": 11,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if path.is_dir():
        return ".".join(parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every prognos module ``path`` imports, at any depth of the file (TYPE_CHECKING blocks
    excepted: they never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    inside = path.is_relative_to(SRC)
    package = (
        "" if not inside else _module_name(path if path.name == "__init__.py" else path.parent)
    )
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("prognos"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.startswith("prognos"):
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py") if "migrations" not in p.parts}
    return {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def _stage(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_packages_import_only_lower_stages(graph: dict[str, set[str]]) -> None:
    wrong = []
    for module, targets in graph.items():
        stage = _stage(module)
        if stage not in RANK:
            continue
        for target in targets:
            other = _stage(target)
            if other in RANK and other != stage and RANK[other] >= RANK[stage]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the flow of data:\n" + "\n".join(sorted(wrong))


def test_every_stage_is_ranked(graph: dict[str, set[str]]) -> None:
    stages = {_stage(m) for m in graph if "." in m}
    assert stages - set(RANK) == set(), "rank the new package in RANK (and the README layout)"


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    # Package __init__ modules re-export their children; an edge from a package to its own
    # children is not a cycle through the code that runs.
    edges = {m: {t for t in targets if not t.startswith(m + ".")} for m, targets in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from prognos.serving import app\n")
    assert "prognos.serving.app" in _imports(source) or "prognos.serving" in _imports(source)

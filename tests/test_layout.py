"""The package's layout rules, checked on its source: no import cycle, and every use of a
library's private API in one module (`streams.worker.kafka_compat`)."""

from __future__ import annotations

import ast
from pathlib import Path

import streams

ROOT = Path(streams.__file__).parent
PRIVATE_API_HOME = "streams.worker.kafka_compat"


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def runtime_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The package modules `name` imports when it is imported (not those only under
    `if TYPE_CHECKING:`, nor inside functions)."""
    imported: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in [node] if not isinstance(node, ast.If | ast.Try) else ast.walk(node):
            if isinstance(child, ast.Import):
                imported.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                imported.add(child.module)
                imported.update(f"{child.module}.{a.name}" for a in child.names)
    return {m for m in imported if m in known and m != name}


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    trees = modules()
    graph = {name: runtime_imports(name, tree, set(trees)) for name, tree in trees.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_the_graph_sees_a_cycle_when_there_is_one() -> None:
    # the check above must be able to fail: two modules importing each other
    a = ast.parse("from streams.b import x\n")
    b = ast.parse("import streams.a\n")
    known = {"streams.a", "streams.b"}
    assert runtime_imports("streams.a", a, known) == {"streams.b"}
    assert runtime_imports("streams.b", b, known) == {"streams.a"}


def test_private_attributes_of_other_objects_are_read_only_in_kafka_compat() -> None:
    offenders = []
    for name, tree in modules().items():
        if name == PRIVATE_API_HOME:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, offenders

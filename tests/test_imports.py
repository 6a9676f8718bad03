"""One-way plumbing: no module of common/ reaches itself through its imports, top-level or inside functions."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def common_imports() -> dict[str, set[str]]:
    """For each module of common/, the modules of common/ it imports anywhere in its file."""
    graph = {}
    for path in sorted((REPO / "common").glob("*.py")):
        name = f"common.{path.stem}" if path.stem != "__init__" else "common"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                deps.add(node.module)
                if node.module == "common":  # from common import distributed
                    deps.update(f"common.{a.name}" for a in node.names)
        graph[name] = {d for d in deps if d.startswith("common.") and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep] if dep in stack else [node, dep]
            if state.get(dep) is None:
                found = visit(dep, stack + [dep])
                if found:
                    return found
        state[node] = 2
        return None

    for start in graph:
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_common_has_no_import_cycle():
    graph = common_imports()
    assert {"common.runs", "common.results", "common.train", "common.summary"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))

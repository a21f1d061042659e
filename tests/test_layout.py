"""The structure DESIGN.md promises, checked: imports point down the layers, no import cycles,
small modules and functions. A failure names the file and the import (or the size) to move."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from roots import ROOT

DOC = ROOT / "docs" / "architecture.md"


def _layers_from_doc() -> list[tuple[str, ...]]:
    """The ```layers block of docs/architecture.md, top layer first, as lowest-first tuples of prefixes.
    A module may import its own layer and those below it, never above; within one package (nas.search,
    nas.latency, ...) any order is allowed, and cycles are checked apart."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("```layers\n", 1)[1].split("```", 1)[0]
    rows = [line.split()[1:] for line in block.splitlines() if line.strip()]
    return [tuple(row) for row in reversed(rows)]


LAYERS = _layers_from_doc()
PACKAGE_FACES = {"nas", "nas.__init__"}  # nas/__init__.py only holds the version
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("nas", "proxies"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module}: not in any layer of docs/architecture.md; add it where it belongs")


def _imports(module: str, path: Path) -> set[str]:
    """Project modules imported anywhere in the file (module level and inside functions)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


# A module importing its own package's face (`from nas.space import x` inside nas/space/) is left out:
# the face re-exports, it does not add a dependency of its own.
GRAPH = {m: {t for t in _imports(m, p) if not m.startswith(t + ".")} for m, p in MODULES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_every_module_has_a_layer():
    for module in MODULES:
        if module not in PACKAGE_FACES:
            _layer(module)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    upward = []
    for module, targets in graph.items():
        if module in PACKAGE_FACES:
            continue
        for target in targets:
            if target in PACKAGE_FACES or _package(target) == _package(module):
                continue
            if _layer(target) > _layer(module):
                upward.append(f"{module} imports {target} (a higher layer)")
    return sorted(upward)


def test_imports_point_down_the_layers():
    upward = _upward(GRAPH)
    assert not upward, "\n".join(upward)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    """The checks above are only worth something if they can fail."""
    assert [n[0] for n in LAYERS[:3]] == ["proxies", "nas.errors", "nas.ops"]
    assert _upward({"proxies.flops": {"nas.space"}, "nas.space.plan": {"nas.ops"}}) == [
        "proxies.flops imports nas.space (a higher layer)"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_and_function_sizes(module):
    path = MODULES[module]
    source = path.read_text(encoding="utf-8")
    lines = source.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_MODULE_LINES})"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(ROOT)}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"

"""The torch-only source of operators, for `nas export`: each op class copied from its own file.

An exported `.py` must run where only torch is installed. Operator classes
are written so that their constructor and `forward` use only torch and
`nas.ops._layers`; this module copies such a class without its toolkit
contract (class attributes and class/static methods), on an `nn.Module`
base, together with every helper from `_layers` (or the op's file) it uses,
and the `Network` below that wires exported units from a table of rows.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import linecache
import sys
import textwrap
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from nas.ops import _layers
from nas.ops._layers import init_weights
from nas.ops._registry import get_op, op_names


class Network(nn.Module):
    """stem -> blocks -> head, each an nn.Sequential of units made from `units` rows (part, op, settings)."""

    def __init__(self, units: tuple, ops: dict, norm: dict, num_classes: int) -> None:
        super().__init__()
        parts: dict[str, list[nn.Module]] = {"stem": [], "blocks": [], "head": []}
        for part, op, settings in units:
            extra = {"num_classes": num_classes} if op == "classifier" else {}
            parts[part].append(ops[op](**settings, **extra, norm=norm))
        self.stem = nn.Sequential(*parts["stem"])
        self.blocks = nn.Sequential(*parts["blocks"])
        self.head = nn.Sequential(*parts["head"])
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _contract(node: ast.stmt) -> bool:
    """Whether a class-body statement is toolkit contract, left out of the standalone copy."""
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        return True
    if isinstance(node, ast.FunctionDef):
        return any(isinstance(d, ast.Name) and d.id in ("classmethod", "staticmethod", "property")
                   for d in node.decorator_list)
    return False


@lru_cache(maxsize=None)
def _helpers(module_name: str) -> dict[str, tuple[str, list[ast.AST]]]:
    """Top-level functions and classes of a module: name -> (source, nodes to scan for the names it uses)."""
    source = inspect.getsource(sys.modules[module_name])
    return {node.name: (ast.get_source_segment(source, node) or "", [node]) for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def _op_piece(op: str) -> tuple[str, list[ast.AST]]:
    """An op class as plain nn.Module source, and the statements it keeps."""
    source = textwrap.dedent(inspect.getsource(get_op(op)))
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef))
    kept = [n for n in node.body if not _contract(n)]
    lines = source.splitlines()
    body = ["\n".join(lines[min([n.lineno, *(d.lineno for d in getattr(n, "decorator_list", ()))]) - 1:n.end_lineno])
            for n in kept]  # whole lines: indentation and decorators kept
    return f"class {node.name}(nn.Module):\n" + "\n\n".join(body), kept


def _defs(ops: list[str]) -> dict[str, tuple[str, list[ast.AST]]]:
    """Every piece the copies may use, in the order they are written: `_layers`, helpers in the ops'
    own files, the op classes, then `Network`."""
    classes = {get_op(op).__name__: op for op in ops}
    defs = dict(_helpers(_layers.__name__))
    for module in dict.fromkeys(get_op(op).__module__ for op in ops):
        for name, piece in _helpers(module).items():
            if name in classes:
                continue
            if name in defs and defs[name][0] != piece[0]:
                raise ValueError(f"{module} defines {name!r}, as another operator file or nas.ops._layers does; "
                                 "an exported file can hold only one")
            defs[name] = piece
    defs.update((name, _op_piece(op)) for name, op in classes.items())
    defs["Network"] = _helpers(__name__)["Network"]
    return defs


def standalone_names() -> frozenset[str]:
    """Names an exported module may define (the generated class must not take one)."""
    return frozenset(_defs(list(op_names())))


def standalone_pieces(ops: list[str]) -> list[str]:
    """Source of `Network` and the classes of `ops`, with every helper they use, helpers first."""
    defs = _defs(ops)
    todo, seen = ["Network", *(get_op(op).__name__ for op in ops)], []
    while todo:
        name = todo.pop(0)
        if name not in seen:
            seen.append(name)
            for node in defs[name][1]:
                todo.extend(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in defs)
    return [text for name, (text, _) in defs.items() if name in seen]


def compile_standalone(ops: list[str]) -> dict[str, Any]:
    """The namespace that `standalone_pieces(ops)` define, run from source registered with linecache under
    a made-up file name, so that TorchScript can read the copied classes as it reads an exported file."""
    source = "\n\n\n".join(["from __future__ import annotations\n\nimport torch\nfrom torch import nn",
                             *standalone_pieces(ops)]) + "\n"
    filename = f"<nas-standalone-{hashlib.sha1(source.encode()).hexdigest()[:16]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "nas_standalone"}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - the toolkit's own operator source
    return namespace

"""Export an architecture: a standalone `.py` (torch only), TorchScript or ONNX, and state_dict weights.

Every export rebuilds a fresh module from the Arch. The `.py` copies the
operator classes it needs from their own files, torch-only (`nas.ops.standalone_pieces`),
and adds a data table of each unit's constructor settings (`Op.settings`), so
its `state_dict()` has exactly the keys and shapes of `nas.builder.build(space,
arch)`: weights load either way with strict=True.
Nothing from the YAML reaches the generated code as text: numbers are written
as literals, strings only from allowlists, and the class name must be a plain
identifier. TorchScript scripts the same standalone classes (so the file takes
any input size); ONNX exports the toolkit's own module as the latency tables do.
"""
from __future__ import annotations

import builtins
import dataclasses
import io
import keyword
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from torch import nn

from nas.builder import build
from nas.cost import CostModel
from nas.errors import NasError
from nas.ops import all_fields, compile_standalone, get_op, op_names, standalone_names, standalone_pieces
from nas.space import Arch, SearchSpace, decisions, encode, plan
from proxies.atomic import write_bytes_atomic

__all__ = ["FORMATS", "ExportError", "class_name_for", "export", "export_onnx", "export_python", "export_torchscript",
           "load_weights", "python_source", "save_weights", "standalone_model", "unit_rows", "weights_path"]

FORMATS = ("py", "torchscript", "onnx")

#: A state_dict, or the path of a file holding one (read with torch.load(weights_only=True)).
Weights = Union[str, os.PathLike, Mapping[str, torch.Tensor]]
PathLike = Union[str, os.PathLike]


class ExportError(NasError, ValueError):
    """An export cannot be written as asked: names the file or value and what is allowed."""


# ---- the unit table: each unit's constructor settings, as its standalone class takes them ----

_PARTS = ("stem", "blocks", "head")


def _text_values() -> dict[str, tuple]:
    """Settings that may be strings, and the only strings written for each (from the field declarations)."""
    return {f.name: f.allowed for f in all_fields() if f.allowed}


def _checked_arch(space: SearchSpace, arch: Mapping[str, Any] | None) -> Arch:
    """The Arch to export: every decision given and allowed (a fixed architecture needs none)."""
    if isinstance(arch, Arch):
        return arch
    if arch is None and decisions(space):
        left = decisions(space)
        raise ExportError(f"{space.file}: not a fixed architecture: {len(left)} decisions left "
                          f"(e.g. {left[0].name}); give an arch or pick one with `nas arch sample`")
    return Arch.of(arch or {}, space)


def unit_rows(space: SearchSpace, arch: Mapping[str, Any] | None = None) -> tuple[tuple[str, str, dict], ...]:
    """(part, op, settings) for each unit in execution order: what the standalone `Network` is built from."""
    rows = []
    for unit in plan(space, _checked_arch(space, arch)).units:
        c = unit.key.config
        settings = get_op(c.op).settings(c)
        settings.pop("num_classes", None)  # the exported Network passes its own
        if settings.get("se") == 0:
            settings.pop("se_gate", None)  # no SE, no gate
        part = unit.stage if unit.stage in ("stem", "head") else "blocks"
        rows.append((part, c.op, settings))
    return tuple(rows)


def _norm(space: SearchSpace) -> dict[str, float]:
    return {"eps": float(space.norm.eps), "momentum": float(space.norm.momentum)}


def standalone_model(space: SearchSpace, arch: Mapping[str, Any] | None = None) -> nn.Module:
    """The standalone `Network` for `arch`, from the source the exported `.py` holds, without writing it."""
    rows = unit_rows(space, arch)
    ops = list(dict.fromkeys(op for _, op, _ in rows))
    namespace = compile_standalone(ops)
    classes = {op: namespace[get_op(op).__name__] for op in ops}
    return namespace["Network"](rows, classes, _norm(space), space.num_classes)


def _with_classes(space: SearchSpace, num_classes: int | None) -> SearchSpace:
    if num_classes is None or num_classes == space.num_classes:
        return space
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ExportError(f"num_classes must be a positive integer, got {num_classes!r}")
    return dataclasses.replace(space, num_classes=num_classes)


# ---- the generated source ----

_GENERATED = ("annotations", "torch", "nn", "NORM", "INPUT_SHAPE", "UNITS", "OPS", "build_model")


def _name_problem(name: str) -> str | None:
    if not (name.isascii() and name.isidentifier()):
        return "is not a Python identifier (ASCII letters, digits and _, not starting with a digit)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if name in _GENERATED or name in standalone_names():
        return "is already defined in the exported module"
    if hasattr(builtins, name):
        return "would hide the Python builtin of that name"
    return None


def class_name_for(space: SearchSpace, class_name: str | None = None) -> str:
    """`class_name` once checked, else one derived from the space name (mobilenet_v3_large -> MobilenetV3Large)."""
    if class_name is not None:
        problem = _name_problem(class_name) if isinstance(class_name, str) else "is not a string"
        if problem:
            raise ExportError(f"class name {class_name!r} {problem}")
        return class_name
    name = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", space.name))
    if not name or name[0].isdigit():
        name = "Net" + name
    if _name_problem(name):
        name += "Net"
    problem = _name_problem(name)
    if problem:
        raise ExportError(f"{space.file}: cannot derive a class name from {space.name!r}: {name!r} {problem}; "
                          "give one explicitly")
    return name


def _comment(text: str) -> str:
    """Text safe inside a one-line comment: control and non-ASCII characters escaped."""
    return text.encode("unicode_escape").decode("ascii")


def _literal(field: str, value: Any) -> str:
    texts = _text_values()
    if isinstance(value, bool) or (isinstance(value, int) and field not in texts):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str) and value in texts.get(field, ()):
        return f'"{value}"'
    allowed = ", ".join(texts.get(field, ("booleans, integers and finite numbers",)))
    raise ExportError(f"cannot write {field}={value!r} into generated code; allowed: {allowed}")


def _row_text(part: str, op: str, settings: dict[str, Any], width: int = 112) -> str:
    """One UNITS row, wrapped under its opening brace."""
    if part not in _PARTS or op not in op_names():
        raise ExportError(f"cannot write unit ({part!r}, {op!r}) into generated code")
    start = f'    ("{part}", "{op}", {{'
    items = [f'"{k}": {_literal(k, v)}' for k, v in settings.items()]
    lines, line = [], start
    for i, item in enumerate(items):
        piece = item + (", " if i + 1 < len(items) else "}),")
        if line != start and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = " " * len(start)
        line += piece
    return "\n".join([*lines, line if items else start + "}),"])


_HEADER = '''\
# {name}: a standalone PyTorch model written by mobile-nas `nas export`. It needs only torch.
# source: {file}
# arch:   {arch}
# {params:,} params, {macs:,} MACs (conv + linear) at {shape}, {classes} classes
#
#   model = build_model(num_classes={classes})
#   model.load_state_dict(torch.load("WEIGHTS.pth", weights_only=True))  # weights from `nas export --weights`
# mobile-nas times it with freed memory kept (glibc's defaults may page-fault on every call); to time it so:
#   MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 python your_timing.py
"""{cls}: standalone PyTorch module exported by mobile-nas; `build_model()` makes one."""
from __future__ import annotations

import torch
from torch import nn
'''

_FOOTER = '''\
# BatchNorm settings of the whole network.
NORM = {{"eps": {eps!r}, "momentum": {momentum!r}}}
# (channels, height, width) of the input the architecture was chosen for.
INPUT_SHAPE = {shape!r}

# One row per unit, in execution order: (part, operator, settings). `part` names the nn.Sequential
# (stem, blocks or head) the unit joins; settings are its resolved widths, strides and layout flags.
UNITS = (
{rows}
)

OPS = {{
{ops}
}}


class {cls}(Network):
    """{name} at {res}x{res}: stem -> blocks -> head."""

    def __init__(self, num_classes: int = {classes}) -> None:
        super().__init__(UNITS, OPS, NORM, num_classes)


def build_model(num_classes: int = {classes}) -> {cls}:
    """A freshly initialised {cls}; num_classes changes only the classifier's output size."""
    return {cls}(num_classes=num_classes)
'''


def python_source(space: SearchSpace, arch: Mapping[str, Any] | None = None, *, class_name: str | None = None,
                  costs: CostModel | None = None) -> str:
    """The text of the standalone `.py` for `arch` (see `export_python`)."""
    arch = _checked_arch(space, arch)
    cls = class_name_for(space, class_name)
    rows = unit_rows(space, arch)
    cost = (costs or CostModel()).cost(space, arch)
    shape = plan(space, arch).input_shape
    ops = list(dict.fromkeys(op for _, op, _ in rows))
    head = _HEADER.format(name=_comment(space.name), file=_comment(space.file), arch=_comment(encode(space, arch)),
                          params=cost.params, macs=cost.macs, shape="x".join(map(str, shape)),
                          classes=space.num_classes, cls=cls)
    norm = _norm(space)
    foot = _FOOTER.format(
        eps=_checked_float("norm.eps", norm["eps"]), momentum=_checked_float("norm.momentum", norm["momentum"]),
        shape=tuple(int(d) for d in shape), rows="\n".join(_row_text(*row) for row in rows),
        ops="\n".join(f'    "{op}": {get_op(op).__name__},' for op in ops),
        cls=cls, name=cls, res=int(cost.resolution), classes=int(space.num_classes))
    return "\n\n\n".join([head.rstrip("\n"), *standalone_pieces(ops), foot])


def _checked_float(field: str, value: float) -> float:
    if not math.isfinite(value):
        raise ExportError(f"cannot write {field}={value!r} into generated code; allowed: finite numbers")
    return value


def export_python(space: SearchSpace, arch: Mapping[str, Any] | None, path: PathLike, *,
                  class_name: str | None = None, costs: CostModel | None = None) -> Path:
    """Write the standalone `.py` of `arch` atomically: the network class, `build_model(num_classes=...)`, its
    operators and unit settings; its only third-party import is torch. `costs`: a warm cost cache for the header."""
    text = python_source(space, arch, class_name=class_name, costs=costs)
    return write_bytes_atomic(path, text.encode("utf-8"))


# ---- weights ----

def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _load_problem(exc: BaseException) -> str:
    """What torch.load(weights_only=True) refused, without its advice to turn the check off."""
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+?)(?:\.\s|\n|$)", str(exc))
    return found.group(1) if found else _one_line(exc)


def _read_state(weights: Weights) -> tuple[Mapping[str, Any], str]:
    if isinstance(weights, Mapping):
        return weights, "the given state_dict"
    source = os.fspath(weights)
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExportError(f"{source}: no such weights file") from None
    except Exception as exc:  # torch.load raises many types for damaged or non-tensor pickles
        raise ExportError(f"{source}: not a state_dict that torch.load(weights_only=True) reads "
                          f"({_load_problem(exc)})") from exc
    if not isinstance(state, Mapping):
        raise ExportError(f"{source}: expected a state_dict (names -> tensors), got {type(state).__name__}")
    return state, source


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def load_weights(model: nn.Module, weights: Weights, *, what: str = "the architecture") -> None:
    """Load a state_dict (or a file of one) into `model` strictly; a misfit names the first mismatching key."""
    state, source = _read_state(weights)
    bad = next(((k, v) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ExportError(f"{source}: expected a state_dict (names -> tensors); key {bad[0]!r} holds "
                          f"{type(bad[1]).__name__}")
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise ExportError(f"{source}: does not fit {what}: missing key {key!r} (shape {_shape(tensor)})")
        if state[key].shape != tensor.shape:
            raise ExportError(f"{source}: does not fit {what}: {key!r} has shape {_shape(state[key])}, "
                              f"the architecture needs {_shape(tensor)}")
    extra = next((k for k in state if k not in expected), None)
    if extra is not None:
        raise ExportError(f"{source}: does not fit {what}: unexpected key {extra!r}")
    model.load_state_dict(state, strict=True)


def save_weights(model: nn.Module, path: PathLike) -> Path:
    """Write `model`'s state_dict (CPU tensors only) atomically; it loads with torch.load(weights_only=True)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def _what(space: SearchSpace) -> str:
    return f"{space.name} ({space.file})"


# ---- TorchScript and ONNX ----

_JIT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


def export_torchscript(space: SearchSpace, arch: Mapping[str, Any] | None, path: PathLike, *,
                       weights: Weights | None = None) -> Path:
    """Script the standalone network (eval mode, any input size) and save it with torch.jit.save, atomically."""
    model = standalone_model(space, arch)
    if weights is not None:
        load_weights(model, weights, what=_what(space))
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATED, category=DeprecationWarning)
        try:
            torch.jit.save(torch.jit.script(model), buffer)
        except Exception as exc:  # scripting reports many error types
            raise ExportError(f"{os.fspath(path)}: TorchScript export failed: {_one_line(exc)}") from exc
    return write_bytes_atomic(path, buffer.getvalue())


def export_onnx(space: SearchSpace, arch: Mapping[str, Any] | None, path: PathLike, *,
                weights: Weights | None = None) -> Path:
    """Write the toolkit's module as ONNX (opset 18, batch 1, the architecture's input size), atomically,
    with the latency tables' exporter: the TorchScript-based one, dynamo where it is gone or fails."""
    from proxies.latency import LatencyError
    from proxies.latency import export_onnx as write_onnx

    arch = _checked_arch(space, arch)
    model = build(space, arch, init=weights is None)
    if weights is not None:
        load_weights(model, weights, what=_what(space))
    shape = plan(space, arch).input_shape
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            try:
                return write_onnx(model, shape, path, dynamo=False)
            except LatencyError:
                return write_onnx(model, shape, path, dynamo=True)
        except LatencyError as exc:
            raise ExportError(f"{os.fspath(path)}: {exc}") from exc


def weights_path(path: PathLike) -> Path:
    """Where `export(..., "py", path, weights=...)` saves the weights by default: beside it, suffix .pth."""
    return Path(path).with_suffix(".pth")


def export(space: SearchSpace, arch: Mapping[str, Any] | None, fmt: str, path: PathLike, *,
           weights: Weights | None = None, class_name: str | None = None, num_classes: int | None = None,
           weights_out: PathLike | None = None) -> Path:
    """Write `arch` in format `fmt` (py, torchscript or onnx) to `path` and return it.

    TorchScript and ONNX carry the weights inside. For `py` they are checked
    against the architecture and saved beside the module as a state_dict
    (`weights_out`, default `weights_path(path)`); nothing is written when they
    do not fit. `num_classes` resizes the classifier only.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if class_name is not None and fmt != "py":
        raise ExportError(f"a class name applies to the py format only, not {fmt}")
    space = _with_classes(space, num_classes)
    if fmt == "torchscript":
        return export_torchscript(space, arch, path, weights=weights)
    if fmt == "onnx":
        return export_onnx(space, arch, path, weights=weights)
    if weights is None:
        return export_python(space, arch, path, class_name=class_name)
    target = Path(weights_out) if weights_out is not None else weights_path(path)
    if target.resolve() == Path(path).resolve():
        raise ExportError(f"{os.fspath(path)}: the weights would overwrite the module; give another weights file")
    model = build(space, _checked_arch(space, arch), init=False)
    load_weights(model, weights, what=_what(space))
    written = export_python(space, arch, path, class_name=class_name)
    save_weights(model, target)
    return written

"""YAML -> `SearchSpace`, validating everything at load; each error is one line naming file and key path."""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, NoReturn

from nas.errors import SpaceError
from nas.ops import (ACTIVATIONS, POOLS, NormSpec, all_fields, block_fields, boolean_problem, get_op, integer_problem,
                     kind, number_problem, odd_size, one_of_problem, op_names)
from nas.space.arch import decisions, project
from nas.space.positions import configs, positions
from nas.space.schema import BlockSpace, HeadSpec, SearchSpace, StageSpace, StemSpec
from nas.space.yamlio import read_yaml

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TOP_KEYS = ("name", "in_channels", "num_classes", "resolution", "width_mult", "channel_divisor",
            "norm", "stem", "stages", "head", "backbone")


class _Reader:
    """Typed readers that raise `SpaceError` with the key path (messages from `nas.ops`' value checks)."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, detail: str) -> NoReturn:
        raise SpaceError(self.file, path, detail)

    def checked(self, value: Any, path: str, problem: str | None) -> Any:
        if problem:
            self.fail(path, problem)
        return value

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping with keys {', '.join(allowed)}; got {kind(value)}")
        for key in value:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.fail(where, f"unknown key; allowed: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                self.fail(path, f"missing required key '{key}'")
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
        return self.checked(value, path, integer_problem(value, minimum, maximum))

    def number(self, value: Any, path: str, low: float, high: float, *, low_open: bool = True) -> float | int:
        return self.checked(value, path, number_problem(value, low, high, low_open=low_open))

    def boolean(self, value: Any, path: str) -> bool:
        return self.checked(value, path, boolean_problem(value))

    def one_of(self, value: Any, path: str, allowed: tuple, what: str = "") -> Any:
        return self.checked(value, path, one_of_problem(value, allowed, what))

    def choices(self, value: Any, path: str, item: Callable[[Any, str], Any]) -> tuple:
        """A scalar (one fixed value) or a non-empty list of distinct choices."""
        if not isinstance(value, list):
            return (item(value, path),)
        if not value:
            self.fail(path, "empty list of choices; give a value or at least one choice")
        out: list = []
        for i, v in enumerate(value):
            got = item(v, f"{path}[{i}]")
            if got in out:
                self.fail(path, f"choice {v!r} is listed twice")
            out.append(got)
        return tuple(out)


def _field_readers(r: _Reader) -> dict[str, Callable[[Any, str], Any]]:
    """A reader per YAML block field, from the field declarations; `op` names a stage operator."""
    readers: dict[str, Callable[[Any, str], Any]] = {
        "op": lambda v, p: r.one_of(v, p, op_names(stage_only=True), "stage operators")}
    for spec in all_fields():
        if spec.check is not None:
            readers[spec.name] = lambda v, p, check=spec.check: r.checked(v, p, check(v))
    return readers


def _block(r: _Reader, parts: list[tuple[dict, str]], path: str) -> BlockSpace:
    """Merge a stage's `block` template and a `blocks[j]` override, then check the result."""
    readers = _field_readers(r)
    allowed = block_fields()
    choices: dict[str, tuple] = {}
    origin: dict[str, str] = {}
    for raw, where in parts:
        r.mapping(raw, where, allowed)
        for field, value in raw.items():
            choices[field] = r.choices(value, f"{where}.{field}", readers[field])
            origin[field] = where
    if "op" not in choices:
        r.fail(path, "missing required key 'op'")
    ops = [get_op(name) for name in choices["op"]]
    for field in choices:
        if field != "op" and not any(field in op.fields for op in ops):
            r.fail(f"{origin[field]}.{field}", f"not used by {' or '.join(choices['op'])}")
    if "expand" in choices and "hidden" in choices:
        r.fail(path, "give 'expand' or 'hidden', not both")
    for op in ops:
        for any_of in op.required:
            if not any(f in choices for f in any_of):
                need = " or ".join(f"'{f}'" for f in any_of)
                r.fail(path, f"{op.name} needs {need}")
    for spec in all_fields():
        if spec.block and spec.fill and spec.name not in choices and any(spec.name in op.fields for op in ops):
            choices[spec.name] = (spec.default,)
    ordered = {f: choices[f] for f in allowed if f in choices}
    return BlockSpace(choices=MappingProxyType(ordered), path=path)


def _stage(r: _Reader, raw: Any, i: int, names: set[str]) -> StageSpace:
    path = f"stages[{i}]"
    m = r.mapping(raw, path, ("name", "depth", "stride", "width", "block", "blocks"), ("stride", "width"))
    name = m.get("name", f"s{i + 1}")
    if not isinstance(name, str) or not _STAGE_NAME.match(name) or name == "res":
        r.fail(f"{path}.name", f"{name!r} is not a valid stage name (lower-case letters, digits, '_'; not 'res')")
    if name in names:
        r.fail(f"{path}.name", f"{name!r} is used by an earlier stage")
    names.add(name)
    stride = m["stride"]
    if isinstance(stride, bool) or not isinstance(stride, int) or stride not in (1, 2):  # 2.0 is not a stride
        r.fail(f"{path}.stride", f"{stride!r} is not 1 or 2")
    width = r.choices(m["width"], f"{path}.width", lambda v, p: r.integer(v, p, minimum=1))
    blocks_raw = m.get("blocks")
    if blocks_raw is not None and (not isinstance(blocks_raw, list) or not blocks_raw):
        r.fail(f"{path}.blocks", f"expected a non-empty list of block mappings, got {kind(blocks_raw)}")
    if "depth" in m:
        depth = r.choices(m["depth"], f"{path}.depth", lambda v, p: r.integer(v, p, minimum=1, maximum=64))
    elif blocks_raw is not None:
        depth = (len(blocks_raw),)
    else:
        r.fail(path, "missing required key 'depth'")
    if "block" not in m and blocks_raw is None:
        r.fail(path, "needs 'block' (one spec for every block) or 'blocks' (one spec per block)")
    if blocks_raw is not None and len(blocks_raw) != max(depth):
        r.fail(f"{path}.blocks", f"lists {len(blocks_raw)} block{'s' if len(blocks_raw) != 1 else ''} but the largest depth is {max(depth)}")
    blocks = []
    for j in range(max(depth)):
        parts = [(m["block"], f"{path}.block")] if "block" in m else []
        if blocks_raw is not None:
            parts.append((blocks_raw[j], f"{path}.blocks[{j}]"))
        blocks.append(_block(r, parts, parts[-1][1]))
    return StageSpace(name=name, depth=depth, stride=stride, width=width, blocks=tuple(blocks), path=path)


def _stem(r: _Reader, raw: Any) -> StemSpec:
    m = r.mapping(raw, "stem", ("out", "kernel", "stride", "act", "pool"), ("out",))
    return StemSpec(
        out=r.integer(m["out"], "stem.out", minimum=1),
        kernel=r.checked(m.get("kernel", 3), "stem.kernel", odd_size(m.get("kernel", 3))),
        stride=r.integer(m.get("stride", 2), "stem.stride", minimum=1, maximum=2),
        act=r.one_of(m.get("act", "relu"), "stem.act", ACTIVATIONS, "activations"),
        pool=r.one_of(m.get("pool", "none"), "stem.pool", ("none", "max"), "stem pools"),
    )


def _head(r: _Reader, raw: Any) -> HeadSpec:
    m = r.mapping(raw, "head", ("conv", "pool", "hidden", "dropout", "bias"))
    layers = {}
    for part, keys in (("conv", ("out", "act")), ("hidden", ("out", "act", "norm"))):
        if part in m:
            sub = r.mapping(m[part], f"head.{part}", keys, ("out",))
            layers[part] = (r.integer(sub["out"], f"head.{part}.out", minimum=1),
                            r.one_of(sub.get("act", "relu" if part == "conv" else "hardswish"),
                                     f"head.{part}.act", ACTIVATIONS, "activations"),
                            r.boolean(sub.get("norm", False), f"head.{part}.norm"))
    conv, hidden = layers.get("conv", (None, "relu", False)), layers.get("hidden", (None, "hardswish", False))
    return HeadSpec(
        conv_out=conv[0], conv_act=conv[1], hidden=hidden[0], hidden_act=hidden[1], hidden_norm=hidden[2],
        pool=r.one_of(m.get("pool", "avg"), "head.pool", POOLS, "pools"),
        dropout=r.number(m.get("dropout", 0.0), "head.dropout", 0, 0.99, low_open=False),
        bias=r.boolean(m.get("bias", True), "head.bias"),
    )


def _check_shapes(r: _Reader, space: SearchSpace) -> None:
    """Every op choice must be buildable for every width it can meet: impossible combinations fail at load."""
    for position in positions(space):
        for op, config in configs(position):
            reason = op.check(config)
            if reason:
                r.fail(position.block.path, f"{reason} (block {position.index} of stage {position.stage.name})")


def parse_space(data: Any, file: str, *, base_dir: str | os.PathLike | None = None) -> SearchSpace:
    """Validate parsed YAML data into a `SearchSpace`; `file` is used in error messages."""
    r = _Reader(file)
    if data is None:
        r.fail("", "the file is empty; expected a mapping with keys " + ", ".join(TOP_KEYS))
    m = r.mapping(data, "", TOP_KEYS, ("name", "resolution", "stem", "stages", "head"))
    name = m["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        r.fail("name", f"{name!r} is not a valid name (letters, digits, '_', '-', '.')")
    stages_raw = m["stages"]
    if not isinstance(stages_raw, list) or not stages_raw:
        r.fail("stages", "expected a non-empty list of stages, got " + ("an empty list" if stages_raw == [] else kind(stages_raw)))
    norm_raw = r.mapping(m.get("norm", {}), "norm", ("eps", "momentum"))
    names: set[str] = set()
    space = SearchSpace(
        name=name,
        file=file,
        in_channels=r.integer(m.get("in_channels", 3), "in_channels", minimum=1),
        num_classes=r.integer(m.get("num_classes", 1000), "num_classes", minimum=1),
        resolution=r.choices(m["resolution"], "resolution", lambda v, p: r.integer(v, p, minimum=8, maximum=4096)),
        width_mult=r.number(m.get("width_mult", 1.0), "width_mult", 0, 8),
        channel_divisor=r.integer(m.get("channel_divisor", 8), "channel_divisor", minimum=1, maximum=256),
        norm=NormSpec(eps=r.number(norm_raw.get("eps", 1e-5), "norm.eps", 0, 1),
                      momentum=r.number(norm_raw.get("momentum", 0.1), "norm.momentum", 0, 1)),
        stem=_stem(r, m["stem"]),
        stages=tuple(_stage(r, s, i, names) for i, s in enumerate(stages_raw)),
        head=_head(r, m["head"]),
        backbone=None,
    )
    _check_shapes(r, space)
    if "backbone" in m:
        backbone = m["backbone"]
        if not isinstance(backbone, str) or not backbone:
            r.fail("backbone", f"expected the path of a fixed architecture YAML, got {kind(backbone)}")
        path = Path(base_dir or ".") / backbone
        if not path.exists():
            r.fail("backbone", f"{path}: no such file")
        project(space, load_space(path), where="backbone")
        space = replace(space, backbone=str(path))
    return space


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Load and fully validate a search space or fixed architecture YAML file."""
    data = read_yaml(path)
    return parse_space(data, str(path), base_dir=Path(path).parent)


def load_fixed(path: str | os.PathLike) -> SearchSpace:
    """`load_space` for commands that take one architecture: a file with decisions left is refused."""
    space = load_space(path)
    left = decisions(space)
    if left:
        raise SpaceError(str(path), "", f"not a fixed architecture: {len(left)} decisions left "
                         f"(e.g. {left[0].name}); pick one with `nas arch sample`")
    return space

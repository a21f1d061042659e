"""Architectures: one value per decision under stable flat names, plus sampling, size and encoding."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from nas.errors import ArchError, SpaceError
from nas.ops import block_fields, field, get_op
from nas.space.schema import BlockSpace, SearchSpace


@dataclass(frozen=True)
class Decision:
    """A named choice: `res`, `s2.depth`, `s2.width`, `s2.b0.kernel`, ..."""

    name: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class Arch(Mapping[str, Any]):
    """One value for each decision of a space, in the space's decision order. Hashable."""

    items_: tuple[tuple[str, Any], ...]

    def __post_init__(self) -> None:
        # A dict alongside the tuple: lookups are on the hot path of every candidate scored.
        object.__setattr__(self, "_index", dict(self.items_))

    @classmethod
    def of(cls, values: Mapping[str, Any], space: SearchSpace) -> Arch:
        """Check `values` against the space (every decision, allowed values, nothing extra)."""
        names = [d.name for d in decisions(space)]
        extra = sorted(set(values) - set(names))
        if extra:
            raise ArchError(f"{space.file}: unknown decision {extra[0]!r}")
        for d in decisions(space):
            if d.name not in values:
                raise ArchError(f"{space.file}: the architecture gives no value for decision {d.name!r}")
            if values[d.name] not in d.choices or isinstance(values[d.name], bool) != isinstance(d.choices[0], bool):
                raise ArchError(f"{space.file}: {d.name}: {values[d.name]!r} is not one of {list(d.choices)}")
        return cls(tuple((n, values[n]) for n in names))

    def __getitem__(self, name: str) -> Any:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self.items_)


def _block_decisions(prefix: str, block: BlockSpace) -> list[Decision]:
    return [Decision(f"{prefix}.{f}", ch) for f, ch in block.choices.items() if len(ch) > 1]


def decisions(space: SearchSpace) -> tuple[Decision, ...]:
    """Every decision of the space, in canonical order. Blocks past a stage's chosen depth keep their
    decisions (Optuna's multi-objective samplers need a fixed set); they are ignored when building."""
    out: list[Decision] = []
    if len(space.resolution) > 1:
        out.append(Decision("res", space.resolution))
    for stage in space.stages:
        if len(stage.depth) > 1:
            out.append(Decision(f"{stage.name}.depth", stage.depth))
        if len(stage.width) > 1:
            out.append(Decision(f"{stage.name}.width", stage.width))
        for j, block in enumerate(stage.blocks):
            out.extend(_block_decisions(f"{stage.name}.b{j}", block))
    return tuple(out)


def _gate(op_fields: frozenset[str], name: str) -> str:
    """The switch without which `name` changes nothing for an op with `op_fields` ('' if none)."""
    gate = field(name).gate if name != "op" else ""
    return gate if gate in op_fields else ""


def _block_count(block: BlockSpace) -> int:
    """Distinct settings of one block: for each op, the product over the fields it uses
    (gated options such as the SE ones counted only for the settings with their switch on)."""
    total = 0
    for op_name in block.choices["op"]:
        used = get_op(op_name).fields
        gates = {_gate(used, f) for f in block.choices if f in used} - {""}
        n = 1
        for name, ch in block.choices.items():
            if name in used and name not in gates and not _gate(used, name):
                n *= len(ch)
        for gate in gates:
            switch = block.choices[gate]
            options = math.prod(len(ch) for f, ch in block.choices.items() if f in used and _gate(used, f) == gate)
            n *= switch.count(False) + switch.count(True) * options
        total += n
    return total


def size(space: SearchSpace) -> int:
    """Number of distinct architectures (ignored decisions not double-counted)."""
    total = len(space.resolution)
    for stage in space.stages:
        counts = [_block_count(b) for b in stage.blocks]
        per_depth = sum(math.prod(counts[:d]) for d in stage.depth)
        total *= per_depth * len(stage.width)
    return total


def log10_size(space: SearchSpace) -> float:
    return math.log10(size(space))


def sample(space: SearchSpace, seed: int | random.Random) -> Arch:
    """Draw every decision uniformly and independently from its choices."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    return Arch(tuple((d.name, rng.choice(d.choices)) for d in decisions(space)))


def _active(space: SearchSpace, arch: Mapping[str, Any]) -> dict[str, bool]:
    """For each decision, whether it changes the network (its block exists and its op uses the field)."""
    active: dict[str, bool] = {}
    for d in decisions(space):
        parts = d.name.split(".")
        if len(parts) < 3:
            active[d.name] = True
            continue
        stage = next(s for s in space.stages if s.name == parts[0])
        j, name = int(parts[1][1:]), parts[2]
        depth = arch.get(f"{stage.name}.depth", stage.depth[0])
        block = stage.blocks[j].choices
        op = arch.get(f"{parts[0]}.{parts[1]}.op", block["op"][0])
        used = get_op(op).fields
        active[d.name] = j < depth and (name == "op" or name in used)
        gate = _gate(used, name) if name in used else ""
        if gate:  # gated only where the op has the switch
            active[d.name] = active[d.name] and arch.get(f"{parts[0]}.{parts[1]}.{gate}", block.get(gate, (False,))[0])
    return active


def canonical(space: SearchSpace, arch: Mapping[str, Any]) -> Arch:
    """Set decisions that do not change the network to their first choice, so equal networks compare equal."""
    active = _active(space, arch)
    return Arch(tuple((d.name, arch[d.name] if active[d.name] else d.choices[0]) for d in decisions(space)))


# ---- short readable strings: "r192|s1:d2,w96,b0=sg/k3/e6/se1,b1=ir/k5/e4/se0|s2:..." ----
# Ops write their `short` name, fields their declared `code` prefix.

def _fmt(name: str, value: Any) -> str:
    if name == "op":
        return get_op(value).short or value
    prefix = field(name).code
    if isinstance(value, bool):
        return f"{prefix}{int(value)}"
    if isinstance(value, float):
        return f"{prefix}{value:g}"
    return f"{prefix}{value}"


def encode(space: SearchSpace, arch: Mapping[str, Any]) -> str:
    """A short string of the decisions that matter; `decode` gives back the canonical Arch."""
    active = _active(space, arch)
    parts = [f"r{arch['res']}"] if len(space.resolution) > 1 else []
    for stage in space.stages:
        items = []
        for key, tag in (("depth", "d"), ("width", "w")):
            if f"{stage.name}.{key}" in active:
                items.append(f"{tag}{arch[f'{stage.name}.{key}']}")
        for j, block in enumerate(stage.blocks):
            names = [f"{stage.name}.b{j}.{f}" for f in block.choices if len(block.choices[f]) > 1]
            shown = [_fmt(n.rsplit(".", 1)[1], arch[n]) for n in names if active[n]]
            if shown:
                items.append(f"b{j}=" + "/".join(shown))
        if items:
            parts.append(f"{stage.name}:" + ",".join(items))
    return "|".join(parts) or "fixed"


def decode(space: SearchSpace, text: str) -> Arch:
    """Parse `encode`'s string; decisions it leaves out take their first choice."""
    given: dict[str, str] = {}
    tokens = [] if text.strip() == "fixed" else text.strip().split("|")
    for token in tokens:
        if token.startswith("r") and ":" not in token:
            given["res"] = token[1:]
            continue
        stage, _, items = token.partition(":")
        for item in filter(None, items.split(",")):
            if item[0] in "dw" and "=" not in item:
                given[f"{stage}.{'depth' if item[0] == 'd' else 'width'}"] = item[1:]
            elif item.startswith("b") and "=" in item:
                block, _, values = item.partition("=")
                given[f"{stage}.{block}"] = values
            else:
                raise ArchError(f"cannot read {item!r} in architecture string {text!r}")
    return _from_tokens(space, given, text)


def _from_tokens(space: SearchSpace, given: dict[str, str], text: str) -> Arch:
    values: dict[str, Any] = {}
    lookup = {d.name: d for d in decisions(space)}

    def parse(name: str, raw: str) -> Any:
        d = lookup.get(name)
        if d is None:
            raise ArchError(f"{name!r} in {text!r} is not a decision of {space.name}")
        for choice in d.choices:
            shown = _fmt(name.rsplit(".", 1)[-1], choice) if name.count(".") == 2 else str(choice)
            if raw in (shown, str(choice)):
                return choice
        raise ArchError(f"{name}: {raw!r} in {text!r} is not one of {list(d.choices)}")

    for name, raw in given.items():
        if name.count(".") == 1 and ".b" in name:
            stage_name, block = name.split(".")
            stage = next((s for s in space.stages if s.name == stage_name), None)
            j = int(block[1:]) if block[1:].isdigit() else -1
            if stage is None or not 0 <= j < len(stage.blocks):
                raise ArchError(f"{name!r} in {text!r} is not a block of {space.name}")
            fields = [f for f, ch in stage.blocks[j].choices.items() if len(ch) > 1]
            op_name = f"{name}.op"
            raws = raw.split("/")
            op = parse(op_name, raws[0]) if op_name in lookup else stage.blocks[j].choices["op"][0]
            used = [f for f in fields if f == "op" or f in get_op(op).fields]
            if len(raws) != len(used):
                raise ArchError(f"{name}: expected {len(used)} values ({', '.join(used)}) in {text!r}")
            for f, r in zip(used, raws):
                values[f"{name}.{f}"] = parse(f"{name}.{f}", r)
        else:
            values[name] = parse(name, raw)
    full = {d.name: values.get(d.name, d.choices[0]) for d in decisions(space)}
    return canonical(space, full)


def project(space: SearchSpace, fixed: SearchSpace, where: str = "") -> Arch:
    """The Arch of `space` that builds exactly the fixed architecture `fixed`; SpaceError if none does."""
    path = where or fixed.file

    def fail(detail: str) -> None:
        raise SpaceError(space.file, path, f"{fixed.file} is not a point of this space: {detail}")

    if decisions(fixed):
        fail(f"it still has choices ({decisions(fixed)[0].name})")
    for attr in ("in_channels", "num_classes", "width_mult", "channel_divisor", "norm", "stem", "head"):
        if getattr(space, attr) != getattr(fixed, attr):
            fail(f"{attr} differs ({getattr(fixed, attr)} vs {getattr(space, attr)})")
    if len(space.stages) != len(fixed.stages):
        fail(f"{len(fixed.stages)} stages vs {len(space.stages)}")
    values: dict[str, Any] = {}

    def take(name: str, value: Any, choices: tuple) -> None:
        if value not in choices:
            fail(f"{name} = {value!r} is not one of {list(choices)}")
        if len(choices) > 1:
            values[name] = value

    take("res", fixed.resolution[0], space.resolution)
    for stage, fstage in zip(space.stages, fixed.stages):
        if stage.stride != fstage.stride:
            fail(f"{stage.name}.stride = {fstage.stride}, the space has {stage.stride}")
        take(f"{stage.name}.depth", fstage.depth[0], stage.depth)
        take(f"{stage.name}.width", fstage.width[0], stage.width)
        for j, fblock in enumerate(fstage.blocks):
            op = fblock.choices["op"][0]
            for name in block_fields():
                ch = stage.blocks[j].choices.get(name)
                mine = fblock.choices.get(name)
                if name != "op" and name not in get_op(op).fields:
                    continue
                if ch is None or mine is None:
                    if ch != mine:
                        fail(f"{stage.name}.b{j}.{name} is set in one file only")
                    continue
                take(f"{stage.name}.b{j}.{name}", mine[0], ch)
    full = {d.name: values.get(d.name, d.choices[0]) for d in decisions(space)}
    return canonical(space, full)

"""Arch -> the exact list of units (static config + input shape), without building any module.

This is where channels, strides, hidden widths and position-dependent layout
flags are decided, once, for the builder, the cost cache and the latency
table alike. It needs no torch modules, so scoring a candidate stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from nas.errors import ArchError
from nas.ops import BlockConfig, BlockKey, get_op
from nas.space.schema import BLOCK_DEFAULTS, SearchSpace


@dataclass(frozen=True)
class Unit:
    """One unit of a planned network: where it sits and its key."""

    stage: str  # "stem", a stage name, or "head"
    index: int  # position within its stage
    key: BlockKey

    @cached_property
    def text(self) -> str:
        """Canonical key text (only the fields the op uses)."""
        return get_op(self.key.config.op).key_text(self.key)


@dataclass(frozen=True)
class NetPlan:
    resolution: int
    units: tuple[Unit, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.units[0].key.input_shape


def block_config(fields: Mapping[str, Any], cin: int, cout: int, stride: int, *,
                 first_unit: bool = False, keep_3x3: bool = False) -> BlockConfig:
    """Resolve one block's field values into a `BlockConfig`; fields its op does not use are dropped."""
    op = fields["op"]
    cls = get_op(op)

    def value(name: str) -> Any:
        if name not in cls.fields:
            return None
        return fields.get(name, BLOCK_DEFAULTS.get(name))

    expand, hidden = value("expand"), value("hidden")
    settings = {name: value(name) for name in ("kernel", "se", "act", "groups", "identity_mult", "se_ratio", "se_gate")}
    if not settings["se"]:  # SE options change nothing without SE: keep keys of equal networks equal
        settings["se_ratio"] = settings["se_gate"] = None
    return BlockConfig(
        op=op, cin=cin, cout=cout, stride=stride,
        expand=float(expand) if expand is not None else 0.0,
        hidden=cls.hidden_channels(cin, cout, expand, hidden),
        first_unit=first_unit and op == "shuffle_v1",
        keep_3x3=keep_3x3 and op == "sandglass",
        **{k: v for k, v in settings.items() if v is not None},
    )


def out_size(size: int, stride: int) -> int:
    """Spatial size after a unit: every conv and pool here is 'same'-padded with an odd kernel."""
    return (size - 1) // stride + 1


def plan(space: SearchSpace, values: Mapping[str, Any]) -> NetPlan:
    """The units of the network that `values` (decision name -> value) selects in `space`."""

    def pick(name: str, choices: tuple[Any, ...]) -> Any:
        if len(choices) == 1:
            return choices[0]
        if name not in values:
            raise ArchError(f"{space.file}: the architecture gives no value for decision {name!r}")
        value = values[name]
        if value not in choices:
            raise ArchError(f"{space.file}: {name}: {value!r} is not one of {list(choices)}")
        return value

    values = getattr(values, "_index", values)  # an Arch's plain dict: C-speed lookups on the hot path
    units: list[Unit] = []
    res = pick("res", space.resolution)
    shape = (space.in_channels, res, res)

    def add(stage: str, index: int, config: BlockConfig) -> None:
        nonlocal shape
        units.append(Unit(stage, index, BlockKey(config, shape)))
        size = out_size(shape[1], config.stride) if config.op != "global_pool" and config.op != "classifier" else 1
        shape = (config.cout, size, size)

    stem = space.stem
    add("stem", 0, BlockConfig(op="conv_bn_act", cin=shape[0], cout=space.channels(stem.out),
                               stride=stem.stride, kernel=stem.kernel, act=stem.act))
    if stem.pool == "max":
        add("stem", 1, BlockConfig(op="max_pool", cin=shape[0], cout=shape[0], stride=2, kernel=3))

    memo: dict = space._memo  # type: ignore[attr-defined]
    for si, stage in enumerate(space.stages):
        depth = pick(f"{stage.name}.depth", stage.depth)
        cout = space.channels(pick(f"{stage.name}.width", stage.width))
        for j in range(depth):
            names = memo.get((si, j))
            if names is None:  # only real decisions are picked per candidate; fixed fields are constant
                choices = stage.blocks[j].choices
                names = memo[(si, j)] = (
                    tuple((f, f"{stage.name}.b{j}.{f}", ch) for f, ch in choices.items() if len(ch) > 1),
                    {f: ch[0] for f, ch in choices.items() if len(ch) == 1},
                )
            try:
                chosen = tuple([values[name] for _, name, _ in names[0]])
            except KeyError as exc:
                raise ArchError(f"{space.file}: the architecture gives no value for decision {exc.args[0]!r}") from None
            keep_3x3 = j == 0 and depth == 1 and stage.stride == 1
            # Units repeat across candidates: resolve each distinct one once per space.
            memo_key = (si, j, chosen, shape, cout, keep_3x3)
            unit = memo.get(memo_key)
            if unit is None:  # values are checked on a miss; a hit means they were checked before
                fields = {**names[1], **{f: pick(name, ch) for (f, name, ch) in names[0]}}
                config = block_config(fields, shape[0], cout, stage.stride if j == 0 else 1,
                                      first_unit=si == 0 and j == 0, keep_3x3=keep_3x3)
                unit = memo[memo_key] = Unit(stage.name, j, BlockKey(config, shape))
            units.append(unit)
            shape = (cout, out_size(shape[1], unit.key.config.stride), out_size(shape[2], unit.key.config.stride))

    head = space.head
    if head.conv_out is not None:
        add("head", 0, BlockConfig(op="conv_bn_act", cin=shape[0], cout=space.head_channels(head.conv_out),
                                   stride=1, kernel=1, act=head.conv_act))
    add("head", len([u for u in units if u.stage == "head"]),
        BlockConfig(op="global_pool", cin=shape[0], cout=shape[0], pool=head.pool))
    add("head", len([u for u in units if u.stage == "head"]),
        BlockConfig(op="classifier", cin=shape[0], cout=space.num_classes,
                    hidden=space.head_channels(head.hidden) if head.hidden else 0,
                    act=head.hidden_act if head.hidden else "none", dropout=head.dropout, bias=head.bias))
    return NetPlan(resolution=res, units=tuple(units))

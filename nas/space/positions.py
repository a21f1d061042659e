"""Every block position of a space with everything it can meet over all architectures: the widths in
and out, its stride and position flags, and the configs its choices make there.

Load-time validation asks each config whether its op can build it; the unit
enumeration lists each config's key. Both walk the same positions here, by the
same rules as `nas.space.plan` (tests check the enumeration against brute force).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any, Iterator

from nas.ops import BlockConfig, Op, block_fields, get_op
from nas.space.plan import block_config
from nas.space.schema import BlockSpace, SearchSpace, StageSpace


@dataclass(frozen=True)
class Position:
    """Block `index` of `stage`: the (cin, cout) pairs it can see, its stride and position flag sets."""

    stage: StageSpace
    index: int
    pairs: tuple[tuple[int, int], ...]
    stride: int
    flags: tuple[dict[str, bool], ...]

    @property
    def block(self) -> BlockSpace:
        return self.stage.blocks[self.index]


def positions(space: SearchSpace) -> Iterator[Position]:
    """Block positions in network order."""
    previous = [space.channels(space.stem.out)]
    for si, stage in enumerate(space.stages):
        outs = sorted({space.channels(w) for w in stage.width})
        for j in range(len(stage.blocks)):
            if j == 0:
                pairs = tuple((ci, co) for ci in previous for co in outs)
                keeps = sorted({d == 1 and stage.stride == 1 for d in stage.depth})
            else:
                pairs, keeps = tuple((c, c) for c in outs), [False]
            flags = tuple({"first_unit": si == 0 and j == 0, "keep_3x3": keep} for keep in keeps)
            yield Position(stage, j, pairs, stage.stride if j == 0 else 1, flags)
        previous = outs


def choice_sets(block: BlockSpace, op: type[Op]) -> Iterator[dict[str, Any]]:
    """Every combination of the block's choices for the fields `op` reads (with `op` set)."""
    used = [f for f in block_fields()[1:] if f in op.fields and f in block.choices]
    for combo in product(*(block.choices[f] for f in used)):
        yield dict(zip(used, combo), op=op.name)


def configs(position: Position) -> Iterator[tuple[type[Op], BlockConfig]]:
    """(op, config) for every op choice, field combination, width pair and flag set of the position."""
    for op_name in position.block.choices["op"]:
        op = get_op(op_name)
        for fields in choice_sets(position.block, op):
            for (cin, cout), flags in product(position.pairs, position.flags):
                yield op, block_config(fields, cin, cout, position.stride, **flags)

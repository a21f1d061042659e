"""Every distinct unit a space can produce: the entries a latency table for the space must hold."""
from __future__ import annotations

from itertools import product

from nas.ops import BlockConfig, BlockKey, get_op
from nas.space.plan import Unit, block_config, out_size
from nas.space.schema import BLOCK_FIELDS, SearchSpace


def unique_units(space: SearchSpace) -> dict[str, Unit]:
    """Canonical key text -> a unit with that key, over every architecture of the space.

    Walks the same rules as `plan` (widths, strides, spatial sizes, position
    flags) over all choices at once; tests check it against brute force.
    """
    found: dict[str, Unit] = {}

    def add(stage: str, index: int, config: BlockConfig, shape: tuple[int, int, int]) -> None:
        unit = Unit(stage, index, BlockKey(config, shape))
        found.setdefault(unit.text, unit)

    stem = space.stem
    for res in space.resolution:
        c, size = space.channels(stem.out), out_size(res, stem.stride)
        add("stem", 0, BlockConfig(op="conv_bn_act", cin=space.in_channels, cout=c, stride=stem.stride,
                                   kernel=stem.kernel, act=stem.act), (space.in_channels, res, res))
        if stem.pool == "max":
            add("stem", 1, BlockConfig(op="max_pool", cin=c, cout=c, stride=2, kernel=3), (c, size, size))
            size = out_size(size, 2)
        widths = {c}
        for si, stage in enumerate(space.stages):
            outs = sorted({space.channels(w) for w in stage.width})
            after = out_size(size, stage.stride)
            for j, block in enumerate(stage.blocks):
                if j == 0:
                    pairs = [(ci, co) for ci in sorted(widths) for co in outs]
                    stride, at = stage.stride, size
                    keeps = {d == 1 and stage.stride == 1 for d in stage.depth}
                else:
                    pairs, stride, at, keeps = [(co, co) for co in outs], 1, after, {False}
                for op_name in block.choices["op"]:
                    used = [f for f in BLOCK_FIELDS[1:] if f in get_op(op_name).fields and f in block.choices]
                    for combo in product(*(block.choices[f] for f in used)):
                        fields = dict(zip(used, combo), op=op_name)
                        for (cin, cout), keep in product(pairs, keeps):
                            config = block_config(fields, cin, cout, stride, first_unit=si == 0 and j == 0,
                                                  keep_3x3=keep)
                            add(stage.name, j, config, (cin, at, at))
            widths, size = set(outs), after
        head = space.head
        for c in sorted(widths):
            index = 0
            if head.conv_out is not None:
                conv = BlockConfig(op="conv_bn_act", cin=c, cout=space.head_channels(head.conv_out), stride=1,
                                   kernel=1, act=head.conv_act)
                add("head", 0, conv, (c, size, size))
                c, index = conv.cout, 1
            add("head", index, BlockConfig(op="global_pool", cin=c, cout=c, pool=head.pool), (c, size, size))
            add("head", index + 1, BlockConfig(
                op="classifier", cin=c, cout=space.num_classes,
                hidden=space.head_channels(head.hidden) if head.hidden else 0,
                act=head.hidden_act if head.hidden else "none", dropout=head.dropout, bias=head.bias), (c, 1, 1))
    return found

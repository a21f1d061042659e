"""Every distinct unit a space can produce: the entries a latency table for the space must hold."""
from __future__ import annotations

from nas.ops import BlockKey
from nas.space.plan import Unit, chain, head_configs, out_size, stem_configs
from nas.space.positions import configs, positions
from nas.space.schema import SearchSpace


def unique_units(space: SearchSpace) -> dict[str, Unit]:
    """Canonical key text -> a unit with that key, over every architecture of the space.

    Walks the block positions validation walks (`nas.space.positions`) at
    every resolution, with the stem and head the planner makes; tests check it
    against brute force.
    """
    found: dict[str, Unit] = {}
    blocks = [(p, [config for _, config in configs(p)]) for p in positions(space)]
    for res in space.resolution:
        stem = chain("stem", stem_configs(space), (space.in_channels, res, res))
        for unit in stem:
            found.setdefault(unit.text, unit)
        size = out_size(stem[-1].key.input_shape[1], stem[-1].key.config.stride)
        for position, block_configs in blocks:
            at = size
            if position.index == 0:
                size = out_size(size, position.stride)
            for config in block_configs:
                unit = Unit(position.stage.name, position.index, BlockKey(config, (config.cin, at, at)))
                found.setdefault(unit.text, unit)
        for c in sorted({space.channels(w) for w in space.stages[-1].width}):
            for unit in chain("head", head_configs(space, c), (c, size, size)):
                found.setdefault(unit.text, unit)
    return found

"""unique_units lists exactly the units the space's architectures can produce."""
from __future__ import annotations

import itertools

import pytest

from nas.errors import ArchError
from nas.ops import get_op
from nas.space import decisions, load_space, plan, sample, unique_units

SMALL = """
name: small
resolution: [32, 40]
num_classes: 10
stem: {out: 8, pool: max}
stages:
  - {name: a, stride: 2, depth: [1, 2], width: [16, 24],
     block: {op: [inverted_residual, sandglass], kernel: 5, expand: [2, 4], se: [false, true], se_ratio: [0.25, 0.5]}}
  - {name: b, stride: 1, depth: [1, 2], width: [24, 32], block: {op: sandglass, expand: [2, 6]}}
  - {name: c, stride: 2, depth: 1, width: 48, block: {op: shuffle_v2}}
head: {conv: {out: 64}, pool: mean, hidden: {out: 32}, dropout: 0.1}
"""


def all_archs(space):
    ds = decisions(space)
    for values in itertools.product(*(d.choices for d in ds)):
        yield dict(zip((d.name for d in ds), values))


def test_unique_units_equals_brute_force(write_yaml) -> None:
    space = load_space(write_yaml(SMALL))
    seen = {u.text for arch in all_archs(space) for u in plan(space, arch).units}
    listed = unique_units(space)
    assert set(listed) == seen
    # Each listed unit carries the key its text was made from.
    assert all(u.text == text for text, u in listed.items())


def test_planned_texts_match_their_keys_across_resolutions(write_yaml) -> None:
    """The planner shares a block's config and text prefix across positions and resolutions:
    each unit's text must still be the one its own key (config plus this input shape) gives."""
    space = load_space(write_yaml(SMALL))
    for arch in all_archs(space):
        for unit in plan(space, arch).units:
            assert unit.text == get_op(unit.key.config.op).key_text(unit.key)
            assert unit.text.endswith("in={}x{}x{}".format(*unit.key.input_shape))


def test_shared_config_still_checks_each_positions_choices(write_yaml) -> None:
    """Stages x and y make the same config for kernel 7, but only y offers it: a config first
    made for y must not let x accept 7."""
    space = load_space(write_yaml("""
name: kernels
resolution: 32
num_classes: 10
stem: {out: 16}
stages:
  - {name: w, stride: 1, depth: 1, width: 16, block: {op: inverted_residual, expand: 2}}
  - {name: x, stride: 1, depth: 1, width: 16, block: {op: inverted_residual, expand: 2, kernel: [3, 5]}}
  - {name: y, stride: 1, depth: 1, width: 16, block: {op: inverted_residual, expand: 2, kernel: [3, 5, 7]}}
head: {pool: avg}
"""))
    y7 = plan(space, {"x.b0.kernel": 3, "y.b0.kernel": 7})
    assert y7.units[3].key.config.kernel == 7
    with pytest.raises(ArchError, match=r"x.b0.kernel: 7 is not one of \[3, 5\]"):
        plan(space, {"x.b0.kernel": 7, "y.b0.kernel": 7})


@pytest.mark.parametrize("name, expected", [("sandglass", 9421), ("mobilenet_v3", 425)])
def test_shipped_spaces_cover_random_plans(name: str, expected: int) -> None:
    space = load_space(f"search_spaces/{name}.yaml")
    listed = unique_units(space)
    assert len(listed) == expected
    for seed in range(200):
        for unit in plan(space, sample(space, seed)).units:
            assert unit.text in listed

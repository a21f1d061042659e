"""unique_units lists exactly the units the space's architectures can produce."""
from __future__ import annotations

import itertools

import pytest

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


@pytest.mark.parametrize("name, expected", [("sandglass", 9421), ("mobilenet_v3", 425)])
def test_shipped_spaces_cover_random_plans(name: str, expected: int) -> None:
    space = load_space(f"search_spaces/{name}.yaml")
    listed = unique_units(space)
    assert len(listed) == expected
    for seed in range(200):
        for unit in plan(space, sample(space, seed)).units:
            assert unit.text in listed

"""Builder wiring (nas.builder, nas.space.plan): strides and spatial sizes, residuals, channel rounding,
depth choices, deferred initialisation and parameter counts, on small spaces written here."""
from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from torch import nn

import nas.ops._base
from nas.builder import Network, build, build_unit
from nas.cost import CostModel
from nas.ops import init_weights
from nas.space import SearchSpace, load_space, plan

SPACE = """
name: tiny
resolution: [32, 33]
num_classes: 10
width_mult: {width_mult}
channel_divisor: {divisor}
stem: {{out: 16, kernel: 3, stride: 2, act: relu}}
stages:
  - {{name: a, stride: 1, depth: 1, width: 16, block: {{op: inverted_residual, expand: 1}}}}
  - {{name: b, stride: 2, depth: [1, 2, 3], width: 24, block: {{op: inverted_residual, expand: [3, 6], kernel: [3, 5]}}}}
  - {{name: c, stride: 1, depth: 2, width: 32, block: {{op: sandglass, expand: 4}}}}
  - {{name: d, stride: 2, depth: 1, width: 40, block: {{op: dwsep, se: true}}}}
  - {{name: e, stride: 2, depth: 1, width: 40, block: {{op: inverted_residual, expand: 2}}}}
head: {{conv: {{out: 64, act: hardswish}}, pool: avg}}
"""


@pytest.fixture
def tiny(write_yaml) -> Callable[..., SearchSpace]:
    def load(width_mult: float = 1.0, divisor: int = 8) -> SearchSpace:
        return load_space(write_yaml(SPACE.format(width_mult=width_mult, divisor=divisor)))
    return load


def arch(res: int = 32, depth: int = 2, **extra: Any) -> dict[str, Any]:
    """Every decision of the tiny space; blocks past b's depth keep theirs (they must be ignored)."""
    values: dict[str, Any] = {"res": res, "b.depth": depth}
    for j in range(3):
        values.update({f"b.b{j}.expand": 3 if j % 2 == 0 else 6, f"b.b{j}.kernel": 5 if j == 0 else 3})
    values.update(extra)
    return values


def input_shapes(model: Network, x: torch.Tensor) -> list[tuple[int, ...]]:
    """The (C, H, W) each unit receives in a forward pass (a flat (C,) input reads as (C, 1, 1))."""
    seen: list[tuple[int, ...]] = []
    hooks = [u.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[1:])))
             for u in model.units()]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return [s if len(s) == 3 else (s[0], 1, 1) for s in seen]


@pytest.mark.parametrize("res, s1, s2, s3, s4", [(32, 16, 8, 4, 2), (33, 17, 9, 5, 3)])
def test_strides_and_spatial_sizes_match_the_plan(tiny, res: int, s1: int, s2: int, s3: int, s4: int) -> None:
    """Stem stride 2, stages a (1), b (2), c (1), d (2), e (2): 'same' padding rounds odd sizes up."""
    space = tiny()
    expected = [(3, res, res), (16, s1, s1),  # stem conv, a0
                (16, s1, s1), (24, s2, s2),  # b0 (stride 2), b1
                (24, s2, s2), (32, s2, s2),  # c0, c1
                (32, s2, s2), (40, s3, s3),  # d0, e0 (both stride 2)
                (40, s4, s4), (64, s4, s4), (64, 1, 1)]  # head conv, pool, classifier
    assert [u.key.input_shape for u in plan(space, arch(res)).units] == expected
    model = build(space, arch(res), init=False)
    assert [u.input_shape for u in model.units()] == expected
    assert input_shapes(model, torch.randn(1, 3, res, res)) == expected
    assert [u.config.stride for u in model.units()] == [2, 1, 2, 1, 1, 1, 2, 2, 1, 1, 1]


def test_residual_is_added_exactly_at_stride_1_with_equal_widths(tiny) -> None:
    """With its last BN zeroed a unit's own path outputs zeros: a residual unit returns its input."""
    model = build(tiny(), arch(depth=3))
    blocks = list(model.blocks)
    assert [(u.config.op, u.config.cin, u.config.cout, u.config.stride) for u in blocks] == [
        ("inverted_residual", 16, 16, 1), ("inverted_residual", 16, 24, 2), ("inverted_residual", 24, 24, 1),
        ("inverted_residual", 24, 24, 1), ("sandglass", 24, 32, 1), ("sandglass", 32, 32, 1), ("dwsep", 32, 40, 2),
        ("inverted_residual", 40, 40, 2)]
    returned_input = []
    for u in blocks:
        last_bn = [m for m in u.modules() if isinstance(m, nn.BatchNorm2d)][-1]
        nn.init.zeros_(last_bn.weight)
        nn.init.zeros_(last_bn.bias)
        x = torch.randn(1, *u.input_shape)
        with torch.no_grad():
            y = u.eval()(x)
        returned_input.append(y.shape == x.shape and torch.equal(y, x))
        if not returned_input[-1]:
            assert torch.count_nonzero(y) == 0  # no part of the input leaks through a non-residual unit
    assert returned_input == [True, False, True, True, False, True, False, False]


@pytest.mark.parametrize("width_mult, divisor, widths, head", [
    (1.0, 8, [16, 16, 24, 32, 40], 64),
    # 0.75: 16 -> 12 -> 16; 24 -> 18 -> 16, below 90% of 18 -> 24; 32 -> 24; 40 -> 30 -> 32; the head never shrinks
    (0.75, 8, [16, 16, 24, 24, 32], 64),
    (0.75, 4, [12, 12, 20, 24, 32], 64),
    # 1.4: 22.4 -> 24; 33.6 -> 32; 44.8 -> 48; 56; head 89.6 -> 88
    (1.4, 8, [24, 24, 32, 48, 56], 88),
])
def test_channels_are_rounded_by_width_mult_and_divisor(tiny, width_mult: float, divisor: int,
                                                        widths: list[int], head: int) -> None:
    space = tiny(width_mult, divisor)
    model = build(space, arch(depth=1), init=False)
    stem, a0, b0, c0, c1, d0, e0, head_conv = list(model.stem) + list(model.blocks) + [model.head[0]]
    assert [stem.config.cout, a0.config.cout, b0.config.cout, c1.config.cout, d0.config.cout] == widths
    assert e0.config.cout == widths[-1]
    assert head_conv.config.cout == head
    # The modules are that wide: each unit's output channels, seen by the next unit.
    shapes = input_shapes(model, torch.randn(1, 3, 32, 32))
    w0, w1, w2, w3, w4 = widths  # stem, a, b, c, d
    assert [s[0] for s in shapes] == [3, w0, w1, w2, w3, w3, w4, w4, head, head]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_depth_choice_builds_that_many_blocks(tiny, depth: int) -> None:
    space = tiny()
    model = build(space, arch(depth=depth), init=False)
    stages = [u.stage for u in plan(space, arch(depth=depth)).units]
    assert stages.count("b") == depth
    assert len(model.blocks) == 1 + depth + 2 + 1 + 1  # a, b, c, d, e
    assert [u.config.cout for u in model.blocks] == [16, *[24] * depth, 32, 32, 40, 40]
    # b0 strides and widens; every later b block is 24 -> 24 at stride 1 with its own picks
    assert [(u.config.stride, u.config.hidden, u.config.kernel) for u in list(model.blocks)[1:1 + depth]] == [
        (2, 48, 5), (1, 144, 3), (1, 72, 3)][:depth]


def test_blocks_past_the_chosen_depth_are_ignored(tiny) -> None:
    space = tiny()
    keys = [u.text for u in plan(space, arch(depth=2)).units]
    assert [u.text for u in plan(space, arch(depth=2, **{"b.b2.kernel": 5, "b.b2.expand": 6})).units] == keys
    assert [u.text for u in plan(space, arch(depth=3, **{"b.b2.kernel": 5})).units] != \
        [u.text for u in plan(space, arch(depth=3)).units]


def test_build_without_init_allocates_but_does_not_initialise(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    space = tiny()
    calls: list[str] = []
    real = nas.ops._base.init_weights
    monkeypatch.setattr(nas.ops._base, "init_weights", lambda m: (calls.append(m.name), real(m)))
    torch.manual_seed(0)
    deferred = build(space, arch(), init=False)
    assert calls == []
    assert all(p.device.type == "cpu" and not p.is_meta for p in deferred.parameters())
    for bn in (m for m in deferred.modules() if isinstance(m, nn.BatchNorm2d)):  # statistics are fresh
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    torch.manual_seed(0)
    initialised = build(space, arch())
    assert calls == [u.name for u in initialised.units()]  # once per unit, in order
    # Initialising later, from the same seed, gives the same weights as initialising while building.
    torch.manual_seed(0)
    init_weights(deferred)
    assert deferred.state_dict().keys() == initialised.state_dict().keys()
    for name, value in initialised.state_dict().items():
        assert torch.equal(deferred.state_dict()[name], value), name


def test_parameter_count_is_the_sum_of_the_units(tiny) -> None:
    space = tiny()
    model = build(space, arch(), init=False)
    per_unit = [sum(p.numel() for p in build_unit(u.key, space.norm).parameters())
                for u in plan(space, arch()).units]
    assert sum(p.numel() for p in model.parameters()) == sum(per_unit)
    assert CostModel().cost(space, arch()).params == sum(per_unit)
    assert per_unit[0] == 3 * 16 * 9 + 2 * 16  # stem conv + BN
    assert per_unit[-1] == 64 * 10 + 10  # classifier with bias


def test_parameter_count_of_a_tiny_fixed_net(write_yaml) -> None:
    space = load_space(write_yaml("""
name: fixed
resolution: [16]
num_classes: 10
stem: {out: 8}
stages:
  - {name: a, stride: 1, depth: 1, width: 8, block: {op: inverted_residual, expand: 1}}
head: {pool: avg}
"""))
    model = build(space)
    stem = 3 * 8 * 9 + 2 * 8  # 3x3 conv, BN
    block = 8 * 9 + 2 * 8 + 8 * 8 + 2 * 8  # depthwise 3x3 + BN, 1x1 projection + BN (expand 1: no 1x1 expand)
    classifier = 8 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == stem + block + classifier == 490

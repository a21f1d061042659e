"""Every registered operator's contract, parametrized over the registry so a new op is covered (or
flagged as missing a case) without editing this file's parametrization: declared fields, short
names, impossible configs and their messages, hidden and SE widths, layer order, output shapes and tracing."""
from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from nas.builder import build_unit
from nas.ops import BlockConfig, BlockKey, NormSpec, Op, all_fields, field, get_op, op_names
from op_checks import assert_adds_input_only_if_residual

ALL = op_names()
STAGE = op_names(stage_only=True)


def config(op: str, *, cin: int = 16, cout: int = 16, expand: float | None = None, hidden: int | None = None,
           **values: Any) -> BlockConfig:
    """A config as the planner makes it: the op resolves its hidden width (heads take `hidden` as given)."""
    cls = get_op(op)
    width = cls.hidden_channels(cin, cout, expand, hidden) or (hidden or 0)
    return BlockConfig(op=op, cin=cin, cout=cout, expand=float(expand or 0.0), hidden=width, **values)


def layers(module: nn.Module) -> list[str]:
    """Leaf modules in `named_modules()` order: convs with widths, kernel, stride and groups; BN widths;
    linears with widths; anything else (activations, pools, dropout) by type."""
    out = []
    for name, m in module.named_modules():
        if not name or any(True for _ in m.children()):  # the unit itself and containers
            continue
        text = type(m).__name__
        if isinstance(m, nn.Conv2d):
            text += f" {m.in_channels}->{m.out_channels} k{m.kernel_size[0]} s{m.stride[0]} g{m.groups}"
        elif isinstance(m, nn.BatchNorm2d):
            text += f" {m.num_features}"
        elif isinstance(m, nn.Linear):
            text += f" {m.in_features}->{m.out_features}"
        out.append(text)
    return out


def dw(c: int, k: int = 3, s: int = 1) -> str:
    return f"Conv2d {c}->{c} k{k} s{s} g{c}"


def pw(cin: int, cout: int, g: int = 1) -> str:
    return f"Conv2d {cin}->{cout} k1 s1 g{g}"


def se(c: int, squeeze: int, gate: str = "Hardsigmoid") -> list[str]:
    return ["AdaptiveAvgPool2d", pw(c, squeeze), pw(squeeze, c), "ReLU", gate]


# case id: (op, config settings, exact leaf layers). Small configs; every op needs at least one.
LAYERS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "conv_bn_act": ("conv_bn_act", dict(cin=8, cout=16, kernel=3, stride=2, act="relu6"),
                    ["Conv2d 8->16 k3 s2 g1", "BatchNorm2d 16", "ReLU6"]),
    "conv_bn_act-linear": ("conv_bn_act", dict(cin=8, cout=16, kernel=1, act="none"),
                           ["Conv2d 8->16 k1 s1 g1", "BatchNorm2d 16"]),
    "dwsep-se": ("dwsep", dict(cin=16, cout=24, stride=2, act="hardswish", se=True, se_gate="sigmoid"),
                 [dw(16, 3, 2), "BatchNorm2d 16", "Hardswish", *se(16, 8, "Sigmoid"),
                  pw(16, 24), "BatchNorm2d 24", "Hardswish"]),
    "inverted_residual-se": ("inverted_residual", dict(cin=16, cout=24, expand=3, kernel=5, stride=2, se=True),
                             [pw(16, 48), "BatchNorm2d 48", "ReLU", dw(48, 5, 2), "BatchNorm2d 48", "ReLU",
                              *se(48, 16), pw(48, 24), "BatchNorm2d 24"]),
    "inverted_residual-no-expand": ("inverted_residual", dict(cin=16, cout=16, expand=1),  # hidden == cin
                                    [dw(16), "BatchNorm2d 16", "ReLU", pw(16, 16), "BatchNorm2d 16"]),
    "sandglass-full-se": ("sandglass", dict(cin=32, cout=32, expand=4, act="relu6", se=True),
                          [dw(32), "BatchNorm2d 32", "ReLU6", pw(32, 8), "BatchNorm2d 8", pw(8, 32), "BatchNorm2d 32",
                           "ReLU6", dw(32), "BatchNorm2d 32", *se(32, 8)]),
    "sandglass-widen-stride2": ("sandglass", dict(cin=32, cout=48, expand=4, stride=2),
                                [pw(32, 8), "BatchNorm2d 8", pw(8, 48), "BatchNorm2d 48", "ReLU", dw(48, 3, 2),
                                 "BatchNorm2d 48"]),
    "shuffle_v1-stride2": ("shuffle_v1", dict(cin=24, cout=48, groups=3, stride=2),
                           [pw(24, 12, 3), "BatchNorm2d 12", "ReLU", dw(12, 3, 2), "BatchNorm2d 12",
                            pw(12, 24, 3), "BatchNorm2d 24", "AvgPool2d", "ReLU"]),
    "shuffle_v1-first": ("shuffle_v1", dict(cin=24, cout=48, groups=3, stride=2, first_unit=True),
                         [pw(24, 12), "BatchNorm2d 12", "ReLU", dw(12, 3, 2), "BatchNorm2d 12",
                          pw(12, 24, 3), "BatchNorm2d 24", "AvgPool2d", "ReLU"]),
    "shuffle_v2-stride2": ("shuffle_v2", dict(cin=24, cout=48, stride=2),
                           [dw(24, 3, 2), "BatchNorm2d 24", pw(24, 24), "BatchNorm2d 24", "ReLU",
                            pw(24, 24), "BatchNorm2d 24", "ReLU", dw(24, 3, 2), "BatchNorm2d 24",
                            pw(24, 24), "BatchNorm2d 24", "ReLU"]),
    "shuffle_v2-stride1": ("shuffle_v2", dict(cin=48, cout=48, act="silu", kernel=5),
                           [pw(24, 24), "BatchNorm2d 24", "SiLU", dw(24, 5), "BatchNorm2d 24",
                            pw(24, 24), "BatchNorm2d 24", "SiLU"]),
    "squeeze_excite": ("squeeze_excite", dict(cin=32, cout=32), se(32, 8)),
    # uib: [start dw + BN, linear] -> 1x1 expand + BN + act (always) -> [mid dw + BN + act] -> [SE] -> 1x1 + BN
    "uib-extra-dw": ("uib", dict(cin=16, cout=24, start_kernel=5, mid_kernel=3, expand=3, stride=2),
                     [dw(16, 5), "BatchNorm2d 16", pw(16, 48), "BatchNorm2d 48", "ReLU", dw(48, 3, 2),
                      "BatchNorm2d 48", "ReLU", pw(48, 24), "BatchNorm2d 24"]),  # stride on the mid dw
    "uib-ib-se": ("uib", dict(cin=16, cout=16, start_kernel=0, mid_kernel=5, expand=3, se=True, act="hardswish"),
                  [pw(16, 48), "BatchNorm2d 48", "Hardswish", dw(48, 5), "BatchNorm2d 48", "Hardswish",
                   *se(48, 16), pw(48, 16), "BatchNorm2d 16"]),
    "uib-convnext": ("uib", dict(cin=16, cout=24, start_kernel=3, mid_kernel=0, expand=4, stride=2),
                     [dw(16, 3, 2), "BatchNorm2d 16", pw(16, 64), "BatchNorm2d 64", "ReLU", pw(64, 24),
                      "BatchNorm2d 24"]),  # no mid dw: the start dw strides
    "uib-ffn-layer-scale": ("uib", dict(cin=16, cout=16, start_kernel=0, mid_kernel=0, expand=1, layer_scale=1e-5),
                            [pw(16, 16), "BatchNorm2d 16", "ReLU", pw(16, 16), "BatchNorm2d 16", "LayerScale"]),
    # fused_ib: KxK conv expand (strided) + BN + act -> [SE] -> 1x1 project + BN
    "fused_ib": ("fused_ib", dict(cin=32, cout=48, kernel=3, expand=4, stride=2),
                 ["Conv2d 32->128 k3 s2 g1", "BatchNorm2d 128", "ReLU", pw(128, 48), "BatchNorm2d 48"]),
    "fused_ib-se": ("fused_ib", dict(cin=16, cout=16, kernel=5, expand=2, se=True, act="relu6"),
                    ["Conv2d 16->32 k5 s1 g1", "BatchNorm2d 32", "ReLU6", *se(32, 8), pw(32, 16), "BatchNorm2d 16"]),
    "max_pool": ("max_pool", dict(cin=16, cout=16, kernel=3, stride=2), ["MaxPool2d"]),
    "global_pool-avg": ("global_pool", dict(pool="avg"), ["AdaptiveAvgPool2d"]),
    "global_pool-mean": ("global_pool", dict(pool="mean"), []),
    "classifier": ("classifier", dict(cin=32, cout=10, hidden=64, act="hardswish", dropout=0.2, bias=True),
                   ["Linear 32->64", "Hardswish", "Dropout", "Linear 64->10"]),
    "classifier-plain": ("classifier", dict(cin=32, cout=10), ["Linear 32->10"]),
    "classifier-hidden-norm": ("classifier", dict(cin=32, cout=10, hidden=64, act="relu", hidden_norm=True),
                               [pw(32, 64), "BatchNorm2d 64", "ReLU", "Linear 64->10"]),
}

# op: [(an impossible config's settings, the exact reason `check` gives)]. Every op that overrides
# `check` needs a case here.
IMPOSSIBLE: dict[str, list[tuple[dict[str, Any], str]]] = {
    "squeeze_excite": [
        (dict(cin=32, cout=32, stride=2), "squeeze_excite keeps its input shape, so it needs stride 1 and equal "
                                          "widths (got 32->32 at stride 2)"),
        (dict(cin=32, cout=48), "squeeze_excite keeps its input shape, so it needs stride 1 and equal widths "
                                "(got 32->48 at stride 1)"),
    ],
    "shuffle_v1": [
        (dict(cin=24, cout=48, groups=3), "shuffle_v1 at stride 1 adds its input to its output, so widths must "
                                          "match (got 24->48)"),
        (dict(cin=48, cout=48, groups=3, stride=2), "shuffle_v1 at stride 2 concatenates its input, so it must "
                                                    "widen (got 48->48)"),
        (dict(cin=20, cout=48, groups=3, stride=2), "groups 3 does not divide the input width 20 of shuffle_v1 "
                                                    "20->48"),
        (dict(cin=24, cout=40, groups=3, stride=2), "groups 3 does not divide the bottleneck width 10 of "
                                                    "shuffle_v1 24->40"),
        (dict(cin=24, cout=49, groups=3, stride=2), "groups 3 does not divide the branch width 25 of "
                                                    "shuffle_v1 24->49"),
        # the first unit's 1x1 is dense, so only the bottleneck and the branch must divide
        (dict(cin=20, cout=48, groups=3, stride=2, first_unit=True), "groups 3 does not divide the branch width "
                                                                     "28 of shuffle_v1 20->48"),
    ],
    "shuffle_v2": [
        (dict(cin=24, cout=49, stride=2), "shuffle_v2 splits its output in two halves, so the width must be even "
                                          "(got 49)"),
        (dict(cin=24, cout=48), "shuffle_v2 at stride 1 passes half its input through, so widths must match "
                                "(got 24->48)"),
    ],
    "sandglass": [
        (dict(cin=32, cout=32, hidden=0), "sandglass hidden width must be at least 1 (got 0)"),
    ],
    "uib": [
        (dict(cin=32, cout=48, start_kernel=0, mid_kernel=0, expand=4, stride=2),
         "uib without a depthwise conv cannot stride (got stride 2)"),
    ],
}

# op: [(cin, cout, expand, hidden, resolved hidden width)]
HIDDEN: dict[str, list[tuple[int, int, float | None, int | None, int]]] = {
    "inverted_residual": [(16, 24, 3, None, 48), (16, 16, 1, None, 16), (40, 40, 2.3, None, 92), (10, 10, 2.5, None, 25),
                          (24, 24, None, 40, 40)],
    # in // t, raised to make_divisible(ceil(out / 6), 16) when below out / 6
    "sandglass": [(96, 96, 6, None, 16), (32, 48, 4, None, 8), (24, 96, 6, None, 16), (48, 160, 6, None, 32),
                  (96, 96, None, 24, 24)],
    # make_divisible(in * expand, 8), timm's rounding (IR's round() would give 92 and 25)
    "uib": [(16, 24, 3, None, 48), (40, 40, 2.3, None, 96), (10, 10, 2.5, None, 24), (32, 32, 1, None, 32),
            (24, 24, None, 40, 40)],
    "fused_ib": [(32, 48, 4, None, 128), (24, 48, 4, None, 96), (40, 40, 2.3, None, 96), (24, 24, None, 40, 40)],
    "shuffle_v1": [(24, 48, None, None, 12), (240, 240, None, None, 60)],
    "shuffle_v2": [(24, 48, None, None, 24), (116, 116, None, None, 58)],
    **{op: [(16, 32, None, None, 0)] for op in
       ("conv_bn_act", "dwsep", "squeeze_excite", "max_pool", "global_pool", "classifier")},
}

# op: [(settings, squeeze width of its SE)]; make_divisible(width * se_ratio, 8) on the op's `se_width`
SE: dict[str, list[tuple[dict[str, Any], int]]] = {
    # on cin: 40 * 0.25 = 10 rounds to 8, below 90% of 10, so 16
    "dwsep": [(dict(cin=40, cout=24, se=True), 16), (dict(cin=40, cout=24, se=True, se_ratio=0.5), 24),
              (dict(cin=40, cout=24), 0)],
    # on hidden: 16 * 3 = 48, 48 * 0.25 = 12 rounds up to 16 (cin would give 8, cout 8)
    "inverted_residual": [(dict(cin=16, cout=24, expand=3, se=True), 16), (dict(cin=16, cout=24, expand=3), 0)],
    # on cout: 64 * 0.25 = 16 (cin would give 8, hidden 8)
    "sandglass": [(dict(cin=32, cout=64, expand=4, se=True), 16), (dict(cin=32, cout=64, expand=4), 0)],
    # on hidden: 16 * 3 = 48 -> 16 (cin would give 8)
    "uib": [(dict(cin=16, cout=24, expand=3, se=True), 16), (dict(cin=16, cout=24, expand=3), 0)],
    "fused_ib": [(dict(cin=16, cout=24, expand=3, se=True), 16), (dict(cin=16, cout=24, expand=3), 0)],
    # no `se` field: always on, on cin
    "squeeze_excite": [(dict(cin=32, cout=32), 8), (dict(cin=96, cout=96, se_ratio=0.5), 48)],
    **{op: [(dict(cin=64, cout=64, se=True), 0)] for op in
       ("conv_bn_act", "shuffle_v1", "shuffle_v2", "max_pool", "global_pool", "classifier")},
}


def unit(op: str, **settings: Any) -> Op:
    return get_op(op).create(config(op, **settings), NormSpec())


# ---- declared contract ----

@pytest.mark.parametrize("op", ALL)
def test_fields_are_declared_block_fields_and_flags_are_not(op: str) -> None:
    cls = get_op(op)
    assert get_op(op).name == op
    assert all(field(f).block for f in cls.fields), sorted(cls.fields)
    assert not any(field(f).block for f in cls.position_flags), sorted(cls.position_flags)
    declared = {f.name for f in all_fields()}
    assert cls.key_fields <= declared
    assert cls.position_flags <= cls.key_fields  # they change the layout, so they tell keys apart
    assert cls.se_width in ("", "cin", "hidden", "cout")


@pytest.mark.parametrize("op", ALL)
def test_required_fields_are_fields_the_op_reads(op: str) -> None:
    for any_of in get_op(op).required:
        assert any_of and set(any_of) <= get_op(op).fields


def test_required_fields_of_the_builtin_ops() -> None:
    assert {op: get_op(op).required for op in ALL if get_op(op).required} == {
        "inverted_residual": (("expand", "hidden"),), "sandglass": (("expand", "hidden"),),
        "shuffle_v1": (("groups",),), "uib": (("expand", "hidden"),), "fused_ib": (("expand", "hidden"),)}


def test_stage_ops_have_unique_short_names() -> None:
    shorts = [get_op(op).short for op in STAGE]
    assert all(shorts) and len(set(shorts)) == len(shorts)
    assert dict(zip(STAGE, shorts)) == {"conv_bn_act": "cba", "dwsep": "ds", "inverted_residual": "ir",
                                        "sandglass": "sg", "shuffle_v1": "sh1", "shuffle_v2": "sh2",
                                        "squeeze_excite": "sqe", "uib": "ub", "fused_ib": "fib"}
    assert set(ALL) - set(STAGE) == {"classifier", "global_pool", "max_pool"}
    assert all(get_op(op).example is not None for op in STAGE)


# ---- which configs can be built ----

@pytest.mark.parametrize("op", ALL)
def test_impossible_configs_are_refused_with_their_reason(op: str) -> None:
    cls = get_op(op)
    if "check" not in vars(cls):  # inherits "anything builds": widening at stride 2 is fine
        assert op not in IMPOSSIBLE
        assert cls.check(config(op, cin=16, cout=40, stride=2, expand=4 if "expand" in cls.fields else None,
                                groups=1)) is None
        return
    assert op in IMPOSSIBLE, f"operator {op!r} overrides check but has no impossible case here"
    for settings, reason in IMPOSSIBLE[op]:
        assert cls.check(config(op, **settings)) == reason


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_layer_cases_are_buildable(case: str) -> None:
    op, settings, _ = LAYERS[case]
    assert get_op(op).check(config(op, **settings)) is None


# ---- widths ----

@pytest.mark.parametrize("op", ALL)
def test_hidden_width(op: str) -> None:
    assert op in HIDDEN, f"operator {op!r} has no hidden-width case here"
    cls = get_op(op)
    got = [(cin, cout, e, h, cls.hidden_channels(cin, cout, e, h)) for cin, cout, e, h, _ in HIDDEN[op]]
    assert got == HIDDEN[op]


@pytest.mark.parametrize("op", ALL)
def test_se_width(op: str) -> None:
    assert op in SE, f"operator {op!r} has no SE-width case here"
    cls = get_op(op)
    for settings, squeeze in SE[op]:
        c = config(op, **settings)
        assert cls.se_channels(c) == squeeze, settings
        if "se" in cls.settings(c):  # the built unit's SE squeezes to that width
            fc1 = [m for name, m in cls.create(c, NormSpec()).named_modules() if name.endswith("fc1")]
            assert [m.out_channels for m in fc1] == ([squeeze] if squeeze else [])


# ---- layers and shapes ----

@pytest.mark.parametrize("op", ALL)
def test_every_op_has_a_layer_case(op: str) -> None:
    assert any(case_op == op for case_op, _, _ in LAYERS.values()), f"operator {op!r} has no layer case here"


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_layer_order(case: str) -> None:
    op, settings, expected = LAYERS[case]
    assert layers(unit(op, **settings)) == expected


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_output_shape_is_out_shape(case: str) -> None:
    op, settings, _ = LAYERS[case]
    c = config(op, **settings)
    size = 1 if op == "classifier" else 9  # odd: 'same' padding then stride 2 gives 5
    shape = get_op(op).out_shape(c, (c.cin, size, size))
    with torch.no_grad():
        y = unit(op, **settings).eval()(torch.randn(2, c.cin, size, size))
    assert (tuple(y.shape[1:]) if y.dim() == 4 else (y.shape[1], 1, 1)) == shape
    assert y.shape[0] == 2


TRACE_CASES = [(op, settings) for op, settings, _ in (LAYERS[c] for c in sorted(LAYERS))] + [
    ("sandglass", dict(cin=32, cout=32, expand=4, identity_mult=0.5))]  # the partial identity's branch


@pytest.mark.parametrize("op, settings", TRACE_CASES)
def test_tracing_meets_no_shape_dependent_branch(op: str, settings: dict[str, Any]) -> None:
    """TorchScript latency entries trace every unit: a forward() that branches on a shape would be
    frozen to the branch taken, and torch.jit.trace warns about it (TracerWarning)."""
    c = config(op, **settings)
    size = 1 if op == "classifier" else 9
    block = build_unit(BlockKey(c, (c.cin, size, size)), NormSpec()).eval()  # as the latency tables make it
    x = torch.randn(1, c.cin, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 flags the TorchScript API itself
        traced = torch.jit.trace(block, x)
        torch.testing.assert_close(traced(x), block(x))


# ---- sandglass and inverted residual specifics ----

@pytest.mark.parametrize("settings, layout", [
    (dict(cin=32, cout=48, expand=2, stride=2), (True, True, False)),  # rule 1: t == 2
    (dict(cin=32, cout=48, expand=4), (False, False, False)),  # rule 2: widen at stride 1
    (dict(cin=32, cout=48, expand=4, keep_3x3=True), (True, True, False)),  # keep_3x3 skips rule 2
    (dict(cin=32, cout=48, expand=4, stride=2), (False, True, False)),  # rule 3
    (dict(cin=32, cout=32, expand=4), (True, True, True)),  # rule 4, residual
    (dict(cin=32, cout=32, expand=4, stride=2), (True, True, False)),
    (dict(cin=32, cout=32, expand=4, keep_3x3=True), (True, True, False)),
])
def test_sandglass_layout(settings: dict[str, Any], layout: tuple[bool, bool, bool]) -> None:
    derived = get_op("sandglass").derived(config("sandglass", **settings))
    assert (derived["first_dw"], derived["last_dw"], derived["residual"]) == layout


def test_sandglass_partial_identity_adds_only_the_first_channels() -> None:
    block = unit("sandglass", cin=32, cout=32, expand=4, identity_mult=0.5).eval()
    assert get_op("sandglass").derived(block.config)["identity"] == 16
    last_bn = block.conv[-1][1]
    nn.init.zeros_(last_bn.weight)
    nn.init.zeros_(last_bn.bias)  # the block's own path now outputs zeros
    x = torch.randn(1, 32, 5, 5)
    with torch.no_grad():
        y = block(x)
    torch.testing.assert_close(y[:, :16], x[:, :16])
    assert torch.count_nonzero(y[:, 16:]) == 0


@pytest.mark.parametrize("settings, residual", [
    (dict(cin=16, cout=16, expand=4), True), (dict(cin=16, cout=16, expand=4, stride=2), False),
    (dict(cin=16, cout=24, expand=4), False)])
def test_inverted_residual_adds_its_input_at_stride_1_equal_widths(settings: dict[str, Any], residual: bool) -> None:
    assert_adds_input_only_if_residual(unit("inverted_residual", **settings), residual)


@pytest.mark.parametrize("act", ["relu", "relu6", "hardswish", "silu"])
@pytest.mark.parametrize("hidden_norm", [False, True])
def test_a_classifier_with_a_hidden_layer_and_dropout_trains(act: str, hidden_norm: bool) -> None:
    """Dropout after the hidden layer's activation must not overwrite what that activation's backward reads
    (an in-place dropout after ReLU failed with 'modified by an inplace operation')."""
    head = unit("classifier", cin=16, cout=5, hidden=24, act=act, dropout=0.5, hidden_norm=hidden_norm).train()
    x = torch.randn(4, 16, requires_grad=True)
    head(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum().item() > 0

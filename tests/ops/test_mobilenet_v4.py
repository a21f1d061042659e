"""MobileNetV4's uib and fused_ib beyond the registry-wide tables: stride placement, residuals, layer
scale, one-line errors for bad values of their fields, and MobileNetV4-Conv-S as a point of the
mobilenet_v4 space (same params and layers as the reference file and timm's layout)."""
from __future__ import annotations

from typing import Any

import pytest
import torch
import yaml
from torch import nn

from nas.builder import build
from nas.errors import SpaceError
from nas.ops import BlockConfig, NormSpec, get_op
from nas.space import encode, load_space, project
from nas.space.dump import fixed_dict
from op_checks import assert_adds_input_only_if_residual
from reference_layouts import mobilenet_v4_layers, mobilenet_v4_params
from roots import SPACES_DIR
from test_reference import layers_of


def unit(op: str, **values: Any) -> nn.Module:
    cls = get_op(op)
    expand = values.pop("expand", None)
    config = BlockConfig(op=op, expand=float(expand or 0), **values,
                         hidden=cls.hidden_channels(values["cin"], values["cout"], expand, None))
    return cls.create(config, NormSpec()).eval()


@pytest.mark.parametrize("start, mid, strided", [(5, 3, "mid"), (0, 5, "mid"), (3, 0, "start")])
def test_uib_strides_on_the_mid_depthwise_when_there_is_one(start: int, mid: int, strided: str) -> None:
    block = unit("uib", cin=16, cout=24, start_kernel=start, mid_kernel=mid, expand=2, stride=2)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    depthwise = [("start" if m.in_channels == 16 else "mid", m.stride[0]) for m in convs if m.groups > 1]
    assert [name for name, s in depthwise if s == 2] == [strided]
    assert all(s == 1 for m in convs if m.groups == 1 for s in m.stride)  # 1x1 convs never stride
    assert block(torch.randn(1, 16, 9, 9)).shape == (1, 24, 5, 5)


@pytest.mark.parametrize("op, settings, residual", [
    ("uib", dict(cin=16, cout=16, start_kernel=3, mid_kernel=3, expand=4), True),
    ("uib", dict(cin=16, cout=16, start_kernel=0, mid_kernel=0, expand=2), True),  # FFN
    ("uib", dict(cin=16, cout=16, start_kernel=3, mid_kernel=0, expand=4, stride=2), False),
    ("uib", dict(cin=16, cout=24, start_kernel=3, mid_kernel=3, expand=4), False),
    ("fused_ib", dict(cin=16, cout=16, kernel=3, expand=4), True),
    ("fused_ib", dict(cin=16, cout=16, kernel=3, expand=4, stride=2), False),
])
def test_residual_only_at_stride_1_with_equal_widths(op: str, settings: dict[str, Any], residual: bool) -> None:
    assert_adds_input_only_if_residual(unit(op, **settings), residual)


def test_layer_scale_is_off_by_default_and_scales_the_output_when_on() -> None:
    settings = dict(cin=16, cout=16, start_kernel=3, mid_kernel=3, expand=2)
    plain, scaled = unit("uib", **settings), unit("uib", **settings, layer_scale=0.5)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(scaled) - count(plain) == 16  # one gain per output channel
    torch.testing.assert_close(scaled.block[-1].gamma.detach(), torch.full((16,), 0.5))  # set by init_weights
    scaled.load_state_dict({**plain.state_dict(), "block.4.gamma": torch.full((16,), 0.5)})
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(scaled(x) - x, 0.5 * (plain(x) - x))
    assert " ls=0.5 " in get_op("uib").config_text(scaled.config) + " "


SPACE = {
    "name": "tiny-v4", "resolution": 32, "num_classes": 10,
    "stem": {"out": 16, "kernel": 3, "stride": 2, "act": "relu"},
    "stages": [{"name": "s1", "stride": 2, "depth": 2, "width": 24,
                "block": {"op": "uib", "start_kernel": [0, 3], "mid_kernel": [3, 5], "expand": 4}}],
    "head": {"pool": "avg", "hidden": {"out": 32, "act": "relu", "norm": True}},
}


@pytest.mark.parametrize("path, value, detail", [
    (("stages", 0, "block", "start_kernel"), [0, 4],
     "stages[0].block.start_kernel[1]: 4 is not 0 (none) or one of the allowed odd sizes (1, 3, 5, 7, 9, 11)"),
    (("stages", 0, "block", "mid_kernel"), "3",
     "stages[0].block.mid_kernel: '3' is not 0 (none) or one of the allowed odd sizes (1, 3, 5, 7, 9, 11)"),
    (("stages", 0, "block", "layer_scale"), 2, "stages[0].block.layer_scale: 2 is outside the allowed range [0, 1]"),
    (("stages", 0, "block", "kernel"), 3, "stages[0].block.kernel: not used by uib"),
    (("stages", 0, "block", "mid_kernel"), [0, 3],  # an FFN cannot take the stage's stride
     "stages[0].block: uib without a depthwise conv cannot stride (got stride 2) (block 0 of stage s1)"),
    (("head", "hidden", "norm"), "yes", "head.hidden.norm: expected true or false, got 'yes' (a string)"),
    (("head", "conv"), {"out": 64, "norm": True}, "head.conv.norm: unknown key; allowed: out, act"),
])
def test_bad_values_are_one_line_errors(write_yaml, path: tuple, value: Any, detail: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(SPACE))
    where = data
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    file = write_yaml(yaml.safe_dump(data))
    with pytest.raises(SpaceError) as err:
        load_space(file)
    assert str(err.value) == f"{file}: {detail}"


def test_mobilenet_v4_conv_small_is_a_point_of_the_space() -> None:
    space = load_space(SPACES_DIR / "mobilenet_v4.yaml")
    reference = load_space(SPACES_DIR / "reference" / "mobilenet_v4_conv_small.yaml")
    arch = project(space, reference)
    assert arch["res"] == 224 and arch["s3.depth"] == arch["s4.depth"] == 6
    assert [arch[f"s3.b{j}.op"] for j in range(6)] == ["uib"] * 6
    assert "s3:d6,w96,b0=ub/e3/sk5/mk5,b1=ub/e2/sk0/mk3," in encode(space, arch)
    model = build(space, arch).eval()
    assert sum(p.numel() for p in model.parameters()) == mobilenet_v4_params("small") == 3_774_024
    assert layers_of(model) == list(mobilenet_v4_layers("small")) == layers_of(build(reference))
    # written back as a fixed architecture, it is the reference again (head norm included)
    again = fixed_dict(space, arch)
    assert again["head"]["hidden"] == {"out": 1280, "act": "relu", "norm": True}
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    ours = build(space, arch).eval()
    theirs = build(reference).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))

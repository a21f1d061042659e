"""The reference YAMLs reproduce the published networks: exact params, MACs, and conv/linear layer order."""
from __future__ import annotations

from typing import Callable, Iterator

import pytest
import torch
from torch import nn

from nas.builder import build
from nas.space import load_space
from proxies.flops import Counts, count_module
from reference_layouts import LAYOUTS, Layer, mobilenet_v4_macs, mobilenet_v4_params, mobilenext_rows
from roots import SPACES_DIR

REFERENCE_DIR = SPACES_DIR / "reference"
INPUT = (1, 3, 224, 224)
MAC_TOLERANCE = 1e-3  # REFERENCE.md: MACs within 0.1%, params exact

# file stem: (params, MACs of conv + linear), copied from REFERENCE.md's table.
EXPECTED = {
    "mobilenet_v1": (4_231_976, 568_740_352),
    "mobilenet_v2": (3_504_872, 300_774_272),
    "mobilenet_v2_x1_4": (6_108_776, 582_195_824),
    "mobilenet_v3_large": (5_483_032, 216_589_760),
    "mobilenet_v3_small": (2_542_856, 56_510_400),
    "shufflenet_v1_g3": (1_864_728, 137_460_672),
    "shufflenet_v1_g8": (2_433_768, 138_365_952),
    "shufflenet_v2_x1_0": (2_278_604, 144_907_992),
    "shufflenet_v2_x1_5": (3_503_624, 295_759_392),
    "mobilenext": (3_535_416, 311_342_592),
    # timm mobilenetv4_conv_small / _medium / _large: 3.77M, 9.72M, 32.59M params (timm's tables); the
    # integers and the MACs at 224 come from reference_layouts' generator over timm's block strings
    "mobilenet_v4_conv_small": (3_774_024, 186_005_568),
    "mobilenet_v4_conv_medium": (9_715_512, 827_649_984),
    "mobilenet_v4_conv_large": (32_590_864, 2_171_341_312),
}
# MobileNetV4 at the paper's resolutions (S 224, M 256, L 384): MACs of conv + linear from the same generator
MNV4_NATIVE = {"mobilenet_v4_conv_small": (224, 186_005_568), "mobilenet_v4_conv_medium": (256, 1_080_244_224),
               "mobilenet_v4_conv_large": (384, 6_376_220_672)}
NAMES = sorted(EXPECTED)


@pytest.fixture(scope="module")
def reference() -> Iterator[Callable[[str], tuple[nn.Module, Counts]]]:
    """Builds and counts each reference network once for this module.

    Runs single-threaded: at batch 1 these small convs gain nothing from a
    second thread, and on a busy 2-core box OpenMP contention made them 5x slower.
    """
    cache: dict[str, tuple[nn.Module, Counts]] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def get(name: str) -> tuple[nn.Module, Counts]:
        if name not in cache:
            torch.manual_seed(0)
            model = build(load_space(REFERENCE_DIR / f"{name}.yaml")).eval()
            cache[name] = model, count_module(model, INPUT)
        return cache[name]

    yield get
    cache.clear()
    torch.set_num_threads(threads)


def layers_of(model: nn.Module) -> list[Layer]:
    """The model's convs and linears in module-registration order."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            out.append(Layer("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.groups,
                             m.bias is not None))
        elif isinstance(m, nn.Linear):
            out.append(Layer("linear", m.in_features, m.out_features, 1, 1, 1, m.bias is not None))
    return out


def first_difference(got: list[Layer], want: list[Layer]) -> str:
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"layer {i}: built {g}, expected {w}"
    return f"built {len(got)} layers, expected {len(want)}"


def test_every_reference_file_is_checked() -> None:
    assert sorted(p.stem for p in REFERENCE_DIR.glob("*.yaml")) == NAMES
    assert sorted(LAYOUTS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_params_exact(reference, name: str) -> None:
    _, counts = reference(name)
    assert counts.params == EXPECTED[name][0]


@pytest.mark.parametrize("name", NAMES)
def test_macs_within_tolerance(reference, name: str) -> None:
    _, counts = reference(name)
    expected = EXPECTED[name][1]
    rel = abs(counts.macs - expected) / expected
    assert rel <= MAC_TOLERANCE, f"{counts.macs} MACs vs {expected} ({rel:.4%})"


@pytest.mark.parametrize("name", NAMES)
def test_forward(reference, name: str) -> None:
    model, _ = reference(name)
    with torch.no_grad():
        out = model(torch.randn(*INPUT, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_layer_order(reference, name: str) -> None:
    model, _ = reference(name)
    got, want = layers_of(model), list(LAYOUTS[name]())
    assert got == want, first_difference(got, want)


def test_mobilenext_blocks_match_table(reference) -> None:
    """Per block of REFERENCE.md's MobileNeXt table: widths, spatial sizes, params and the residual."""
    model, _ = reference("mobilenext")
    rows = mobilenext_rows()
    units = list(model.blocks)
    assert len(units) == len(rows)
    shapes: list[tuple[torch.Size, torch.Size]] = []
    hooks = [u.register_forward_hook(lambda _m, args, out: shapes.append((args[0].shape, out.shape))) for u in units]
    try:
        with torch.no_grad():
            model(torch.zeros(INPUT))
    finally:
        for h in hooks:
            h.remove()
    for i, (row, unit, (x, y)) in enumerate(zip(rows, units, shapes), start=1):
        assert tuple(x[1:]) == (row.cin, row.size_in, row.size_in), f"block {i} input"
        assert tuple(y[1:]) == (row.cout, row.size_out, row.size_out), f"block {i} output"
        assert sum(p.numel() for p in unit.parameters()) == row.params, f"block {i} params"
        assert unit.use_residual == row.residual, f"block {i} residual"


@pytest.mark.parametrize("name", sorted(MNV4_NATIVE))
def test_mobilenet_v4_at_the_papers_resolution(reference, name: str) -> None:
    """The YAML's resolution is the paper's; the built model's MACs there match the independent count."""
    variant = name.rsplit("_", 1)[1]
    res, macs = MNV4_NATIVE[name]
    assert load_space(REFERENCE_DIR / f"{name}.yaml").resolution == (res,)
    assert (mobilenet_v4_params(variant), mobilenet_v4_macs(variant, res)) == (EXPECTED[name][0], macs)
    model, _ = reference(name)
    assert count_module(model, (1, 3, res, res)).macs == macs


def test_mobilenet_v4_blocks_have_residuals_where_timm_does(reference) -> None:
    """timm adds the input back in UIB / fused IB blocks at stride 1 with equal widths, never in conv blocks."""
    model, _ = reference("mobilenet_v4_conv_small")
    residual = [getattr(u, "use_residual", None) for u in model.blocks]
    # 4 conv_bn_act, then s3: ExtraDW s2, 4 IB, ConvNext; s4: ExtraDW s2, ExtraDW, 4 IB
    assert residual == [None] * 4 + [False] + [True] * 5 + [False] + [True] * 5

"""Expected conv/linear layers of the reference networks, written from REFERENCE.md's published tables.

Each generator follows the named reference implementation's construction
logic (torchvision, TF-slim, megvii) and yields `Layer`s in the order those
implementations register their modules. Nothing here imports the toolkit: the
tables are copied from /work/shared/REFERENCE.md so that a wrong operator or
builder shows up as a mismatch instead of being reproduced.
"""
from __future__ import annotations

import re
from typing import Iterator, NamedTuple

NUM_CLASSES = 1000


class Layer(NamedTuple):
    """One nn.Conv2d or nn.Linear; a Linear has kernel, stride and groups 1."""

    kind: str  # "conv" or "linear"
    cin: int
    cout: int
    kernel: int
    stride: int
    groups: int
    bias: bool


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, bias: bool = False) -> Layer:
    return Layer("conv", cin, cout, kernel, stride, groups, bias)


def dw(channels: int, kernel: int = 3, stride: int = 1) -> Layer:
    return conv(channels, channels, kernel, stride, groups=channels)


def linear(cin: int, cout: int, bias: bool = True) -> Layer:
    return Layer("linear", cin, cout, 1, 1, 1, bias)


def make_divisible(v: float, d: int = 8) -> int:
    """REFERENCE.md: max(d, int(v + d/2) // d * d), plus d if that drops below 0.9 v."""
    r = max(d, int(v + d / 2) // d * d)
    return r + d if r < 0.9 * v else r


# --- MobileNetV1 (TF-slim _CONV_DEFS) ----------------------------------------------------------
# (stride, out) of the 13 depthwise-separable blocks after the 3x3 s2 -> 32 stem.
MOBILENET_V1_BLOCKS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
                       *[(1, 512)] * 5, (2, 1024), (1, 1024))


def mobilenet_v1_layers() -> Iterator[Layer]:
    c = 32
    yield conv(3, c, 3, 2)
    for stride, out in MOBILENET_V1_BLOCKS:
        yield dw(c, 3, stride)
        yield conv(c, out)
        c = out
    yield linear(c, NUM_CLASSES)


# --- MobileNetV2 (torchvision mobilenet_v2) ----------------------------------------------------
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),  # t, c, n, s
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2_layers(width_mult: float = 1.0) -> Iterator[Layer]:
    c = make_divisible(32 * width_mult)
    yield conv(3, c, 3, 2)
    for t, width, n, s in MOBILENET_V2_STAGES:
        out = make_divisible(width * width_mult)
        for i in range(n):
            hidden = int(round(c * t))
            if t != 1:
                yield conv(c, hidden)
            yield dw(hidden, 3, s if i == 0 else 1)
            yield conv(hidden, out)
            c = out
    last = make_divisible(1280 * max(1.0, width_mult))
    yield conv(c, last)
    yield linear(last, NUM_CLASSES)


# --- MobileNetV3 (torchvision mobilenet_v3_large / _small) -------------------------------------
# Rows: in, kernel, expanded, out, SE, act, stride; "(x2)" rows written out twice.
MOBILENET_V3_LARGE = (
    (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1),
)
MOBILENET_V3_SMALL = (
    (16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1),
)


def mobilenet_v3_layers(rows: tuple, head_conv: int, head_hidden: int) -> Iterator[Layer]:
    yield conv(3, 16, 3, 2)
    for cin, k, exp, out, se, _act, s in rows:
        if exp != cin:
            yield conv(cin, exp)
        yield dw(exp, k, s)
        if se:
            squeeze = make_divisible(exp / 4, 8)
            yield conv(exp, squeeze, bias=True)
            yield conv(squeeze, exp, bias=True)
        yield conv(exp, out)
    yield conv(rows[-1][3], head_conv)
    yield linear(head_conv, head_hidden)
    yield linear(head_hidden, NUM_CLASSES)


# --- ShuffleNetV1 (megvii ShuffleNet-Series) ---------------------------------------------------
STAGE_REPEATS = (4, 8, 4)


def shufflenet_v1_layers(groups: int, widths: tuple[int, int, int]) -> Iterator[Layer]:
    c = 24
    yield conv(3, c, 3, 2)
    for si, (n, out) in enumerate(zip(STAGE_REPEATS, widths)):
        for i in range(n):
            stride, mid = (2 if i == 0 else 1), out // 4
            yield conv(c, mid, groups=1 if si == 0 and i == 0 else groups)
            yield dw(mid, 3, stride)
            yield conv(mid, out - c if stride == 2 else out, groups=groups)
            c = out
    yield linear(c, NUM_CLASSES, bias=False)


# --- ShuffleNetV2 (torchvision shufflenet_v2_*) ------------------------------------------------
def shufflenet_v2_layers(widths: tuple[int, int, int]) -> Iterator[Layer]:
    c = 24
    yield conv(3, c, 3, 2)
    for n, out in zip(STAGE_REPEATS, widths):
        half = out // 2
        for i in range(n):
            if i == 0:  # branch1, then branch2, both strided
                yield dw(c, 3, 2)
                yield conv(c, half)
                yield conv(c, half)
                yield dw(half, 3, 2)
            else:  # branch2 on the second half only
                yield conv(half, half)
                yield dw(half, 3, 1)
            yield conv(half, half)
            c = out
    yield conv(c, 1024)
    yield linear(1024, NUM_CLASSES)


# --- MobileNeXt-1.0 (official code), REFERENCE.md's per-block table verbatim -------------------
MOBILENEXT_TABLE = """\
 1 in=  32 out=  96 (112, 112)->(56, 56)  dw1 | pw32->16 | pw16->96 | dw2          -   params=3680
 2 in=  96 out= 144 (56, 56)->(56, 56)  dw1 | pw96->32 | pw32->144 | dw1         -   params=10672
 3 in= 144 out= 192 (56, 56)->(28, 28)  pw144->32 | pw32->192 | dw2              -   params=13312
 4 in= 192 out= 192 (28, 28)->(28, 28)  dw1 | pw192->32 | pw32->192 | dw1        res params=16960
 5 in= 192 out= 192 (28, 28)->(28, 28)  dw1 | pw192->32 | pw32->192 | dw1        res params=16960
 6 in= 192 out= 288 (28, 28)->(14, 14)  pw192->48 | pw48->288 | dw2              -   params=26880
 7 in= 288 out= 288 (14, 14)->(14, 14)  dw1 | pw288->48 | pw48->288 | dw1        res params=34656
 8 in= 288 out= 288 (14, 14)->(14, 14)  dw1 | pw288->48 | pw48->288 | dw1        res params=34656
 9 in= 288 out= 384 (14, 14)->(14, 14)  pw288->64 | pw64->384                    -   params=43904
10 in= 384 out= 384 (14, 14)->(14, 14)  dw1 | pw384->64 | pw64->384 | dw1        res params=58496
11 in= 384 out= 384 (14, 14)->(14, 14)  dw1 | pw384->64 | pw64->384 | dw1        res params=58496
12 in= 384 out= 384 (14, 14)->(14, 14)  dw1 | pw384->64 | pw64->384 | dw1        res params=58496
13 in= 384 out= 576 (14, 14)->(7, 7)  pw384->96 | pw96->576 | dw2              -   params=99840
14 in= 576 out= 576 (7, 7)->(7, 7)  dw1 | pw576->96 | pw96->576 | dw1        res params=124608
15 in= 576 out= 576 (7, 7)->(7, 7)  dw1 | pw576->96 | pw96->576 | dw1        res params=124608
16 in= 576 out= 576 (7, 7)->(7, 7)  dw1 | pw576->96 | pw96->576 | dw1        res params=124608
17 in= 576 out= 960 (7, 7)->(7, 7)  pw576->160 | pw160->960                  -   params=248000
18 in= 960 out= 960 (7, 7)->(7, 7)  dw1 | pw960->160 | pw160->960 | dw1      res params=330560
19 in= 960 out= 960 (7, 7)->(7, 7)  dw1 | pw960->160 | pw160->960 | dw1      res params=330560
20 in= 960 out=1280 (7, 7)->(7, 7)  dw1 | pw960->208 | pw208->1280 | dw1     -   params=493536
"""
_ROW = re.compile(r"^\s*\d+ in=\s*(\d+) out=\s*(\d+) \((\d+), (\d+)\)->\((\d+), (\d+)\)\s+(.+?)\s+(res|-)\s+params=(\d+)$")


class SandglassRow(NamedTuple):
    cin: int
    cout: int
    size_in: int
    size_out: int
    layers: tuple[Layer, ...]
    residual: bool
    params: int


def mobilenext_rows() -> list[SandglassRow]:
    rows = []
    for line in MOBILENEXT_TABLE.splitlines():
        m = _ROW.match(line)
        if m is None:
            raise ValueError(f"unparsed MobileNeXt table row: {line!r}")
        cin, cout, h_in, _, h_out, _ = map(int, m.groups()[:6])
        layers, c = [], cin
        for part in (p.strip() for p in m.group(7).split("|")):
            if part in ("dw1", "dw2"):
                layers.append(dw(c, 3, int(part[2])))
            else:
                a, b = map(int, part[2:].split("->"))
                layers.append(conv(a, b))
                c = b
        rows.append(SandglassRow(cin, cout, h_in, h_out, tuple(layers), m.group(8) == "res", int(m.group(9))))
    return rows


def mobilenext_layers() -> Iterator[Layer]:
    yield conv(3, 32, 3, 2)
    for row in mobilenext_rows():
        yield from row.layers
    yield linear(1280, NUM_CLASSES)


# --- MobileNetV4-Conv (timm `_gen_mobilenet_v4`, conv variants) --------------------------------
# timm's block strings verbatim: type (cn conv+BN+act, er fused IB, uir UIB), r repeats, a start dw
# kernel (uir; 0 or absent = none), k kernel (uir: mid dw, 0 = none), s stride of the first repeat,
# e expansion, c out channels. Stem: 3x3 s2 conv; head: pool -> 1x1 960->1280 (no bias) + BN + act
# -> Linear(1280, 1000). Conv variants have no layer scale.
MOBILENET_V4_CONV = {
    "small": (32, (
        ("cn_r1_k3_s2_e1_c32", "cn_r1_k1_s1_e1_c32"),
        ("cn_r1_k3_s2_e1_c96", "cn_r1_k1_s1_e1_c64"),
        ("uir_r1_a5_k5_s2_e3_c96", "uir_r4_a0_k3_s1_e2_c96", "uir_r1_a3_k0_s1_e4_c96"),
        ("uir_r1_a3_k3_s2_e6_c128", "uir_r1_a5_k5_s1_e4_c128", "uir_r1_a0_k5_s1_e4_c128",
         "uir_r1_a0_k5_s1_e3_c128", "uir_r2_a0_k3_s1_e4_c128"),
        ("cn_r1_k1_s1_c960",),
    )),
    "medium": (32, (
        ("er_r1_k3_s2_e4_c48",),
        ("uir_r1_a3_k5_s2_e4_c80", "uir_r1_a3_k3_s1_e2_c80"),
        ("uir_r1_a3_k5_s2_e6_c160", "uir_r2_a3_k3_s1_e4_c160", "uir_r1_a3_k5_s1_e4_c160",
         "uir_r1_a3_k3_s1_e4_c160", "uir_r1_a3_k0_s1_e4_c160", "uir_r1_a0_k0_s1_e2_c160",
         "uir_r1_a3_k0_s1_e4_c160"),
        ("uir_r1_a5_k5_s2_e6_c256", "uir_r1_a5_k5_s1_e4_c256", "uir_r2_a3_k5_s1_e4_c256",
         "uir_r1_a0_k0_s1_e4_c256", "uir_r1_a3_k0_s1_e4_c256", "uir_r1_a3_k5_s1_e2_c256",
         "uir_r1_a5_k5_s1_e4_c256", "uir_r2_a0_k0_s1_e4_c256", "uir_r1_a5_k0_s1_e2_c256"),
        ("cn_r1_k1_s1_c960",),
    )),
    "large": (24, (
        ("er_r1_k3_s2_e4_c48",),
        ("uir_r1_a3_k5_s2_e4_c96", "uir_r1_a3_k3_s1_e4_c96"),
        ("uir_r1_a3_k5_s2_e4_c192", "uir_r3_a3_k3_s1_e4_c192", "uir_r1_a3_k5_s1_e4_c192",
         "uir_r5_a5_k3_s1_e4_c192", "uir_r1_a3_k0_s1_e4_c192"),
        ("uir_r4_a5_k5_s2_e4_c512", "uir_r1_a5_k0_s1_e4_c512", "uir_r1_a5_k3_s1_e4_c512",
         "uir_r2_a5_k0_s1_e4_c512", "uir_r1_a5_k3_s1_e4_c512", "uir_r1_a5_k5_s1_e4_c512",
         "uir_r3_a5_k0_s1_e4_c512"),
        ("cn_r1_k1_s1_c960",),
    )),
}
MOBILENET_V4_HEAD = 1280


def _block_options(text: str) -> tuple[str, dict[str, float]]:
    kind, *parts = text.split("_")
    return kind, {p[0]: float(p[1:]) for p in parts}


def mobilenet_v4_layers(variant: str) -> Iterator[Layer]:
    """timm's EfficientNetBuilder over the block strings: UIB mid width make_divisible(in * e), start dw
    strided only when there is no mid dw, the 1x1 expansion always present; fused IB expands with its KxK."""
    stem, stages = MOBILENET_V4_CONV[variant]
    c = stem
    yield conv(3, c, 3, 2)
    for stage in stages:
        for text in stage:
            kind, o = _block_options(text)
            for i in range(int(o["r"])):
                stride, out, k = (int(o["s"]) if i == 0 else 1), int(o["c"]), int(o["k"])
                if kind == "cn":
                    yield conv(c, out, k, stride)
                elif kind == "er":
                    mid = make_divisible(c * o["e"])
                    yield conv(c, mid, k, stride)
                    yield conv(mid, out)
                elif kind == "uir":
                    start, mid = int(o.get("a", 0)), make_divisible(c * o["e"])
                    if start:
                        yield dw(c, start, 1 if k else stride)
                    yield conv(c, mid)
                    if k:
                        yield dw(mid, k, stride)
                    yield conv(mid, out)
                else:
                    raise ValueError(f"unknown block type in {text!r}")
                c = out
    yield conv(c, MOBILENET_V4_HEAD)  # after global pooling
    yield linear(MOBILENET_V4_HEAD, NUM_CLASSES)


def mobilenet_v4_params(variant: str) -> int:
    """Every conv of MobileNetV4-Conv is bias-free and followed by a BatchNorm (weight and bias)."""
    total = 0
    for layer in mobilenet_v4_layers(variant):
        if layer.kind == "conv":
            total += layer.cin // layer.groups * layer.cout * layer.kernel ** 2 + 2 * layer.cout
        else:
            total += layer.cin * layer.cout + (layer.cout if layer.bias else 0)
    return total


def mobilenet_v4_macs(variant: str, resolution: int) -> int:
    """Conv and linear multiply-accumulates at a square input of `resolution` ('same' padding)."""
    total, size = 0, resolution
    for layer in mobilenet_v4_layers(variant):
        if layer.kind == "conv":
            if layer.cout == MOBILENET_V4_HEAD:
                size = 1  # the head conv runs on the pooled features
            size = (size - 1) // layer.stride + 1
            total += layer.cin // layer.groups * layer.cout * layer.kernel ** 2 * size * size
        else:
            total += layer.cin * layer.cout
    return total


LAYOUTS = {
    "mobilenet_v1": mobilenet_v1_layers,
    "mobilenet_v2": lambda: mobilenet_v2_layers(1.0),
    "mobilenet_v2_x1_4": lambda: mobilenet_v2_layers(1.4),
    "mobilenet_v3_large": lambda: mobilenet_v3_layers(MOBILENET_V3_LARGE, 960, 1280),
    "mobilenet_v3_small": lambda: mobilenet_v3_layers(MOBILENET_V3_SMALL, 576, 1024),
    "shufflenet_v1_g3": lambda: shufflenet_v1_layers(3, (240, 480, 960)),
    "shufflenet_v1_g8": lambda: shufflenet_v1_layers(8, (384, 768, 1536)),
    "shufflenet_v2_x1_0": lambda: shufflenet_v2_layers((116, 232, 464)),
    "shufflenet_v2_x1_5": lambda: shufflenet_v2_layers((176, 352, 704)),
    "mobilenext": mobilenext_layers,
    "mobilenet_v4_conv_small": lambda: mobilenet_v4_layers("small"),
    "mobilenet_v4_conv_medium": lambda: mobilenet_v4_layers("medium"),
    "mobilenet_v4_conv_large": lambda: mobilenet_v4_layers("large"),
}

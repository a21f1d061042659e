"""Shipped spaces load, build and run; sampling, encoding, projection, fixed output and size are exact."""
from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
import torch
import yaml

from nas.builder import build
from nas.space import (Arch, canonical, decisions, decode, encode, fixed_dict, load_space, log10_size,
                       parse_space, plan, project, sample, size, unique_units, write_fixed)

from roots import SPACES_DIR
ALL_FILES = sorted(SPACES_DIR.glob("**/*.yaml"))
SHIPPED = ["sandglass", "mobilenet_v3"]  # the search spaces (with choices and a backbone)


def rel(path: Path) -> str:
    return str(path.relative_to(SPACES_DIR))


_cache: dict[str, object] = {}


def space_of(name: str):
    """Shipped spaces are loaded once per session (loading checks every op/width combination)."""
    if name not in _cache:
        _cache[name] = load_space(SPACES_DIR / f"{name}.yaml")
    return _cache[name]


def unit_keys(space, values=None) -> list[str]:
    return [u.text for u in plan(space, values or {}).units]


# ---- every YAML under search_spaces/ ----

def test_files_found() -> None:
    assert {rel(p) for p in ALL_FILES} >= {"sandglass.yaml", "mobilenet_v3.yaml", "reference/mobilenet_v2.yaml"}
    assert len(ALL_FILES) == 17  # 4 spaces, 13 reference nets


@pytest.mark.parametrize("path", ALL_FILES, ids=rel)
def test_loads_builds_and_runs(path: Path) -> None:
    space = load_space(path)
    arch = None if space.is_fixed else sample(space, 0)
    if "reference" in path.parts:
        assert space.is_fixed
    torch.manual_seed(0)
    model = build(space, arch, init=True).eval()
    res = plan(space, arch or {}).resolution
    assert res in space.resolution
    with torch.no_grad():
        out = model(torch.randn(1, space.in_channels, res, res, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, space.num_classes)
    assert torch.isfinite(out).all()
    # The built network is exactly the planned one, unit for unit.
    assert [u.key_text(u.key) for u in model.units()] == unit_keys(space, arch)


# ---- the shipped search spaces ----

@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_is_large(name: str) -> None:
    space = space_of(name)
    assert not space.is_fixed
    assert log10_size(space) > 15
    assert log10_size(space) == pytest.approx(math.log10(size(space)))


@pytest.mark.parametrize("name, backbone", [("sandglass", "mobilenext"), ("mobilenet_v3", "mobilenet_v3_large")])
def test_backbone_projects(name: str, backbone: str) -> None:
    space = space_of(name)
    assert Path(space.backbone).resolve() == SPACES_DIR / "reference" / f"{backbone}.yaml"
    fixed = load_space(space.backbone)
    assert fixed.is_fixed
    arch = project(space, fixed)
    assert Arch.of(dict(arch), space) == arch
    assert canonical(space, arch) == arch
    assert unit_keys(space, arch) == unit_keys(fixed)
    # And the fixed file written from that point is the backbone again.
    assert unit_keys(parse_space(fixed_dict(space, arch), "<fixed_dict>")) == unit_keys(fixed)


@pytest.mark.parametrize("name", SHIPPED)
def test_sample_deterministic_and_in_choices(name: str) -> None:
    space = space_of(name)
    names = [d.name for d in decisions(space)]
    a = sample(space, 7)
    assert a == sample(space, 7)
    assert a == sample(space, random.Random(7))
    assert list(a) == names
    draws = [sample(space, seed) for seed in range(10)]
    assert len(set(draws)) == 10
    for arch in draws:
        for d in decisions(space):
            assert arch[d.name] in d.choices, d.name
            assert type(arch[d.name]) in {type(c) for c in d.choices}
        assert Arch.of(dict(arch), space) == arch


@pytest.mark.parametrize("name", SHIPPED)
def test_sample_covers_every_choice(name: str) -> None:
    """Uniform draws: over 200 samples every choice of every decision shows up."""
    space = space_of(name)
    rng = random.Random(0)
    seen: dict[str, set] = {d.name: set() for d in decisions(space)}
    for _ in range(200):
        for key, value in sample(space, rng).items():
            seen[key].add(value)
    for d in decisions(space):
        assert seen[d.name] == set(d.choices), d.name


@pytest.mark.parametrize("name", SHIPPED)
def test_encode_decode_round_trip(name: str) -> None:
    space = space_of(name)
    rng = random.Random(1)
    for _ in range(50):
        arch = sample(space, rng)
        text = encode(space, arch)
        assert decode(space, text) == canonical(space, arch), text
        assert encode(space, canonical(space, arch)) == text


def test_decision_names_mobilenet_v3() -> None:
    names = [d.name for d in decisions(space_of("mobilenet_v3"))]
    expected = ["res"]
    for s in ("s2", "s3", "s4", "s5", "s6"):  # s1 has no choices; widths are fixed
        expected += [f"{s}.depth"] + [f"{s}.b{j}.{f}" for j in range(4) for f in ("kernel", "expand")]
    assert names == expected


def test_decision_names_sandglass() -> None:
    """Stages without a name are s1, s2, ...; block fields follow the canonical field order."""
    names = [d.name for d in decisions(space_of("sandglass"))]
    expected = ["res"]
    for i, depth in enumerate((1, 2, 4, 4, 4, 4, 4, 1), start=1):
        expected += ([f"s{i}.depth"] if depth > 1 else []) + [f"s{i}.width"]
        expected += [f"s{i}.b{j}.{f}" for j in range(depth) for f in ("op", "kernel", "expand", "se")]
    assert names == expected


def test_encode_sandglass_exact() -> None:
    space = space_of("sandglass")
    arch = project(space, load_space(space.backbone))
    text = encode(space, arch)
    assert text.startswith("r224|s1:w96,b0=sg/k3/e2/se0|s2:d1,w144,b0=sg/k3/e6/se0|s3:d3,w192,")
    assert decode(space, text) == arch


@pytest.mark.parametrize("name", SHIPPED)
def test_fixed_round_trip(name: str, tmp_path: Path) -> None:
    space = space_of(name)
    for seed in range(3):
        arch = sample(space, seed)
        path = tmp_path / f"{name}-{seed}.yaml"
        write_fixed(space, arch, path, name=f"{name}-{seed}")
        fixed = load_space(path)
        assert fixed.is_fixed
        assert fixed.name == f"{name}-{seed}"
        assert unit_keys(fixed) == unit_keys(space, arch)
        assert project(space, fixed) == canonical(space, arch)
        assert path.read_text().splitlines()[:2] == [f"# Fixed architecture from {space.file}",
                                                      f"# arch: {encode(space, arch)}"]
        assert yaml.safe_load(path.read_text()) == fixed_dict(space, arch, name=f"{name}-{seed}")


# ---- a tiny hand-made space, counted by hand ----

TINY = """
name: tiny
resolution: [32, 64]
num_classes: 10
stem: {out: 8}
stages:
  - name: a
    stride: 2
    depth: [1, 2]
    width: [16, 24]
    block: {op: [inverted_residual, shuffle_v2], kernel: [3, 5], expand: [2, 4]}
  - name: b
    stride: 1
    depth: [1, 3]
    width: 32
    block: {op: inverted_residual, expand: [3, 6], se: [false, true], se_ratio: 0.5, se_gate: sigmoid}
head: {pool: avg}
"""


@pytest.fixture
def tiny(write_yaml):
    return load_space(write_yaml(TINY))


def test_tiny_size_by_hand(tiny) -> None:
    # Stage a, one block: inverted_residual uses kernel and expand (2 x 2 = 4), shuffle_v2 uses kernel only (2): 6.
    # Depth 1 or 2: 6 + 6 * 6 = 42 settings, times 2 widths: 84.
    # Stage b, one block: expand x se = 4 (se_ratio and se_gate are fixed); depth 1 or 3: 4 + 4 ** 3 = 68.
    # Resolution: 2.  Total 2 * 84 * 68.
    assert size(tiny) == 2 * 84 * 68 == 11424
    assert log10_size(tiny) == pytest.approx(math.log10(11424))
    # 16 decisions with 2 choices each: the raw product double-counts ignored ones.
    assert math.prod(len(d.choices) for d in decisions(tiny)) == 2 ** 16


def test_tiny_decision_names(tiny) -> None:
    assert [d.name for d in decisions(tiny)] == [
        "res", "a.depth", "a.width",
        "a.b0.op", "a.b0.kernel", "a.b0.expand", "a.b1.op", "a.b1.kernel", "a.b1.expand",
        "b.depth", "b.b0.expand", "b.b0.se", "b.b1.expand", "b.b1.se", "b.b2.expand", "b.b2.se",
    ]
    assert decisions(tiny)[3].choices == ("inverted_residual", "shuffle_v2")


def every_arch(space) -> list[dict]:
    """Brute force: every combination of the space's decisions."""
    ds = decisions(space)
    return [dict(zip((d.name for d in ds), values)) for values in itertools.product(*(d.choices for d in ds))]


def assert_distinct_networks(space, archs: list[dict], n: int) -> None:
    """size() == distinct canonical archs == distinct planned networks == n."""
    assert size(space) == n
    assert len({canonical(space, a) for a in archs}) == n
    assert len({tuple(unit_keys(space, a)) for a in archs}) == n


def test_size_counts_distinct_networks(write_yaml) -> None:
    """Brute force on a one-stage space: size == distinct canonical archs == distinct planned networks."""
    space = load_space(write_yaml("""
name: one
resolution: 32
stem: {out: 8}
stages:
  - {name: a, stride: 2, depth: [1, 2], width: 16,
     block: {op: [inverted_residual, shuffle_v2], kernel: [3, 5], expand: [2, 4]}}
head: {pool: avg}
"""))
    archs = every_arch(space)
    assert len(archs) == 2 * 8 * 8
    assert_distinct_networks(space, archs, 42)


def test_se_options_count_only_with_se_on(write_yaml) -> None:
    """se_ratio / se_gate change nothing when se is off: not counted, not active, not in equal keys."""
    space = load_space(write_yaml("""
name: se-opts
resolution: 32
stem: {out: 8}
stages:
  - {name: a, stride: 1, depth: 2, width: 8,
     block: {op: inverted_residual, expand: 2, se: [false, true], se_ratio: [0.25, 0.5]}}
head: {pool: avg}
"""))
    archs = every_arch(space)
    assert len(archs) == 16
    # Per block: se off (1) + se on x 2 ratios (2) = 3 settings; two blocks: 9.
    assert_distinct_networks(space, archs, 9)


def test_standalone_squeeze_excite_keeps_its_se_options(write_yaml) -> None:
    """squeeze_excite has no `se` switch: its ratio and gate always matter (counted, active, built)."""
    space = load_space(write_yaml("""
name: se-op
resolution: 32
stem: {out: 32}
stages:
  - {name: a, stride: 1, depth: 1, width: 32,
     block: {op: [squeeze_excite, inverted_residual], expand: 2, se_ratio: [0.25, 0.5], se_gate: [hardsigmoid, sigmoid]}}
head: {pool: avg}
"""))
    archs = every_arch(space)
    # squeeze_excite: 2 ratios x 2 gates; inverted_residual without se: its SE options change nothing.
    assert_distinct_networks(space, archs, 4 + 1)
    config = plan(space, {"a.b0.op": "squeeze_excite", "a.b0.se_ratio": 0.5, "a.b0.se_gate": "sigmoid"}).units[1].key.config
    assert (config.op, config.se_ratio, config.se_gate) == ("squeeze_excite", 0.5, "sigmoid")
    se = build(space, {"a.b0.op": "squeeze_excite", "a.b0.se_ratio": 0.5, "a.b0.se_gate": "sigmoid"}).blocks[0].se
    assert se.fc1.out_channels == 16 and isinstance(se.scale_activation, torch.nn.Sigmoid)  # 32 * 0.5
    assert set(unique_units(space)) == {u.text for a in archs for u in plan(space, a).units}


def test_tiny_canonical_drops_ignored(tiny) -> None:
    arch = dict(sample(tiny, 0))
    arch.update({"a.depth": 1, "a.b0.op": "shuffle_v2", "a.b0.expand": 4, "a.b1.kernel": 5,
                 "b.depth": 1, "b.b2.se": True})
    c = canonical(tiny, arch)
    assert c["a.b0.expand"] == 2  # shuffle_v2 has no expansion
    assert c["a.b1.kernel"] == 3  # block 1 is past depth 1
    assert c["b.b2.se"] is False
    assert c["a.b0.op"] == "shuffle_v2" and c["a.depth"] == 1
    assert unit_keys(tiny, c) == unit_keys(tiny, arch)
    assert encode(tiny, arch) == encode(tiny, c)


def test_tiny_encode_exact(tiny) -> None:
    arch = Arch.of({
        "res": 64, "a.depth": 2, "a.width": 24,
        "a.b0.op": "shuffle_v2", "a.b0.kernel": 5, "a.b0.expand": 4,
        "a.b1.op": "inverted_residual", "a.b1.kernel": 3, "a.b1.expand": 4,
        "b.depth": 1, "b.b0.expand": 6, "b.b0.se": True, "b.b1.expand": 6, "b.b1.se": True,
        "b.b2.expand": 3, "b.b2.se": False,
    }, tiny)
    text = encode(tiny, arch)
    assert text == "r64|a:d2,w24,b0=sh2/k5,b1=ir/k3/e4|b:d1,b0=e6/se1"
    assert decode(tiny, text) == canonical(tiny, arch)


def test_tiny_encode_decode_random(tiny) -> None:
    rng = random.Random(5)
    for _ in range(50):
        arch = sample(tiny, rng)
        assert decode(tiny, encode(tiny, arch)) == canonical(tiny, arch)


def test_tiny_fixed_round_trip(tiny, tmp_path: Path) -> None:
    for seed in range(5):
        arch = sample(tiny, seed)
        path = tmp_path / f"tiny-{seed}.yaml"
        write_fixed(tiny, arch, path)
        fixed = load_space(path)
        assert fixed.is_fixed and fixed.name == "tiny-arch"
        # Non-default fields are written out (core fields always are, defaults are left out).
        b0 = yaml.safe_load(path.read_text())["stages"][1]["blocks"][0]
        assert b0 == {"op": "inverted_residual", "kernel": 3, "expand": arch["b.b0.expand"], "se": arch["b.b0.se"],
                      "act": "relu", "se_ratio": 0.5, "se_gate": "sigmoid"}
        assert unit_keys(fixed) == unit_keys(tiny, arch)
        assert project(tiny, fixed) == canonical(tiny, arch)


def test_tiny_builds_every_op_choice(tiny) -> None:
    for op in ("inverted_residual", "shuffle_v2"):
        arch = dict(sample(tiny, 0), **{"a.b0.op": op, "res": 32})
        model = build(tiny, arch).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 32, 32))
        assert out.shape == (1, 10)
        assert type(model.blocks[0]).__name__ == {"inverted_residual": "InvertedResidual",
                                                   "shuffle_v2": "ShuffleV2"}[op]

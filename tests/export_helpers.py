"""What the export tests share: the all-ops space (every registered stage op's example in one net),
the named test cases, and helpers that build, randomise, import and compare networks."""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import torch
import yaml

from nas.builder import build
from nas.ops import get_op, op_names
from nas.space import load_space, sample
from roots import ROOT

SPACES = ROOT / "search_spaces"
REFERENCES = sorted((SPACES / "reference").glob("*.yaml"))


def all_ops_yaml() -> str:
    """One small net with every registered stage op's example (`Op.example`: its activations, gates and
    layouts), a 1x1 conv between examples where widths differ, a max-pool stem and a full head."""
    stages, width = [], 24
    for name in op_names(stage_only=True):
        example = get_op(name).example
        assert example is not None, f"operator {name!r} has no example"
        if example.cin != width:
            stages.append({"stride": 1, "depth": 1, "width": example.cin, "block": {"op": "conv_bn_act", "kernel": 1}})
        stages += [dict(stage) for stage in example.stages]
        width = example.stages[-1]["width"]
    return yaml.safe_dump({
        "name": "all-ops", "resolution": 64, "num_classes": 10, "norm": {"eps": 0.001, "momentum": 0.01},
        "stem": {"out": 24, "kernel": 3, "stride": 2, "act": "relu", "pool": "max"}, "stages": stages,
        "head": {"conv": {"out": 160, "act": "silu"}, "pool": "mean", "hidden": {"out": 64, "act": "relu"},
                 "bias": False},
    }, sort_keys=False)


ALL_OPS = all_ops_yaml()

CASES = ([p.stem for p in REFERENCES] + ["all_ops"]
         + [f"sandglass-seed{s}" for s in (0, 1, 2)] + [f"mobilenet_v3-seed{s}" for s in (0, 1)]
         + [f"mobilenet_v4-seed{s}" for s in (0, 1)])


@lru_cache(maxsize=None)
def cached_space(path: str):
    """load_space, once per file for the session."""
    return load_space(path)


def load_case(name: str, all_ops_file: Path):
    """(space, arch) of a test case: a reference net, the all-ops net, or a seeded sample of a space."""
    if name == "all_ops":
        return cached_space(str(all_ops_file)), None
    if "-seed" in name:
        stem, seed = name.split("-seed")
        space = cached_space(str(SPACES / f"{stem}.yaml"))
        return space, sample(space, int(seed))
    return cached_space(str(SPACES / "reference" / f"{name}.yaml")), None


def import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeded_build(space, arch=None) -> torch.nn.Module:
    """`build` with fixed conv weights (they come from torch's global RNG), so outputs, and the size check
    in `assert_same`, do not depend on which tests ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build(space, arch)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make BatchNorm statistics and affine terms and every bias non-trivial, so that a wrong eps, a
    missing bias or a swapped layer changes the outputs (fresh init leaves BN an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("bias", "running_mean")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.dim() == 1:  # BatchNorm weight
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 2:  # Linear weight: unit-scale outputs, so that absolute tolerances mean something
                t.copy_(torch.randn(t.shape, generator=g) / t.shape[1] ** 0.5)
    return model


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal up to float rounding, with the absolute tolerance scaled to the outputs' size."""
    assert theirs.abs().max() > 0.1  # a vanishing output would hide any difference
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol * theirs.abs().max().item())


def example(space, size: int = 64, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, space.in_channels, size, size, generator=torch.Generator().manual_seed(seed))


def shapes(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]

"""Small spaces written as YAML, inputs and one-line checks for the supernet tests, and a tiny space with a
briefly trained supernet checkpoint for the tests of subnet scoring, export and search."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pytest
import torch
import yaml

from nas.data import prepared
from nas.space import decisions, load_space, plan, sample
from nas.supernet import Supernet, save_checkpoint

TOL = 1e-5


def block(op: str, **choices: Any) -> dict[str, Any]:
    return {"op": op, **choices}


def space_yaml(name: str, stem: int, stages: list[dict[str, Any]], resolution: list[int] | int = 16,
               head: Mapping[str, Any] | None = None) -> str:
    return yaml.safe_dump({"name": name, "resolution": resolution, "num_classes": 5,
                           "stem": {"out": stem, "kernel": 3, "stride": 1},
                           "stages": stages, "head": dict(head or {"pool": "avg"})}, sort_keys=False)


def extremes(space) -> list[dict[str, Any]]:
    """The architecture of every first choice and that of every last choice."""
    return [{d.name: d.choices[i] for d in decisions(space)} for i in (0, -1)]


def inputs(space, arch, batch: int = 4, seed: int = 0) -> torch.Tensor:
    res = plan(space, arch).resolution
    return torch.randn(batch, space.in_channels, res, res, generator=torch.Generator().manual_seed(seed))


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# Two resolutions, both ops with SE and kernel choices, elastic depth and width: every kind of cut.
TINY_SUPERNET_SPACE = """
name: tinysuper
resolution: [12, 16]
num_classes: 10
stem: {out: 8, kernel: 3, stride: 2, act: relu6}
stages:
  - {stride: 2, depth: [1, 2], width: [8, 16], block: {op: [sandglass, inverted_residual], kernel: [3, 5], expand: [2, 4], se: [false, true], act: relu6}}
  - {stride: 1, depth: [1, 2], width: [16, 24], block: {op: [sandglass, inverted_residual], kernel: [3, 5], expand: [2, 4], act: relu6}}
head: {pool: avg, dropout: 0.1}
"""


_TRAINED: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}  # trained once per session


def trained_supernet(space_file: Path, steps: int = 40, seed: int = 0) -> Supernet:
    """A supernet of `space_file` after `steps` SGD steps on digits, one random subnet a step (seeded): far
    from converged, but its shared batch-norm statistics are as mixed as a real run leaves them."""
    space = load_space(space_file)
    key = (Path(space_file).read_text(), steps, seed)
    if key in _TRAINED:
        supernet = Supernet(space)
        supernet.load_state_dict(_TRAINED[key])
        return supernet.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        supernet = Supernet(space).train()
        opt = torch.optim.SGD(supernet.parameters(), lr=0.05, momentum=0.9)
        for step in range(steps):
            arch = sample(space, seed * 1000 + step)
            ds = prepared("digits", plan(space, arch).resolution, space.in_channels)
            idx = torch.randint(0, len(ds.y_train), (32,))
            loss = torch.nn.functional.cross_entropy(supernet(ds.x_train[idx], arch), ds.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    _TRAINED[key] = {k: v.detach().clone() for k, v in supernet.state_dict().items()}
    return supernet.eval()


def tiny_checkpoint(folder: Path, steps: int = 40) -> tuple[Path, Path]:
    """(space file, checkpoint) of a briefly trained tiny supernet, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    space_file = folder / "tiny_super.yaml"
    space_file.write_text(TINY_SUPERNET_SPACE, encoding="utf-8")
    checkpoint = folder / "supernet.pt"
    save_checkpoint(checkpoint, trained_supernet(space_file, steps))
    return space_file, checkpoint

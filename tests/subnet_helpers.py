"""A tiny space and a briefly trained supernet checkpoint for the tests of subnet scoring, export and search."""
from __future__ import annotations

from pathlib import Path

import torch

from nas.data import prepared
from nas.space import load_space, plan, sample
from nas.supernet import Supernet, save_checkpoint

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

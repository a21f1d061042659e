"""From files to a supernet and one of its subnets: the checkpoint's space, a fixed-architecture YAML as
an architecture of that space, and the data the supernet was trained on."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from nas.space import Arch, SearchSpace, load_fixed, load_space, project
from nas.supernet.checkpoint import load_supernet, read_checkpoint
from nas.supernet.evaluate import SubnetEvaluator
from nas.supernet.model import Supernet, SupernetError

DEFAULT_DATA = "digits"


def checkpoint_space(path: str | os.PathLike, space: SearchSpace | str | os.PathLike | None = None) -> SearchSpace:
    """`space` (loaded when a path), else the space file the checkpoint at `path` records, if it exists."""
    if isinstance(space, SearchSpace):
        return space
    if space is not None:
        return load_space(space)
    recorded = read_checkpoint(path).get("space_file")
    if not isinstance(recorded, str) or not Path(recorded).is_file():
        raise SupernetError(f"{path}: the space it was trained on ({recorded}) is not there; give the space file "
                            f"(--space)")
    return load_space(recorded)


def open_supernet(path: str | os.PathLike,
                  space: SearchSpace | str | os.PathLike | None = None) -> tuple[Supernet, dict[str, Any]]:
    """The supernet at `path` (eval mode) for `space` or the space it records, and the checkpoint's contents.
    A checkpoint of another space is refused in one line (`nas.supernet.checkpoint.check_space`)."""
    return load_supernet(path, checkpoint_space(path, space))


def fixed_arch(space: SearchSpace, fixed: SearchSpace | str | os.PathLike) -> Arch:
    """The architecture of `space` that the fixed-architecture file (or space) `fixed` describes; a
    one-line `SpaceError` when it is not a point of the space. Its class count is not compared: a
    subnet has as many outputs as its supernet was trained for."""
    fixed = fixed if isinstance(fixed, SearchSpace) else load_fixed(fixed)
    return project(replace(space, num_classes=fixed.num_classes), fixed)


def checkpoint_data(doc: dict[str, Any]) -> str:
    """The data a checkpoint's trainer recorded (`doc["train"]["data"]`), else digits."""
    train = doc.get("train")
    data = train.get("data") if isinstance(train, dict) else None
    return data if isinstance(data, str) and data else DEFAULT_DATA


def open_subnet(arch: SearchSpace | str | os.PathLike, supernet: str | os.PathLike, *,
                space: SearchSpace | str | os.PathLike | None = None, data: str | os.PathLike | None = None,
                **evaluator: Any) -> tuple[SubnetEvaluator, Arch]:
    """An evaluator for the supernet at `supernet` on `data` (default: what its trainer recorded, else
    digits) and the fixed architecture `arch` as an architecture of its space. `evaluator` takes
    `SubnetEvaluator`'s keywords (calib_images, seed, device)."""
    model, doc = open_supernet(supernet, space)
    chosen = fixed_arch(model.space, arch)
    model.weights(chosen)  # an architecture the supernet holds no weights for is refused here, in one line
    return SubnetEvaluator(model, data if data is not None else checkpoint_data(doc), **evaluator), chosen

"""The Python API of the weight-sharing supernet: train one (`nas supernet train`), score a fixed
architecture as its subnet (`nas supernet eval`) and export that subnet with its weights
(`nas supernet export`). `nas.api` re-exports these names."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.space import SearchSpace, load_space


def _space(space: SearchSpace | str | os.PathLike) -> SearchSpace:
    return space if isinstance(space, SearchSpace) else load_space(str(space))


def train_supernet(space: SearchSpace | str | os.PathLike, data: Any = "digits", out: str | os.PathLike = "supernet.pt",
                   *, epochs: int, threads: int | None = None, **options: Any) -> Any:
    """Train the weight-sharing supernet of `space` into the checkpoint `out`, resuming it when `out` holds
    this run stopped early (see `nas.supernet.train.train_supernet` for `data` and `options`), with
    `threads` torch threads (restored afterwards). Returns a `SupernetTrainResult`."""
    import torch

    from nas.supernet.train import train_supernet as train_supernet_

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return train_supernet_(_space(space), data, out, epochs=epochs, **options)
    finally:
        torch.set_num_threads(before)


# ---- subnets of a trained supernet (`nas supernet eval`, `nas supernet export`) --------------------------

@dataclass(frozen=True)
class SubnetEval:
    """A fixed architecture scored as a subnet of a supernet: held-out top-1 and log-loss."""

    name: str
    arch: str  # its code in the supernet's space (`nas.space.encode`)
    resolution: int
    data: str
    recalibrated: bool  # batch-norm statistics recomputed for it before scoring
    top1: float
    log_loss: float
    seconds: float  # recalibration + evaluation

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def supernet_eval(arch: SearchSpace | str | os.PathLike, supernet: str | os.PathLike, *, recalibrate: bool = True,
                  **options: Any) -> SubnetEval:
    """Score the fixed architecture `arch` (a file or a fixed space) as a subnet of the supernet checkpoint
    `supernet`; `options`: space, data, calib_images, seed, device (`nas.supernet.open_subnet`)."""
    from nas.space import load_fixed
    from nas.supernet import open_subnet

    fixed = arch if isinstance(arch, SearchSpace) else load_fixed(arch)
    return _subnet_eval(*open_subnet(fixed, supernet, **options), fixed.name, recalibrate)


def _subnet_eval(evaluator: Any, chosen: Any, name: str, recalibrate: bool) -> SubnetEval:
    from nas.space import encode

    score = evaluator.score(chosen, recalibrate)
    return SubnetEval(name=name, arch=encode(evaluator.space, chosen), resolution=evaluator.supernet.plan(chosen).resolution,
                      data=str(evaluator.data), recalibrated=recalibrate, top1=score.top1, log_loss=score.log_loss,
                      seconds=score.seconds)


@dataclass(frozen=True)
class SubnetExport:
    """What `nas supernet export` wrote, and how closely the standalone module follows the supernet."""

    model: Path  # the standalone .py
    weights: Path  # its state_dict, cut from the supernet with recalibrated batch norms
    class_name: str
    score: SubnetEval  # the recalibrated subnet's held-out scores
    max_abs_diff: float  # standalone module vs the supernet's subnet, eval mode, on held-out images


def supernet_export(arch: SearchSpace | str | os.PathLike, supernet: str | os.PathLike, out_dir: str | os.PathLike,
                    *, class_name: str | None = None, **options: Any) -> SubnetExport:
    """Write `arch` as a subnet of `supernet` to `out_dir`: model.py (standalone, torch only) and weights.pt
    (its recalibrated state_dict), each atomically; `options` as for `supernet_eval`."""
    import torch

    from nas.export import class_name_for, export_python, load_weights, save_weights, standalone_model
    from nas.space import load_fixed
    from nas.supernet import open_subnet

    fixed = arch if isinstance(arch, SearchSpace) else load_fixed(arch)
    evaluator, chosen = open_subnet(fixed, supernet, **options)
    space, cls = evaluator.space, class_name_for(fixed, class_name)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    weights = save_weights(evaluator.recalibrated(chosen), Path(out_dir) / "weights.pt")
    model = export_python(space, chosen, Path(out_dir) / "model.py", class_name=cls)
    standalone = standalone_model(space, chosen)  # the written module's own code
    load_weights(standalone, weights)
    x = evaluator.images(evaluator.supernet.plan(chosen).resolution)[1][:64]
    with torch.inference_mode():
        diff = (standalone.to(x.device).eval()(x) - evaluator.module(chosen)(x)).abs().max().item()
    return SubnetExport(model=model, weights=weights, class_name=cls, max_abs_diff=diff,
                        score=_subnet_eval(evaluator, chosen, fixed.name, True))

"""ONNX export of any nn.Module at a static input shape: the project's one exporter.

Why a module of its own: latency tables (the ``onnxruntime`` backend, remote
devices) and model export (`nas.export`) both need it, and neither owns it.
A leaf: it imports torch, `proxies.atomic` and `proxies.errors` only, and
onnx / onnxscript through torch when it runs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch

from proxies.atomic import write_bytes_atomic
from proxies.errors import LatencyError

__all__ = ["INPUT_SEED", "ONNX_OPSET", "eval_copy", "example_input", "export_onnx", "one_line", "onnx_bytes"]

INPUT_SEED = 0  #: seed of the random input every backend feeds (same input, comparable outputs)
ONNX_OPSET = 18

# Narrow silencers: torch's ONNX exporter logs one line per torchvision op it cannot register and
# warns from pytree internals; the legacy exporter warns that it is deprecated. None of it concerns
# the caller.
_PYTREE_LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
_LEGACY_ONNX = r"(You are using the legacy TorchScript-based ONNX export|The feature will be removed)"
_ONNX_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise LatencyError(f"input_shape must be (C, H, W) with positive integers, got {tuple(input_shape)!r}")
    return shape  # type: ignore[return-value]


def example_input(input_shape: Sequence[int], batch_size: int) -> torch.Tensor:
    """The seeded random input of shape (batch, C, H, W) that exports and timings feed."""
    generator = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randn((batch_size, *_check_shape(input_shape)), generator=generator)


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, for errors that wrap what torch raised."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def eval_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode: preparing never changes the caller's device, layout or mode."""
    return copy.deepcopy(module).eval()


@contextlib.contextmanager
def _quiet_onnx_export() -> Iterator[None]:
    logger = logging.getLogger(_ONNX_REGISTRATION_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PYTREE_LEAFSPEC, category=FutureWarning)
            warnings.filterwarnings("ignore", message=_LEGACY_ONNX, category=DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def onnx_bytes(module: torch.nn.Module, example: torch.Tensor, dynamo: bool = True) -> bytes:
    """Serialized ONNX model of `module` (eval copy) for the fixed shape of `example`."""
    model = eval_copy(module)
    try:
        with _quiet_onnx_export(), torch.no_grad():
            if dynamo:
                program = torch.onnx.export(model, (example,), dynamo=True, external_data=False,
                                            opset_version=ONNX_OPSET, verbose=False)
                return program.model_proto.SerializeToString()
            with tempfile.TemporaryDirectory(prefix="nas-onnx-") as tmp:
                path = os.path.join(tmp, "model.onnx")
                torch.onnx.export(model, (example,), path, dynamo=False, opset_version=ONNX_OPSET,
                                  input_names=["input"], output_names=["output"])
                return Path(path).read_bytes()
    except LatencyError:
        raise
    except Exception as exc:  # the exporters raise many types; report one line, keep the chain
        raise LatencyError(f"ONNX export of {type(module).__name__} failed: {one_line(exc)}") from exc


def export_onnx(module: torch.nn.Module, input_shape: Sequence[int], path: str | os.PathLike[str],
                batch_size: int = 1, *, dynamo: bool = True) -> Path:
    """Write `module` (in eval mode) as one self-contained .onnx file, atomically; return its path.

    `input_shape` is (C, H, W); shapes are static.  ``dynamo=True`` uses the
    torch.export-based exporter (torch's default since 2.9, needs onnxscript);
    ``dynamo=False`` the deprecated TorchScript one, about 15x faster on small blocks.
    """
    target = Path(path)
    data = onnx_bytes(module, example_input(input_shape, batch_size), dynamo=dynamo)
    return write_bytes_atomic(target, data)

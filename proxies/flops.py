"""Exact parameter / MAC / FLOP counts for modules, built on fvcore's jit tracer.

Why: the search ranks candidates by cost, and caches per-block costs, so counts
must be exact, additive over blocks, and must never skip an op silently.  Every
aten op the toolkit's blocks emit has an explicit handle here; any other op makes
``count_module`` raise ``UncountedOpError`` instead of being counted as 0.

Counting conventions (``flops`` counts one multiply-add as one flop, like fvcore):

* conv / linear / matmul-like ops: fvcore's rules (MACs; biases are not counted).
  ``macs`` is the sum of exactly these entries (the papers' "MAdds").
* element-wise ops (relu, relu6/hardtanh, hardswish, hardsigmoid, sigmoid, silu,
  add, mul): 1 flop per output element, so a broadcast SE scale ``x * s`` costs
  ``x.numel()``.  0-dim results are traced shape arithmetic (``c // g * h``)
  and cost 0.
* mean: 1 flop per input element.
* max_pool2d / avg_pool2d: output elements x kernel area.
* batch_norm and adaptive_avg_pool2d: fvcore's own rules (eval-mode affine BN =
  2 x input elements; adaptive avg pool = 1 x input elements).
* data movement (view, reshape, transpose, permute, contiguous, chunk, split,
  cat, slice, flatten, dropout, size, Int, narrow, clone, ...): 0.

In-place and out-of-place variants share one short key in ``by_operator``
(``aten::hardswish_`` and ``aten::hardswish`` are both ``"hardswish"``).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch

with warnings.catch_warnings():
    # fvcore.nn's __init__ jit-scripts its focal losses at import; torch>=2.10 flags
    # torch.jit.script as deprecated.  Irrelevant here, so keep it out of user logs.
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis

__all__ = ["Counts", "UncountedOpError", "count_module", "count_params", "MAC_KEYS"]

#: by_operator keys (fvcore's short names) that are multiply-accumulates.
MAC_KEYS: frozenset[str] = frozenset(
    {"conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum"}
)

_ELEMENTWISE_OPS = (
    "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "hardtanh", "hardtanh_",
    "relu", "relu_", "sigmoid", "sigmoid_", "silu", "silu_", "add", "add_", "mul", "mul_",
)
_ZERO_COST_OPS = (
    "view", "reshape", "transpose", "permute", "contiguous", "chunk", "split", "cat",
    "slice", "flatten", "dropout", "dropout_", "size", "Int", "narrow", "split_with_sizes", "clone",
    "floor_divide",
)


class UncountedOpError(RuntimeError):
    """Raised when a traced module uses an op that has no counting rule."""


@dataclass(frozen=True)
class Counts:
    """Cost of one module: parameters, MACs, total flops and flops per operator."""

    params: int
    macs: int
    flops: int
    by_operator: dict[str, int]

    @classmethod
    def zero(cls) -> Counts:
        """The neutral element for ``+`` (start value when summing block costs)."""
        return cls(params=0, macs=0, flops=0, by_operator={})

    def __add__(self, other: Counts) -> Counts:
        """Element-wise sum; ``by_operator`` is merged by key."""
        if not isinstance(other, Counts):
            return NotImplemented
        merged = Counter(self.by_operator)
        merged.update(other.by_operator)
        return Counts(
            params=self.params + other.params,
            macs=self.macs + other.macs,
            flops=self.flops + other.flops,
            by_operator=dict(sorted(merged.items())),
        )


Handle = Callable[[list[Any], list[Any]], Counter]


def _shape(value: Any, op: str) -> list[int]:
    """Static shape of a traced tensor value; raise if the tracer did not record one."""
    if not value.isCompleteTensor():
        raise UncountedOpError(f"{op}: tensor shape unknown in the trace; cannot count")
    return list(value.type().sizes())


def _int_list(value: Any) -> list[int]:
    """Constant int or int-list argument of a traced op (e.g. a pooling kernel_size)."""
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [int(v.toIValue()) for v in node.inputs()]
    ivalue = value.toIValue()
    return [int(ivalue)] if isinstance(ivalue, int) else [int(v) for v in ivalue]


def _elementwise(key: str) -> Handle:
    """1 flop per output element; 0-dim outputs (shape arithmetic) cost 0."""

    def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
        shape = _shape(outputs[0], key)
        return Counter({key: math.prod(shape) if shape else 0})

    return handle


def _mean(inputs: list[Any], outputs: list[Any]) -> Counter:
    """1 flop per input element."""
    return Counter({"mean": math.prod(_shape(inputs[0], "mean"))})


def _pool(key: str) -> Handle:
    """Output elements x kernel area (kernel_size is argument 1 of aten::*_pool2d)."""

    def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
        kernel = _int_list(inputs[1])
        area = kernel[0] * kernel[0] if len(kernel) == 1 else math.prod(kernel)
        return Counter({key: math.prod(_shape(outputs[0], key)) * area})

    return handle


def _zero(inputs: list[Any], outputs: list[Any]) -> Counter:
    """Data movement: no arithmetic."""
    return Counter()


def _handles() -> dict[str, Handle]:
    """Our explicit handles. batch_norm and adaptive_avg_pool2d keep fvcore's rules."""
    handles: dict[str, Handle] = {f"aten::{op}": _zero for op in _ZERO_COST_OPS}
    for op in _ELEMENTWISE_OPS:
        handles[f"aten::{op}"] = _elementwise(op.rstrip("_"))
    handles["aten::mean"] = _mean
    handles["aten::max_pool2d"] = _pool("max_pool2d")
    handles["aten::avg_pool2d"] = _pool("avg_pool2d")
    return handles


def count_params(module: torch.nn.Module) -> int:
    """Number of parameter elements (shared parameters once; buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def _format_unsupported(ops: Counter) -> str:
    parts = [f"{op} ({n} call{'s' if n != 1 else ''})" for op, n in sorted(ops.items())]
    return f"no counting rule for {', '.join(parts)}; add a handle in proxies.flops"


def count_module(module: torch.nn.Module, input_shape: tuple[int, ...]) -> Counts:
    """Trace `module` in eval mode under torch.no_grad on a zeros input of input_shape and count.

    Raises UncountedOpError if the trace contains an op without a counting rule.
    Every submodule's train/eval flag is restored afterwards.
    """
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"input_shape must be non-empty positive ints, got {input_shape!r}")
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(module, (torch.zeros(shape),))
            analysis.set_op_handle(**_handles())
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            flops = int(analysis.total())  # runs the trace; unsupported_ops() needs it first
            unsupported = analysis.unsupported_ops()
            if unsupported:
                raise UncountedOpError(_format_unsupported(unsupported))
            by_operator = {k: int(v) for k, v in sorted(analysis.by_operator().items())}
    finally:
        for m, training in modes:
            m.training = training
    return Counts(
        params=count_params(module),
        macs=sum(v for k, v in by_operator.items() if k in MAC_KEYS),
        flops=flops,
        by_operator=by_operator,
    )

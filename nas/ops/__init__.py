"""Operators: small static modules built from a resolved `BlockConfig`, registered by name.

Importing this package registers every built-in operator.
"""
from __future__ import annotations

from nas.ops import heads, mobilenet, sandglass, shuffle  # noqa: F401  (registration)
from nas.ops.base import Op, conv_out_size
from nas.ops.config import ACTIVATIONS, POOLS, SE_GATES, BlockConfig, BlockKey, NormSpec
from nas.ops.registry import get_op, op_names, register

__all__ = [
    "ACTIVATIONS", "POOLS", "SE_GATES", "BlockConfig", "BlockKey", "NormSpec", "Op",
    "conv_out_size", "get_op", "op_names", "register",
]

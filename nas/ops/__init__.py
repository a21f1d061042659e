"""Operators: small static modules built from a resolved `BlockConfig`, registered by name.

Importing this package registers every built-in operator. The infrastructure
lives in private modules (`_fields`, `_config`, `_base`, `_layers`,
`_registry`, `_standalone`); use the names exported here.
"""
from __future__ import annotations

from nas.ops._base import Example, Op, conv_out_size, deferred_init
from nas.ops._config import BlockConfig, BlockKey, NormSpec
from nas.ops._config import with_shape
from nas.ops._fields import (ACTIVATIONS, KERNELS, POOLS, SE_GATES, Field, all_fields, block_fields, boolean_problem,
                             declare_field, field, forget_field, integer, integer_problem, kind, number,
                             number_problem, odd_size, one_of, one_of_problem)
from nas.ops._layers import init_weights
from nas.ops._registry import get_op, op_names, register, unregister
from nas.ops import heads, mobilenet, sandglass, shuffle  # noqa: E402,F401  (registration)
from nas.ops._standalone import compile_standalone, standalone_names, standalone_pieces  # noqa: E402

__all__ = [
    "ACTIVATIONS", "KERNELS", "POOLS", "SE_GATES", "BlockConfig", "BlockKey", "Example", "Field", "NormSpec", "Op",
    "all_fields", "block_fields", "conv_out_size", "declare_field", "deferred_init", "field", "forget_field",
    "get_op", "init_weights", "op_names", "register", "standalone_names",
    "standalone_pieces", "unregister",
]

"""Operators: small static modules built from a resolved `BlockConfig`, registered by name.

Importing this package registers every built-in operator: each public
(non-underscore) module of the package is imported, in sorted order so that
registration (and any field an operator file declares) happens in the same
order on every run. A new operator is one new file here, with no import line
to add. The infrastructure lives in private modules (`_fields`, `_config`,
`_base`, `_layers`, `_registry`, `_standalone`); use the names exported here.
"""
from __future__ import annotations

import importlib
import pkgutil

from nas.ops._base import Example, Op, conv_out_size, deferred_init
from nas.ops._config import BlockConfig, BlockKey, NormSpec
from nas.ops._config import with_shape
from nas.ops._fields import (ACTIVATIONS, KERNELS, POOLS, SE_GATES, Field, all_fields, block_fields, boolean_problem,
                             declare_field, field, forget_field, integer, integer_problem, kind, number,
                             number_problem, odd_size, one_of, one_of_problem)
from nas.ops._layers import SqueezeExcite, init_weights
from nas.ops._registry import get_op, op_names, register, unregister
from nas.ops._standalone import compile_standalone, standalone_names, standalone_pieces


def _operator_modules() -> tuple[str, ...]:
    """Names of the package's public modules: the operator files, each registering its ops on import."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


for _name in _operator_modules():
    importlib.import_module(f"{__name__}.{_name}")  # registration; binds nas.ops.<name> as before

__all__ = [
    "ACTIVATIONS", "KERNELS", "POOLS", "SE_GATES", "BlockConfig", "BlockKey", "Example", "Field", "NormSpec", "Op", "SqueezeExcite",
    "all_fields", "block_fields", "conv_out_size", "declare_field", "deferred_init", "field", "forget_field",
    "get_op", "init_weights", "op_names", "register", "standalone_names",
    "standalone_pieces", "unregister",
]

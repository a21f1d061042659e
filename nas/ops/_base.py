"""The operator base class: a small static nn.Module plus the contract the rest of the toolkit asks it.

An operator's `__init__` takes plain settings (widths, kernel, flags, a norm
dict) and its `forward` uses only torch and `nas.ops._layers`, so export can
copy the class as the standalone version. Everything else the toolkit needs to
know about the op is a class attribute or a classmethod here, overridden in
the op's own file: which YAML fields it reads, its key, which combinations it
can build, its hidden and SE widths, position flags, derived layout settings,
its short name in architecture strings and an example that exercises it.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
from functools import lru_cache
from typing import Any, ClassVar, Iterator, Mapping, NamedTuple

import torch
from torch import nn

from nas.channels import make_divisible
from nas.ops._config import BlockConfig, BlockKey, NormSpec, config_text
from nas.ops._layers import init_weights

_DEFERRED = contextvars.ContextVar("nas_deferred_init", default=False)


@contextlib.contextmanager
def deferred_init() -> Iterator[None]:
    """Build units with allocated but uninitialised weights; call `init_weights` later.

    Initialising tens of millions of weights costs far more than building the
    modules, and costing or tracing a network does not need the values.
    """
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


class Example(NamedTuple):
    """Stages (YAML stage mappings) that exercise an op's settings, and the input width they expect."""

    cin: int
    stages: tuple[Mapping[str, Any], ...]


class Op(nn.Module):
    """A unit built from one resolved `BlockConfig` (see `create`).

    `fields`: YAML block fields the op reads; `required`: of each tuple, one
    must be given; `key_fields`: config fields in its cost/latency key (derived
    at registration from `fields`, `position_flags` and each field's `in_key`
    unless the op lists them); `position_flags`: config flags the planner sets
    from where the unit sits; `se_width`: the width its SE acts on ("cin",
    "hidden" or "cout"; "" for none; SE is always on for an op with no `se`
    field); `short`: its abbreviation in architecture strings.
    """

    __jit_unused_properties__ = ["key"]

    name: ClassVar[str]
    short: ClassVar[str] = ""
    stage_op: ClassVar[bool] = True
    fields: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[tuple[tuple[str, ...], ...]] = ()
    key_fields: ClassVar[frozenset[str]] = frozenset({"stride"})
    position_flags: ClassVar[frozenset[str]] = frozenset()
    se_width: ClassVar[str] = ""
    example: ClassVar[Example | None] = None
    # A weight-sharing supernet may cut this op's weights to fewer channels (the first N); False keeps
    # one set of weights per exact shape (ShuffleNet units split and interleave channels by position).
    elastic_channels: ClassVar[bool] = True

    config: BlockConfig
    input_shape: tuple[int, int, int] | None

    @classmethod
    def hidden_channels(cls, cin: int, cout: int, expand: float | None, hidden: int | None) -> int:
        """Resolved hidden width for this op (0 when it has none)."""
        return 0

    @classmethod
    def check(cls, config: BlockConfig) -> str | None:
        """Why this config cannot be built (one phrase), or None if it can."""
        return None

    @classmethod
    def out_shape(cls, config: BlockConfig, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape after the unit: 'same'-padded odd kernels, so only the stride shrinks it."""
        _, h, w = shape
        return (config.cout, (h - 1) // config.stride + 1, (w - 1) // config.stride + 1)

    @classmethod
    def se_channels(cls, config: BlockConfig) -> int:
        """Squeeze width of the op's SE for this config, 0 when it has none."""
        if not cls.se_width or ("se" in cls.fields and not config.se):
            return 0
        return make_divisible(getattr(config, cls.se_width) * config.se_ratio, 8)

    @classmethod
    def derived(cls, config: BlockConfig) -> dict[str, Any]:
        """Constructor settings the op derives from its config beyond the config's own fields (layout)."""
        return {}

    @classmethod
    def settings(cls, config: BlockConfig) -> dict[str, Any]:
        """The constructor arguments for `config`, except `norm`: what an exported unit row holds."""
        derived = cls.derived(config)
        out: dict[str, Any] = {}
        for name in _arguments(cls):
            if name in derived:
                out[name] = derived[name]
            elif name == "se":
                out[name] = cls.se_channels(config)
            elif name == "num_classes":
                out[name] = config.cout
            else:
                out[name] = getattr(config, name)
        return out

    @classmethod
    def skeleton(cls, config: BlockConfig, norm: NormSpec) -> Op:
        """The unit for `config` on the meta device: its structure, without memory or values (a supernet
        calls it with weights of its own; `create` gives it real ones)."""
        with torch.device("meta"):
            module = cls(**cls.settings(config), norm=dataclasses.asdict(norm))
        module.config, module.input_shape = config, None
        return module

    @classmethod
    def create(cls, config: BlockConfig, norm: NormSpec) -> Op:
        """The unit for `config`: initialised (torchvision's scheme), or left unset under `deferred_init`."""
        # Made on the meta device, so no default init runs on real memory; `init_weights` sets every value once.
        module = cls.skeleton(config, norm).to_empty(device="cpu")
        if _DEFERRED.get():
            for m in module.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.reset_running_stats()
        else:
            init_weights(module)
        return module

    @classmethod
    def key_text(cls, key: BlockKey) -> str:
        return key.text(cls.key_fields)

    @classmethod
    def config_text(cls, config: BlockConfig) -> str:
        """`key_text` without the input shape (see `nas.ops._config.with_shape`)."""
        return config_text(config, cls.key_fields)

    @property
    def key(self) -> BlockKey:
        if getattr(self, "input_shape", None) is None:
            raise RuntimeError(f"{self.name} unit has no input shape: it was not made by nas.builder")
        return BlockKey(self.config, self.input_shape)


@lru_cache(maxsize=None)
def _arguments(cls: type[Op]) -> tuple[str, ...]:
    return tuple(n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "norm"))


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv or pool (padding kernel // 2)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1

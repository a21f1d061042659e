"""Device profiles: everything that changes a measured latency, with a stable short id.

Why: a latency table is only valid for the machine, runtime and settings it was
measured with.  The profile names all of them (backend, processor or GPU,
threads, batch size, dtype, layout, library versions) so a table from another
profile is refused instead of silently used.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import platform
import re
from dataclasses import dataclass, fields
from typing import Any

import torch

from proxies.latency.errors import LatencyError

__all__ = ["BACKENDS", "DTYPES", "LAYOUTS", "DeviceProfile", "current_profile"]

BACKENDS: tuple[str, ...] = ("torch", "torchscript", "onnxruntime", "cuda")
DTYPES: tuple[str, ...] = ("float32",)
LAYOUTS: tuple[str, ...] = ("nchw", "nhwc")

_DTYPE_SHORT = {"float32": "fp32"}
# A remote device's runtime (tables imported from another machine's own benchmark tool): a short
# name that is safe in a profile id and a file name, and is not one of the local backends.
_REMOTE_BACKEND = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
_ORT_INSTALL = "pip install onnxruntime onnx onnxscript"


def _settings_problem(backend: Any, threads: Any, batch_size: Any, dtype: Any, layout: Any,
                      remote: bool = False) -> str | None:
    """The first invalid setting as a one-line message, or None when all are valid."""
    if remote:
        if not isinstance(backend, str) or not _REMOTE_BACKEND.fullmatch(backend) or backend in BACKENDS:
            return (f"a remote device's backend must be a short name (letters, digits, '.', '_', '+', '-'; "
                    f"at most 32) other than {', '.join(BACKENDS)}, got {backend!r}")
    elif backend not in BACKENDS:
        return f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}"
    for name, value in (("threads", threads), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be a positive integer, got {value!r}"
    if dtype not in DTYPES:
        return f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}"
    if layout not in LAYOUTS:
        return f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}"
    if backend == "onnxruntime" and layout != "nchw":
        return (f"layout {layout!r} is not available with backend 'onnxruntime' "
                "(ONNX graphs are nchw; ONNX Runtime picks its own internal layout); use 'nchw'")
    return None


@dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    """Backend, device and settings a latency was measured with; equal profiles share tables.

    ``device`` is the CPU model name (or the GPU name for ``cuda``);
    ``onnxruntime_version`` is None unless ``backend == "onnxruntime"``.

    A *remote* profile (``torch_version`` None) describes a device that timed the
    units with its own tool (``nas lut import``): ``device`` is the user's name
    for it and ``backend`` any short name of its runtime other than the local
    ones.  Such a profile never equals a local one, so it cannot be measured here.
    """

    backend: str
    device: str
    threads: int
    batch_size: int
    dtype: str = "float32"
    layout: str = "nchw"
    torch_version: str | None
    onnxruntime_version: str | None = None

    def __post_init__(self) -> None:
        problem = _settings_problem(self.backend, self.threads, self.batch_size, self.dtype, self.layout,
                                    remote=self.remote)
        if problem is None:
            for name in ("device",) if self.remote else ("device", "torch_version"):
                value = getattr(self, name)
                if not isinstance(value, str) or not value:
                    problem = f"{name} must be a non-empty string, got {value!r}"
                    break
        if problem is None:
            ort = self.onnxruntime_version
            if self.backend == "onnxruntime" and (not isinstance(ort, str) or not ort):
                problem = f"onnxruntime_version must be a non-empty string for backend 'onnxruntime', got {ort!r}"
            elif self.backend != "onnxruntime" and ort is not None:
                problem = f"onnxruntime_version must be None for backend {self.backend!r}, got {ort!r}"
        if problem is not None:
            raise ValueError(problem)

    @property
    def remote(self) -> bool:
        """True for a device timed elsewhere with its own tool (no torch_version)."""
        return self.torch_version is None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> DeviceProfile:
        """Strict inverse of to_dict: unknown, missing or mistyped fields raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"missing field {missing[0]!r}")
        return cls(**data)

    @property
    def id(self) -> str:
        """Stable short id such as ``torch-t2-b1-fp32-3f9a1c2e`` (8 hex of sha256 over all fields)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:8]
        dtype = _DTYPE_SHORT.get(self.dtype, self.dtype)
        return f"{self.backend}-t{self.threads}-b{self.batch_size}-{dtype}-{digest}"

    def differences(self, other: DeviceProfile, labels: tuple[str, str] = ("table", "now")) -> list[str]:
        """Fields that differ, as phrases like ``"threads (table 4, now 2)"`` (self first, other second)."""
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                out.append(f"{f.name} ({labels[0]} {_show(mine)}, {labels[1]} {_show(theirs)})")
        return out


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """CPU model name from /proc/cpuinfo, else platform.processor(), else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def _onnxruntime_version() -> str:
    """Version of the installed onnxruntime; raise LatencyError saying how to install what is missing."""
    missing = [name for name in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise LatencyError(f"backend 'onnxruntime' needs {', '.join(missing)}, which cannot be imported; "
                           f"install with: {_ORT_INSTALL}")
    import onnxruntime

    return str(onnxruntime.__version__)


def current_profile(backend: str = "torch", threads: int = 1, batch_size: int = 1,
                    dtype: str = "float32", layout: str = "nchw") -> DeviceProfile:
    """The profile of this machine for the given settings; LatencyError when they cannot run here."""
    problem = _settings_problem(backend, threads, batch_size, dtype, layout)
    if problem is not None:
        raise LatencyError(problem)
    device = cpu_name()
    ort_version = None
    if backend == "cuda":
        if not torch.cuda.is_available():
            raise LatencyError(f"backend 'cuda' needs a CUDA GPU, but torch.cuda.is_available() is False "
                               f"(torch {torch.__version__})")
        device = torch.cuda.get_device_name(torch.cuda.current_device())
    elif backend == "onnxruntime":
        ort_version = _onnxruntime_version()
    return DeviceProfile(backend=backend, device=device, threads=threads, batch_size=batch_size, dtype=dtype,
                         layout=layout, torch_version=str(torch.__version__), onnxruntime_version=ort_version)

"""proxies.latency.profile: stable ids, human differences, strict dicts, and current_profile's checks."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import re

import pytest
import torch

from proxies.latency import BACKENDS, DeviceProfile, LatencyError, current_profile

FIXED = DeviceProfile(backend="torch", device="Test CPU 3000", threads=4, batch_size=1,
                      torch_version="2.13.0+cpu")


def test_id_is_stable_and_readable():
    assert FIXED.id == "torch-t4-b1-fp32-" + FIXED.id[-8:]
    assert re.fullmatch(r"torch-t4-b1-fp32-[0-9a-f]{8}", FIXED.id)
    # pinned: the id is a file name and a cache key, so it must not drift between runs or versions
    assert FIXED.id == "torch-t4-b1-fp32-9ca0a2b8"
    canonical = json.dumps(FIXED.to_dict(), sort_keys=True, separators=(",", ":"))
    assert FIXED.id.endswith(hashlib.sha256(canonical.encode()).hexdigest()[:8])
    assert current_profile().id == current_profile().id


@pytest.mark.parametrize("change", [
    {"backend": "torchscript"}, {"device": "Other CPU"}, {"threads": 2}, {"batch_size": 8},
    {"layout": "nhwc"}, {"torch_version": "2.14.0"},
    {"backend": "onnxruntime", "onnxruntime_version": "1.31.1"},
])
def test_id_changes_with_every_field(change):
    assert dataclasses.replace(FIXED, **change).id != FIXED.id


def test_differences_name_each_field_with_both_values():
    other = dataclasses.replace(FIXED, backend="torchscript", threads=2)
    assert FIXED.differences(other) == ["backend (table torch, now torchscript)", "threads (table 4, now 2)"]
    assert FIXED.differences(FIXED) == []
    ort = dataclasses.replace(FIXED, backend="onnxruntime", onnxruntime_version="1.31.1")
    assert FIXED.differences(ort, labels=("profile", "here")) == [
        "backend (profile torch, here onnxruntime)", "onnxruntime_version (profile none, here 1.31.1)"]


def test_dict_round_trip_and_strictness():
    d = FIXED.to_dict()
    assert list(d) == ["backend", "device", "threads", "batch_size", "dtype", "layout", "torch_version",
                       "onnxruntime_version"]
    assert DeviceProfile.from_dict(d) == FIXED
    with pytest.raises(ValueError, match="^unknown field 'cores'$"):
        DeviceProfile.from_dict({**d, "cores": 2})
    with pytest.raises(ValueError, match="^missing field 'threads'$"):
        DeviceProfile.from_dict({k: v for k, v in d.items() if k != "threads"})
    with pytest.raises(ValueError, match="^threads must be a positive integer, got '4'$"):
        DeviceProfile.from_dict({**d, "threads": "4"})
    with pytest.raises(ValueError, match="^onnxruntime_version must be None for backend 'torch', got '1.0'$"):
        DeviceProfile.from_dict({**d, "onnxruntime_version": "1.0"})
    with pytest.raises(ValueError, match="^device must be a non-empty string, got ''$"):
        DeviceProfile.from_dict({**d, "device": ""})


def test_current_profile_describes_this_machine():
    p = current_profile("torch", threads=2, batch_size=4, layout="nhwc")
    assert (p.backend, p.threads, p.batch_size, p.dtype, p.layout) == ("torch", 2, 4, "float32", "nhwc")
    assert p.torch_version == torch.__version__ and p.onnxruntime_version is None and p.device
    ort = current_profile("onnxruntime")
    import onnxruntime

    assert ort.onnxruntime_version == onnxruntime.__version__
    assert BACKENDS == ("torch", "torchscript", "onnxruntime", "cuda")


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "foo"}, "unknown backend 'foo'; choose one of torch, torchscript, onnxruntime, cuda"),
    ({"threads": 0}, "threads must be a positive integer, got 0"),
    ({"threads": True}, "threads must be a positive integer, got True"),
    ({"batch_size": -1}, "batch_size must be a positive integer, got -1"),
    ({"dtype": "float16"}, "unsupported dtype 'float16'; choose one of float32"),
    ({"layout": "nc"}, "unknown layout 'nc'; choose one of nchw, nhwc"),
    ({"backend": "onnxruntime", "layout": "nhwc"},
     "layout 'nhwc' is not available with backend 'onnxruntime' (ONNX graphs are nchw; "
     "ONNX Runtime picks its own internal layout); use 'nchw'"),
])
def test_current_profile_rejects_bad_settings(kwargs, message):
    with pytest.raises(LatencyError) as info:
        current_profile(**kwargs)
    assert str(info.value) == message


def test_current_profile_says_how_to_install_onnxruntime(monkeypatch: pytest.MonkeyPatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(LatencyError) as info:
        current_profile("onnxruntime")
    assert str(info.value) == ("backend 'onnxruntime' needs onnxruntime, which cannot be imported; "
                               "install with: pip install onnxruntime onnx onnxscript")


def test_cuda_without_a_gpu_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LatencyError) as info:
        current_profile("cuda")
    assert str(info.value) == ("backend 'cuda' needs a CUDA GPU, but torch.cuda.is_available() is False "
                               f"(torch {torch.__version__})")

"""proxies.latency.backends: every CPU backend runs and times a small block, and agrees with eager PyTorch."""
from __future__ import annotations

import dataclasses
import gc
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from proxies.latency import (LatencyError, ProfileMismatchError, current_profile, export_onnx, measure_module,
                             pinned_cpus, prepare)
from proxies.latency.backends import INPUT_SEED

SHAPE = (3, 8, 8)
QUICK = {"warmup": 2, "min_runs": 5, "min_time_s": 0.0, "max_rounds": 1}


def tiny_block() -> nn.Module:
    """conv-BN-ReLU6 plus a depthwise conv, with non-trivial BN statistics so folding is exercised."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish())
    block[1].running_mean.uniform_(-0.5, 0.5)
    block[1].running_var.uniform_(0.5, 2.0)
    return block


def expected_output(block: nn.Module, batch_size: int = 1) -> torch.Tensor:
    x = torch.randn((batch_size, *SHAPE), generator=torch.Generator().manual_seed(INPUT_SEED))
    with torch.no_grad():
        return block.eval()(x)


@pytest.fixture(scope="module")
def block() -> nn.Module:
    return tiny_block()


@pytest.mark.parametrize("backend", ["torch", "torchscript", "onnxruntime"])
def test_backend_times_and_matches_eager(block: nn.Module, backend: str):
    profile = current_profile(backend, threads=1)
    runner = prepare(block, SHAPE, profile)
    out = runner.output()
    assert out.shape == (1, 8, 8, 8)
    torch.testing.assert_close(out, expected_output(block), rtol=1e-4, atol=1e-5)
    m = measure_module(block, SHAPE, profile, **QUICK)
    assert math.isfinite(m.median_ms) and m.median_ms > 0 and m.spread_ms >= 0
    assert m.runs + m.discarded == 5 and m.rounds == 1


def _spinning_settings(monkeypatch, block: nn.Module, **prepare_options) -> list[str]:
    """The intra-op spinning setting of every ONNX Runtime session `prepare` makes (none: the default)."""
    import onnxruntime as ort

    seen: list[str] = []

    class Recording(ort.SessionOptions):
        def add_session_config_entry(self, key: str, value: str) -> None:
            if key == "session.intra_op.allow_spinning":
                seen.append(value)
            super().add_session_config_entry(key, value)

    monkeypatch.setattr(ort, "SessionOptions", Recording)
    prepare(block, SHAPE, current_profile("onnxruntime", threads=2), **prepare_options)
    return seen


def test_onnxruntime_threads_spin_as_deployed_and_sleep_in_rotation(monkeypatch, block: nn.Module):
    # A user's session keeps ONNX Runtime's default (idle threads spin): without it networks ran 1.55x
    # slower at 2 threads. Units timed in rotation with dozens of live sessions sleep instead.
    assert _spinning_settings(monkeypatch, block) == []
    assert _spinning_settings(monkeypatch, block, as_deployed=True) == []
    assert _spinning_settings(monkeypatch, block, as_deployed=False) == ["0"]


@pytest.mark.parametrize("backend", ["torch", "torchscript"])
def test_channels_last_gives_the_same_output(block: nn.Module, backend: str):
    runner = prepare(block, SHAPE, current_profile(backend, layout="nhwc"))
    torch.testing.assert_close(runner.output(), expected_output(block), rtol=1e-4, atol=1e-5)


def test_batch_size_comes_from_the_profile(block: nn.Module):
    out = prepare(block, SHAPE, current_profile("torch", batch_size=3)).output()
    assert out.shape == (3, 8, 8, 8)
    torch.testing.assert_close(out, expected_output(block, 3))


def test_prepare_leaves_the_callers_module_alone():
    block = tiny_block().train()
    weight = block[0].weight.detach().clone()
    prepare(block, SHAPE, current_profile("torch", layout="nhwc"))
    prepare(block, SHAPE, current_profile("torchscript"))
    assert block.training and all(m.training for m in block.modules())
    assert block[0].weight.is_contiguous() and torch.equal(block[0].weight, weight)


def _resident_mb() -> float:
    gc.collect()  # torch's ScriptModule wrappers form reference cycles
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_torchscript_runners_leave_torchs_global_registries_alone(block: nn.Module):
    # Tracing registers each module's type and methods in torch's global CompilationUnit and a
    # ConcreteModuleType per submodule in a global store, and nothing removes them: timing networks
    # one after another grew the process by ~70 MB per MobileNetV3. Each runner gets its own unit.
    state, recursive = torch.jit._state, torch.jit._recursive
    unit, store = state._python_cu, recursive.concrete_type_store
    functions, compiled = len(unit.get_functions()), len(store.methods_compiled)
    runners = [prepare(block, SHAPE, current_profile("torchscript")) for _ in range(3)]
    with pytest.raises(LatencyError):  # a failed trace puts the registries back too
        prepare(block, (4, 8, 8), current_profile("torchscript"))
    assert state._python_cu is unit and recursive.concrete_type_store is store
    assert (len(unit.get_functions()), len(store.methods_compiled)) == (functions, compiled)
    for runner in runners:
        torch.testing.assert_close(runner.output(), expected_output(block), rtol=1e-4, atol=1e-5)


def test_a_dropped_torchscript_runner_frees_its_frozen_weights():
    # The frozen graph holds the weights as constants (64 MB here). Before the fix each runner kept
    # them for the life of the process (+64 MB a runner); 64 MB blocks are mmapped, so freeing shows in RSS.
    wide = nn.Linear(4096, 4096)
    prepare(wide, (1, 1, 4096), current_profile("torchscript"))  # warm up torch's own caches
    before = _resident_mb()
    for _ in range(4):
        prepare(wide, (1, 1, 4096), current_profile("torchscript"))
    grew = _resident_mb() - before
    assert grew < 64, grew


def test_cuda_backend(block: nn.Module):
    try:
        profile = current_profile("cuda")
    except LatencyError as exc:
        assert str(exc) == ("backend 'cuda' needs a CUDA GPU, but torch.cuda.is_available() is False "
                            f"(torch {torch.__version__})")
        pytest.skip("no CUDA GPU")
    runner = prepare(block, SHAPE, profile)
    assert runner.sync is torch.cuda.synchronize
    torch.testing.assert_close(runner.output(), expected_output(block), rtol=1e-3, atol=1e-4)
    assert measure_module(block, SHAPE, profile, **QUICK).median_ms > 0


def test_module_that_cannot_run_fails_in_prepare(block: nn.Module):
    with pytest.raises(LatencyError) as info:
        prepare(block, (4, 8, 8), current_profile("torch"))
    assert str(info.value).startswith("torch: cannot run Sequential on input (1, 4, 8, 8): RuntimeError: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("shape", [(3, 8), (3, 0, 8), (3.0, 8, 8)])
def test_input_shape_is_checked(block: nn.Module, shape):
    with pytest.raises(LatencyError) as info:
        prepare(block, shape, current_profile("torch"))
    assert str(info.value) == f"input_shape must be (C, H, W) with positive integers, got {shape!r}"


def test_measure_module_refuses_another_machines_profile(block: nn.Module):
    here = current_profile("torch")
    foreign = dataclasses.replace(here, device="Some Other CPU")
    with pytest.raises(ProfileMismatchError) as info:
        measure_module(block, SHAPE, foreign, **QUICK)
    assert str(info.value) == (f"profile {foreign.id} is not this machine's: "
                               f"device (profile Some Other CPU, here {here.device})")


def test_measure_module_restores_threads_and_affinity(block: nn.Module):
    threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0)
    cpu = min(affinity)
    m = measure_module(block, SHAPE, current_profile("torch", threads=1), cpus=[cpu], **QUICK)
    assert m.median_ms > 0
    assert torch.get_num_threads() == threads and os.sched_getaffinity(0) == affinity
    with pytest.raises(LatencyError) as info:
        measure_module(block, SHAPE, current_profile("torch", threads=2), cpus=[cpu], **QUICK)
    assert str(info.value) == f"threads 2 exceeds the 1 pinned cpu(s) [{cpu}]"


def test_pinned_cpus_pins_inside_the_block():
    affinity = os.sched_getaffinity(0)
    cpu = max(affinity)
    with pinned_cpus([cpu]):
        assert os.sched_getaffinity(0) == {cpu}
    assert os.sched_getaffinity(0) == affinity
    with pytest.raises(LatencyError, match="^cpus must name at least one cpu, got an empty list$"), pinned_cpus([]):
        pass


@pytest.mark.parametrize("dynamo", [True, False])
def test_export_onnx_writes_one_self_contained_file(block: nn.Module, tmp_path: Path, dynamo: bool):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = export_onnx(block, SHAPE, tmp_path / "block.onnx", batch_size=2, dynamo=dynamo)
    assert path == tmp_path / "block.onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["block.onnx"]  # no external data, no temp file
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(INPUT_SEED))
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), expected_output(block, 2), rtol=1e-4, atol=1e-5)

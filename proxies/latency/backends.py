"""Turn any nn.Module into a ready-to-time callable for one device profile, and time it.

Why: the same block must be timed the way it would be deployed (eager PyTorch,
a frozen TorchScript graph, ONNX Runtime, or a GPU), with the profile's batch
size, layout and thread count, and without touching the caller's module.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from proxies.latency.allocator import keep_freed_memory
from proxies.latency.errors import LatencyError, ProfileMismatchError
from proxies.latency.harness import Measurement, measure, measure_interleaved
from proxies.latency.profile import DeviceProfile, current_profile
# The exporter is the project's, not latency's; runners feed its seeded input. INPUT_SEED and
# export_onnx stay importable from here.
from proxies.onnx_export import INPUT_SEED, export_onnx  # noqa: F401
from proxies.onnx_export import eval_copy as _eval_copy, example_input as _example_input, one_line as _one_line
from proxies.onnx_export import onnx_bytes as _onnx_bytes

__all__ = ["SPINNING_BACKENDS", "Runner", "export_onnx", "measure_module", "measure_modules", "pinned_cpus",
           "pinned_threads", "prepare"]

# A narrow silencer: torch 2.13 flags the TorchScript API as deprecated, which does not concern the caller.
_JIT_DEPRECATED = r"`torch\.jit\.(trace|trace_method|freeze|optimize_for_inference)` is deprecated"


@dataclass(frozen=True)
class Runner:
    """One inference per ``run()``; ``sync`` (or None) waits for asynchronous work (CUDA).

    ``output()`` runs once and returns the result as a CPU tensor in NCHW, so
    backends can be checked against each other.
    """

    run: Callable[[], Any]
    sync: Callable[[], None] | None
    to_tensor: Callable[[Any], torch.Tensor]
    profile: DeviceProfile

    def output(self) -> torch.Tensor:
        """Run once and return the (first and only) output as a contiguous CPU tensor."""
        result = self.run()
        if self.sync is not None:
            self.sync()
        return self.to_tensor(result).detach().cpu().contiguous()


def _single_tensor(result: Any) -> torch.Tensor:
    if isinstance(result, (list, tuple)) and len(result) == 1:
        result = result[0]
    if isinstance(result, torch.Tensor):
        return result
    if type(result).__module__ == "numpy":
        return torch.from_numpy(result)
    raise LatencyError(f"output() needs a module with one tensor output, got {type(result).__name__}")


def _torch_runner(module: torch.nn.Module, x: torch.Tensor, profile: DeviceProfile, as_deployed: bool) -> Runner:
    model = module  # prepare() already made the eval copy (or was told the module is its own)
    if profile.backend == "cuda":
        model, x = model.cuda(), x.cuda()
    if profile.layout == "nhwc":
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    sync = torch.cuda.synchronize if profile.backend == "cuda" else None
    return Runner(run=run, sync=sync, to_tensor=_single_tensor, profile=profile)


@contextlib.contextmanager
def _private_compilation_unit() -> Iterator[torch._C.CompilationUnit]:
    """TorchScript made inside the block is registered in fresh registries, dropped with its module.

    Why: tracing registers every module's type and methods in torch's global CompilationUnit
    (`torch.jit._state._python_cu`, which torch looks up afresh each time) and a ConcreteModuleType
    per submodule in `torch.jit._recursive.concrete_type_store`, and nothing removes either; a
    frozen graph also holds the weights as constants. Timing MobileNetV3s one after another grew the
    process by ~70 MB per network. A module's objects keep their own unit alive, so a private unit is
    freed with the last module made in it. The same three registries torch's own tests reset
    (`torch.testing._internal.jit_utils.clear_class_registry`), swapped for the block and put back.
    """
    state, recursive = torch.jit._state, torch.jit._recursive
    saved = state._python_cu, state._script_classes, state._name_to_pyclass, recursive.concrete_type_store
    unit = torch._C.CompilationUnit()
    state._python_cu, state._script_classes, state._name_to_pyclass = unit, {}, {}
    recursive.concrete_type_store = recursive.ConcreteTypeStore()
    try:
        yield unit
    finally:
        state._python_cu, state._script_classes, state._name_to_pyclass, recursive.concrete_type_store = saved


def _torchscript_runner(module: torch.nn.Module, x: torch.Tensor, profile: DeviceProfile,
                        as_deployed: bool) -> Runner:
    model = module
    if profile.layout == "nhwc":
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings(), _private_compilation_unit():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATED, category=DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(model, (x,))
            # Frozen only: optimize_for_inference wraps each graph in to_mkldnn/to_dense
            # conversions (~150 us here), which a per-block table would charge to every entry.
            scripted = torch.jit.freeze(traced)

    def run() -> Any:
        with torch.inference_mode():
            return scripted(x)

    return Runner(run=run, sync=None, to_tensor=_single_tensor, profile=profile)


def _onnxruntime_runner(module: torch.nn.Module, x: torch.Tensor, profile: DeviceProfile,
                        as_deployed: bool) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = profile.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # Idle intra-op threads spin by default, as in any session a user makes: a model timed as
    # deployed keeps that (without it, networks ran 1.55x slower than a default session at 2 threads, since
    # every op then wakes a sleeping thread). Units are timed in rotation with dozens of sessions
    # alive; spinning pools there starve the next session (rotation/alone 1.12-1.19, p90 1.6, against
    # 1.04 without spinning on 2 cores), so their threads sleep between calls. The fitted correction
    # maps those unit sums to networks timed as a user runs them.
    if not as_deployed:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The TorchScript-based exporter is ~20x faster per block than the dynamo one (which
    # costs over a second per block here): it decides whether a table of thousands of units
    # is minutes or hours. Fall back to dynamo where the legacy exporter is gone or fails.
    try:
        model_bytes = _onnx_bytes(module, x, dynamo=False)
    except LatencyError:
        model_bytes = _onnx_bytes(module, x, dynamo=True)
    session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise LatencyError(f"the exported ONNX graph has {len(inputs)} inputs, expected 1")
    feed = {inputs[0].name: x.numpy()}
    names = [o.name for o in session.get_outputs()]

    def run() -> Any:
        return session.run(names, feed)

    return Runner(run=run, sync=None, to_tensor=_single_tensor, profile=profile)


#: Backends whose deployed sessions keep idle threads spinning between ops (and whose table units are
#: therefore timed unlike deployed networks: see `_onnxruntime_runner`).
SPINNING_BACKENDS = frozenset({"onnxruntime"})

_BUILDERS = {"torch": _torch_runner, "cuda": _torch_runner, "torchscript": _torchscript_runner,
             "onnxruntime": _onnxruntime_runner}


def prepare(module: torch.nn.Module, input_shape: Sequence[int], profile: DeviceProfile, *,
            copy: bool = True, as_deployed: bool = True) -> Runner:
    """A Runner for `module` on `profile` with a seeded random input of shape (batch, C, H, W).

    Works on a deep copy (the caller's module keeps its device, layout and mode)
    unless `copy=False`, for a module made only to be timed (copying thousands of
    table units is a sizeable share of a table build). Runs once, so a module
    that cannot run on this input fails here with a LatencyError naming the
    backend, not in the middle of a timing loop. `as_deployed` keeps the backend's default thread
    settings, as a user's session has them; False is for a module timed in rotation with many
    others (and the probe): backends whose idle threads spin (ONNX Runtime) let them sleep.
    """
    keep_freed_memory()  # else whether a call page-faults depends on the process's history
    x = _example_input(input_shape, profile.batch_size)
    builder = _BUILDERS.get(profile.backend)
    if builder is None:
        raise LatencyError(f"unknown backend {profile.backend!r}")
    try:
        target = _eval_copy(module) if copy and builder is not _onnxruntime_runner else module.eval()
        runner = builder(target, x, profile, as_deployed)
        runner.run()
    except LatencyError:
        raise
    except Exception as exc:
        raise LatencyError(f"{profile.backend}: cannot run {type(module).__name__} on input "
                           f"{tuple(x.shape)}: {_one_line(exc)}") from exc
    return runner


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """torch.set_num_threads(n) inside the block; the previous count is restored after it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LatencyError(f"threads must be a positive integer, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def pinned_cpus(cpus: Iterable[int] | None) -> Iterator[None]:
    """Restrict every thread of this process to `cpus` inside the block (None: no change).

    Linux's sched_setaffinity acts on one thread, and OpenMP / ONNX Runtime
    workers already exist, so each thread in /proc/self/task is pinned and
    restored to its own previous mask afterwards.
    """
    if cpus is None:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        raise LatencyError("cpu affinity is not supported on this platform (no os.sched_setaffinity)")
    wanted = sorted(set(cpus))
    if not wanted:
        raise LatencyError("cpus must name at least one cpu, got an empty list")
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    saved: dict[int, set[int]] = {}
    try:
        for tid in tids:
            try:
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, wanted)
            except ProcessLookupError:  # the thread ended meanwhile
                saved.pop(tid, None)
            except OSError as exc:
                raise LatencyError(f"cannot pin to cpus {wanted}: {exc.strerror or exc}") from exc
        yield
    finally:
        for tid, mask in saved.items():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, mask)


def _cpus_for(profile: DeviceProfile, cpus: Iterable[int] | None) -> list[int] | None:
    """Check that `profile` describes this machine and that its threads fit the pinned cpus."""
    here = current_profile(profile.backend, profile.threads, profile.batch_size, profile.dtype, profile.layout)
    diffs = profile.differences(here, labels=("profile", "here"))
    if diffs:
        raise ProfileMismatchError(f"profile {profile.id} is not this machine's: {', '.join(diffs)}", diffs)
    cpu_list = None if cpus is None else sorted(set(cpus))
    if cpu_list is not None and profile.threads > len(cpu_list):
        raise LatencyError(f"threads {profile.threads} exceeds the {len(cpu_list)} pinned cpu(s) {cpu_list}")
    return cpu_list


def measure_module(module: torch.nn.Module, input_shape: Sequence[int], profile: DeviceProfile, *,
                   cpus: Iterable[int] | None = None, copy: bool = True, **measure_kwargs: Any) -> Measurement:
    """Latency of one inference of `module` on `profile`: prepare, pin threads (and cpus), measure.

    The profile must describe this machine (same device and versions for its
    settings); otherwise ProfileMismatchError, so no table gets foreign numbers.
    `measure_kwargs` go to `measure` (warmup, min_runs, min_time_s, ...).
    """
    cpu_list = _cpus_for(profile, cpus)
    with pinned_threads(profile.threads):
        runner = prepare(module, input_shape, profile, copy=copy)
        with pinned_cpus(cpu_list):
            return measure(runner.run, sync=runner.sync, **measure_kwargs)


def measure_modules(items: Sequence[tuple[torch.nn.Module, Sequence[int]]], profile: DeviceProfile, *,
                    cpus: Iterable[int] | None = None, copy: bool = True, as_deployed: bool = False,
                    **measure_kwargs: Any) -> list[Measurement]:
    """Latencies of several (module, input_shape) pairs timed in rotation (`measure_interleaved`),
    so that all of them see the same stretch of a drifting machine. Same checks as `measure_module`;
    `measure_kwargs` go to `measure_interleaved` (warmup, min_runs, max_rounds, target_rel_spread).
    `as_deployed` (see `prepare`) is for a module timed alone as a user runs it."""
    cpu_list = _cpus_for(profile, cpus)
    with pinned_threads(profile.threads):
        runners = [prepare(module, shape, profile, copy=copy, as_deployed=as_deployed) for module, shape in items]
        sync = runners[0].sync if runners else None
        with pinned_cpus(cpu_list):
            return measure_interleaved([r.run for r in runners], sync=sync, **measure_kwargs)

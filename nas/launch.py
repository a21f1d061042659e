"""Start search workers on a Dask cluster: N tasks, each one `nas.api.run_worker(run_dir)` joining the run
folder's shared study.

Dask places the tasks; nothing here schedules. An existing scheduler (`dask scheduler`, or the ones
dask-jobqueue starts on Slurm/PBS and dask-kubernetes on Kubernetes) is given by its address; without
one a LocalCluster of N one-thread worker processes runs on this machine. The run folder's path is
passed as an absolute path, so it must be the same path on every Dask worker (a shared file system),
and its study must be on a server all of them reach (PostgreSQL).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable

from nas.errors import NasError

DASK_HINT = "pip install -e '.[dask]'"
CONNECT_TIMEOUT_S = 10  # a wrong scheduler address fails in seconds


def _dask() -> Any:
    """The dask.distributed module, or a one-line error naming the extra that installs it."""
    try:
        import dask.distributed
    except ImportError:
        raise NasError(f"the Dask launcher needs dask.distributed, which is not installed: {DASK_HINT}") from None
    return dask.distributed


def run_worker_task(run_dir: str, lut: str | None) -> Any:
    """What each Dask task runs: one worker of the run, imported in the Dask worker process itself."""
    from nas import api

    return api.run_worker(run_dir, lut=lut)


def launch(run_dir: str | os.PathLike, n: int, *, address: str | None = None, lut: str | None = None,
           task: Callable[[str, str | None], Any] = run_worker_task,
           connect_timeout_s: float = CONNECT_TIMEOUT_S) -> list[Any]:
    """Run `n` workers of the run folder `run_dir` as Dask tasks, on the scheduler at `address` (or a
    LocalCluster of `n` processes), and return each task's result once all have finished. A task's
    exception is raised here. `task(run_dir, lut)` is replaceable for tests; an unreachable
    scheduler fails after `connect_timeout_s`."""
    if n < 1:
        raise NasError(f"-n: the number of workers must be at least 1, got {n}")
    distributed = _dask()
    folder = str(Path(run_dir).resolve())
    with contextlib.ExitStack() as stack:
        if address is None:
            address = stack.enter_context(distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None))
        try:
            client = stack.enter_context(distributed.Client(address, timeout=connect_timeout_s))
        except OSError as exc:  # distributed raises OSError (or TimeoutError, a subclass) for an unreachable one
            raise NasError(f"--dask {address}: cannot reach the Dask scheduler: {exc}") from None
        # pure=False: n equal calls are n tasks, not one result shared by key.
        futures = [client.submit(task, folder, lut, pure=False) for _ in range(n)]
        return client.gather(futures)

"""A throwaway local PostgreSQL server for benchmarks: started in a temp folder, stopped by its pid.

`initdb` refuses to run as root, so the cluster and the server run as the `postgres` user (through
`runuser` when this process is root); the server listens on 127.0.0.1 only, on a free port, with trust
authentication, and its folder is removed when it stops.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

USER = "postgres"
DATABASE = "nasbench"


def _as_postgres(*cmd: str) -> list[str]:
    """`cmd` run as the postgres user (root cannot run initdb)."""
    return ["runuser", "-u", USER, "--", *cmd] if os.geteuid() == 0 else list(cmd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*cmd: str) -> None:
    """Run a setup step; its own output is the error message when it fails."""
    done = subprocess.run(_as_postgres(*cmd), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")


def _stop(data: Path, timeout_s: float = 30.0) -> None:
    """Fast shutdown of the server of `data` by the pid in its postmaster.pid (SIGINT), then SIGKILL."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises ProcessLookupError once it is gone
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """Start a fresh server with an empty database; yields its SQLAlchemy URL (psycopg 3 driver)."""
    root = Path(tempfile.mkdtemp(prefix="nas-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, USER, USER)
        _run("initdb", "-D", str(data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8")
        port = _free_port()
        _run("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
             "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start")
        _run("psql", "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", "postgres", "-q",
             "-c", f"CREATE DATABASE {DATABASE}")
        yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        _stop(data)
        shutil.rmtree(root, ignore_errors=True)

"""A throwaway local PostgreSQL server for tests and benchmarks: started in a temp folder, stopped by its pid.

The one implementation both use (tests/conftest.py's `postgres_server` and `postgres_url` fixtures,
benchmarks.storage_cost and benchmarks.distributed). `initdb` refuses to run as root, so the cluster and
the server run as the `postgres` user (through `runuser` when this process is root); the server listens
on 127.0.0.1 only, on a free port. The `postgres` superuser connects without a password (trust); the
user `PASSWORD_USER` must give `PASSWORD` (scram-sha-256), so a wrong password can be tested. The
folder is removed when the server stops.
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
PASSWORD_USER, PASSWORD = "nas_pw", "right-password"
# First match wins: the password user over TCP needs its password, everything else is trusted (local only).
HBA = f"""host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
local all all trust
"""


class ServerError(RuntimeError):
    """The server could not be set up; the message is the failing tool's own output, on one line."""


def _as_postgres(*cmd: str) -> list[str]:
    """`cmd` run as the postgres user (root cannot run initdb)."""
    return ["runuser", "-u", USER, "--", *cmd] if os.geteuid() == 0 else list(cmd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*cmd: str) -> None:
    """Run a setup step; its own output is the error message when it fails."""
    try:
        done = subprocess.run(_as_postgres(*cmd), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"{' '.join(cmd[:2])} failed: {exc}") from None
    if done.returncode != 0:
        out = " ".join((done.stderr or done.stdout).split())
        raise ServerError(f"{' '.join(cmd[:2])} failed ({done.returncode}): {out}")


class Server:
    """One PostgreSQL cluster in a temp folder: `init()`, `stop()`, `start()`, `restart()`,
    `create_database()`, `url()`. `durable=False` turns fsync off (tests; benchmarks keep it on, as a
    real server has it)."""

    def __init__(self, *, durable: bool = True) -> None:
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="nas-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        if os.geteuid() == 0:  # mkdtemp makes a 0700 folder of root's: the server's user must own it
            shutil.chown(self.root, USER, USER)
        self._databases = 0

    def init(self) -> None:
        """initdb, the access rules above, and the password user's role (made while trust lets us in)."""
        _run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8")
        (self.data / "pg_hba.conf").write_text(HBA)
        self.start()
        self.sql(f"CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")

    def start(self) -> None:
        # -k: the Unix socket goes in our folder, not /var/run/postgresql (absent on a bare machine).
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root}"
        if not self.durable:  # tests: no fsync makes CREATE DATABASE and shutdown checkpoints quick
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
             "-o", options, "start")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown by the pid in postmaster.pid (SIGINT), then SIGKILL; returns once it is gone."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises ProcessLookupError once it is gone
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start on the same port: every open connection is cut, the data stays."""
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the superuser on `database`, outside a transaction (CREATE DATABASE needs
        that). Through psycopg, the driver the URLs name: a machine may have the server without psql."""
        try:
            import psycopg
        except ImportError:
            raise ServerError("psycopg is not installed: pip install -e '.[postgres]'") from None
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname=database, autocommit=True,
                                 connect_timeout=10) as conn:
                conn.execute(statement)
        except psycopg.Error as exc:
            raise ServerError(f"{statement.split()[0]} on {database} failed: {' '.join(str(exc).split())}") from None

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (named `name`, or db1, db2, ...); returns its name."""
        if name is None:
            self._databases += 1
            name = f"db{self._databases}"
        self.sql(f"CREATE DATABASE {name}")
        return name

    def url(self, database: str, *, password: str | None = None, driver: str = "psycopg") -> str:
        """The SQLAlchemy URL of `database`: as the trusted superuser, or as the password user with
        `password` (right or wrong)."""
        who = USER if password is None else f"{PASSWORD_USER}:{password}"
        return f"postgresql+{driver}://{who}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def running_server(*, durable: bool = True) -> Iterator[Server]:
    """A started server, stopped by its pid and removed on the way out (also after an error)."""
    server = Server(durable=durable)
    try:
        server.init()
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """Start a fresh server with an empty database; yields its SQLAlchemy URL (psycopg 3 driver)."""
    with running_server() as server:
        yield server.url(server.create_database(DATABASE))

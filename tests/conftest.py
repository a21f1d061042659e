"""Session-wide test settings and shared fixtures."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _single_thread():
    """One intra-op thread for the whole session.

    At batch 1 these small convs gain nothing from a second thread, and on the
    2-core CI box OpenMP contention made the suite about 5x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    """`write_yaml(text, name="space.yaml")` writes `text` under tmp_path and returns the file's path."""

    def write(text: str, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session", autouse=True)
def _private_latency_tables(tmp_path_factory: pytest.TempPathFactory):
    """Latency tables go to a session folder, never the user's cache (shared by the session's tests)."""
    import os

    old = os.environ.get("NAS_LUT_DIR")
    os.environ["NAS_LUT_DIR"] = str(tmp_path_factory.mktemp("latency-tables"))
    yield
    if old is None:
        os.environ.pop("NAS_LUT_DIR", None)
    else:
        os.environ["NAS_LUT_DIR"] = old


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (benchmarks/_postgres.py), stopped by its pid at the
    end even when tests fail. A machine that cannot start one fails these tests with initdb's or pg_ctl's
    own message: CI must run them, never skip them."""
    from benchmarks import _postgres

    server = _postgres.Server(durable=False)
    try:
        try:
            server.init()
        except _postgres.ServerError as exc:
            pytest.fail(f"cannot start a throwaway PostgreSQL server: {exc}", pytrace=False)
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh empty database on the session's server, as a postgresql+psycopg:// URL (trusted superuser)."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture(scope="session")
def all_ops_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The all-ops space (export_helpers.ALL_OPS: every registered stage op's example in one net), as a file."""
    from export_helpers import ALL_OPS

    path = tmp_path_factory.mktemp("spaces") / "all_ops.yaml"
    path.write_text(ALL_OPS, encoding="utf-8")
    return path

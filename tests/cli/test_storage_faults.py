"""`nas search --storage URL` and `nas report` on storages that cannot be used: one line on stderr, exit code
2, and nothing written (no run folder, no run.json). Each runs the real command in a subprocess, the way
a user meets it."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import _postgres
from search_helpers import TINY_SPACE, synthetic_table

TARGET = "0.4ms"  # on the synthetic table: about half of the tiny space is feasible
# Run the command line with psycopg hidden, as on a machine without the postgres extra.
WITHOUT_PSYCOPG = "import sys; sys.modules['psycopg'] = None; from nas.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def search_args(write_yaml, tmp_path: Path) -> list[str]:
    tiny = write_yaml(TINY_SPACE, "tiny.yaml")
    lut = tmp_path / "lut.json"
    synthetic_table(tiny, lut)
    return ["search", "--space", str(tiny), "--target-latency", TARGET, "--lut", str(lut), "--threads", "1",
            "--n-trials", "3", "--no-measure", "--quiet", "--fit", "0"]


def _nas(args: list[str], *, prelude: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *(prelude or ["-m", "nas"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _refused(search_args: list[str], url: str, run: Path, **kw) -> str:
    """Run `nas search --storage url`; it must fail in one line with exit 2 and leave no run folder."""
    done = _nas([*search_args, "--storage", url, "--run-dir", str(run)], **kw)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: cannot open storage "), done.stderr
    assert not run.exists()
    return lines[0]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket closes


def test_unreachable_server_fails_fast(search_args, tmp_path: Path) -> None:
    port = _closed_port()
    start = time.monotonic()
    line = _refused(search_args, f"postgresql+psycopg://postgres@127.0.0.1:{port}/nas", tmp_path / "run")
    assert time.monotonic() - start < 30  # the command's own start-up included; no TCP timeout wait
    assert line == (f"error: cannot open storage 'postgresql+psycopg://postgres@127.0.0.1:{port}/nas': connection "
                    f"failed: connection to server at \"127.0.0.1\", port {port} failed: Connection refused")


def test_wrong_password(search_args, tmp_path: Path, postgres_server: _postgres.Server) -> None:
    db = postgres_server.create_database()
    line = _refused(search_args, postgres_server.url(db, password="wrong"), tmp_path / "run")
    assert line.endswith(f"FATAL: password authentication failed for user \"{_postgres.PASSWORD_USER}\"")
    assert f"'postgresql+psycopg://{_postgres.PASSWORD_USER}:***@127.0.0.1:{postgres_server.port}/{db}'" in line


def test_a_database_that_is_not_a_study(search_args, tmp_path: Path, postgres_server: _postgres.Server) -> None:
    db = postgres_server.create_database()
    postgres_server.sql("CREATE TABLE studies (id integer, title text)", database=db)
    line = _refused(search_args, postgres_server.url(db), tmp_path / "run")
    assert line.endswith(": the database is not an Optuna study database (it has other tables: studies); give an "
                         "empty database or one made by nas search")


def test_an_sqlite_file_that_is_not_a_database(search_args, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 100)
    line = _refused(search_args, f"sqlite:///{notes}", tmp_path / "run")
    assert line == f"error: cannot open storage 'sqlite:///{notes}': file is not a database"
    assert notes.read_text() == "not a database\n" * 100


def test_unknown_driver(search_args, tmp_path: Path) -> None:
    line = _refused(search_args, "postgresql+nosuchdriver://postgres@127.0.0.1:5432/nas", tmp_path / "run")
    assert line == ("error: cannot open storage 'postgresql+nosuchdriver://postgres@127.0.0.1:5432/nas': unknown "
                    "database driver 'postgresql+nosuchdriver'; PostgreSQL is postgresql+psycopg://USER@HOST:PORT/DB "
                    "(pip install -e '.[postgres]'), SQLite is sqlite:///FILE")


def test_psycopg_not_installed(search_args, tmp_path: Path) -> None:
    line = _refused(search_args, "postgresql+psycopg://postgres@127.0.0.1:5432/nas", tmp_path / "run",
                    prelude=["-c", WITHOUT_PSYCOPG])
    assert line == ("error: cannot open storage 'postgresql+psycopg://postgres@127.0.0.1:5432/nas': the PostgreSQL "
                    "driver psycopg is not installed: pip install -e '.[postgres]'")


def test_report_on_a_run_whose_server_is_gone(search_args, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with _postgres.running_server(durable=False) as server:
        url = server.url(server.create_database())
        done = _nas([*search_args, "--storage", url, "--run-dir", str(run)])
        assert done.returncode == 0, done.stderr
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    done = _nas(["report", str(run), "--no-measure"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: cannot open storage '{url}': connection failed: connection to server at \"127.0.0.1\", port "
        f"{server.port} failed: Connection refused"]
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # the search's report is untouched

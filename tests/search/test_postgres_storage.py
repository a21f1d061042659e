"""`nas.search.connect.open_storage` on a real PostgreSQL server (the session's throwaway one): faults are
one line with nothing written, eight workers opening a fresh database at once do not race, and an opened
storage survives a server restart without losing or doubling a trial."""
from __future__ import annotations

import multiprocessing
import socket
import threading
import time

import optuna
import pytest

from benchmarks import _postgres
from nas.search.connect import CONNECT_TIMEOUT_S, StorageError, open_storage, shown_url

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _tables(server: _postgres.Server, database: str) -> list[str]:
    import psycopg

    with psycopg.connect(server.url(database).replace("postgresql+psycopg", "postgresql")) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def _add_trials(study: optuna.Study, n: int) -> None:
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0.0, 1.0))


def _numbers(study: optuna.Study) -> list[int]:
    return [t.number for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]


def test_a_fresh_database_becomes_a_study_database(postgres_url: str) -> None:
    study = optuna.create_study(storage=open_storage(postgres_url), study_name="s")
    _add_trials(study, 3)
    assert _numbers(optuna.load_study(study_name="s", storage=open_storage(postgres_url))) == [0, 1, 2]


def test_optuna_storage_options_pass_through(postgres_url: str) -> None:
    storage = open_storage(postgres_url, heartbeat_interval=1, grace_period=3)
    assert (storage.heartbeat_interval, storage.grace_period) == (1, 3)


def test_password_user(postgres_server: _postgres.Server) -> None:
    db = postgres_server.create_database()
    open_storage(postgres_server.url(db, password=_postgres.PASSWORD))
    with pytest.raises(StorageError) as err:
        open_storage(postgres_server.url(db, password="wrong"))
    assert str(err.value) == (f"cannot open storage 'postgresql+psycopg://{_postgres.PASSWORD_USER}:***@127.0.0.1:"
                              f"{postgres_server.port}/{db}': connection failed: connection to server at "
                              f"\"127.0.0.1\", port {postgres_server.port} failed: FATAL: password authentication "
                              f"failed for user \"{_postgres.PASSWORD_USER}\"")
    assert "wrong" not in str(err.value)


def test_shown_url_masks_the_password() -> None:
    assert shown_url("postgresql+psycopg://u:secret@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert shown_url("sqlite:///x.db") == "sqlite:///x.db"


def test_a_database_with_other_tables_is_refused_and_left_alone(postgres_server: _postgres.Server) -> None:
    db = postgres_server.create_database()
    postgres_server.sql("CREATE TABLE studies (id integer, title text)", database=db)
    with pytest.raises(StorageError, match=r"the database is not an Optuna study database \(it has other tables: "
                                           r"studies\); give an empty database or one made by nas search$"):
        open_storage(postgres_server.url(db))
    assert _tables(postgres_server, db) == ["studies"]  # Optuna created none of its tables next to it


def test_a_server_that_accepts_but_never_answers_fails_within_the_connect_timeout() -> None:
    with socket.socket() as silent:  # the kernel completes the handshake; nothing ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        with pytest.raises(StorageError, match="connection timeout expired"):
            open_storage(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/x")
    assert time.monotonic() - start < CONNECT_TIMEOUT_S + 5


def _open_in_a_process(url: str) -> str:
    try:
        open_storage(url)
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_eight_workers_opening_a_fresh_database_at_once_do_not_race(postgres_url: str) -> None:
    """Without the advisory lock around Optuna's table creation, most of these fail with a duplicate key in
    pg_type (CREATE TABLE racing on one name)."""
    with multiprocessing.get_context("fork").Pool(8) as pool:  # fork: all eight start at once
        assert pool.map(_open_in_a_process, [postgres_url] * 8) == ["ok"] * 8


def test_a_restart_between_trials_is_survived(postgres_server: _postgres.Server, postgres_url: str) -> None:
    study = optuna.create_study(storage=open_storage(postgres_url), study_name="s")
    _add_trials(study, 3)
    postgres_server.restart()  # every pooled connection is now dead; the ping replaces it
    _add_trials(study, 3)
    assert _numbers(study) == list(range(6))


def test_a_server_down_for_a_while_is_waited_for(postgres_server: _postgres.Server, postgres_url: str) -> None:
    study = optuna.create_study(storage=open_storage(postgres_url, reconnect_s=30), study_name="s")
    _add_trials(study, 2)
    postgres_server.stop()
    back = threading.Timer(1.5, postgres_server.start)
    back.start()
    start = time.monotonic()
    try:
        _add_trials(study, 1)  # blocks in the reconnect loop until the server is back
    finally:
        back.join()
    assert time.monotonic() - start >= 1.0
    assert _numbers(study) == [0, 1, 2]


def test_a_server_gone_for_longer_stops_the_caller_in_one_line(postgres_server: _postgres.Server,
                                                               postgres_url: str) -> None:
    study = optuna.create_study(storage=open_storage(postgres_url, reconnect_s=2), study_name="s")
    _add_trials(study, 2)
    postgres_server.stop()
    start = time.monotonic()
    try:
        with pytest.raises(StorageError) as err:
            _add_trials(study, 1)
        waited = time.monotonic() - start
    finally:
        postgres_server.start()
    assert 2.0 <= waited < 6.0
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"lost the database server of '{shown_url(postgres_url)}': "
                                                      f"no connection for 2 s (")
    assert message.endswith("Connection refused); completed trials are stored, run the command again to continue")
    # Nothing was lost and nothing counted twice: the two completed trials, no third one half-made.
    assert _numbers(optuna.load_study(study_name="s", storage=open_storage(postgres_url))) == [0, 1]

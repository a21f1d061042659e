"""Opening an Optuna storage from a URL: one-line errors, nothing written to a wrong database, and
connections that survive a database server restart.

Faults a user meets (a server that cannot be reached, a wrong password, an unknown or missing driver, a
database that holds something else) become one `StorageError` line each, before anything is written:
the database is inspected first, and Optuna only creates its tables in an empty database or one that
already holds them. On PostgreSQL the inspection and Optuna's table creation run under an advisory lock,
so eight workers starting in the same second do not race to create the tables.

An opened server storage pings a pooled connection before using it (`pool_pre_ping`), so a connection
cut by a restart between two calls is replaced, not reported. While the server is down, new connections
are retried with backoff for `reconnect_s` seconds, then the caller gets a one-line StorageError.
Only connecting is retried, never a statement, so a write is never applied twice.
"""
from __future__ import annotations

import time
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy import event, exc as sa_exc

from nas.errors import NasError

CONNECT_TIMEOUT_S = 5  # an unreachable host fails in seconds, not after the OS's minutes-long TCP timeout
RECONNECT_S = 60.0  # how long an opened storage waits for its server to come back
# The driver option that bounds one connection attempt, per SQLAlchemy driver name.
_TIMEOUT_ARG = {"psycopg": "connect_timeout", "psycopg2": "connect_timeout", "pymysql": "connect_timeout",
                "mysqldb": "connect_timeout"}
# Any PostgreSQL advisory lock key works as long as every worker uses the same one (it is per database).
_LOCK_KEY = 0x6E61735F6F7074  # "nas_opt"
_POSTGRES_HINT = "pip install -e '.[postgres]'"


class StorageError(NasError):
    """A storage URL that cannot be opened or used."""


def shown_url(url: str) -> str:
    """`url` with its password masked, for messages."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing to hide
        return url


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for `url`: a busy timeout for SQLite files; for servers, a bounded
    connect and a ping before each pooled connection is reused (a restarted server cut it)."""
    if url.startswith("sqlite:"):
        # Wait for a busy file rather than fail at once when two processes share it.
        return {"connect_args": {"timeout": 30}}
    driver = sqlalchemy.engine.make_url(url).get_driver_name()
    connect = {_TIMEOUT_ARG[driver]: CONNECT_TIMEOUT_S} if driver in _TIMEOUT_ARG else {}
    return {"pool_pre_ping": True, "connect_args": connect}


def open_storage(url: str, *, reconnect_s: float = RECONNECT_S, **rdb: Any) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url` (any SQLAlchemy URL), or a one-line StorageError with nothing written.
    A server storage reconnects for up to `reconnect_s` seconds when its server goes away. `rdb` goes to
    `optuna.storages.RDBStorage` (heartbeat_interval, grace_period, ...)."""
    shown = shown_url(url)
    try:
        kwargs = engine_kwargs(url) if "://" in url else {}
        probe = sqlalchemy.create_engine(url, **kwargs)
        try:
            with probe.connect() as conn:
                storage = _create_locked(conn, url, {"engine_kwargs": kwargs, **rdb}, shown)
        finally:
            probe.dispose()
    except StorageError:
        raise
    except Exception as exc:  # SQLAlchemy, the drivers and Optuna raise many kinds; the user needs one line
        raise StorageError(f"cannot open storage {shown!r}: {_describe(exc, url)}") from None
    if storage.engine.dialect.name != "sqlite":
        _retry_connects(storage.engine, shown, reconnect_s)
    return storage


def _create_locked(conn: sqlalchemy.Connection, url: str, options: dict[str, Any],
                   shown: str) -> optuna.storages.RDBStorage:
    """Check the database holds a study or nothing, then let Optuna create or check its tables; on
    PostgreSQL both under an advisory lock that every opener takes."""
    locked = conn.dialect.name == "postgresql"
    if locked:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
    try:
        tables = sorted(sqlalchemy.inspect(conn).get_table_names())
        if tables and "version_info" not in tables:  # Optuna's schema always has it; an empty database is fine
            listed = ", ".join(tables[:4]) + (", ..." if len(tables) > 4 else "")
            raise StorageError(f"cannot open storage {shown!r}: the database is not an Optuna study database "
                               f"(it has other tables: {listed}); give an empty database or one made by nas search")
        return optuna.storages.RDBStorage(url, **options)
    finally:
        if locked:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            conn.commit()


def _describe(exc: BaseException, url: str) -> str:
    """What went wrong, in a few words a user can act on."""
    if isinstance(exc, ImportError):
        driver = sqlalchemy.engine.make_url(url).get_driver_name()
        if driver == "psycopg":
            return f"the PostgreSQL driver psycopg is not installed: {_POSTGRES_HINT}"
        if driver == "psycopg2":  # what a bare postgresql:// means to SQLAlchemy
            return f"the driver psycopg2 is not installed; use postgresql+psycopg://USER@HOST:PORT/DB ({_POSTGRES_HINT})"
        return f"its database driver {driver} is not installed ({exc})"
    if isinstance(exc, sa_exc.NoSuchModuleError):
        name = sqlalchemy.engine.make_url(url).drivername
        return (f"unknown database driver {name!r}; PostgreSQL is postgresql+psycopg://USER@HOST:PORT/DB "
                f"({_POSTGRES_HINT}), SQLite is sqlite:///FILE")
    if isinstance(exc, sa_exc.ArgumentError):
        return "not a database URL; PostgreSQL is postgresql+psycopg://USER@HOST:PORT/DB, SQLite is sqlite:///FILE"
    return error_line(getattr(exc, "orig", None) or exc)


def error_line(exc: BaseException) -> str:
    """The first line of an exception's message, whitespace collapsed (its type's name if it has none)."""
    text = " ".join(str(exc).strip().splitlines()[0].split()) if str(exc).strip() else ""
    return text or type(exc).__name__


def _retry_connects(engine: sqlalchemy.Engine, shown: str, reconnect_s: float) -> None:
    """New connections of `engine` retry with backoff for `reconnect_s` seconds while the server is down;
    then the one-line StorageError stops the caller. Statements themselves are never retried."""
    dbapi_error = engine.dialect.loaded_dbapi.OperationalError

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        deadline, delay = time.monotonic() + reconnect_s, 0.25
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except dbapi_error as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StorageError(f"lost the database server of {shown!r}: no connection for "
                                       f"{reconnect_s:g} s ({error_line(exc)}); completed trials are stored, "
                                       f"run the command again to continue") from None
                time.sleep(min(delay, remaining))
                delay = min(2 * delay, 5.0)

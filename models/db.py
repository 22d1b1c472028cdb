"""Database setup: one `DatabaseProxy` bound at start-up to a pooled database chosen by URL.

Peewee keeps connections per thread, so nothing here may run on an asyncio event loop thread:
web code calls `unit_of_work` through `quart.run_sync` (see `app.db`), workers get a connection
per message from `actors.middleware.DatabaseMiddleware`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from models.settings import check_database_url

db = peewee.DatabaseProxy()

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseUnavailable(Exception):
    """The database could not be reached; the message is one readable line."""


def make_database(url: str, max_connections: int = 20) -> peewee.Database:
    """Build (without connecting) the database that `url` names."""
    check_database_url(url)
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        return peewee.SqliteDatabase(path or ":memory:", pragmas={"foreign_keys": 1, "journal_mode": "wal"})
    return PooledPostgresqlDatabase(
        unquote(parts.path.lstrip("/")),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        max_connections=max_connections,
        stale_timeout=300,
        timeout=10,
        connect_timeout=5,
        # Every connection speaks UTC, so naive timestamps in the database are UTC.
        options="-c timezone=UTC",
    )


def init_database(url: str, max_connections: int = 20) -> peewee.Database:
    """Point the shared proxy at the database named by `url` and return it."""
    if db.obj is not None:
        close_database()
    database = make_database(url, max_connections)
    db.initialize(database)
    return database


def close_database() -> None:
    """Close every pooled connection (used at shutdown and between test sessions)."""
    database = db.obj
    if database is None:
        return
    if hasattr(database, "close_all"):
        database.close_all()
    elif not database.is_closed():
        database.close()


def check_database(database: peewee.Database | peewee.DatabaseProxy | None = None) -> None:
    """Run `SELECT 1` on `database` (default: the bound one); raise DatabaseUnavailable with a
    one-line reason if it fails."""
    database = database or db
    try:
        with database.connection_context():
            database.execute_sql("SELECT 1")
    except peewee.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DatabaseUnavailable(first) from None


def unit_of_work(func: Callable[P, R]) -> Callable[P, R]:
    """Run `func` in one connection and one transaction; for plain (thread) code only."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with db.connection_context():
            with db.atomic():
                return func(*args, **kwargs)

    return wrapper

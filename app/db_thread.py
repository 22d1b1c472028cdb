"""Peewee from async code: every unit of work runs on a worker thread (ARCHITECTURE.md decision 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from quart.utils import run_sync

from models.db import checked_out_unpinged, db, reconnecting, unit_of_work

P = ParamSpec("P")
R = TypeVar("R")


async def run_db(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `func(*args, **kwargs)` off the event loop, in one connection and one transaction."""
    return await run_sync(unit_of_work(func))(*args, **kwargs)


async def read_db(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`run_db` for a view that only reads: one read-only transaction, so all of `func`'s queries
    see one snapshot, PostgreSQL refuses a write, and the commit needs no transaction-id check."""
    return await run_sync(unit_of_work(func, read_only=True))(*args, **kwargs)


async def read_statement(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `func` off the event loop in one connection and no transaction: for a read of one
    statement, which is one snapshot by itself and so needs no BEGIN or COMMIT (PostgreSQL runs
    it in autocommit). A connection lost under it runs it once more: it wrote nothing, so its
    pooled connection is handed out without a round trip to check it first."""
    return await run_sync(_read_connected(func))(*args, **kwargs)


def _read_connected(func: Callable[P, R]) -> Callable[P, R]:
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        attempts = 0

        @reconnecting
        def attempt() -> R:
            nonlocal attempts
            attempts += 1
            # Only the first attempt skips the check: a retry's connection is checked as usual.
            with checked_out_unpinged() if attempts == 1 else db.connection_context():
                return func(*args, **kwargs)

        return attempt()

    return call


def _connected(func: Callable[P, R]) -> Callable[P, R]:
    @reconnecting
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with db.connection_context():
            return func(*args, **kwargs)

    return wrapper


async def run_connected(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `func` off the event loop in one connection but no transaction: for functions that
    commit themselves and publish afterwards (the pipeline's `create_session`, `end_session`).
    A connection lost before its first commit runs it once more; after, it is a 503."""
    return await run_sync(_connected(func))(*args, **kwargs)

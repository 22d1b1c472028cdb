"""Peewee from async code: every unit of work runs on a worker thread (ARCHITECTURE.md decision 6)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import ParamSpec, TypeVar

from quart.utils import run_sync

from models.db import db, reconnecting, unit_of_work

P = ParamSpec("P")
R = TypeVar("R")


async def run_db(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `func(*args, **kwargs)` off the event loop, in one connection and one transaction."""
    return await run_sync(unit_of_work(func))(*args, **kwargs)


async def read_db(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`run_db` for a view that only reads: one read-only transaction, so all of `func`'s queries
    see one snapshot, PostgreSQL refuses a write, and the commit needs no transaction-id check."""
    return await run_sync(unit_of_work(func, read_only=True))(*args, **kwargs)


#: Threads of each web process for `read_statement`, apart from the default executor's (every
#: other unit of work): at 64 connections a few threads passed the GIL and the pool's connections
#: around less than six, and read p99 fell from 92-143 to 69-96 ms at the same throughput (issue
#: 13); and a read never waits behind slow units of work for a thread.
READ_THREADS = 3
_read_pool: ThreadPoolExecutor | None = None


def _read_executor() -> ThreadPoolExecutor:
    global _read_pool
    if _read_pool is None:
        _read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sage-read")
    return _read_pool


async def read_statement(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `func` off the event loop in one connection and no transaction: for a read of one
    statement, which is one snapshot by itself and so needs no BEGIN or COMMIT (PostgreSQL runs
    it in autocommit). A connection lost under it runs it once more (`reconnecting`: it wrote
    nothing). It runs on the reads' own threads (`READ_THREADS`)."""
    call = functools.partial(_connected(func), *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_read_executor(), copy_context().run, call)


def _connected(func: Callable[P, R]) -> Callable[P, R]:
    @reconnecting
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with db.connection_context():
            return func(*args, **kwargs)

    return wrapper


async def run_connected(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `func` off the event loop in one connection but no transaction: for functions that
    commit themselves and publish afterwards (`models.lifecycle`'s functions: create, end).
    A connection lost before its first commit runs it once more; after, it is a 503."""
    return await run_sync(_connected(func))(*args, **kwargs)

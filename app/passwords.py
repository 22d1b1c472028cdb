"""Password hashing with bcrypt, on its own small thread pool (a cost-12 hash takes ~0.2 s of CPU).

bcrypt reads only the first 72 bytes of a password, so longer ones are refused at validation
(`MAX_PASSWORD_BYTES`) instead of being silently truncated: otherwise two passwords sharing
their first 72 bytes would both open the account.

Hashes run on `HashPool` (`Settings.bcrypt_threads` threads, 2 by default), never on the
threads that run the database work of every request: a storm of logins then queues behind
itself instead of starving everyone else's requests (issue 14, finding 3).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import bcrypt

MAX_PASSWORD_BYTES = 72
THREAD_PREFIX = "sage-bcrypt"

# Checked against when the login names no user, so that answering "wrong password" takes as
# long for unknown accounts as for known ones: hashed at the configured cost (finding 4), once
# per cost, lazily (a cost-12 hash at import would slow every process start).
_dummy_hashes: dict[int, bytes] = {}
_dummy_lock = threading.Lock()


def dummy_hash(rounds: int) -> bytes:
    """A bcrypt hash at cost `rounds` that no password given at login matches."""
    with _dummy_lock:
        if rounds not in _dummy_hashes:
            _dummy_hashes[rounds] = bcrypt.hashpw(b"not a real password", bcrypt.gensalt(rounds))
        return _dummy_hashes[rounds]


def hash_password_sync(password: str, rounds: int) -> str:
    """The bcrypt hash of `password` at cost `rounds`."""
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password is longer than {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds)).decode("ascii")


def check_password_sync(password: str, password_hash: str | None, rounds: int = 12) -> bool:
    """Whether `password` matches `password_hash` (False for over-long passwords or no hash).

    With no hash (no such user) the password is checked against a dummy hash of cost `rounds`,
    so the answer takes as long as for a real account.
    """
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        return False
    if not password_hash:
        bcrypt.checkpw(encoded, dummy_hash(rounds))
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode("ascii"))
    except ValueError:  # not a bcrypt hash (e.g. a fixture's dummy value)
        return False


class HashPool:
    """The web process's bcrypt threads (live on the app, opened and closed with it)."""

    def __init__(self, threads: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=THREAD_PREFIX)

    async def run(self, func, *args):
        """`func(*args)` on one of the pool's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(func, *args))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _pool() -> HashPool:
    from quart import current_app

    return current_app.extensions["sage_hash_pool"]


async def hash_password(password: str, rounds: int) -> str:
    """`hash_password_sync` on the app's hash pool."""
    return await _pool().run(hash_password_sync, password, rounds)


async def check_password(password: str, password_hash: str | None, rounds: int = 12) -> bool:
    """`check_password_sync` on the app's hash pool."""
    return await _pool().run(check_password_sync, password, password_hash, rounds)

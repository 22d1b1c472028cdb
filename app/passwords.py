"""Password hashing with bcrypt, run off the event loop (a cost-12 hash takes ~0.2 s of CPU).

bcrypt reads only the first 72 bytes of a password, so longer ones are refused at validation
(`MAX_PASSWORD_BYTES`) instead of being silently truncated: otherwise two passwords sharing
their first 72 bytes would both open the account.
"""

from __future__ import annotations

import bcrypt
from quart.utils import run_sync

MAX_PASSWORD_BYTES = 72

# Checked against when the login names no user, so that answering "wrong password" takes
# about as long for unknown accounts as for known ones.
_DUMMY_HASH = bcrypt.hashpw(b"not a real password", bcrypt.gensalt(4))


def hash_password_sync(password: str, rounds: int) -> str:
    """The bcrypt hash of `password` at cost `rounds`."""
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password is longer than {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds)).decode("ascii")


def check_password_sync(password: str, password_hash: str | None) -> bool:
    """Whether `password` matches `password_hash` (False for over-long passwords or no hash)."""
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        return False
    if not password_hash:
        bcrypt.checkpw(encoded, _DUMMY_HASH)
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode("ascii"))
    except ValueError:  # not a bcrypt hash (e.g. a fixture's dummy value)
        return False


async def hash_password(password: str, rounds: int) -> str:
    """`hash_password_sync` in a worker thread."""
    return await run_sync(hash_password_sync)(password, rounds)


async def check_password(password: str, password_hash: str | None) -> bool:
    """`check_password_sync` in a worker thread."""
    return await run_sync(check_password_sync)(password, password_hash)

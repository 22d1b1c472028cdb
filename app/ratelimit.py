"""Counters in Redis that throttle failed logins and signups.

Failed logins are counted per account (`rl:login:acct:{user id or lowercased login}`) and per
client address (`rl:login:addr:{address}`), each in a fixed window that starts at the first
failure and lasts `Settings.login_window_seconds`. When either reaches
`Settings.login_max_failures`, login answers 429 `rate_limited` with `Retry-After` (the window's
remaining seconds), before any password is checked.

So that an attacker cannot lock a user out:

- every lock ends with its window (5 minutes by default) and is never extended by attempts
  made while locked (those are refused before counting);
- an address that has logged in to the account successfully before
  (`rl:login:known:{user_id}`, remembered for `Settings.session_absolute_seconds`) is not held
  by the account lock, only by its own address limit, so the real user on their usual machine
  keeps access while someone else hammers the account;
- a successful login clears the account's counter (never the address's: one's own account
  must not buy more guesses against others).

Signups count every attempt per address (`rl:signup:addr:{address}`,
`Settings.signup_max_attempts` per window). The address is the peer address
(`request.remote_addr`); behind a reverse proxy, configure the server to pass the real one.
"""

from __future__ import annotations

from typing import Any

from app.errors import ApiError
from models.settings import Settings


def account_key(account: str) -> str:
    return f"rl:login:acct:{account}"


def address_key(address: str) -> str:
    return f"rl:login:addr:{address}"


def known_key(user_id: int) -> str:
    return f"rl:login:known:{user_id}"


def signup_key(address: str) -> str:
    return f"rl:signup:addr:{address}"


def _too_many(retry_after: int, what: str) -> ApiError:
    seconds = max(int(retry_after), 1)
    return ApiError(429, f"too many {what}; try again in {seconds} seconds", headers={"Retry-After": str(seconds)})


async def _over(redis: Any, key: str, limit: int) -> int | None:
    """Seconds left in the window when `key` has reached `limit`, else None."""
    count = await redis.get(key)
    if count is None or int(count) < limit:
        return None
    ttl = await redis.ttl(key)
    return ttl if ttl > 0 else 1


async def check_login_allowed(redis: Any, settings: Settings, account: str, address: str, user_id: int | None) -> None:
    """Raise 429 when the address, or the account (unless this address is known to it), is locked."""
    retry = await _over(redis, address_key(address), settings.login_max_failures)
    if retry is None:
        retry = await _over(redis, account_key(account), settings.login_max_failures)
        if retry is not None and user_id is not None and await redis.sismember(known_key(user_id), address):
            retry = None
    if retry is not None:
        raise _too_many(retry, "failed logins")


async def _count(redis: Any, key: str, window: int) -> int:
    pipe = redis.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, window, nx=True)
    count, _ = await pipe.execute()
    return int(count)


async def record_login_failure(redis: Any, settings: Settings, account: str, address: str) -> None:
    """Count one failed login against the account and the address."""
    await _count(redis, account_key(account), settings.login_window_seconds)
    await _count(redis, address_key(address), settings.login_window_seconds)


async def record_login_success(redis: Any, settings: Settings, account: str, address: str, user_id: int) -> None:
    """Clear the account's failures and remember the address as known to the account."""
    pipe = redis.pipeline(transaction=True)
    pipe.delete(account_key(account))
    pipe.sadd(known_key(user_id), address)
    pipe.expire(known_key(user_id), settings.session_absolute_seconds)
    await pipe.execute()


async def count_signup_attempt(redis: Any, settings: Settings, address: str) -> None:
    """Count a signup attempt from `address`; raise 429 once over `Settings.signup_max_attempts`."""
    key = signup_key(address)
    retry = await _over(redis, key, settings.signup_max_attempts)
    if retry is not None:
        raise _too_many(retry, "signup attempts")
    await _count(redis, key, settings.login_window_seconds)

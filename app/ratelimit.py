"""Counters in Redis that throttle logins and signups.

Every limit is a counter in a fixed window that starts at its first count. A request *reserves*
its counts before any password is hashed or checked, in one Lua script that checks every
counter it names and increments them all only if none is full (`reserve`): two parallel
requests can never both take the last slot, so a burst of 100 parallel guesses gets no more
password checks than the limit (issue 14, finding 1).

Logins reserve, per request:

- a *failure* per account (`rl:login:acct:{user id or lowercased login}`) and per address
  (`rl:login:addr:{address}`), `Settings.login_max_failures` per `Settings.login_window_seconds`.
  A successful login gives its reservations back: it clears the account's failures and returns
  the address's one (never more: one's own account must not buy guesses against others);
- an *attempt*, success or not, per account and per address (`rl:login:rate:acct:...`,
  `rl:login:rate:addr:...`), `Settings.login_rate_per_account` / `login_rate_per_address` per
  `Settings.login_rate_window_seconds`, so that even correct logins cannot keep bcrypt busy
  (finding 3).

When one is full, login answers 429 `rate_limited` with `Retry-After` (that window's remaining
seconds), before any password is checked. So that an attacker cannot lock a user out:

- every lock ends with its window and is never extended by attempts made while locked (a
  refused reservation counts nothing);
- an address that has logged in to the account before, or signed it up
  (`rl:login:known:{user_id}`, remembered for `Settings.session_absolute_seconds`), is not held
  by the account's failure lock, only by its own address limit, and has its own attempt
  allowance on the account (`rl:login:rate:acct:{account}:{address}`), so the real user on their
  usual machine keeps access while someone else hammers the account.

Invitations reserve one per inviter (`rl:invite:user:{user_id}`, `Settings.invite_max_attempts`
per `Settings.invite_window_seconds`), so nobody can probe names in bulk.

Signups reserve one attempt per address (`rl:signup:addr:{address}`,
`Settings.signup_max_attempts` per login window). The address is the peer address
(`request.remote_addr`); behind a reverse proxy, configure the server to pass the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import ApiError
from models.settings import Settings


def account_key(account: str) -> str:
    return f"rl:login:acct:{account}"


def address_key(address: str) -> str:
    return f"rl:login:addr:{address}"


def known_key(user_id: int) -> str:
    return f"rl:login:known:{user_id}"


def account_rate_key(account: str, known_address: str | None = None) -> str:
    return f"rl:login:rate:acct:{account}" + (f":{known_address}" if known_address else "")


def address_rate_key(address: str) -> str:
    return f"rl:login:rate:addr:{address}"


def signup_key(address: str) -> str:
    return f"rl:signup:addr:{address}"


def invite_key(user_id: int) -> str:
    return f"rl:invite:user:{user_id}"


@dataclass(frozen=True)
class Counter:
    """One counter to reserve in: its key, its limit (0: count without checking) and window."""

    key: str
    limit: int
    window: int


# KEYS: the counters; ARGV: limit and window of each, in order. If any counter with a limit is
# full, nothing is counted and the answer is that counter's remaining seconds (at least 1);
# otherwise every counter is incremented (its window starting at its first count) and 0 is the answer.
_RESERVE = """
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i - 1])
  if limit > 0 then
    local count = tonumber(redis.call('GET', key) or '0')
    if count >= limit then
      local ttl = redis.call('TTL', key)
      if ttl < 1 then ttl = 1 end
      return ttl
    end
  end
end
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, tonumber(ARGV[2 * i]))
  end
end
return 0
"""


# Return one reserved count, unless its window ended meanwhile (a DECR would then leave -1 forever).
_GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


def too_many(retry_after: int, what: str) -> ApiError:
    seconds = max(int(retry_after), 1)
    return ApiError(429, f"too many {what}; try again in {seconds} seconds", headers={"Retry-After": str(seconds)})


async def reserve(redis: Any, counters: list[Counter]) -> int:
    """Count one in each of `counters` atomically, unless one is full: then count nothing and
    return the seconds left in its window (0 when the counts were taken)."""
    args: list[int] = []
    for counter in counters:
        args += [counter.limit, counter.window]
    return int(await redis.eval(_RESERVE, len(counters), *[c.key for c in counters], *args))


async def reserve_login(redis: Any, settings: Settings, account: str, address: str, user_id: int | None) -> None:
    """Reserve one login attempt (a provisional failure) before the password is checked.

    Raises:
        ApiError: 429 `rate_limited` when the address or the account is locked or over its rate.
    """
    known = user_id is not None and bool(await redis.sismember(known_key(user_id), address))
    failures, rate_window = settings.login_window_seconds, settings.login_rate_window_seconds
    counters = [
        Counter(address_key(address), settings.login_max_failures, failures),
        # A known address is not held by the account's lock; its failures still count there.
        Counter(account_key(account), 0 if known else settings.login_max_failures, failures),
        Counter(address_rate_key(address), settings.login_rate_per_address, rate_window),
        Counter(account_rate_key(account, address if known else None), settings.login_rate_per_account, rate_window),
    ]
    retry = await reserve(redis, counters)
    if retry:
        raise too_many(retry, "login attempts")


async def release_address(redis: Any, address: str) -> None:
    """Give back the address's reserved failure (the password was right)."""
    await redis.eval(_GIVE_BACK, 1, address_key(address))


async def record_login_success(redis: Any, settings: Settings, account: str, address: str, user_id: int) -> None:
    """Give back the reserved failures (clear the account's, return the address's one) and
    remember the address as known to the account."""
    await release_address(redis, address)
    pipe = redis.pipeline(transaction=True)
    pipe.delete(account_key(account))
    pipe.sadd(known_key(user_id), address)
    pipe.expire(known_key(user_id), settings.session_absolute_seconds)
    await pipe.execute()


async def remember_address(redis: Any, settings: Settings, user_id: int, address: str) -> None:
    """Trust `address` for `user_id` as a successful login does (signup calls this, finding 13)."""
    pipe = redis.pipeline(transaction=True)
    pipe.sadd(known_key(user_id), address)
    pipe.expire(known_key(user_id), settings.session_absolute_seconds)
    await pipe.execute()


async def count_signup_attempt(redis: Any, settings: Settings, address: str) -> None:
    """Reserve a signup attempt from `address`; raise 429 once over `Settings.signup_max_attempts`."""
    retry = await reserve(
        redis, [Counter(signup_key(address), settings.signup_max_attempts, settings.login_window_seconds)]
    )
    if retry:
        raise too_many(retry, "signup attempts")


async def forget_user(redis: Any, user_id: int) -> None:
    """Drop what is remembered about a deleted account (its known addresses)."""
    await redis.delete(known_key(user_id))

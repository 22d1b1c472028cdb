"""How many model calls may be in flight per endpoint, across every worker process, and 429s.

`SAGE_LLM_MAX_CONCURRENCY` (default 64; 0 for no cap) caps the calls in flight per endpoint (a
model brain and its base URL) for the whole deployment: every worker process of every host that
shares the Redis of `REDIS_URL`. A slot is a *lease* in a Redis sorted set (member = a random
token, score = when the lease expires), taken by a Lua script, so a worker that is SIGKILLed
holding slots gives them back when their leases expire (`LEASE_MS`; the holder renews its leases
while its calls last). Each process has one acquirer per endpoint: its waiters queue up locally
and one coroutine asks Redis for as many slots as there are waiters, then sleeps until a slot
is freed anywhere (a release publishes on `FREED_CHANNEL`, which one subscriber per process
hears) or `POLL_SECONDS` pass (a lost message, an expired lease). So hundreds of waiters do not
poll Redis.

Back-pressure (`throttled`): a 429 pauses new calls to the endpoint for its `Retry-After` (else
`DEFAULT_PAUSE_SECONDS`) and halves the endpoint's effective cap (once per pause, so a burst of
429s halves it once); every call that then succeeds adds one back, up to the cap. Both live in
Redis beside the leases, so every process slows down together.

If Redis cannot be reached the cap is not enforced (calls go ahead, with a warning): the model
call is what the task is waiting for, and the broker's own Redis trouble is handled elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from collections import deque
from typing import Any

import redis
import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENCY = 64
LEASE_MS = 30_000
RENEW_SECONDS = LEASE_MS / 1000 / 3
POLL_SECONDS = 1.0
DEFAULT_PAUSE_SECONDS = 1.0
#: How long a lowered cap lasts without successes to raise it (it then returns to the full cap).
LOWERED_CAP_TTL_MS = 600_000
FREED_CHANNEL = "sage:llm:freed"
#: Redis connections of the limiter per process (its scripts take well under a millisecond).
REDIS_CONNECTIONS = 16
KEY_PREFIX = "sage:llm:"

# KEYS: leases, pause, lowered cap. ARGV: now ms, lease ms, cap, token... -> {granted, pause ms}
_ACQUIRE = """
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return {0, pause} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local limit = tonumber(redis.call('GET', KEYS[3]) or ARGV[3])
local free = limit - redis.call('ZCARD', KEYS[1])
local granted = 0
for i = 4, #ARGV do
  if granted >= free then break end
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[i])
  granted = granted + 1
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return {granted, 0}
"""

# KEYS: leases, lowered cap. ARGV: token, cap, succeeded (1/0), channel, endpoint key.
_RELEASE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
  local limit = redis.call('GET', KEYS[2])
  if limit then
    limit = tonumber(limit) + 1
    if limit >= tonumber(ARGV[2]) then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], limit, 'KEEPTTL') end
  end
end
if removed == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return removed
"""

# KEYS: pause, lowered cap. ARGV: pause ms, cap, lowered-cap ttl ms. -> the effective cap
_THROTTLE = """
local current = tonumber(redis.call('GET', KEYS[2]) or ARGV[2])
if redis.call('PTTL', KEYS[1]) <= 0 then
  current = math.max(1, math.floor(current / 2))
  redis.call('SET', KEYS[2], current, 'PX', ARGV[3])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
end
return current
"""


def max_concurrency() -> int:
    """`SAGE_LLM_MAX_CONCURRENCY`: calls in flight per endpoint for the deployment (0: no cap)."""
    raw = os.environ.get("SAGE_LLM_MAX_CONCURRENCY", "").strip()
    try:
        value = int(raw) if raw else DEFAULT_MAX_CONCURRENCY
    except ValueError:
        return DEFAULT_MAX_CONCURRENCY
    return max(0, value)


class Slot:
    """One held slot; set `succeeded` when the call answered, so the cap may grow back."""

    def __init__(self, limiter: EndpointLimiter, token: str | None) -> None:
        self.limiter = limiter
        self.token = token
        self.succeeded = False

    async def __aenter__(self) -> Slot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.token is not None:
            await self.limiter.release(self.token, self.succeeded)


class SlotTimeout(Exception):
    """No slot came free before the caller's deadline."""


class EndpointLimiter:
    """The cap and back-pressure of one endpoint, as seen by this process (on its event loop)."""

    def __init__(self, hub: _Hub, endpoint: str, cap: int) -> None:
        self.hub = hub
        self.endpoint = endpoint
        self.cap = cap
        digest = hashlib.sha1(endpoint.encode()).hexdigest()[:16]
        self.leases, self.pause, self.lowered = (f"{KEY_PREFIX}{digest}:{part}" for part in ("leases", "pause", "cap"))
        self.waiters: deque[asyncio.Future[str | None]] = deque()
        self.held: set[str] = set()
        self.wake = asyncio.Event()
        self._acquirer: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None

    async def slot(self, deadline: float) -> Slot:
        """Wait (until `deadline`, a `time.monotonic()`) for a slot; SlotTimeout if none came."""
        if self.cap <= 0:
            return Slot(self, None)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        if self._acquirer is None or self._acquirer.done():
            self._acquirer = asyncio.create_task(self._acquire())
        try:
            # A timeout cancels `future` itself; a token granted as it fired is given back by `_abandon`.
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                token = await future
        except TimeoutError:
            self._abandon(future)
            raise SlotTimeout() from None
        except BaseException:
            self._abandon(future)
            raise
        return Slot(self, token)

    def _abandon(self, future: asyncio.Future[str | None]) -> None:
        if future.done() and not future.cancelled() and future.result() is not None:
            token = future.result()
            assert token is not None
            asyncio.create_task(self.release(token, False))  # noqa: RUF006 - best effort; the lease expires anyway
        future.cancel()

    async def _acquire(self) -> None:
        while True:
            live = [f for f in self.waiters if not f.done()]
            self.waiters = deque(live)
            if not live:
                return
            self.wake.clear()  # before asking, so a release published meanwhile is not missed
            tokens = [uuid.uuid4().hex for _ in live]
            try:
                granted, pause_ms = await self.hub.script(_ACQUIRE)(
                    keys=[self.leases, self.pause, self.lowered],
                    args=[int(time.time() * 1000), LEASE_MS, self.cap, *tokens],
                )
            except redis.RedisError as exc:
                self.hub.warn(f"the cap on model calls is not enforced, Redis is unreachable: {exc}")
                for future in live:
                    if not future.done():
                        future.set_result(None)
                continue
            for future, token in zip(live[:granted], tokens, strict=False):
                if future.done():  # given up meanwhile
                    asyncio.create_task(self.release(token, False))  # noqa: RUF006
                else:
                    self.held.add(token)
                    future.set_result(token)
            if self.held and (self._renewer is None or self._renewer.done()):
                self._renewer = asyncio.create_task(self._renew())
            if granted < len(live):
                await self.hub.listen()
                try:
                    await asyncio.wait_for(self.wake.wait(), pause_ms / 1000 if pause_ms else POLL_SECONDS)
                except TimeoutError:
                    pass

    async def release(self, token: str, succeeded: bool) -> None:
        """Give a slot back (and let the cap grow by one after a success)."""
        self.held.discard(token)
        try:
            await self.hub.script(_RELEASE)(
                keys=[self.leases, self.lowered],
                args=[token, self.cap, 1 if succeeded else 0, FREED_CHANNEL, self.endpoint],
            )
        except redis.RedisError as exc:
            self.hub.warn(f"could not release a model-call slot (its lease expires): {exc}")

    async def throttled(self, retry_after: float | None) -> float:
        """A 429: pause new calls for `retry_after` (else a short backoff) and halve the cap once
        per pause. Returns how long the throttled call should wait before trying again."""
        pause = retry_after if retry_after is not None and retry_after > 0 else DEFAULT_PAUSE_SECONDS
        if self.cap > 0:
            try:
                await self.hub.script(_THROTTLE)(
                    keys=[self.pause, self.lowered], args=[int(pause * 1000), self.cap, LOWERED_CAP_TTL_MS]
                )
            except redis.RedisError as exc:
                self.hub.warn(f"could not pause model calls after a 429: {exc}")
        return pause

    async def _renew(self) -> None:
        """Keep this process's leases alive while their calls last."""
        while self.held:
            await asyncio.sleep(RENEW_SECONDS)
            held = list(self.held)
            if not held:
                return
            expiry = int(time.time() * 1000) + LEASE_MS
            try:
                await self.hub.client.zadd(self.leases, dict.fromkeys(held, expiry), xx=True)
            except redis.RedisError as exc:
                self.hub.warn(f"could not renew model-call leases: {exc}")


class _Hub:
    """This process's Redis client, scripts, limiters and the one subscriber to FREED_CHANNEL."""

    def __init__(self, url: str) -> None:
        # A blocking pool: hundreds of calls releasing at once queue for a few connections
        # (the pub/sub subscriber holds one of its own) instead of failing or opening hundreds.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=REDIS_CONNECTIONS, timeout=10, socket_connect_timeout=3, socket_timeout=10
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.limiters: dict[tuple[str, int], EndpointLimiter] = {}
        self._scripts: dict[str, Any] = {}
        self._listener: asyncio.Task[None] | None = None
        self._warned_at = 0.0

    def script(self, source: str) -> Any:
        if source not in self._scripts:
            self._scripts[source] = self.client.register_script(source)
        return self._scripts[source]

    def warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._warned_at > 30:  # one line per half minute, not one per call
            self._warned_at = now
            logger.warning(text)

    async def listen(self) -> None:
        """Start the subscriber (once): a freed slot wakes that endpoint's acquirer."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen())
            await asyncio.sleep(0)

    async def _listen(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(FREED_CHANNEL)
                async for message in pubsub.listen():
                    endpoint = message.get("data")
                    endpoint = endpoint.decode() if isinstance(endpoint, bytes) else endpoint
                    for (name, _), limiter in self.limiters.items():
                        if name == endpoint:
                            limiter.wake.set()
            except (redis.RedisError, OSError) as exc:
                self.warn(f"model-call slot notifications lost, polling instead: {exc}")
                await asyncio.sleep(POLL_SECONDS)
            finally:
                try:
                    await pubsub.aclose()
                except (redis.RedisError, OSError):
                    pass


_hubs: dict[str, _Hub] = {}


def limiter_for(brain: str, base_url: str) -> EndpointLimiter:
    """The limiter of an endpoint (`brain` + `base_url`), on the running (process) event loop."""
    from actors.config import get_settings

    url = get_settings().redis_url
    hub = _hubs.get(url)
    if hub is None:
        hub = _hubs[url] = _Hub(url)
    endpoint, cap = f"{brain} {base_url}", max_concurrency()
    limiter = hub.limiters.get((endpoint, cap))
    if limiter is None:
        limiter = hub.limiters[(endpoint, cap)] = EndpointLimiter(hub, endpoint, cap)
    return limiter

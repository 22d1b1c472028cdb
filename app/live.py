"""Live fan-out: one Redis pub/sub connection per web process feeding bounded per-socket queues.

ARCHITECTURE.md decision 7. The hub pattern-subscribes to the session channels (events
published by workers and the web app after commit) and to the revocations channel (access removed: a member taken off a
team, or a logout). Each WebSocket registers a `Subscription` with a bounded queue; the hub never
blocks on a socket: when a queue is full the subscription is marked overflowed and the socket is
closed, and the client resumes by `seq`. Redis connections do not grow with the number of sockets.

When the Redis connection drops, the hub reconnects with backoff and tells every subscription to
`resync`, so each socket backfills from PostgreSQL whatever was published while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.connection import parse_url
from redis.exceptions import RedisError

from models.events import channel, namespace, revocations_channel
from models.schema import utcnow
from models.serialize import iso

# Message types and close codes are the vocabulary shared with the bundle (models/vocabulary.py).
from models.vocabulary import (
    ACCESS_REVOKED,
    CLOSE_POLICY,
    CLOSE_REVOKED,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    EPHEMERAL_TYPES,
)

log = logging.getLogger(__name__)


def is_ephemeral(item: Any) -> bool:
    """A live-only message: not stored, no `seq`, not replayed on reconnect."""
    return isinstance(item, dict) and item.get("type") in EPHEMERAL_TYPES and item.get("seq") is None


# Control items put on a subscription's queue beside event dicts.
RESYNC = "resync"
REVOKED = "revoked"
RECHECK = "recheck"
OVERFLOW = "overflow"


def decode(data: str | bytes) -> Any:
    """A pub/sub message's JSON (orjson: several times the standard library's speed)."""
    return orjson.loads(data)


class Published(dict):
    """A message as the hub received it: the decoded dict, and `raw`, the text it came as, which
    a socket forwards as it is (publishers encode as the web would: `models.events.encode_message`)."""

    __slots__ = ("raw",)

    def __init__(self, decoded: dict[str, Any], raw: str) -> None:
        super().__init__(decoded)
        self.raw = raw


@dataclass(eq=False)
class Subscription:
    """One socket's interest in one session."""

    session_id: int
    user_id: int
    team_id: int
    queue: asyncio.Queue = field(repr=False)
    overflowed: bool = False

    def offer(self, item: Any) -> None:
        """Queue `item` without blocking; on a full queue, flag the socket for closing."""
        if self.overflowed:
            return
        if is_ephemeral(item) and self.queue.qsize() >= self.queue.maxsize // 2:
            return  # live progress is dropped, never a reason to close a lagging socket
        # The queue holds one slot more than `limit`, kept for the item that says "go".
        if self.queue.qsize() >= self.queue.maxsize - 1:
            self.overflowed = True
            self.queue.put_nowait(OVERFLOW)
            return
        self.queue.put_nowait(item)


class Hub:
    """The process's single pub/sub reader and its registry of subscriptions."""

    def __init__(self, redis_url: str, queue_size: int = 256) -> None:
        self.redis_url = redis_url
        self.queue_size = queue_size
        self.by_session: dict[int, set[Subscription]] = defaultdict(set)
        self.by_user: dict[int, int] = defaultdict(int)
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._task: asyncio.Task | None = None
        self.prefix = namespace(int(parse_url(redis_url).get("db", 0) or 0))
        self.session_pattern = channel("*", self.prefix)
        self.revocations = revocations_channel(self.prefix)
        self.client_name = f"sage-live-hub-{os.getpid()}-{id(self):x}"

    # Registry

    def subscribe(self, session_id: int, user_id: int, team_id: int) -> Subscription:
        """Register a socket; events published from now on reach its queue."""
        sub = Subscription(session_id, user_id, team_id, asyncio.Queue(self.queue_size + 1))
        self.by_session[session_id].add(sub)
        self.by_user[user_id] += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a socket (idempotent)."""
        subs = self.by_session.get(sub.session_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self.by_session[sub.session_id]
        self.by_user[sub.user_id] -= 1
        if self.by_user[sub.user_id] <= 0:
            del self.by_user[sub.user_id]

    def sockets_of(self, user_id: int) -> int:
        """How many sockets `user_id` has open in this process."""
        return self.by_user.get(user_id, 0)

    @property
    def subscription_count(self) -> int:
        return sum(len(s) for s in self.by_session.values())

    # Dispatch

    def dispatch(self, channel_name: str, data: str) -> None:
        """Route one pub/sub message to the subscriptions it concerns.

        Every process hears every session's events and progress; one that no socket here
        watches is dropped before it is decoded (most are, with one process per core)."""
        subs: list[Subscription] = []
        if channel_name != self.revocations:
            try:
                session_id = int(channel_name.rsplit(":", 1)[1])
            except (IndexError, ValueError):
                return
            subs = list(self.by_session.get(session_id, ()))
            if not subs:
                return
        try:
            message = decode(data)
        except (TypeError, ValueError):
            log.warning("ignoring a malformed message on %s", channel_name)
            return
        if channel_name == self.revocations:
            if isinstance(message, dict):
                self._revoke(message)
            return
        if not isinstance(message, dict):
            log.warning("ignoring a malformed message on %s", channel_name)
            return
        # Decoded once for every socket of this process, and kept as text to forward.
        item = Published(message, data)
        for sub in subs:
            sub.offer(item)

    def _revoke(self, message: dict[str, Any]) -> None:
        """A removal from a team revokes that team's sockets of the user; a logout (no team)
        makes each of the user's sockets re-check its own login session (another device's
        logout must not close this one)."""
        user_id, team_id = message.get("user_id"), message.get("team_id")
        for subs in list(self.by_session.values()):
            for sub in list(subs):
                if sub.user_id != user_id:
                    continue
                if team_id is None:
                    sub.offer(RECHECK)
                elif sub.team_id == team_id:
                    sub.offer(REVOKED)

    def resync_all(self) -> None:
        """Ask every socket to backfill from the database (after a Redis outage)."""
        for subs in list(self.by_session.values()):
            for sub in list(subs):
                sub.offer(RESYNC)

    # The reader

    async def start(self) -> None:
        """Start the reader task; returns once it has subscribed (or after a short wait)."""
        self._task = asyncio.create_task(self._run(), name="live-hub")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout=5)

    async def stop(self) -> None:
        """Stop the reader and close its connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        first = True
        lean = _lean_target(self.redis_url)
        while True:  # each reader returns only by raising
            try:
                if lean is not None:
                    await self._run_lean(lean, first)
                else:
                    await self._run_redis_py(first)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                if self.connected.is_set():
                    first, backoff = False, 0.1
                self.connected.clear()
                log.warning("live hub lost Redis (%s); reconnecting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _connected(self, first: bool) -> None:
        self.connected.set()
        if not first:
            self.reconnects += 1
            log.info("live hub reconnected to Redis")
            self.resync_all()

    async def _run_lean(self, target: dict[str, Any], first: bool) -> None:
        """Read the pub/sub connection with `_PubSubReader` (plain `redis://` and `unix://` URLs):
        RESP2 pushes parsed where they arrive, each message dispatched without a coroutine of its
        own; redis-py's reader took several times the CPU per message (issue 13). Returns never:
        raises when the connection is lost or silent."""
        loop = asyncio.get_running_loop()
        reader = _PubSubReader(self.dispatch)
        if "path" in target:
            transport, _ = await asyncio.wait_for(loop.create_unix_connection(lambda: reader, target["path"]), 5)
        else:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: reader, target["host"], target["port"]), 5
            )
        try:
            commands: list[tuple[str, ...]] = []
            if target.get("password") is not None:
                user = target.get("username")
                commands.append(("AUTH", user, target["password"]) if user else ("AUTH", target["password"]))
            commands += [("CLIENT", "SETNAME", self.client_name), ("PSUBSCRIBE", self.session_pattern)]
            commands.append(("SUBSCRIBE", self.revocations))
            reader.send(*commands)
            await asyncio.wait_for(reader.subscribed(2), 5)
            self._connected(first)
            while True:  # the connection's health: a PING after 5 s of silence, lost after 15 s
                done, _ = await asyncio.wait({reader.lost}, timeout=5.0)
                if done:
                    raise reader.lost.result()
                silent = loop.time() - reader.last_data
                if silent > 15:
                    raise TimeoutError("no answer from Redis for 15 s")
                if silent > 5:
                    reader.send(("PING",))
        finally:
            transport.close()

    async def _run_redis_py(self, first: bool) -> None:
        """The same with redis-py's pub/sub (TLS and every other URL redis-py understands)."""
        client = aioredis.from_url(
            self.redis_url, decode_responses=True, health_check_interval=10, client_name=self.client_name
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(self.session_pattern)
            await pubsub.subscribe(self.revocations)
            self._connected(first)
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    continue
                name = message.get("channel")
                if message["type"] in {"message", "pmessage"} and isinstance(name, str):
                    self.dispatch(name, message["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()


def _lean_target(redis_url: str) -> dict[str, Any] | None:
    """Where `_PubSubReader` connects for `redis_url`: plain TCP or a Unix socket, with an optional
    password; None for anything else (TLS, ...), which redis-py's reader handles."""
    scheme = redis_url.split(":", 1)[0].lower()
    if scheme not in {"redis", "unix"}:
        return None
    options = parse_url(redis_url)
    known = {"host", "port", "db", "path", "username", "password", "connection_class"}
    if options.keys() - known:
        return None
    return options


def _parse(buf: bytearray, pos: int) -> tuple[Any, int] | None:
    """One RESP2 reply from `buf` at `pos`: (value, position after it), or None when the buffer
    does not hold all of it yet."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, head, after = buf[pos], buf[pos + 1 : end], end + 2
    if kind == 36:  # $ bulk string
        size = int(head)
        if size < 0:
            return None, after
        if len(buf) < after + size + 2:
            return None
        return bytes(buf[after : after + size]), after + size + 2
    if kind == 42:  # * array
        items = []
        for _ in range(int(head)):
            parsed = _parse(buf, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return items, after
    if kind == 58:  # : integer
        return int(head), after
    if kind == 43:  # + simple string
        return bytes(head), after
    if kind == 45:  # - error
        return RedisError(head.decode(errors="replace")), after
    raise RedisError(f"unexpected reply from Redis: {bytes(buf[pos : pos + 20])!r}")


class _PubSubReader(asyncio.Protocol):
    """The hub's Redis connection as a protocol: commands out, pushes parsed as they arrive."""

    def __init__(self, on_message: Callable[[str, str], None]) -> None:
        self.on_message = on_message
        self.buffer = bytearray()
        loop = asyncio.get_running_loop()
        self.lost: asyncio.Future = loop.create_future()
        self.confirmed = 0
        self._confirmations = asyncio.Event()
        self.last_data = loop.time()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, *commands: tuple[str | None, ...]) -> None:
        out = bytearray()
        for command in commands:
            parts = [str(p).encode() for p in command if p is not None]
            out += b"*%d\r\n" % len(parts)
            for part in parts:
                out += b"$%d\r\n%s\r\n" % (len(part), part)
        assert self.transport is not None
        self.transport.write(bytes(out))

    async def subscribed(self, count: int) -> None:
        """Wait until the server has confirmed `count` subscriptions."""
        while self.confirmed < count:
            self._confirmations.clear()
            await self._confirmations.wait()
            if self.lost.done():
                raise self.lost.result()

    def data_received(self, data: bytes) -> None:
        self.last_data = asyncio.get_running_loop().time()
        buf = self.buffer
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                parsed = _parse(buf, pos)
                if parsed is None:
                    break
                reply, pos = parsed
                self._handle(reply)
        except (RedisError, ValueError) as exc:
            self._fail(exc if isinstance(exc, RedisError) else RedisError(f"unreadable reply from Redis: {exc}"))
            return
        del buf[:pos]

    def _handle(self, reply: Any) -> None:
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind == b"pmessage" and len(reply) == 4:
                self.on_message(reply[2].decode(errors="replace"), reply[3].decode(errors="replace"))
            elif kind == b"message" and len(reply) == 3:
                self.on_message(reply[1].decode(errors="replace"), reply[2].decode(errors="replace"))
            elif kind in (b"subscribe", b"psubscribe"):
                self.confirmed += 1
                self._confirmations.set()
            return  # a PING's answer in subscribed mode is ["pong", ""]: seen, nothing to do
        if isinstance(reply, RedisError):
            self._fail(reply)

    def _fail(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self._confirmations.set()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(HubConnectionLost(str(exc) if exc else "Redis closed the connection"))
        self._confirmations.set()


class HubConnectionLost(RedisError):
    """The hub's connection to Redis closed."""


async def guard_inbound(
    receive: Callable[[], Awaitable[str | bytes | None]],
    max_bytes: int,
    max_messages: int,
    window_seconds: float,
) -> int:
    """Read what the client sends, so that nothing piles up unread, and judge it.

    The protocol needs nothing from the client, so each message is dropped once read. Returns
    the close code for an abusive client: 1009 for a message over `max_bytes`, 1008 for more
    than `max_messages` in `window_seconds` (issue 14, finding 2). A server in front may refuse
    an oversize frame earlier (hypercorn's `websocket_max_message_size`, set by `python -m app`).
    """
    loop = asyncio.get_running_loop()
    started, count = loop.time(), 0
    while True:
        message = await receive()
        # Quart hands an empty binary message over as None.
        size = len(message.encode("utf-8")) if isinstance(message, str) else len(message or b"")
        if size > max_bytes:
            return CLOSE_TOO_BIG
        now = loop.time()
        if now - started > window_seconds:
            started, count = now, 0
        count += 1
        if count > max_messages:
            return CLOSE_POLICY


async def stream_events(
    sub: Subscription,
    after: int,
    send: Callable[[dict[str, Any]], Awaitable[None]],
    load_events: Callable[[int], Awaitable[list[dict[str, Any]]]],
    poll_seconds: float = 10.0,
    still_allowed: Callable[[], Awaitable[bool]] | None = None,
    backlog: list[dict[str, Any]] | None = None,
) -> int:
    """Send the stored events after `after`, then live ones, in `seq` order, each once.

    The caller registers `sub` *before* calling, so an event committed between the backlog
    query and now is already on the queue (and skipped if the backlog had it). A gap in the live
    feed (a message lost, or published out of order by two workers) is filled from the database,
    as is anything missed while Redis was away (`RESYNC`) or while the feed was quiet for
    `poll_seconds`. On `RECHECK` (the user logged out somewhere) `still_allowed` decides whether
    this socket's own login is still alive. Returns the close code: 4403 when access was revoked, 4008 when the socket
    fell too far behind (the client resumes with `?after=`). `backlog`: the stored events after
    `after` when the caller has already read them (after registering `sub`), instead of a first load.
    """
    last = after

    async def catch_up(events: list[dict[str, Any]] | None = None) -> None:
        nonlocal last
        for event in await load_events(last) if events is None else events:
            if event["seq"] > last:
                await send(event)
                last = event["seq"]

    await catch_up(backlog)
    while True:
        try:
            item = await asyncio.wait_for(sub.queue.get(), poll_seconds)
        except TimeoutError:
            item = RESYNC
        if item == RECHECK:
            if still_allowed is None or await still_allowed():
                continue
            item = REVOKED
        if item == REVOKED:
            await send({"type": ACCESS_REVOKED, "seq": None, "at": utc_iso_now()})
            return CLOSE_REVOKED
        if item == OVERFLOW:
            return CLOSE_TOO_SLOW
        if item == RESYNC:
            await catch_up()
            continue
        if is_ephemeral(item):
            await send(item)
            continue
        seq = item.get("seq")
        if not isinstance(seq, int) or seq <= last:
            continue
        if seq == last + 1:
            await send(item)
            last = seq
        else:
            await catch_up()


def utc_iso_now() -> str:
    """Now, as docs/api.md writes timestamps."""
    return iso(utcnow())

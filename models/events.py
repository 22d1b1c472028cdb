"""The per-session event log (ARCHITECTURE.md decision 2).

An event is written in the same transaction as the state change it describes, with the next
`seq` of its session, and published to Redis only after that transaction commits. `seq` comes
from `execution_sessions.last_seq`, incremented under the session row's lock, so events of one
session commit in `seq` order and a reader of the table never sees a gap that later fills. The
lock is held from that statement to the COMMIT, so a transaction appends its events last.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import peewee
from redis.exceptions import RedisError

from models.brains import SESSION_USAGE_SQL
from models.db import db, execute_prepared, rows_of
from models.schema import EVENT_TYPES, ExecutionSession, SessionEvent, utcnow
from models.serialize import event_dict, event_message

logger = logging.getLogger(__name__)


def namespace(client_or_db: Any) -> str:
    """The pub/sub prefix for a Redis database number (or a client's database).

    Pub/sub channels are global to a Redis server, not per database number, so channels carry
    the database number: the test suite (db 15) and a developer's product (db 0) on the same
    Redis never hear each other's events.
    """
    if isinstance(client_or_db, int):
        number = client_or_db
    else:
        number = int(client_or_db.connection_pool.connection_kwargs.get("db", 0) or 0)
    return f"sage:{number}:"


def channel(session_id: int | str, prefix: str = "sage:0:") -> str:
    """The Redis pub/sub channel of one session (with `"*"`: the pattern of all sessions)."""
    return f"{prefix}session:{session_id}"


def revocations_channel(prefix: str = "sage:0:") -> str:
    """The channel that tells WebSockets a user lost access (see `app.live`)."""
    return f"{prefix}revocations"


class SessionMoved(LookupError):
    """`record_events(..., active_at=stage)` refused: the session is no longer active at that stage."""


# One round trip on PostgreSQL: advance the counter under the session row's lock by the number of
# events and insert them with consecutive seqs in the same statement (a state change writes one or
# two events; a rerun's copied stages write several at once). `{only}` may add a condition on the
# session row, checked on its newest version once the lock is held.
_APPEND_SQL = (
    "WITH next AS (UPDATE execution_sessions SET last_seq = last_seq + %s{move} WHERE id = %s{only} "
    "RETURNING id, last_seq, current_stage) "
    "INSERT INTO session_events (session_id, seq, type, payload, created_at) "
    "SELECT next.id, next.last_seq - %s + v.n, v.type, v.payload::jsonb, v.created_at "
    "FROM next, (VALUES {rows}) AS v (n, type, payload, created_at) RETURNING seq, (SELECT current_stage FROM next)"
)
# `advance_from`: the stage's last completion moves an active session on, under the same lock, when
# no task of the stage is unfinished as the statement sees them (it began before it had the lock: a
# completion that committed while it waited is not seen, and then the stage gate moves it).
_MOVE = (
    ", current_stage = CASE WHEN status = 'active' AND current_stage = %s AND NOT EXISTS (SELECT 1 FROM agent_tasks o "
    "WHERE o.session_id = execution_sessions.id AND o.stage = %s AND o.status <> 'completed') THEN %s "
    "ELSE current_stage END"
)


def record_event(session_id: int, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Append an event to the session's log; call inside `db.atomic()`. Returns the message."""
    return record_events(session_id, [(type_, payload)])[0]


_ACTIVE_AT = " AND status = 'active' AND current_stage = %s"


def record_events(
    session_id: int,
    events: list[tuple[str, dict[str, Any]]],
    active_at: int | None = None,
    sets: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Append events (type, payload) to the session's log in order, in one statement on PostgreSQL;
    call inside `db.atomic()`. Returns the messages, as `publish` sends them.

    With `active_at`, only while the session is active at that stage (decided under the session
    row's lock, which this statement takes): else it raises `SessionMoved` and the caller rolls
    its transaction back. A claim uses it to take the session's lock only at its end. `sets`: see
    `record_events_moving`."""
    return record_events_moving(session_id, events, active_at, sets=sets)[0]


def record_events_moving(
    session_id: int,
    events: list[tuple[str, dict[str, Any]]],
    active_at: int | None = None,
    advance_from: int | None = None,
    sets: dict[str, Any] | None = None,
    usage_change: list[Any] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """`record_events`, and with `advance_from` (PostgreSQL, at least one event) the same
    statement also moves the session from that stage to the next if it is active there and every
    task of the stage is completed. `sets` are more of the session row's fields to write in the
    same statement (by field name, as `ExecutionSession.update` takes them): a second UPDATE of
    the row would cost its own round trip, and its foreign keys' checks (PostgreSQL checks them
    again when a transaction updates a row version it wrote itself). `usage_change`
    (PostgreSQL only, at least one event) adds a task's model usage to the session's totals in the
    same statement (`models.brains.session_usage_change`). Returns the messages and whether the
    session is now at `advance_from + 1`."""
    for type_, _ in events:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
    if not db.in_transaction():
        raise RuntimeError("record_event must run inside a transaction")
    if usage_change is not None and not (events and isinstance(db.obj, peewee.PostgresqlDatabase)):
        raise ValueError("usage_change is added by the events' statement on PostgreSQL")
    if not events:
        if sets:
            ExecutionSession.update(**sets).where(ExecutionSession.id == session_id).execute()
        return [], False
    created_at = utcnow()
    if isinstance(db.obj, peewee.PostgresqlDatabase):
        count = len(events)
        rows = ", ".join(["(%s::integer, %s, %s, %s::timestamp)"] * count)
        move = "" if advance_from is None else _MOVE
        params: list[Any] = [count, *([] if advance_from is None else [advance_from, advance_from, advance_from + 1])]
        for name, value in (sets or {}).items():
            field = ExecutionSession._meta.fields[name]
            json_field = isinstance(field, peewee.JSONField)
            move += f", {field.column_name} = %s" + ("::jsonb" if json_field else "")
            params.append(None if value is None else to_json(value) if json_field else field.db_value(value))
        if usage_change is not None:
            move += f", usage = {SESSION_USAGE_SQL}"
            params += usage_change
        params += [session_id, *([] if active_at is None else [active_at]), count]
        for index, (type_, payload) in enumerate(events, 1):
            params += [index, type_, to_json(payload), created_at]
        sql = _APPEND_SQL.format(rows=rows, only="" if active_at is None else _ACTIVE_AT, move=move)
        found = execute_prepared(sql, params).fetchall()  # prepared: it runs for every task
        if not found:
            if active_at is not None:
                raise SessionMoved(f"session {session_id} is not active at stage {active_at}")
            raise LookupError(f"session {session_id} does not exist")
        first = min(r[0] for r in found)
        moved = advance_from is not None and found[0][1] == advance_from + 1
        # The message as `serialize.event_dict` builds it from the stored row, without re-reading it.
        return [
            event_message(session_id, first + index, type_, payload, created_at)
            for index, (type_, payload) in enumerate(events)
        ], moved
    if active_at is not None and not (
        ExecutionSession.select()
        .where(
            (ExecutionSession.id == session_id)
            & (ExecutionSession.status == "active")
            & (ExecutionSession.current_stage == active_at)
        )
        .exists()
    ):
        raise SessionMoved(f"session {session_id} is not active at stage {active_at}")
    if sets:
        ExecutionSession.update(**sets).where(ExecutionSession.id == session_id).execute()
    messages = []
    for type_, payload in events:
        rows = (
            ExecutionSession.update(last_seq=ExecutionSession.last_seq + 1)
            .where(ExecutionSession.id == session_id)
            .returning(ExecutionSession.last_seq)
            .execute()
        )
        seq = [r.last_seq for r in rows]
        if not seq:
            raise LookupError(f"session {session_id} does not exist")
        event = SessionEvent.create(session=session_id, seq=seq[0], type=type_, payload=payload, created_at=created_at)
        messages.append(event_dict(event))
    return messages, False


EVENTS_AFTER_SQL = "SELECT * FROM session_events WHERE session_id = %s AND seq > %s ORDER BY seq"


def events_after(session_id: int, after: int = 0) -> list[dict[str, Any]]:
    """Stored events of a session with `seq > after`, in order (one query; on PostgreSQL prepared
    prebuilt SQL: building the Peewee query cost more than running it, for every socket's catch-up)."""
    if isinstance(db.obj, peewee.PostgresqlDatabase):
        return [
            event_dict(row) for row in rows_of(execute_prepared(EVENTS_AFTER_SQL, (session_id, after)), SessionEvent)
        ]
    query = (
        SessionEvent.select()
        .where((SessionEvent.session == session_id) & (SessionEvent.seq > after))
        .order_by(SessionEvent.seq)
    )
    return [event_dict(e) for e in query]


#: How a published event is encoded: as the web's JSON provider encodes what it sends (orjson,
#: compact, keys sorted), so a WebSocket forwards the published text as it is (`app.live`).
_WIRE = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def to_json(value: Any, sort_keys: bool = False) -> str:
    """`value` as compact JSON text (orjson, several times faster than the standard encoder on the
    pipeline's outputs, snapshots and events): for a jsonb parameter, or with `sort_keys` as a
    message is published."""
    try:
        return orjson.dumps(value, option=_WIRE if sort_keys else orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # what orjson refuses (an int beyond 64 bits): the standard way
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False)


def encode_message(message: dict[str, Any]) -> str:
    """A message as it is published and sent to a WebSocket: compact JSON with sorted keys."""
    return to_json(message, sort_keys=True)


def publish(redis_client: Any, messages: Iterable[dict[str, Any]]) -> None:
    """Publish committed events on their session channels; losing one is harmless (clients backfill)."""
    messages = list(messages)
    if not messages:
        return
    prefix = namespace(redis_client)
    pipe = redis_client.pipeline(transaction=False)
    for message in messages:
        pipe.publish(channel(message["session_id"], prefix), encode_message(message))
    pipe.execute()


# --- the one publisher ----------------------------------------------------------------------

_client_lock = threading.Lock()
_client_factory: Callable[[], Any] | None = None
_client: Any = None


def use_redis(factory: Callable[[], Any] | None) -> None:
    """Set how the publisher gets its synchronous Redis client (a process's shared, thread-safe
    one: the workers' `actors.config.redis_client`); None goes back to a client of `REDIS_URL`."""
    global _client_factory, _client
    with _client_lock:
        _client_factory, _client = factory, None


def _redis() -> Any:
    global _client
    if _client_factory is not None:
        return _client_factory()
    with _client_lock:
        if _client is None:
            import redis

            from models.settings import Settings

            url = Settings.from_env().redis_url
            _client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        return _client


def publish_committed(messages: Iterable[dict[str, Any]]) -> None:
    """The one publisher of stored events: send them once their transaction has committed.

    Every writer of the log (`models.lifecycle`, and the web's decision journal through
    `app.publish`) hands its events here or follows this policy: stored events are the truth, so a
    failed publish is logged and never raised (the change it describes has committed; every
    client fills the gap by `seq`). Refuses to run inside a transaction, where a publish could
    announce an event that is then rolled back.
    """
    messages = list(messages)
    if not messages:
        return
    if db.obj is not None and db.in_transaction():
        raise RuntimeError("events are published after their transaction commits, never inside it")
    try:
        publish(_redis(), messages)
    except (RedisError, OSError) as exc:  # Redis down or slow: the log has the events
        logger.warning("could not publish %d event(s): %s", len(messages), exc)

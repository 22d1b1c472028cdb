"""The per-session event log (ARCHITECTURE.md decision 2).

An event is written in the same transaction as the state change it describes, with the next
`seq` of its session, and published to Redis only after that transaction commits. `seq` comes
from `execution_sessions.last_seq`, incremented under the session row's lock, so events of one
session commit in `seq` order and a reader of the table never sees a gap that later fills.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import peewee

from models.db import db
from models.schema import EVENT_TYPES, ExecutionSession, SessionEvent, utcnow
from models.serialize import event_dict


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


# One round trip on PostgreSQL: advance the counter under the session row's lock and insert the
# event with the new seq in the same statement (every state change of a session writes one).
_APPEND_SQL = (
    "WITH next AS (UPDATE execution_sessions SET last_seq = last_seq + 1 WHERE id = %s RETURNING id, last_seq) "
    "INSERT INTO session_events (session_id, seq, type, payload, created_at) "
    "SELECT id, last_seq, %s, %s, %s FROM next RETURNING seq"
)


def record_event(session_id: int, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Append an event to the session's log; call inside `db.atomic()`. Returns the message."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    if not db.in_transaction():
        raise RuntimeError("record_event must run inside a transaction")
    created_at = utcnow()
    if isinstance(db.obj, peewee.PostgresqlDatabase):
        encoded = SessionEvent.payload.db_value(payload)
        row = db.execute_sql(_APPEND_SQL, (session_id, type_, encoded, created_at)).fetchone()
        if row is None:
            raise LookupError(f"session {session_id} does not exist")
        event = SessionEvent(session=session_id, seq=row[0], type=type_, payload=payload, created_at=created_at)
        return event_dict(event)
    rows = (
        ExecutionSession.update(last_seq=ExecutionSession.last_seq + 1)
        .where(ExecutionSession.id == session_id)
        .returning(ExecutionSession.last_seq)
        .execute()
    )
    seqs = [r.last_seq for r in rows]
    if not seqs:
        raise LookupError(f"session {session_id} does not exist")
    event = SessionEvent.create(session=session_id, seq=seqs[0], type=type_, payload=payload, created_at=created_at)
    return event_dict(event)


def events_after(session_id: int, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """Stored events of a session with `seq > after`, in order (one query)."""
    query = (
        SessionEvent.select()
        .where((SessionEvent.session == session_id) & (SessionEvent.seq > after))
        .order_by(SessionEvent.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    return [event_dict(e) for e in query]


def publish(redis_client: Any, messages: Iterable[dict[str, Any]]) -> None:
    """Publish committed events on their session channels; losing one is harmless (clients backfill)."""
    messages = list(messages)
    if not messages:
        return
    prefix = namespace(redis_client)
    pipe = redis_client.pipeline(transaction=False)
    for message in messages:
        pipe.publish(channel(message["session_id"], prefix), json.dumps(message, separators=(",", ":")))
    pipe.execute()

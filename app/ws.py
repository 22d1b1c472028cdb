"""`WS /ws/{session_id}[?after=SEQ]`: the session's events, stored then live, each exactly once.

Everything is checked before `accept()`: the `Origin` (same host or ALLOWED_ORIGINS), the login
cookie, and read access to the session's team; a refusal is an HTTP answer in the error
envelope; so is a user's socket beyond `Settings.ws_max_sockets_per_user` in this process (429).
Then the socket subscribes to the process's hub, re-checks access (so a removal that raced the
handshake is not missed) and reads the backlog in the same snapshot (one statement on
PostgreSQL), and streams (`app.live.stream_events`) while it reads and drops what the client
sends, closing with 1009 or 1008 when that is too big or too much (`app.live.guard_inbound`).
"""

from __future__ import annotations

import asyncio

from quart import Blueprint, current_app, websocket

from app.access import AccountGone, require_team, session_team_id, team_access_with_rows
from app.csrf import origin_allowed
from app.db_thread import read_db, read_statement
from app.errors import ApiError, error_response
from app.live import guard_inbound, stream_events
from app.login_sessions import auth_id_from_cookie, login_user_id, refuse_gone_account, user_id_from_auth_id
from models.db import PostgresDatabase, db
from models.events import EVENTS_AFTER_SQL, events_after
from models.schema import SessionEvent
from models.serialize import event_dict
from models.vocabulary import CLOSE_POLICY, CLOSE_REVOKED, CLOSE_TOO_BIG, CLOSE_TOO_SLOW

blueprint = Blueprint("live", __name__)

CLOSE_REASONS = {
    CLOSE_REVOKED: "access revoked",
    CLOSE_TOO_SLOW: "too slow: reconnect with ?after=",
    CLOSE_TOO_BIG: "message too big: this socket takes no input",
    CLOSE_POLICY: "too many messages: this socket takes no input",
}


def _after() -> int:
    raw = websocket.args.get("after", "0")
    try:
        after = int(raw)
    except ValueError:
        after = -1
    if after < 0:
        raise ApiError(400, "after must be a whole number of 0 or more", fields={"after": "invalid"})
    return after


def _role_and_backlog(user_id: int, team_id: int, session_id: int, after: int) -> tuple[bool, list[dict]]:
    """Whether the user (and the account, which the handshake has just checked) may still read the
    team, and if so the stored events after `after`: on PostgreSQL one prepared statement, one
    snapshot by itself; elsewhere two queries, to run in one read-only unit."""
    try:
        if isinstance(db.obj, PostgresDatabase):
            rows = team_access_with_rows(user_id, team_id, "read", SessionEvent, EVENTS_AFTER_SQL, (session_id, after))
            return True, [event_dict(row) for row in sorted(rows, key=lambda row: row.seq)]
        require_team(user_id, team_id, "read", check_account=True)
    except (ApiError, AccountGone):
        return False, []
    return True, events_after(session_id, after)


@blueprint.websocket("/ws/<int:session_id>")
async def session_socket(session_id: int):
    """Authenticate, authorize, then stream the session's events."""
    settings = current_app.extensions["sage_settings"]
    if not origin_allowed(websocket.headers.get("Origin"), websocket.host, settings):
        return error_response(403, "cross-site WebSocket refused", "forbidden")
    try:
        after = _after()
        auth_id = auth_id_from_cookie()
        user_id = await login_user_id()  # the login from Redis only: the query below checks the account
        try:
            # The access query also asks whether the account still exists (one statement).
            team_id = await read_statement(session_team_id, user_id, session_id, "read")
        except AccountGone as gone:
            raise await refuse_gone_account(gone) from None
    except ApiError as error:
        return error_response(error.status, error.message, error.code, error.fields)

    hub = current_app.extensions["sage_hub"]
    if hub.sockets_of(user_id) >= settings.ws_max_sockets_per_user:
        return error_response(429, "too many open live views: close some tabs", "rate_limited")
    sub = hub.subscribe(session_id, user_id, team_id)
    try:
        # Access again now that the socket hears revocations, and the backlog after `after`, in
        # one snapshot: a removal that raced the handshake is seen by one or the other.
        run = read_statement if isinstance(db.obj, PostgresDatabase) else read_db
        allowed, backlog = await run(_role_and_backlog, user_id, team_id, session_id, after)
        if not allowed:
            return error_response(404, "session not found")
        await websocket.accept()

        async def send(message: dict) -> None:
            raw = getattr(message, "raw", None)  # a live message: sent as it was published
            if raw is not None:
                await websocket.send(raw)
            else:
                await websocket.send_json(message)

        async def load(last: int) -> list[dict]:
            return await read_db(events_after, session_id, last)

        async def still_allowed() -> bool:
            return await user_id_from_auth_id(auth_id, refresh=False) == user_id

        stream = asyncio.ensure_future(
            stream_events(
                sub,
                after,
                send,
                load,
                poll_seconds=settings.ws_poll_seconds,
                still_allowed=still_allowed,
                backlog=backlog,
            )
        )
        guard = asyncio.ensure_future(
            guard_inbound(
                websocket.receive,
                settings.ws_max_message_bytes,
                settings.ws_max_messages,
                settings.ws_message_window_seconds,
            )
        )
        try:
            done, _ = await asyncio.wait({stream, guard}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stream, guard):
                task.cancel()
            await asyncio.gather(stream, guard, return_exceptions=True)
        code = (stream if stream in done else guard).result()
        await websocket.close(code, CLOSE_REASONS[code])
    finally:
        hub.unsubscribe(sub)
    return None

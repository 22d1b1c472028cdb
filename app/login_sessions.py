"""Server-side login sessions in Redis, named by the random `auth_id` in quart-auth's cookie.

Keys (ARCHITECTURE.md decision 8; Redis may lose them, which only logs people out):

- `auth:session:{auth_id}`: hash `{user_id, created_at}` (created_at in epoch seconds). Its TTL is
  the idle timeout (`Settings.session_idle_seconds`), refreshed on every use but never past the
  absolute lifetime (`Settings.session_absolute_seconds`) counted from `created_at`.
- `auth:user:{user_id}`: set of that user's live auth ids, so all of them can be revoked at once.
  Members may outlive their session key (expired by TTL); they are pruned when next seen. A user
  has at most `Settings.max_logins_per_user` sessions: a new login beyond it drops the oldest.

The cookie holds only the signed auth id (`secrets.token_urlsafe(32)`), never the user id.
"""

from __future__ import annotations

import secrets
import time
from functools import wraps
from typing import Any

from quart import current_app, g, has_request_context, request
from quart_auth import AuthUser, current_user, login_user, logout_user

from app.access import AccountGone
from app.db_thread import run_db
from app.errors import ApiError
from models.settings import Settings
from models.users import user_exists

COOKIE_NAME = "sage_auth"


def session_key(auth_id: str) -> str:
    return f"auth:session:{auth_id}"


def user_key(user_id: int) -> str:
    return f"auth:user:{user_id}"


def _redis() -> Any:
    return current_app.extensions["sage_redis"]


def _settings() -> Settings:
    return current_app.extensions["sage_settings"]


async def create_session(redis: Any, settings: Settings, user_id: int) -> str:
    """Store a new login session for `user_id` and return its fresh auth id."""
    auth_id = secrets.token_urlsafe(32)
    now = int(time.time())
    pipe = redis.pipeline(transaction=True)
    pipe.hset(session_key(auth_id), mapping={"user_id": user_id, "created_at": now})
    pipe.expire(session_key(auth_id), min(settings.session_idle_seconds, settings.session_absolute_seconds))
    pipe.sadd(user_key(user_id), auth_id)
    pipe.expire(user_key(user_id), settings.session_absolute_seconds)
    pipe.scard(user_key(user_id))
    count = (await pipe.execute())[-1]
    if count > settings.max_logins_per_user:
        await _drop_oldest(redis, settings, user_id, keep=auth_id)
    return auth_id


async def _drop_oldest(redis: Any, settings: Settings, user_id: int, keep: str) -> None:
    """Keep at most `Settings.max_logins_per_user` live sessions: forget expired members of the
    user's set, then delete the oldest sessions beyond the cap (never `keep`, the new one).
    Their sockets are told through `revocations` by the caller's logout-style signal."""
    auth_ids = sorted(await redis.smembers(user_key(user_id)))
    pipe = redis.pipeline(transaction=False)
    for other in auth_ids:
        pipe.hget(session_key(other), "created_at")
    created = await pipe.execute()
    live: list[tuple[int, str]] = []
    gone: list[str] = []
    for other, at in zip(auth_ids, created, strict=True):
        if at is None:
            gone.append(other)
        elif other != keep:
            live.append((int(at), other))
    live.sort()
    excess = len(live) + 1 - settings.max_logins_per_user
    dropped = [other for _, other in live[: max(excess, 0)]]
    pipe = redis.pipeline(transaction=True)
    for other in dropped:
        pipe.delete(session_key(other))
    if gone or dropped:
        pipe.srem(user_key(user_id), *gone, *dropped)
    await pipe.execute()
    if dropped:
        from app.revocations import publish_revocation

        await publish_revocation(redis, user_id, None, "logout")


async def resolve_session(redis: Any, settings: Settings, auth_id: str | None, *, refresh: bool = True) -> int | None:
    """The user id of a live session, refreshing its idle timeout; None if absent or expired."""
    if not auth_id:
        return None
    idle = min(settings.session_idle_seconds, settings.session_absolute_seconds)
    if refresh:
        # Read and refresh in one round trip (every request makes it); EXPIRE does nothing to a key
        # that is gone. A session closer to its absolute end than `idle` is cut back just below.
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(session_key(auth_id))
        pipe.expire(session_key(auth_id), idle)
        record, _ = await pipe.execute()
    else:
        record = await redis.hgetall(session_key(auth_id))
    if not record:
        return None
    try:
        user_id = int(record["user_id"])
        created_at = int(record["created_at"])
    except (KeyError, ValueError):
        await redis.delete(session_key(auth_id))
        return None
    remaining = created_at + settings.session_absolute_seconds - int(time.time())
    if remaining <= 0:
        await delete_session(redis, auth_id, user_id)
        return None
    if refresh and remaining < idle:
        await redis.expire(session_key(auth_id), remaining)
    return user_id


async def delete_session(redis: Any, auth_id: str, user_id: int | None = None) -> int | None:
    """Delete one login session; return the user id it belonged to (None if it was gone)."""
    if user_id is None:
        raw = await redis.hget(session_key(auth_id), "user_id")
        user_id = int(raw) if raw else None
    pipe = redis.pipeline(transaction=True)
    pipe.delete(session_key(auth_id))
    if user_id is not None:
        pipe.srem(user_key(user_id), auth_id)
    await pipe.execute()
    return user_id


async def delete_all_sessions(redis: Any, user_id: int) -> int:
    """Delete every login session of `user_id` (password change, account removal); return how many."""
    auth_ids = await redis.smembers(user_key(user_id))
    pipe = redis.pipeline(transaction=True)
    for auth_id in auth_ids:
        pipe.delete(session_key(auth_id))
    pipe.delete(user_key(user_id))
    results = await pipe.execute()
    return sum(results[:-1])


# The request-side helpers below work in a request or a websocket context of the app.


def auth_id_from_cookie() -> str | None:
    """The auth id in the request's (or websocket handshake's) signed cookie, if the signature is valid."""
    return current_user.auth_id


async def user_id_from_auth_id(auth_id: str | None, *, refresh: bool = True) -> int | None:
    """The user id of the live session `auth_id` in the current app, or None.

    The WebSocket handshake calls `await user_id_from_auth_id(auth_id_from_cookie())` before
    `accept()`; pass `refresh=False` to re-check a session without extending it. Every call also
    checks that the user still exists (issue 14, finding 11): a deleted account's cookie is refused
    and its sessions are dropped.
    """
    user_id = await resolve_session(_redis(), _settings(), auth_id, refresh=refresh)
    if user_id is not None and not await run_db(user_exists, user_id):
        # The account is gone (deleted by another path than DELETE /auth/me): so is every login of it.
        await delete_all_sessions(_redis(), user_id)
        return None
    return user_id


async def optional_user_id() -> int | None:
    """The logged-in user's id, or None (pages use this; the result is cached on `g`)."""
    if "sage_user_id" not in g:
        g.sage_user_id = await user_id_from_auth_id(auth_id_from_cookie())
    return g.sage_user_id


async def current_user_id() -> int:
    """The logged-in user's id.

    Raises:
        ApiError: 401 `unauthenticated` when there is no valid, live session cookie.
    """
    user_id = await optional_user_id()
    if user_id is None:
        raise ApiError(401, "log in first")
    return user_id


async def login_user_id() -> int:
    """The user id of the request's live login session, *without* asking the database whether the
    account still exists: only for views under `login_required_access_checked`, whose access check
    asks that in the view's own query.

    Raises:
        ApiError: 401 `unauthenticated` when there is no valid, live session cookie.
    """
    if "sage_user_id" in g:  # already verified (or refused) in this request
        user_id = g.sage_user_id
    else:
        if "sage_login_user_id" not in g:
            from app.fast_reads import LOGIN_SCOPE_KEY

            # `app.fast_reads` may have resolved this request's login (or found none) already.
            scope: dict[str, Any] = request.scope if has_request_context() else {}  # type: ignore[assignment]
            if LOGIN_SCOPE_KEY in scope:
                g.sage_login_user_id = scope[LOGIN_SCOPE_KEY]
            else:
                g.sage_login_user_id = await resolve_session(_redis(), _settings(), auth_id_from_cookie())
        user_id = g.sage_login_user_id
    if user_id is None:
        raise ApiError(401, "log in first")
    return user_id


def login_required_access_checked(func):
    """`login_required` for read views whose access check also checks the account (`app.access`'s
    `check_account=True`, raising `AccountGone`): one unit of work per read instead of two.

    The 401 for a missing or expired login still comes before anything else; a login whose account
    is gone gets the same 401 (and loses every login session) once the view's query finds it so.
    """

    @wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        await login_user_id()
        try:
            return await current_app.ensure_async(func)(*args, **kwargs)
        except AccountGone as gone:
            raise await refuse_gone_account(gone) from None

    return wrapper


async def refuse_gone_account(gone: AccountGone) -> ApiError:
    """An access check found the account deleted: end all its logins; the 401 to raise."""
    await delete_all_sessions(_redis(), gone.user_id)
    g.sage_user_id = None
    return ApiError(401, "log in first")


def login_required(func):
    """Route decorator: answer 401 before anything else (body validation included) unless logged in.

    Apply it below the route decorator and above `validate_request`; read the id with
    `await current_user_id()` (cached, no second Redis round trip).
    """

    @wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        await current_user_id()
        return await current_app.ensure_async(func)(*args, **kwargs)

    return wrapper


async def start_login(user_id: int) -> str:
    """Log `user_id` in: drop the session the request came with (rotation), issue a fresh auth id and cookie."""
    old = auth_id_from_cookie()
    if old:
        await delete_session(_redis(), old)
    auth_id = await create_session(_redis(), _settings(), user_id)
    login_user(AuthUser(auth_id), remember=True)
    g.sage_user_id = user_id
    return auth_id


def forget_cookie() -> None:
    """Clear the login cookie of this response (its server-side session is already gone)."""
    logout_user()
    g.sage_user_id = None


async def end_login() -> int | None:
    """Log out: delete the server-side session and the cookie; return the user id it belonged to."""
    auth_id = auth_id_from_cookie()
    user_id = await delete_session(_redis(), auth_id) if auth_id else None
    logout_user()
    g.sage_user_id = None
    return user_id

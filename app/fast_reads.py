"""The hot reads answered before Quart's request machinery, when nothing about them is unusual.

At 64 connections a read's time in a web process went mostly to Quart and hypercorn around the
view: the request context and its globals, the before- and after-request hooks, URL matching,
the response object and its conversion (issue 13, third pass). For the reads a client repeats
most, a `GET` of

- `/sessions/{id}`, `/sessions/{id}/timeline`, `/replay` and `/decisions` (no query string) and
  `/sessions/{id}/events` (`?after=`) whose body is kept (`app.read_cache`), and
- `/teams/{id}/sessions` (`?status=&limit=&before=`),

`FastReads` does what those hooks and the view do for such a request, with the same functions,
and sends the same bytes: the Host check (production), the login (quart-auth's cookie, its
server-side session in Redis, refreshed), the access and account check with the version in one
statement, the kept body or 304 by ETag, and the strict headers of `app.security`.

Anything else goes to Quart unchanged, and so does such a read the moment it is not the plain
case: no login cookie or no live login, a Quart session cookie, a repeated header, a query the
view would refuse, a miss in the body cache, a 403 or 404, a deleted account, any error. Quart then runs the request from the
start, so every refusal keeps its one source (`app.errors`' envelope, `refuse_gone_account`);
what ran here only read, and the login it resolved is handed on (the request's one Redis round trip).
`tests/test_fast_reads.py` holds both paths to the same answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from quart import Quart
from quart_schema.conversion import model_load
from werkzeug.datastructures import MultiDict
from werkzeug.http import parse_cookie, parse_etags
from werkzeug.sansio.utils import get_host

from app.access import AccountGone
from app.errors import ApiError
from app.security import HEADERS, host_allowed

Scope = Any  # hypercorn's typed ASGI dicts; this module reads a few plain keys of them
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")
logger = logging.getLogger(__name__)

# Ids as Quart's `int` converter takes them, without leading zeros and within BIGINT (anything
# else goes to Quart, which answers as it always has).
_SESSION_VIEW = re.compile(r"/sessions/([1-9][0-9]{0,17})(/timeline|/replay|/decisions|/events)?")
_TEAM_SESSIONS = re.compile(r"/teams/([1-9][0-9]{0,17})/sessions")
_SECURITY_HEADERS = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in HEADERS.items()]
_JSON = (b"content-type", b"application/json")
#: Where the login this path resolved waits for Quart (`app.login_sessions.login_user_id`).
LOGIN_SCOPE_KEY = "sage.login_user_id"
_NO_CACHE = (b"cache-control", b"private, no-cache")


class _Declined(Exception):
    """This request is not the plain case: Quart answers it."""


class FastReads:
    """ASGI middleware in front of `app.asgi_app` (see the module docstring)."""

    def __init__(self, app: Quart, inner: ASGIApp) -> None:
        self.app, self.inner = app, inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            if path.startswith(("/sessions/", "/teams/")):
                try:
                    answer = await self._answer(scope, path)
                except (_Declined, ApiError, AccountGone):
                    answer = None  # not the plain case, or a refusal: Quart answers it as always
                except Exception:  # an outage or a surprise: Quart runs the request from the start
                    logger.warning("fast read of %s fell back to Quart", path, exc_info=True)
                    answer = None
                if answer is not None:
                    status, headers, body = answer
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    return
        await self.inner(scope, receive, send)

    async def _answer(self, scope: Scope, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        view = _SESSION_VIEW.fullmatch(path)
        team = None if view else _TEAM_SESSIONS.fullmatch(path)
        if view is None and team is None:
            return None
        headers = _headers(scope)
        user_id = await self._login(scope, headers)
        if view is not None:
            return await self._session_view(scope, headers, user_id, int(view.group(1)), view.group(2) or "")
        assert team is not None
        return await self._team_sessions(scope, user_id, int(team.group(1)))

    def _query(self, scope: Scope, model_class: type[T]) -> T:
        """The view's `query_args`, as `app.validation.check_query` and quart-schema's
        `validate_querystring` make them from Quart's `request.args`; `_Declined` where they refuse."""
        args = MultiDict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True, errors="werkzeug.url_quote"))
        data: dict[str, Any] = {}
        for key in args:
            if "\x00" in key or any("\x00" in value for value in args.getlist(key)):
                raise _Declined  # check_query's 400
            if key.endswith("[]"):
                data[key.removesuffix("[]")] = args.getlist(key)
            else:
                data[key] = args.getlist(key) if len(args.getlist(key)) > 1 else args[key]
        config = self.app.config
        return model_load(
            data,
            model_class,
            _Declined,
            decamelize=config["QUART_SCHEMA_CONVERT_CASING"],
            preference=config["QUART_SCHEMA_CONVERSION_PREFERENCE"],
        )

    async def _login(self, scope: Scope, headers: dict[bytes, bytes]) -> int:
        """The caller's user id, as `login_user_id` finds it; `_Declined` for anything else."""
        from app.login_sessions import resolve_session

        app = self.app
        settings = app.extensions["sage_settings"]
        if settings.production:
            host = headers.get(b"host")
            if host is None or not host_allowed(
                get_host(scope["scheme"], host.decode("latin1"), scope.get("server")), settings
            ):
                raise _Declined
        raw = headers.get(b"cookie")
        if raw is None:
            raise _Declined
        cookies = parse_cookie(raw.decode("latin1"))
        if app.config["SESSION_COOKIE_NAME"] in cookies:
            raise _Declined  # Quart's own session would be opened (and maybe saved): its path
        auth = app.extensions["QUART_AUTH"][0]
        token = cookies.get(auth.cookie_name)
        auth_id = None if token is None else auth.load_token(token, app)
        if auth_id is None:
            raise _Declined
        user_id = await resolve_session(app.extensions["sage_redis"], settings, auth_id)
        # Should Quart answer after all (no live login, a body to build, a refusal), its
        # `login_user_id` takes this request's login (or its absence) from here rather than
        # asking Redis a second time.
        scope[LOGIN_SCOPE_KEY] = user_id
        if user_id is None:
            raise _Declined
        return user_id

    async def _session_view(
        self, scope: Scope, headers: dict[bytes, bytes], user_id: int, session_id: int, suffix: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        from app.db_thread import read_statement
        from app.sessions import READS, EventsQuery, body_cache
        from models import queries

        read = READS[suffix]
        column = queries.session_version_sql(read.parts)
        if column is None:
            raise _Declined
        if suffix == "/events":
            args: tuple[Any, ...] = (self._query(scope, EventsQuery).after,)
        elif scope["query_string"]:
            raise _Declined  # these views take no query: Quart's to answer as ever
        else:
            args = ()
        kept = await read_statement(read.peek, column, body_cache(self.app), user_id, session_id, *args)
        if kept is None:
            raise _Declined  # built by the view, in one snapshot with its version
        body, etag = kept
        tag = (b"etag", b'"' + etag.encode("latin1") + b'"')
        if_none_match = headers.get(b"if-none-match")
        if if_none_match is not None and parse_etags(if_none_match.decode("latin1")).contains(etag):
            return 304, [tag, _NO_CACHE, *_SECURITY_HEADERS], b""
        length = (b"content-length", str(len(body)).encode())
        return 200, [_JSON, length, tag, _NO_CACHE, *_SECURITY_HEADERS], body

    async def _team_sessions(
        self, scope: Scope, user_id: int, team_id: int
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        from app.db_thread import read_statement
        from app.sessions import SessionList, list_at_once
        from models.db import PostgresDatabase, db

        if not isinstance(db.obj, PostgresDatabase):
            raise _Declined
        page = await read_statement(list_at_once, user_id, team_id, self._query(scope, SessionList))
        body = json_response_body(self.app, page)
        return 200, [_JSON, (b"content-length", str(len(body)).encode()), *_SECURITY_HEADERS], body


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by (lower-case) name; `_Declined` when one this path reads is repeated."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in found and name in (b"cookie", b"host", b"if-none-match"):
            raise _Declined
        found[name] = value
    return found


def json_response_body(app: Quart, obj: Any) -> bytes:
    """The body `jsonify(obj)` sends in `app` (its JSON provider's `response`: indented in debug
    unless told compact, else compact; a final newline)."""
    provider: Any = app.json
    if (provider.compact is None and app.debug) or provider.compact is False:
        text = provider.dumps(obj, indent=2)
    else:
        text = provider.dumps(obj, separators=(",", ":"))
    return (text + "\n").encode()


def install(app: Quart) -> None:
    """Put `FastReads` in front of `app`'s ASGI handling (the test client goes through it too)."""
    app.asgi_app = FastReads(app, app.asgi_app)  # type: ignore[method-assign]

"""The Quart application: `create_app(settings=None)` builds it, `python -m app` serves it."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, cast

import redis.asyncio as aioredis
from itsdangerous import BadSignature
from quart import Quart, current_app
from quart.sessions import SecureCookieSessionInterface
from quart_auth import QuartAuth
from quart_schema import Info, QuartSchema

from app import csrf, fast_reads, security, static_assets
from app.errors import register_error_handlers
from app.json_provider import use_orjson
from app.live import Hub
from app.login_sessions import COOKIE_NAME
from app.passwords import HashPool
from app.schemas import DocumentProvider, document_responses
from models.db import close_database, db, init_database
from models.settings import Settings

log = logging.getLogger(__name__)


class CookieSessions(SecureCookieSessionInterface):
    """Quart's signed-cookie session, but a request without its cookie gets the empty session
    without a signer being built for it first (issue 13: 2-4% of a read's CPU). The app keeps its
    login in quart-auth's cookie and Redis (`app.login_sessions`), not here."""

    async def open_session(self, app: Quart, request: Any) -> Any:
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return await super().open_session(app, request)


class CheckedCookieAuth(QuartAuth):
    """quart-auth, remembering the login cookies whose signature it has already checked.

    Every request carries the same cookie, and checking its HMAC-SHA512 signature again was 4% of
    a read's CPU (issue 13). A cookie whose signature (with these secret keys and salt) checked out
    once is remembered with the time it was signed; its age is checked on every request exactly as
    itsdangerous checks it (`max_age` = QUART_AUTH_DURATION: refused when older, or signed in the
    future). Only valid cookies are remembered, at most `MAX_REMEMBERED`, least recently used first
    to go; the server-side login (`app.login_sessions`) is still looked up on every request.
    """

    MAX_REMEMBERED = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checked: OrderedDict[tuple, tuple[str, int]] = OrderedDict()
        self._checked_lock = threading.Lock()

    def load_token(self, token: str, app: Quart | None = None) -> str | None:
        app = app or current_app
        keys = (*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.secret_key)  # current key last
        key = (token, keys, self.salt)
        with self._checked_lock:
            found = self._checked.get(key)
            if found is not None:
                self._checked.move_to_end(key)
        if found is None:
            try:
                serializer = self.serializer_class(list(keys), cast(str, self.salt))
                value, signed = serializer.loads(token, return_timestamp=True)
            except BadSignature:  # SignatureExpired included
                return None
            found = (value, int(signed.timestamp()))
            with self._checked_lock:
                self._checked[key] = found
                while len(self._checked) > self.MAX_REMEMBERED:
                    self._checked.popitem(last=False)
        value, signed_at = found
        if self.duration is not None:
            age = int(time.time()) - signed_at
            if age > self.duration or age < 0:
                return None
        return value


def create_app(settings: Settings | None = None, **overrides: Any) -> Quart:
    """Build the app: defaults, then the environment, then `overrides` (tests use them)."""
    settings = (
        (settings or Settings.from_env()).with_overrides(**overrides)
        if overrides
        else (settings or Settings.from_env())
    )
    app = Quart(__name__, template_folder="../templates", static_folder="../static")
    app.session_interface = CookieSessions()
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        # The whole body must arrive within this many seconds (a slowloris body gets 408).
        BODY_TIMEOUT=settings.body_timeout_seconds,
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        JSON_SORT_KEYS=False,
        # The cookie carries only a signed random auth id; app.login_sessions maps it to a user.
        QUART_AUTH_COOKIE_NAME=COOKIE_NAME,
        QUART_AUTH_COOKIE_HTTP_ONLY=True,
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_COOKIE_SECURE=settings.cookie_secure,
        QUART_AUTH_DURATION=settings.session_absolute_seconds,
        QUART_AUTH_SALT="sage-mode login",
    )
    app.extensions["sage_settings"] = settings
    QuartSchema(
        app,
        info=Info(title="Sage Mode", version="0.1.0"),
        swagger_ui_path=None,
        scalar_ui_path=None,
        redoc_ui_path=None,
        openapi_provider_class=DocumentProvider,
    )
    use_orjson(app)  # after QuartSchema, whose provider it extends
    CheckedCookieAuth(app)
    register_error_handlers(app)
    csrf.register(app)
    static_assets.register(app)
    security.register(app)

    from app.apidocs import blueprint as apidocs
    from app.auth import blueprint as auth
    from app.brains import blueprint as brains
    from app.decisions import blueprint as decisions
    from app.health import blueprint as health
    from app.invitations import blueprint as invitations
    from app.metrics import blueprint as metrics
    from app.pages import blueprint as pages
    from app.search import blueprint as search
    from app.sessions import blueprint as sessions
    from app.steer import blueprint as steer
    from app.steer_pages import blueprint as steer_pages
    from app.teams import blueprint as teams
    from app.ws import blueprint as live

    for blueprint in (
        health,
        metrics,
        apidocs,
        auth,
        teams,
        invitations,
        sessions,
        brains,
        steer,
        search,
        decisions,
        live,
        pages,
        steer_pages,
    ):
        app.register_blueprint(blueprint)

    document_responses(app)
    fast_reads.install(app)

    @app.before_serving
    async def open_resources() -> None:
        # A process that already bound the models (the test suite, a script) keeps its pool.
        app.extensions["sage_owns_db"] = db.obj is None
        if app.extensions["sage_owns_db"]:
            init_database(settings.database_url, settings.db_max_connections)
        # A bounded pool that makes a burst of requests wait for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, decode_responses=True, health_check_interval=30, max_connections=64, timeout=10
        )
        app.extensions["sage_redis"] = aioredis.Redis(connection_pool=pool)
        app.extensions["sage_hash_pool"] = HashPool(settings.bcrypt_threads)
        hub = Hub(settings.redis_url, queue_size=settings.ws_queue_size)
        app.extensions["sage_hub"] = hub
        await hub.start()

    @app.after_serving
    async def close_resources() -> None:
        hub = app.extensions.pop("sage_hub", None)
        if hub is not None:
            await hub.stop()
        hash_pool = app.extensions.pop("sage_hash_pool", None)
        if hash_pool is not None:
            hash_pool.close()
        client = app.extensions.pop("sage_redis", None)
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()
        if app.extensions.pop("sage_owns_db", False):
            close_database()

    return app

"""The Quart application: `create_app(settings=None)` builds it, `python -m app` serves it."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from quart import Quart
from quart_schema import Info, QuartSchema

from app.errors import register_error_handlers
from models.db import close_database, db, init_database
from models.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, **overrides: Any) -> Quart:
    """Build the app: defaults, then the environment, then `overrides` (tests use them)."""
    settings = (
        (settings or Settings.from_env()).with_overrides(**overrides)
        if overrides
        else (settings or Settings.from_env())
    )
    app = Quart(__name__, template_folder="../templates", static_folder="../static")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        JSON_SORT_KEYS=False,
    )
    app.extensions["sage_settings"] = settings
    QuartSchema(app, info=Info(title="Sage Mode", version="0.1.0"), swagger_ui_path=None, scalar_ui_path=None)
    register_error_handlers(app)

    from app.health import blueprint as health

    app.register_blueprint(health)

    @app.before_serving
    async def open_resources() -> None:
        # A process that already bound the models (the test suite, a script) keeps its pool.
        app.extensions["sage_owns_db"] = db.obj is None
        if app.extensions["sage_owns_db"]:
            init_database(settings.database_url, settings.db_max_connections)
        app.extensions["sage_redis"] = aioredis.from_url(
            settings.redis_url, decode_responses=True, health_check_interval=30
        )

    @app.after_serving
    async def close_resources() -> None:
        client = app.extensions.pop("sage_redis", None)
        if client is not None:
            await client.aclose()
        if app.extensions.pop("sage_owns_db", False):
            close_database()

    return app

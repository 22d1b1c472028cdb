"""The start-up check shared by `python -m app` and `python -m actors worker`."""

from __future__ import annotations

import redis

from models.db import DatabaseUnavailable, check_database, make_database
from models.settings import Settings


def preflight(settings: Settings) -> str | None:
    """One readable line naming what is unreachable, or None when PostgreSQL and Redis answer.

    It checks with a database of its own and leaves the shared proxy unbound: `python -m app`
    binds its pool (DB_MAX_CONNECTIONS) at start-up only when nothing is bound yet.
    """
    database = make_database(settings.database_url, 1)
    try:
        check_database(database)
    except DatabaseUnavailable as exc:
        return f"cannot reach the database at DATABASE_URL: {exc}"
    finally:
        if hasattr(database, "close_all"):
            database.close_all()
        elif not database.is_closed():
            database.close()
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"cannot reach Redis at REDIS_URL: {exc}"
    return None

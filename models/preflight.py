"""The start-up check shared by `python -m app` and `python -m actors worker`."""

from __future__ import annotations

import redis

from models.db import DatabaseUnavailable, check_database, close_database, init_database
from models.settings import Settings


def preflight(settings: Settings) -> str | None:
    """One readable line naming what is unreachable, or None when PostgreSQL and Redis answer."""
    init_database(settings.database_url, 2)
    try:
        check_database()
    except DatabaseUnavailable as exc:
        return f"cannot reach the database at DATABASE_URL: {exc}"
    finally:
        close_database()
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"cannot reach Redis at REDIS_URL: {exc}"
    return None

"""The start-up checks shared by `python -m app` and `python -m actors worker`."""

from __future__ import annotations

import sys

import redis

from models.db import DatabaseUnavailable, check_database, make_database
from models.settings import ConfigError, Settings


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


def settings_or_exit() -> Settings:
    """Settings from the environment with both services reachable, or exit with one readable line.

    Exit code 2 for a configuration error, 1 for an unreachable service.
    """
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"sage-mode: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    problem = preflight(settings)
    if problem:
        print(f"sage-mode: {problem}", file=sys.stderr)
        raise SystemExit(1)
    return settings

"""The settings and the Redis publishing client the workers use, read once per process."""

from __future__ import annotations

import threading

import redis

from models import events as _events
from models.settings import Settings

_lock = threading.Lock()
_settings: Settings | None = None
_redis: redis.Redis | None = None


def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _settings
    with _lock:
        if _settings is None:
            _settings = Settings.from_env()
        return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace the settings (tests shorten time limits this way); None re-reads the environment."""
    global _settings, _redis
    with _lock:
        _settings = settings
        if _redis is not None:
            _redis.close()
        _redis = None


def redis_client() -> redis.Redis:
    """A shared synchronous client for publishing events after commit (thread-safe pool)."""
    global _redis
    settings = get_settings()
    with _lock:
        if _redis is None:
            _redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
        return _redis


# The lifecycle's one publisher (in models.events) sends through this client, so
# `set_settings` in tests moves it along with everything else of the workers.
_events.use_redis(redis_client)

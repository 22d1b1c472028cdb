"""The Redis broker, configured from settings, with the project's middleware."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from actors.middleware import DatabaseMiddleware
from models.settings import Settings


def redis_broker(settings: Settings) -> RedisBroker:
    """A Redis broker whose dead-worker detection takes seconds, not minutes."""
    broker = RedisBroker(
        url=settings.redis_url,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        dead_message_ttl=settings.dead_message_ttl_ms,
    )
    broker.add_middleware(DatabaseMiddleware(settings))
    return broker


def stub_broker(settings: Settings) -> StubBroker:
    """An in-memory broker for tests, with the same middleware."""
    broker = StubBroker()
    broker.add_middleware(DatabaseMiddleware(settings))
    return broker


def setup_broker(settings: Settings | None = None, *, stub: bool = False) -> dramatiq.Broker:
    """Create the broker and make it Dramatiq's global one (actors bind to it when declared)."""
    settings = settings or Settings.from_env()
    broker = stub_broker(settings) if stub else redis_broker(settings)
    dramatiq.set_broker(broker)
    return broker

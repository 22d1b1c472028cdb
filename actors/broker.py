"""The Redis broker, configured from settings, with the project's middleware."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from actors.middleware import DatabaseMiddleware
from models.settings import Settings

#: Out of a million broker commands, how many also requeue dead workers' messages. Dramatiq's
#: default (1000) makes an idle worker notice a dead one only after ~1000 polls (minutes at a
#: 100 ms worker timeout); 100000 makes it about a second after the heartbeat timeout. The check
#: is one ZRANGEBYSCORE on a small sorted set.
MAINTENANCE_CHANCE = 100_000


def redis_broker(settings: Settings) -> RedisBroker:
    """A Redis broker whose dead-worker detection takes seconds, not minutes."""
    from actors.sweeper import SweeperMiddleware

    broker = RedisBroker(
        url=settings.redis_url,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        dead_message_ttl=settings.dead_message_ttl_ms,
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(DatabaseMiddleware(settings))
    broker.add_middleware(SweeperMiddleware(settings))
    return broker


def stub_broker(settings: Settings, middleware: list | None = None) -> StubBroker:
    """An in-memory broker for tests, with the same middleware (but no background sweeper)."""
    broker = StubBroker(middleware=middleware)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(DatabaseMiddleware(settings))
    return broker


def setup_broker(settings: Settings | None = None, *, stub: bool = False) -> dramatiq.Broker:
    """Create the broker and make it Dramatiq's global one (actors bind to it when declared)."""
    settings = settings or Settings.from_env()
    broker = stub_broker(settings) if stub else redis_broker(settings)
    dramatiq.set_broker(broker)
    return broker


def use_broker(new: dramatiq.Broker) -> dramatiq.Broker:
    """Move every actor declared on the current global broker to `new` and make it global.

    Tests use this to run the real actors on a StubBroker, or on a Redis broker of their own.
    Returns the previous broker so it can be restored.
    """
    old = dramatiq.get_broker()
    for name in old.get_declared_actors():
        actor = old.get_actor(name)
        actor.broker = new
        new.declare_actor(actor)
    dramatiq.set_broker(new)
    return old

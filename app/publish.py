"""Publishing committed events from the web process (after the transaction, never inside it)."""

from __future__ import annotations

import json
import logging
from typing import Any

from quart import current_app
from redis.exceptions import RedisError

from models.events import channel, namespace

log = logging.getLogger(__name__)


async def publish_events(messages: list[dict[str, Any]]) -> None:
    """Publish events already committed to `session_events`.

    A failure is logged, not raised: the event is stored, and every WebSocket fills such a gap
    from the database, so the request that made the change still succeeds.
    """
    if not messages:
        return
    client = current_app.extensions["sage_redis"]
    prefix = namespace(client)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(channel(message["session_id"], prefix), json.dumps(message, separators=(",", ":")))
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("could not publish %d event(s): %s", len(messages), exc)

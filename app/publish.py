"""Publishing committed events from the web process (after the transaction, never inside it)."""

from __future__ import annotations

from typing import Any

from quart.utils import run_sync

from models.events import publish_committed


async def publish_events(messages: list[dict[str, Any]]) -> None:
    """Publish events already committed to `session_events`, through the one publisher.

    `models.events.publish_committed` holds the policy: a failure is logged, not raised (the event
    is stored, and every WebSocket fills such a gap from the database), so the request that made
    the change still succeeds. It blocks on Redis, so it runs off the event loop.
    """
    if messages:
        await run_sync(publish_committed)(messages)

"""Live progress of a streaming model: ephemeral `agent_task_progress` messages.

While a model brain streams, the worker publishes the text so far and the tokens so far on the
session's Redis channel. These messages are not stored in `session_events` and carry no `seq`
(docs/api.md, "Ephemeral messages"): a client that reconnects gets the final output from the log.
They are coalesced to at most one per `interval` (0.25 s: about 4 a second) per task, plus the
last one of each call, and `completion_tokens` never goes down: an estimate while streaming,
the endpoint's own count when a call ends, added up over the calls of the attempt.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from models.events import channel, namespace
from models.vocabulary import AGENT_TASK_PROGRESS

log = logging.getLogger(__name__)

PROGRESS_TYPE = AGENT_TASK_PROGRESS


class ProgressPublisher:
    """The `on_progress` of one task's brain: `(text, completion_tokens, final)` per update."""

    def __init__(
        self,
        send: Callable[[dict[str, Any]], None],
        task_id: int,
        agent_role: str,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.task_id = task_id
        self.agent_role = agent_role
        self.interval = interval
        self.clock = clock
        self.base = 0  # completion tokens of the calls already finished in this attempt
        self.sent_tokens = 0
        self.last_sent: float | None = None
        self.published = 0

    def __call__(self, text: str, completion_tokens: int, final: bool) -> None:
        tokens = max(self.sent_tokens, self.base + completion_tokens)
        if final:
            self.base += completion_tokens
        now = self.clock()
        if not final and self.last_sent is not None and now - self.last_sent < self.interval:
            return
        self.last_sent = now
        self.sent_tokens = tokens
        self.published += 1
        message = {
            "type": PROGRESS_TYPE,
            "task_id": self.task_id,
            "agent_role": self.agent_role,
            "text": text,
            "completion_tokens": tokens,
        }
        try:
            self.send(message)
        except Exception as exc:  # noqa: BLE001 - live progress is best effort; the result is in the log
            log.debug("could not publish progress of task %s: %s", self.task_id, exc)


def redis_sender(redis_client: Any, session_id: int) -> Callable[[dict[str, Any]], None]:
    """Publish a progress message on the session's channel (the same one events use)."""
    name = channel(session_id, namespace(redis_client))

    def send(message: dict[str, Any]) -> None:
        redis_client.publish(name, json.dumps(message, separators=(",", ":")))

    return send

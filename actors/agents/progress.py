"""Live progress of a streaming model: ephemeral `agent_task_progress` messages.

While a model brain streams, the worker publishes the text so far and the tokens so far on the
session's Redis channel. These messages are not stored in `session_events` and carry no `seq`
(docs/api.md, "Ephemeral messages"): a client that reconnects gets the final output from the log.
They are coalesced to at most one per `interval` (0.25 s: about 4 a second) per task, plus the
last one of each call, and `completion_tokens` never goes down: an estimate while streaming,
the endpoint's own count when a call ends, added up over the calls of the attempt.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from models.events import channel, encode_message, namespace
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
    """Publish a progress message on the session's channel (the same one events use).

    The message is handed to this process's publishing thread, not sent by the caller: the
    caller is the event loop that carries every model call in flight (`actors.parking`), and a
    blocking Redis round trip there would stall them all.
    """
    name = channel(session_id, namespace(redis_client))

    def send(message: dict[str, Any]) -> None:
        # Encoded as events are (orjson): a message carries the whole answer so far, and the
        # standard encoder escaping it was a few percent of a model brain's worker CPU.
        _outbox().put((redis_client, name, encode_message(message)))

    return send


_outbox_lock = threading.Lock()
_queue: queue.SimpleQueue[tuple[Any, str, str]] | None = None

#: Progress messages sent in one Redis round trip at most (what piled up while the last went).
BATCH = 100


def _outbox() -> queue.SimpleQueue[tuple[Any, str, str]]:
    global _queue
    with _outbox_lock:
        if _queue is None:
            _queue = queue.SimpleQueue()
            threading.Thread(target=_publish_forever, args=(_queue,), name="sage-progress", daemon=True).start()
        return _queue


def _publish_forever(outbox: queue.SimpleQueue[tuple[Any, str, str]]) -> None:
    """Publish what is queued, a batch per round trip; progress is best effort, so errors are dropped."""
    while True:
        batch = [outbox.get()]
        while len(batch) < BATCH:
            try:
                batch.append(outbox.get_nowait())
            except queue.Empty:
                break
        by_client: dict[int, list[tuple[Any, str, str]]] = {}
        for item in batch:
            by_client.setdefault(id(item[0]), []).append(item)
        for items in by_client.values():
            try:
                pipe = items[0][0].pipeline(transaction=False)
                for _, name, data in items:
                    pipe.publish(name, data)
                pipe.execute()
            except Exception as exc:  # noqa: BLE001 - live progress is best effort; the result is in the log
                log.debug("could not publish %d progress messages: %s", len(items), exc)

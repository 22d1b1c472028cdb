"""Live progress of a streaming model: ephemeral `agent_task_progress` messages.

While a model brain streams, the worker publishes the text so far and the tokens so far on the
session's Redis channel. These messages are not stored in `session_events` and carry no `seq`
(docs/api.md, "Ephemeral messages"): a client that reconnects gets the final output from the log.
They are coalesced to at most one per `interval` (0.25 s: about 4 a second) per task, plus the
last one of each call, and `completion_tokens` never goes down: an estimate while streaming,
the endpoint's own count when a call ends, added up over the calls of the attempt.
"""

from __future__ import annotations

import collections
import logging
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
            flush = getattr(self.send, "flush", None)
            if final and flush is not None:
                # A call's last message is sent now, not at the publisher's next look, so that it
                # is on the channel well before the task's completion event in practice (the
                # publishing thread is woken, not waited for).
                flush()
        except Exception as exc:  # noqa: BLE001 - live progress is best effort; the result is in the log
            log.debug("could not publish progress of task %s: %s", self.task_id, exc)


class RedisSender:
    """Publishes a progress message on the session's channel (the same one events use).

    The message is handed to this process's publishing thread, not sent by the caller: the
    caller is the event loop that carries every model call in flight (`actors.parking`), and a
    blocking Redis round trip there would stall them all.
    """

    def __init__(self, redis_client: Any, session_id: int) -> None:
        self.redis_client = redis_client
        self.name = channel(session_id, namespace(redis_client))

    def __call__(self, message: dict[str, Any]) -> None:
        # Encoded as events are (orjson): a message carries the whole answer so far, and the
        # standard encoder escaping it was a few percent of a model brain's worker CPU.
        _outbox().put((self.redis_client, self.name, encode_message(message)))

    def flush(self) -> None:
        """Have the publishing thread send what is queued now, not at its next look."""
        _outbox().wake.set()


def redis_sender(redis_client: Any, session_id: int) -> RedisSender:
    """The `send` of a ProgressPublisher that publishes on the session's channel."""
    return RedisSender(redis_client, session_id)


#: Progress messages sent in one Redis round trip at most (what piled up since the last).
BATCH = 100
#: How often a busy publishing thread looks for messages (what a message may wait, at most).
FLUSH_SECONDS = 0.05
#: Empty looks after which the publishing thread sleeps until a message wakes it.
IDLE_LOOKS = 20


class _Outbox:
    """The queue of this process's publishing thread.

    While messages keep coming, the thread collects them every FLUSH_SECONDS and the senders
    wake nobody: waking a blocked thread for each of the thousands of messages a second that
    hundreds of streaming calls make cost the event loop more than encoding them. A call's last
    message is flushed at once (`RedisSender.flush`). After IDLE_LOOKS empty looks the thread
    sleeps, and the next message wakes it.
    """

    def __init__(self) -> None:
        self.pending: collections.deque[tuple[Any, str, str]] = collections.deque()
        self.idle = False
        self.wake = threading.Event()
        threading.Thread(target=self._publish_forever, name="sage-progress", daemon=True).start()

    def put(self, item: tuple[Any, str, str]) -> None:
        self.pending.append(item)
        if self.idle:
            self.wake.set()

    def _publish_forever(self) -> None:
        empty = 0
        while True:
            if not self.pending:
                empty += 1
                if empty < IDLE_LOOKS:
                    self.wake.wait(FLUSH_SECONDS)  # a flush cuts the wait short
                    self.wake.clear()  # what a flush queued is in `pending` already
                    continue
                self.idle = True  # before the last look, so a message put after it sets `wake`
                self.wake.clear()
                if not self.pending:
                    self.wake.wait()
                self.idle = False
            empty = 0
            batch: list[tuple[Any, str, str]] = []
            while self.pending and len(batch) < BATCH:
                batch.append(self.pending.popleft())
            _publish(batch)


def _publish(batch: list[tuple[Any, str, str]]) -> None:
    """One pipeline per Redis client; progress is best effort, so errors are dropped."""
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


_outbox_lock = threading.Lock()
_box: _Outbox | None = None


def _outbox() -> _Outbox:
    global _box
    box = _box
    if box is None:
        with _outbox_lock:
            if _box is None:
                _box = _Outbox()
            box = _box
    return box

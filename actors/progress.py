"""Live progress in the terminal while `python -m actors run` (or a rerun) waits for a session.

Each agent gets a line: its stage, role, status, elapsed time (running ones tick), retries and,
on model brains, the completion tokens so far (from the `agent_task_progress` messages a model
brain publishes while it streams, then the task's recorded usage). On a terminal the block is
redrawn in place; piped to a file or CI log, a line is printed whenever an agent's state
changes, so the log reads as a history.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from models.schema import AgentTask, ExecutionSession, utcnow
from models.vocabulary import AGENT_TASK_PROGRESS


@dataclass(frozen=True)
class Row:
    """What one agent's line shows."""

    stage: int
    role: str
    status: str
    elapsed: float | None
    retries: int
    tokens: int | None

    def state(self) -> tuple:
        """What counts as a change worth a new line when not on a terminal."""
        return (self.status, self.retries)

    def render(self) -> str:
        took = f"{self.elapsed:7.1f} s" if self.elapsed is not None else "        -"
        tokens = f"  {self.tokens} tokens" if self.tokens else ""
        retries = f"  retry {self.retries}" if self.retries else ""
        return f"  [{self.stage}] {self.role:<12} {self.status:<9} {took}{retries}{tokens}"


def _usage_tokens(task: AgentTask) -> int | None:
    usage = task.usage
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        return int(usage["completion_tokens"])
    return None


def rows(session_id: int, streamed: dict[int, int], now=utcnow) -> list[Row]:
    """The agents' lines, in pipeline order, from the database and the tokens streamed so far."""
    current = now()
    found = []
    for task in AgentTask.select().where(AgentTask.session == session_id).order_by(AgentTask.stage, AgentTask.id):
        if task.duration_seconds is not None:
            elapsed = task.duration_seconds
        elif task.started_at is not None and task.status == "running":
            elapsed = max(0.0, (current - task.started_at).total_seconds())
        else:
            elapsed = None
        recorded = _usage_tokens(task)
        tokens = recorded if recorded is not None else streamed.get(task.id)
        found.append(Row(task.stage, task.agent_role, task.status, elapsed, task.retry_count, tokens))
    return found


class _Tokens:
    """Completion tokens per task from the session's live channel (model brains only)."""

    def __init__(self, session_id: int) -> None:
        self.counts: dict[int, int] = {}
        self.pubsub = None
        try:
            from actors.config import redis_client
            from models.events import channel, namespace

            client = redis_client()
            self.pubsub = client.pubsub(ignore_subscribe_messages=True)
            self.pubsub.subscribe(channel(session_id, namespace(client)))
        except Exception:  # noqa: BLE001 - tokens are a nicety; progress works without Redis
            self.pubsub = None

    def drain(self) -> dict[int, int]:
        while self.pubsub is not None:
            try:
                message = self.pubsub.get_message(timeout=0)
            except Exception:  # noqa: BLE001
                self.close()
                break
            if message is None:
                break
            try:
                data = json.loads(message["data"])
            except (TypeError, ValueError):
                continue
            if isinstance(data, dict) and data.get("type") == AGENT_TASK_PROGRESS:
                task_id, tokens = data.get("task_id"), data.get("completion_tokens")
                if isinstance(task_id, int) and isinstance(tokens, int):
                    self.counts[task_id] = max(tokens, self.counts.get(task_id, 0))
        return self.counts

    def close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            finally:
                self.pubsub = None


def watch(session_id: int, timeout: float, out: TextIO | None = None, interval: float = 0.25) -> Any:
    """Show progress until the session is no longer active or `timeout` passes; return the session."""
    out = out or sys.stdout
    live = out.isatty()
    tokens = _Tokens(session_id)
    deadline = time.monotonic() + timeout
    drawn = 0
    seen: dict[str, tuple] = {}
    try:
        while True:
            session = ExecutionSession.get_by_id(session_id)
            current = rows(session_id, tokens.drain())
            if live:
                if drawn:
                    out.write(f"\x1b[{drawn}F")  # back to the block's first line
                for row in current:
                    out.write("\x1b[2K" + row.render() + "\n")
                drawn = len(current)
            else:
                for row in current:
                    if seen.get(row.role) != row.state():
                        seen[row.role] = row.state()
                        out.write(row.render() + "\n")
            out.flush()
            if session.status != "active" or time.monotonic() >= deadline:
                return session
            time.sleep(interval)
    finally:
        tokens.close()

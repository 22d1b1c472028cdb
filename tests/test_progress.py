"""Terminal progress of `python -m actors run`: stage, role, status, elapsed time, retries, tokens."""

from __future__ import annotations

import datetime as dt
import io
import json
import time

from seeding import seed_session

from actors import progress
from models import AgentTask, ExecutionSession, utcnow
from models.events import channel, namespace


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rows_show_running_agents_ticking_and_streamed_tokens(personal_team, user):
    session = seed_session(personal_team, user, "Progress", roles=["architect", "backend_dev", "dba"])
    started = utcnow() - dt.timedelta(seconds=4)
    AgentTask.update(status="running", duration_seconds=None, completed_at=None, started_at=started).where(
        (AgentTask.session == session) & (AgentTask.agent_role == "dba")
    ).execute()
    AgentTask.update(status="pending", duration_seconds=None, started_at=None, retry_count=1).where(
        (AgentTask.session == session) & (AgentTask.agent_role == "backend_dev")
    ).execute()
    dba = AgentTask.get((AgentTask.session == session) & (AgentTask.agent_role == "dba"))

    rows = {r.role: r for r in progress.rows(session.id, {dba.id: 321}, now=lambda: started + dt.timedelta(seconds=4))}
    assert [r.stage for r in rows.values()] == [0, 1, 1]
    assert rows["dba"].status == "running" and rows["dba"].elapsed == 4.0 and rows["dba"].tokens == 321
    assert "321 tokens" in rows["dba"].render() and "4.0 s" in rows["dba"].render()
    assert rows["backend_dev"].elapsed is None and "retry 1" in rows["backend_dev"].render()
    assert rows["architect"].status == "completed" and rows["architect"].tokens is None


def test_piped_output_prints_a_line_per_change_and_a_terminal_redraws_in_place(personal_team, user, settings):
    from actors.config import set_settings

    set_settings(settings)
    try:
        session = seed_session(personal_team, user, "Done", roles=["architect", "backend_dev", "dba"])
        piped = io.StringIO()
        assert progress.watch(session.id, timeout=5, out=piped).status == "completed"
        lines = piped.getvalue().splitlines()
        assert len(lines) == 3 and all("completed" in line for line in lines)

        ExecutionSession.update(status="active").where(ExecutionSession.id == session.id).execute()
        terminal = Terminal()
        assert progress.watch(session.id, timeout=0.6, out=terminal, interval=0.2).status == "active"
        assert terminal.getvalue().count("\x1b[3F") >= 2  # redrawn over the same three lines
    finally:
        set_settings(None)


def test_tokens_come_from_the_progress_messages_a_model_brain_publishes(settings, redis_client):
    from actors.config import set_settings

    set_settings(settings)
    try:
        tokens = progress._Tokens(77)
        tokens.drain()
        target = channel(77, namespace(redis_client))
        for count in (10, 40, 25):  # never goes down, even if a stale message arrives late
            redis_client.publish(
                target, json.dumps({"type": "agent_task_progress", "task_id": 5, "completion_tokens": count})
            )
        redis_client.publish(target, json.dumps({"type": "agent_task_completed", "seq": 3}))
        deadline = time.monotonic() + 3
        while tokens.drain().get(5) != 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tokens.counts == {5: 40}
        tokens.close()
    finally:
        set_settings(None)

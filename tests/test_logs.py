"""Log lines carry the session, task and role, as text or as JSON for log shippers."""

from __future__ import annotations

import json
import logging

import pytest

from models import logs
from models.settings import ConfigError, Settings


def emit(log_format: str, message: str = "thinking") -> str:
    """Log `message` through a fresh handler configured like a worker's; return the line."""
    import io

    stream = io.StringIO()
    root = logging.Logger("test-root")
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    logs.configure(log_format, root)
    root.info(message)
    return stream.getvalue().strip()


def test_text_lines_name_the_session_task_and_role_bound_around_them():
    with logs.bound(session_id=12, task_id=84, agent_role="dba"):
        line = emit("text")
    assert "[session=12 task=84 role=dba] thinking" in line
    assert "[session=- task=- role=-] thinking" in emit("text")


def test_json_lines_are_one_object_with_the_context_and_null_when_unbound():
    with logs.bound(session_id=12, task_id=84, agent_role="dba"):
        line = json.loads(emit("json", 'said "hi"\nthen left'))
    assert line["message"] == 'said "hi"\nthen left'
    assert (line["session_id"], line["task_id"], line["agent_role"]) == (12, 84, "dba")
    assert line["level"] == "INFO" and line["ts"].endswith("Z")
    unbound = json.loads(emit("json"))
    assert unbound["session_id"] is None and unbound["agent_role"] is None


def test_a_binding_ends_with_its_block():
    with logs.bound(session_id=1):
        with logs.bound(task_id=2):
            assert logs.current() == {"session_id": 1, "task_id": 2}
        assert logs.current() == {"session_id": 1}
    assert logs.current() == {}


def test_log_format_is_text_or_json():
    assert Settings.from_env({"SAGE_ENV": "test", "LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.from_env({"SAGE_ENV": "test", "LOG_FORMAT": "xml"})


def test_every_line_a_real_worker_logs_for_a_task_names_its_session_task_and_role(
    personal_team, user, redis_actors, start_worker, wait
):
    from actors import pipeline
    from models import AgentTask, ExecutionSession

    start_worker(threads=2, LOG_FORMAT="json")
    start_worker.ready(1)
    session = pipeline.create_session(personal_team.id, user.id, "Logged")
    pipeline.start_session(session.id)
    wait(lambda: ExecutionSession.get_by_id(session.id).status == "completed", timeout=60)
    tasks = {t.agent_role: t.id for t in AgentTask.select().where(AgentTask.session == session.id)}

    def completed_lines() -> list[dict]:
        text = "\n".join(p.read_text() for p in start_worker.markers.glob("worker-*.log"))
        found = []
        for raw in text.splitlines():
            start = raw.find("{")
            if start < 0:
                continue
            try:
                line = json.loads(raw[start:])
            except ValueError:
                continue
            if line.get("message", "").startswith("completed in"):
                found.append(line)
        return found

    lines = wait(lambda: len(completed_lines()) >= 7 and completed_lines(), timeout=10)
    assert {(line["session_id"], line["task_id"], line["agent_role"]) for line in lines} == {
        (session.id, task_id, role) for role, task_id in tasks.items()
    }

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


def _scope(path: str = "/sessions/7", method: str = "GET", client=("127.0.0.1", 5123)) -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "query_string": b"after=3",
        "client": client,
        "headers": [(b"host", b"x"), (b"user-agent", b"wrk"), (b"referer", b"/a"), (b"User-Agent", b"last")],
    }


@pytest.mark.parametrize("client", [("127.0.0.1", 5123), ("unix",), None])
def test_the_access_lines_atoms_are_hypercorns_worked_out_on_demand(client):
    """app.server.AccessAtoms gives what hypercorn's AccessLogAtoms gives, for every atom."""
    from hypercorn.config import Config
    from hypercorn.logging import AccessLogAtoms

    from app.server import AccessAtoms

    scope = _scope(client=client)
    for response in ({"status": 200, "headers": [(b"content-length", b"42"), (b"etag", b'"e"')]}, None):
        ours, theirs = AccessAtoms(scope, response, 0.0123), AccessLogAtoms(scope, response, 0.0123)
        keys = [k for k in theirs if k not in ("t", "{x}e")] + [
            "{User-Agent}i",
            "{ETag}o",
            "{nope}i",
            "nope",
            "{path}e",
        ]
        for key in keys:
            assert ours[key] == theirs[key], key
        line = Config().access_log_format.replace("%(t)s", "")  # the clock may tick between the two
        assert line % ours == line % theirs and "%(t)s" in Config().access_log_format
        record = logging.LogRecord("hypercorn.access", logging.INFO, __file__, 1, line, (ours,), None)
        assert record.getMessage() == line % theirs


def test_the_favicon_probe_is_left_out_of_the_access_log_and_nothing_else():
    from hypercorn.config import Config

    from app.server import AccessAtoms, _not_a_probe

    line = Config().access_log_format

    def record(method: str, path: str) -> logging.LogRecord:
        atoms = AccessAtoms(_scope(path, method), {"status": 200, "headers": []}, 0.001)
        return logging.LogRecord("hypercorn.access", logging.INFO, __file__, 1, line, (atoms,), None)

    assert not _not_a_probe(record("HEAD", "/favicon.ico"))
    assert _not_a_probe(record("GET", "/favicon.ico")) and _not_a_probe(record("HEAD", "/favicon.icon"))

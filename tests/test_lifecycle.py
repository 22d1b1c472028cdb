"""The lifecycle's contract (models/lifecycle.py, ARCHITECTURE.md decision 12): each function
returns exactly the events it stored, they are published only after the commit, through one
publisher whose failure loses nothing, and no other code writes the lifecycle's events."""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path

import pytest
import redis
from helpers import rebuild_completed

from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent, TaskDecision, events, lifecycle
from models.db import db
from models.serialize import event_dict, snapshot_dict

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def published(monkeypatch):
    """Every batch the one publisher sends, with what was true when it sent it."""
    sent: list[dict] = []

    def spy(client, messages):
        messages = list(messages)
        seen: list[list[dict]] = []

        def read() -> None:  # another connection sees only what has committed
            with db.connection_context():
                seen.append([event_dict(e) for e in SessionEvent.select().order_by(SessionEvent.id)])

        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        sent.append({"messages": messages, "in_transaction": db.in_transaction(), "committed": seen[0]})

    monkeypatch.setattr(events, "publish", spy)
    return sent


def stored_after(session_id: int, seq: int) -> list[dict]:
    return events.events_after(session_id, seq)


def output_for(role: str, n: int = 2) -> dict:
    return {
        "role": role,
        "summary": f"{role} summary",
        "brain": {"name": "knowledge-base", "version": "1"},
        "artifacts": {"note": role},
        "decisions": [
            {
                "key": f"{role}.d{i}",
                "text": f"{role} decision {i}",
                "rationale": "because",
                "category": "architecture",
                "confidence": "high",
                "based_on_keys": ["architect.d0"],
            }
            for i in range(n)
        ],
    }


def run_task(session_id: int, role: str, message: str):
    """Claim and complete one task as a worker would; returns both outcomes."""
    task = AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == role))
    claimed = lifecycle.claim(task.id, message, 0, {})
    assert isinstance(claimed.value, lifecycle.Claim), claimed.value
    done = lifecycle.complete(claimed.value.task, message, output_for(role), claimed.value.context, ["DESIGN"], {})
    return claimed, done


def test_each_function_returns_exactly_the_events_it_stored_and_publishes_them_after_commit(
    personal_team, user, published
):
    created = lifecycle.create(personal_team.id, user.id, "Chat", "real-time")
    session_id = created.value.id
    assert [e["type"] for e in created.events] == ["session_started"]
    assert created.events == stored_after(session_id, 0)
    seq = 1
    for stage, roles in enumerate((("architect",), ("backend_dev", "dba"), ("frontend_dev", "ui_ux"))):
        for role in roles:
            claimed, done = run_task(session_id, role, f"m-{role}")
            assert [e["type"] for e in claimed.events] == ["agent_task_started"]
            assert [e["type"] for e in done.events] == ["agent_task_completed"]
            assert claimed.events + done.events == stored_after(session_id, seq)
            seq += 2
            # The stage's last completion moves the session on in its own transaction.
            assert getattr(done.value, "advanced", False) is (role == roles[-1])
        assert ExecutionSession.get_by_id(session_id).current_stage == stage + 1
        # The gate of a redelivered last member (its result does not say it moved) sends the
        # next stage while none of it is claimed, and moves nothing.
        sent: list[int] = []
        assert lifecycle.advance(session_id, stage, functools.partial(sent.append, stage)) == (False, [])
        assert sent == [stage]
    claimed, done = run_task(session_id, "security", "m-security")
    assert [e["type"] for e in done.events] == ["agent_task_completed"]
    for stage in range(3):  # each next stage has claims now: nothing is sent again
        assert lifecycle.advance(session_id, stage, lambda: pytest.fail("sent twice")) == (False, [])
    seq += 2
    claimed, done = run_task(session_id, "it_admin", "m-it_admin")
    assert [e["type"] for e in done.events] == ["agent_task_completed", "session_completed"]
    assert claimed.events + done.events == stored_after(session_id, seq)
    assert ExecutionSession.get_by_id(session_id).status == "completed"

    # One publish per function that wrote events, each after its commit, with exactly those events.
    assert [m for batch in published for m in batch["messages"]] == stored_after(session_id, 0)
    for batch in published:
        assert batch["in_transaction"] is False
        for message in batch["messages"]:
            assert message in batch["committed"], "published before it was committed"


def test_a_duplicate_delivery_writes_and_publishes_nothing(personal_team, user, published):
    session_id = lifecycle.create(personal_team.id, user.id, "Chat").value.id
    task = AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == "architect"))
    first = lifecycle.claim(task.id, "m-1", 0, {})
    assert lifecycle.claim(task.id, "m-2", 0, {}) == ("task is running (claimed by m-1)", [])
    again = lifecycle.claim(task.id, "m-1", 0, {})  # the same message redelivered re-claims
    assert isinstance(again.value, lifecycle.Claim) and len(again.events) == 1
    claim = first.value
    assert isinstance(claim, lifecycle.Claim)
    assert lifecycle.complete(claim.task, "m-2", output_for("architect"), claim.context, [], {}) == (None, [])
    assert TaskDecision.select().count() == 0 and AgentSnapshot.select().count() == 0
    before = len(published)
    done = lifecycle.complete(claim.task, "m-1", output_for("architect"), claim.context, [], {})
    assert done.value is not None and len(published) == before + 1
    assert lifecycle.complete(claim.task, "m-1", output_for("architect"), claim.context, [], {}) == (None, [])
    assert TaskDecision.select().count() == 2 and AgentSnapshot.select().count() == 1


def test_a_role_message_finds_and_claims_its_task_in_one_read_and_gets_a_completed_task_back(
    personal_team, user, published
):
    session_id = lifecycle.create(personal_team.id, user.id, "Chat").value.id
    assert lifecycle.claim_role(session_id, "nobody", "m-0", 0, {}) == (None, [])
    assert lifecycle.claim_role(session_id, "dba", "m-0", 0, {}) == ("session is at stage 0, task belongs to 1", [])
    task = AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == "architect"))
    # A duplicate message finds the task waiting for its second retry: it keeps counting from the row.
    AgentTask.update(retry_count=2).where(AgentTask.id == task.id).execute()
    first = lifecycle.claim_role(session_id, "architect", "m-1", 1, {})
    assert isinstance(first.value, lifecycle.Claim) and first.value.task.retry_count == 2
    assert [e["type"] for e in first.events] == ["agent_task_started"] and first.events == stored_after(session_id, 1)
    assert lifecycle.claim_role(session_id, "architect", "m-2", 0, {}) == ("task is running (claimed by m-1)", [])
    lifecycle.complete(first.value.task, "m-1", output_for("architect"), first.value.context, [], {})
    again = lifecycle.claim_role(session_id, "architect", "m-1", 2, {})
    assert isinstance(again.value, AgentTask) and again.value.id == task.id and again.value.status == "completed"
    assert again.events == [] and AgentTask.get_by_id(task.id).retry_count == 2


def test_fail_retries_then_errors_the_session_and_end_and_fail_session_report_their_events(
    personal_team, user, published
):
    session_id = lifecycle.create(personal_team.id, user.id, "Chat").value.id
    task = AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == "architect"))
    claim = lifecycle.claim(task.id, "m", 0, {}).value
    assert isinstance(claim, lifecycle.Claim)
    retry = lifecycle.fail(claim.task, "m", 0, "Boom", (5.0,), retry_after=7.5)
    assert retry.value == (7.5, True)
    assert [e["type"] for e in retry.events] == ["agent_task_retrying"]
    assert retry.events[0]["retry_in_seconds"] == 7.5 and retry.events[0]["task"]["status"] == "pending"
    claim = lifecycle.claim(task.id, "m", 1, {}).value
    assert isinstance(claim, lifecycle.Claim)
    final = lifecycle.fail(claim.task, "m", 1, "Boom", (5.0,))
    assert final.value == (None, True)
    assert [e["type"] for e in final.events] == ["session_error"]
    assert final.events == stored_after(session_id, 4)
    assert ExecutionSession.get_by_id(session_id).status == "error"
    assert lifecycle.fail_session(session_id, "again") == (False, [])
    with pytest.raises(lifecycle.SessionAlreadyEnded):
        lifecycle.end(session_id)

    other = lifecycle.create(personal_team.id, user.id, "Search").value.id
    ended = lifecycle.end(other, ended_by=user.id)
    assert ended.value.end_reason == "user" and [e["type"] for e in ended.events] == ["session_completed"]
    assert ended.events == stored_after(other, 1)
    with pytest.raises(lifecycle.SessionNotFound):
        lifecycle.end(999_999)


def test_a_completed_event_carries_each_thing_once_and_rebuilds_the_rows(personal_team, user):
    session_id = lifecycle.create(personal_team.id, user.id, "Chat", "real-time").value.id
    _, done = run_task(session_id, "architect", "m")
    [event] = done.events
    row = AgentTask.get_by_id(event["task"]["id"])
    snapshot = AgentSnapshot.get(AgentSnapshot.agent_task == row.id)
    assert "decisions" not in event["task"]["output_data"]
    output, whole = rebuild_completed(event["task"], event["snapshot"])
    assert output == row.output_data
    assert whole == snapshot_dict(snapshot)
    assert [d["id"] for d in event["task"]["decisions"]] == [d["id"] for d in row.output_data["decisions"]]
    for short in event["snapshot"]["decisions"]:  # the rows say the rest
        assert set(short) == {"id", "key", "based_on_keys"}
    assert set(event["snapshot"]["context_state"]).isdisjoint(("task_description", "feature_name", "description"))


def test_lifecycle_functions_refuse_to_run_inside_a_transaction(personal_team, user):
    with db.atomic(), pytest.raises(RuntimeError, match="outside a transaction"):
        lifecycle.create(personal_team.id, user.id, "Chat")
    with db.atomic(), pytest.raises(RuntimeError, match="after their transaction commits"):
        events.publish_committed([{"session_id": 1, "type": "session_started", "seq": 1}])


def test_a_failed_publish_is_logged_and_the_change_stands(personal_team, user, monkeypatch, caplog):
    def down(client, messages):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(events, "publish", down)
    created = lifecycle.create(personal_team.id, user.id, "Chat")
    assert created.events == stored_after(created.value.id, 0)
    assert "could not publish 1 event(s)" in caplog.text


def test_one_publisher_and_one_writer_of_the_lifecycle_events():
    """Only the lifecycle writes events (besides the web's decision journal, which writes
    `decision_created`), and only publish_committed sends stored events (the journal's too)."""
    sources = {
        str(p.relative_to(ROOT)): p.read_text() for d in ("app", "actors", "models") for p in (ROOT / d).rglob("*.py")
    }
    raw = {path for path, text in sources.items() if re.search(r"\bevents\.publish\(|import[^\n]*\bpublish\b", text)}
    assert raw <= {"models/events.py"}, raw
    recorders = {path for path, text in sources.items() if re.search(r"\brecord_events?\(", text)}
    assert recorders == {"models/events.py", "models/lifecycle.py", "app/decisions.py"}, recorders
    assert re.findall(r"record_event\(\s*[^,]+,\s*\"(\w+)\"", sources["app/decisions.py"]) == ["decision_created"] * 2
    senders = {path for path, text in sources.items() if "publish_committed" in text}
    assert senders == {"models/events.py", "models/lifecycle.py", "app/publish.py"}, senders

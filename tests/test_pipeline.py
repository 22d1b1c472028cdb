"""The pipeline on a stub broker with an in-process worker: runs, retries, limits, errors, ends, redelivery."""

from __future__ import annotations

import time

import dramatiq
import pytest

from actors import pipeline
from actors.agents import KnowledgeBaseBrain
from actors.config import set_settings
from models import AgentSnapshot, AgentTask, ExecutionSession, SessionDecision, SessionEvent, TaskDecision

ORDER = ["architect", "backend_dev", "dba", "frontend_dev", "ui_ux", "security", "it_admin"]


def finished(session_id: int):
    def check():
        session = ExecutionSession.get_by_id(session_id)
        return session if session.status != "active" else None

    return check


def tasks_of(session_id: int) -> dict[str, AgentTask]:
    return {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == session_id)}


def events_of(session_id: int) -> list[SessionEvent]:
    return list(SessionEvent.select().where(SessionEvent.session == session_id).order_by(SessionEvent.seq))


def assert_contiguous(events: list[SessionEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def run_session(personal_team, user, wait, feature="Team chat", description="real-time messaging", decisions=()):
    session = pipeline.create_session(personal_team.id, user.id, feature, description)
    for text in decisions:
        SessionDecision.create(session=session, user=user, decision_text=text, category="technology")
    pipeline.start_session(session.id)
    return wait(finished(session.id))


def test_create_session_makes_seven_pending_tasks_with_stages_and_a_started_event(personal_team, user):
    session = pipeline.create_session(personal_team.id, user.id, "Search", "find recipes")
    tasks = tasks_of(session.id)
    assert sorted(tasks) == sorted(ORDER)
    assert {r: t.stage for r, t in tasks.items()} == {
        "architect": 0,
        "backend_dev": 1,
        "dba": 1,
        "frontend_dev": 2,
        "ui_ux": 2,
        "security": 3,
        "it_admin": 3,
    }
    assert all(t.status == "pending" and t.task_description for t in tasks.values())
    [event] = events_of(session.id)
    assert event.type == "session_started" and event.payload["session"]["id"] == session.id


def test_a_session_runs_every_stage_in_order_and_records_everything(personal_team, user, stub_worker, wait):
    session = run_session(personal_team, user, wait)
    assert session.status == "completed" and session.ended_at and session.duration_seconds is not None
    assert session.celery_chain_id and session.current_stage == 3
    tasks = tasks_of(session.id)
    assert all(t.status == "completed" and t.retry_count == 0 for t in tasks.values())
    # Stages never overlap: every task of stage i completed before any task of stage i+1 started.
    for role in ORDER:
        for upstream in ORDER:
            if tasks[upstream].stage < tasks[role].stage:
                assert tasks[upstream].completed_at <= tasks[role].started_at
    for task in tasks.values():
        assert task.input_data["task_description"] == task.task_description
        assert task.output_data["summary"] and task.output_data["decisions"]
        assert task.duration_seconds >= 0
        [snapshot] = AgentSnapshot.select().where(AgentSnapshot.agent_task == task.id)
        meta = snapshot.execution_metadata
        assert meta["attempt"] == 1 and meta["worker"]["pid"] and meta["message_id"] == task.celery_task_id
        assert meta["brain"]["name"] == "knowledge-base"
        assert snapshot.capabilities and snapshot.context_state["feature_name"] == "Team chat"
        rows = list(TaskDecision.select().where(TaskDecision.agent_task == task.id).order_by(TaskDecision.id))
        assert [r.decision_text for r in rows] == [d["text"] for d in task.output_data["decisions"]]
        assert all(r.source == "agent" and r.confidence in {"high", "medium", "low"} for r in rows)
    # Provenance: downstream decisions point at real upstream decision rows.
    dba_engine = next(d for d in tasks["dba"].output_data["decisions"] if d["key"] == "dba.engine")
    architect_db = next(d for d in tasks["architect"].output_data["decisions"] if d["key"] == "architect.database")
    assert dba_engine["based_on"] == [architect_db["id"]]
    assert TaskDecision.get_by_id(dba_engine["id"]).based_on == [architect_db["id"]]

    events = events_of(session.id)
    assert_contiguous(events)
    types = [e.type for e in events]
    assert types[0] == "session_started" and types[-1] == "session_completed"
    assert types.count("agent_task_started") == 7 and types.count("agent_task_completed") == 7
    completed = [e for e in events if e.type == "agent_task_completed"]
    assert all(e.payload["task"]["decisions"] and e.payload["snapshot"]["task_id"] for e in completed)
    assert events[-1].payload["session"]["status"] == "completed"


def test_an_instant_brain_is_claimed_and_recorded_in_one_transaction(
    personal_team, user, stub_worker, wait, monkeypatch
):
    """The knowledge base answers at once, so its claim and its completion share one commit:
    each task's started and completed events are stored by one statement (same time, adjacent
    seqs). A brain that takes its time (here the test hook's sleep) is run after the claim
    commits, so its events are stored apart and it holds no lock while it works."""
    monkeypatch.setenv("SAGE_TEST_AGENT_SLEEP", "security=0.2")
    session = run_session(personal_team, user, wait)
    assert session.status == "completed"
    events = events_of(session.id)
    assert_contiguous(events)
    by_role: dict[str, list[SessionEvent]] = {}
    for event in events:
        if event.type.startswith("agent_task_"):
            by_role.setdefault(event.payload["task"]["agent_role"], []).append(event)
    for role, (started, done) in by_role.items():
        assert (started.type, done.type) == ("agent_task_started", "agent_task_completed")
        assert started.payload["task"]["status"] == "running" and done.payload["task"]["status"] == "completed"
        if role == "security":
            assert done.created_at > started.created_at
        else:
            assert done.created_at == started.created_at and done.seq == started.seq + 1, role
    snapshot = AgentSnapshot.get(AgentSnapshot.agent_task == tasks_of(session.id)["architect"].id)
    assert snapshot.execution_metadata["attempt"] == 1 and snapshot.decisions


def test_stage_members_run_in_parallel(personal_team, user, stub_worker, wait, monkeypatch):
    monkeypatch.setenv("SAGE_TEST_AGENT_SLEEP", "backend_dev=0.6,dba=0.6")
    session = run_session(personal_team, user, wait)
    tasks = tasks_of(session.id)
    backend, dba = tasks["backend_dev"], tasks["dba"]
    # Overlapping intervals: each started before the other finished.
    assert backend.started_at < dba.completed_at and dba.started_at < backend.completed_at
    threads = {
        s.execution_metadata["worker"]["thread"]
        for s in AgentSnapshot.select().where(AgentSnapshot.agent_task.in_([backend.id, dba.id]))
    }
    assert len(threads) == 2


def test_a_user_decision_to_use_sqlite_changes_the_dba_output(personal_team, user, stub_worker, wait):
    plain = run_session(personal_team, user, wait)
    sqlite = run_session(personal_team, user, wait, decisions=["Use SQLite: this runs on one laptop"])
    plain_dba, sqlite_dba = tasks_of(plain.id)["dba"].output_data, tasks_of(sqlite.id)["dba"].output_data
    assert plain_dba["artifacts"]["engine"] == "postgresql"
    assert sqlite_dba["artifacts"]["engine"] == "sqlite"
    decision_id = SessionDecision.get(SessionDecision.session == sqlite.id).id
    assert sqlite_dba["provenance"]["session_decisions"] == [decision_id]
    assert "INTEGER PRIMARY KEY AUTOINCREMENT" in {
        c["type"] for t in sqlite_dba["artifacts"]["tables"] for c in t["columns"]
    }
    assert any("FTS5" in i.get("how", "") for i in sqlite_dba["artifacts"]["indexes"])
    it_admin = tasks_of(sqlite.id)["it_admin"].output_data
    assert "SQLite" in it_admin["artifacts"]["backups"]


def test_the_same_feature_gives_the_same_outputs_in_two_sessions(personal_team, user, stub_worker, wait):
    def stripped(session_id):
        out = {}
        for role, task in tasks_of(session_id).items():
            data = dict(task.output_data)
            data["decisions"] = [{k: v for k, v in d.items() if k not in {"id", "based_on"}} for d in data["decisions"]]
            out[role] = data
        return out

    first = run_session(personal_team, user, wait, feature="Checkout", description="card payments")
    second = run_session(personal_team, user, wait, feature="Checkout", description="card payments")
    assert stripped(first.id) == stripped(second.id)


def test_retries_use_the_configured_delays_then_succeed(personal_team, user, stub_worker, wait, monkeypatch):
    failures = {"dba": 2}
    original = KnowledgeBaseBrain.think

    def flaky(self, role, description, context):
        if failures.get(role):
            failures[role] -= 1
            raise RuntimeError("disk full")
        return original(self, role, description, context)

    monkeypatch.setattr(KnowledgeBaseBrain, "think", flaky)
    requested = []
    real_retry = dramatiq.Retry.__init__

    def spy(self, message="", delay=None):
        requested.append(delay)
        real_retry(self, message, delay)

    monkeypatch.setattr(dramatiq.Retry, "__init__", spy)
    session = run_session(personal_team, user, wait)
    assert session.status == "completed"
    assert requested == [50, 100]  # RETRY_DELAYS_SECONDS=0.05,0.1,0.2 in tests: exact, no jitter
    dba = tasks_of(session.id)["dba"]
    assert dba.status == "completed" and dba.retry_count == 2 and dba.error_message is None
    retrying = [e for e in events_of(session.id) if e.type == "agent_task_retrying"]
    assert [e.payload["retry_in_seconds"] for e in retrying] == [0.05, 0.1]
    assert retrying[0].payload["error"] == "RuntimeError: disk full"
    assert retrying[0].payload["task"]["agent_role"] == "dba" and retrying[0].payload["task"]["retry_count"] == 1
    snapshot = AgentSnapshot.get(AgentSnapshot.agent_task == dba.id)
    assert snapshot.execution_metadata["attempt"] == 3


def test_the_last_failure_errors_the_task_and_session_and_later_stages_never_run(
    personal_team, user, stub_worker, wait, monkeypatch
):
    original = KnowledgeBaseBrain.think

    def broken(self, role, description, context):
        if role == "backend_dev":
            raise ValueError("cannot reach the code host")
        return original(self, role, description, context)

    monkeypatch.setattr(KnowledgeBaseBrain, "think", broken)
    session = run_session(personal_team, user, wait)
    time.sleep(0.3)  # give any wrongly started later stage the chance to show itself
    assert session.status == "error"
    assert "backend_dev failed after 3 retries" in session.error_message
    tasks = tasks_of(session.id)
    assert tasks["backend_dev"].status == "error" and tasks["backend_dev"].retry_count == 3
    assert tasks["dba"].status == "completed"
    assert all(tasks[r].status == "pending" and tasks[r].started_at is None for r in ORDER[3:])
    events = events_of(session.id)
    assert_contiguous(events)
    types = [e.type for e in events]
    assert types.count("agent_task_retrying") == 3
    assert types[-1] == "session_error" and types.count("session_error") == 1
    assert events[-1].payload == {"error": session.error_message, "task_id": tasks["backend_dev"].id}


def test_an_attempt_over_the_time_limit_is_retried(personal_team, user, stub_worker, wait, monkeypatch, settings):
    set_settings(settings.with_overrides(task_time_limit_seconds=1.0))
    original = KnowledgeBaseBrain.think
    slow = {"ui_ux": 1}

    def sometimes_slow(self, role, description, context):
        if slow.get(role):
            slow[role] -= 1
            for _ in range(60):  # Python-level work: the time limit's async exception lands between steps
                time.sleep(0.05)
        return original(self, role, description, context)

    monkeypatch.setattr(KnowledgeBaseBrain, "think", sometimes_slow)
    # A brain that can take seconds does not answer at once: it runs after its claim commits, so
    # its stage sibling's claim does not wait on the session's lock (and on its own time limit).
    monkeypatch.setattr(KnowledgeBaseBrain, "instant", False)
    started = time.monotonic()
    session = run_session(personal_team, user, wait)
    assert session.status == "completed"
    assert time.monotonic() - started < 2.9  # the 3 s sleep was cut off after 1 s
    retrying = [e for e in events_of(session.id) if e.type == "agent_task_retrying"]
    assert [e.payload["task"]["agent_role"] for e in retrying] == ["ui_ux"]
    assert retrying[0].payload["error"] == "TimeLimitExceeded"
    assert tasks_of(session.id)["ui_ux"].retry_count == 1


def test_ending_a_session_early_stops_stages_not_yet_started(personal_team, user, stub_worker, wait, monkeypatch):
    monkeypatch.setenv("SAGE_TEST_AGENT_SLEEP", "backend_dev=0.5,dba=0.5")
    session = pipeline.create_session(personal_team.id, user.id, "Team chat", "real-time")
    pipeline.start_session(session.id)
    wait(lambda: tasks_of(session.id)["dba"].status == "running")
    ended = pipeline.end_session(session.id)
    assert ended.status == "completed" and ended.ended_at is not None and ended.duration_seconds is not None
    wait(lambda: tasks_of(session.id)["dba"].status == "completed")  # running work finishes and is kept
    time.sleep(0.3)
    tasks = tasks_of(session.id)
    assert all(tasks[r].status == "pending" for r in ORDER[3:])
    assert ExecutionSession.get_by_id(session.id).current_stage == 1
    types = [e.type for e in events_of(session.id)]
    assert types.count("session_completed") == 1
    with pytest.raises(pipeline.SessionAlreadyEnded):
        pipeline.end_session(session.id)
    with pytest.raises(pipeline.SessionNotFound):
        pipeline.end_session(999999)


def test_the_same_message_delivered_twice_runs_the_task_once(personal_team, user, stub_broker, stub_worker, wait):
    session = pipeline.create_session(personal_team.id, user.id, "File sharing", "upload documents")
    architect = tasks_of(session.id)["architect"]
    message = pipeline.execute_architect_task.actor.message_with_options(
        args=(session.id, architect.task_description, {"stage": 0})
    )
    stub_worker.pause()
    stub_broker.enqueue(message)
    stub_broker.enqueue(message)  # the same message id, twice
    stub_worker.resume()
    session = wait(finished(session.id))
    assert session.status == "completed"
    tasks = tasks_of(session.id)
    assert all(t.status == "completed" for t in tasks.values())
    assert AgentSnapshot.select().count() == 7
    assert TaskDecision.select().where(TaskDecision.agent_task == architect.id).count() == len(
        tasks["architect"].output_data["decisions"]
    )
    events = events_of(session.id)
    assert_contiguous(events)
    assert [e.type for e in events].count("agent_task_completed") == 7


def test_a_group_member_redelivered_after_it_finished_changes_nothing(
    personal_team, user, stub_broker, stub_worker, wait
):
    session = run_session(personal_team, user, wait, feature="Sales report", description="analytics dashboard")
    before = [(e.seq, e.type) for e in events_of(session.id)]
    dba = tasks_of(session.id)["dba"]
    # Redeliver the finished member under its own message id (as Redis would) and under a new one.
    for message_id in (dba.celery_task_id, None):
        message = pipeline.execute_dba_task.actor.message_with_options(
            args=(session.id, dba.task_description, {"stage": 1})
        )
        if message_id:
            message = message.copy(message_id=message_id)
        stub_broker.enqueue(message)
    stub_broker.join("default", fail_fast=True)
    stub_worker.join()
    assert [(e.seq, e.type) for e in events_of(session.id)] == before
    assert AgentTask.get_by_id(dba.id).completed_at == dba.completed_at
    assert AgentSnapshot.select().count() == 7


def test_a_next_stage_message_that_arrives_early_does_not_run(personal_team, user, stub_broker, stub_worker, wait):
    session = pipeline.create_session(personal_team.id, user.id, "Bookings", "appointment calendar")
    frontend = tasks_of(session.id)["frontend_dev"]
    stub_broker.enqueue(
        pipeline.execute_frontend_task.actor.message_with_options(args=(session.id, frontend.task_description, {}))
    )
    stub_broker.join("default")
    stub_worker.join()
    assert AgentTask.get_by_id(frontend.id).status == "pending"
    assert [e.type for e in events_of(session.id)] == ["session_started"]


def test_every_stored_event_is_published_on_the_session_channel(personal_team, user, stub_worker, wait, redis_client):
    import json

    pubsub = redis_client.pubsub()
    from models.events import channel, namespace

    pubsub.psubscribe(channel("*", namespace(redis_client)))
    pubsub.get_message(timeout=1)  # the subscription confirmation
    session = run_session(personal_team, user, wait)
    published = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "pmessage":
            assert message["channel"] == channel(session.id, namespace(redis_client))
            published.append(json.loads(message["data"]))
    pubsub.close()
    stored = events_of(session.id)
    assert sorted(m["seq"] for m in published) == [e.seq for e in stored]
    assert {m["type"] for m in published} == {e.type for e in stored}


def test_a_stage_member_delivered_twice_starts_the_next_stage_once(
    personal_team, user, stub_broker, stub_worker, wait, monkeypatch
):
    sent: list[str] = []
    real_enqueue = stub_broker.enqueue

    def enqueue(message, *, delay=None):
        sent.append(message.actor_name)
        out = real_enqueue(message, delay=delay)
        if message.actor_name == "execute_dba_task" and sent.count("execute_dba_task") == 1:
            real_enqueue(message, delay=delay)  # the same message, with its place in the chain, twice
        return out

    monkeypatch.setattr(stub_broker, "enqueue", enqueue)
    session = run_session(personal_team, user, wait)
    assert session.status == "completed"
    assert sent.count("execute_frontend_task") == sent.count("execute_ui_ux_task") == 1
    assert sent.count("execute_security_task") == 1
    events = events_of(session.id)
    assert_contiguous(events)
    assert [e.type for e in events].count("agent_task_completed") == 7
    assert AgentSnapshot.select().count() == 7

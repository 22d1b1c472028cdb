"""Reruns make new linked sessions; the sweeper ends sessions that stopped moving."""

from __future__ import annotations

import datetime as dt

import pytest

from actors import pipeline
from actors.reruns import NotRerunnable, rerun_session, rerun_task
from actors.sweeper import stall_seconds, sweep
from models import AgentSnapshot, AgentTask, ExecutionSession, SessionDecision, SessionEvent, TaskDecision, utcnow


def tasks_of(session_id):
    return {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == session_id)}


def done(session_id):
    return lambda: ExecutionSession.get_by_id(session_id).status != "active"


def test_rerun_from_a_role_copies_earlier_stages_and_reruns_the_rest(personal_team, user, stub_worker, wait):
    original = pipeline.create_session(personal_team.id, user.id, "Team chat", "real-time messaging")
    SessionDecision.create(session=original, user=user, decision_text="Use MySQL", category="technology")
    pipeline.start_session(original.id)
    wait(done(original.id))
    before = {r: (t.status, t.output_data) for r, t in tasks_of(original.id).items()}

    rerun = rerun_session(original.id, from_role="frontend_dev")
    wait(done(rerun.id))
    rerun = ExecutionSession.get_by_id(rerun.id)
    assert rerun.status == "completed" and rerun.rerun_of_id == original.id
    old, new = tasks_of(original.id), tasks_of(rerun.id)
    assert all(new[r].rerun_of_id == old[r].id for r in new)
    # Stages before frontend_dev's were copied (same start time), the rest ran again.
    for role in ("architect", "backend_dev", "dba"):
        assert new[role].started_at == old[role].started_at
        assert new[role].output_data["summary"] == old[role].output_data["summary"]
    for role in ("frontend_dev", "ui_ux", "security", "it_admin"):
        assert new[role].started_at > old[role].completed_at
    # The copy's decisions are new rows, and downstream provenance points at them, not the original's.
    new_dba_ids = {d.id for d in TaskDecision.select().where(TaskDecision.agent_task == new["dba"].id)}
    assert new_dba_ids and new_dba_ids.isdisjoint(
        {d.id for d in TaskDecision.select().where(TaskDecision.agent_task == old["dba"].id)}
    )
    security_based_on = {i for d in new["security"].output_data["decisions"] for i in d["based_on"]}
    assert security_based_on & new_dba_ids
    assert new["dba"].output_data["artifacts"]["engine"] == "mysql"
    # History is untouched.
    assert {r: (t.status, t.output_data) for r, t in tasks_of(original.id).items()} == before
    events = list(SessionEvent.select().where(SessionEvent.session == rerun.id).order_by(SessionEvent.seq))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events][:4] == ["session_started"] + ["agent_task_completed"] * 3
    assert AgentSnapshot.select().join(AgentTask).where(AgentTask.session == rerun.id).count() == 7


def test_rerun_task_makes_a_new_session_from_that_task(personal_team, user, stub_worker, wait):
    original = pipeline.create_session(personal_team.id, user.id, "Photo upload")
    pipeline.start_session(original.id)
    wait(done(original.id))
    security = tasks_of(original.id)["security"]
    rerun = rerun_task(security.id)
    wait(done(rerun.id))
    new = tasks_of(rerun.id)
    assert new["security"].rerun_of_id == security.id and new["security"].status == "completed"
    assert new["frontend_dev"].started_at == tasks_of(original.id)["frontend_dev"].started_at


def test_a_rerun_cannot_copy_a_stage_that_never_completed(personal_team, user):
    original = pipeline.create_session(personal_team.id, user.id, "Search")
    with pytest.raises(NotRerunnable):
        rerun_session(original.id, from_role="security")
    with pytest.raises(NotRerunnable):
        rerun_session(original.id, from_role="janitor")
    with pytest.raises(pipeline.SessionNotFound):
        rerun_session(424242)
    assert ExecutionSession.select().count() == 1


def test_the_sweeper_errors_a_session_that_stopped_moving(personal_team, user, settings):
    stalled = pipeline.create_session(personal_team.id, user.id, "Team chat")
    fresh = pipeline.create_session(personal_team.id, user.id, "Search")
    architect = tasks_of(stalled.id)["architect"]
    AgentTask.update(status="running", started_at=utcnow(), celery_task_id="lost").where(
        AgentTask.id == architect.id
    ).execute()
    long_ago = utcnow() - dt.timedelta(seconds=stall_seconds(settings) + 5)
    SessionEvent.update(created_at=long_ago).where(SessionEvent.session == stalled.id).execute()

    assert sweep(settings) == [stalled.id]
    stalled = ExecutionSession.get_by_id(stalled.id)
    assert stalled.status == "error" and "no progress for" in stalled.error_message
    assert "architect (running)" in stalled.error_message
    assert AgentTask.get_by_id(architect.id).status == "error"
    last = SessionEvent.select().where(SessionEvent.session == stalled.id).order_by(SessionEvent.seq.desc()).first()
    assert last.type == "session_error" and last.payload["task_id"] == architect.id
    assert ExecutionSession.get_by_id(fresh.id).status == "active"
    assert sweep(settings) == []  # nothing left to sweep, and sweeping again changes nothing


def test_the_stall_limit_covers_a_time_limit_retries_and_redelivery(settings):
    assert stall_seconds(settings) > settings.task_time_limit_seconds + max(settings.retry_delays_seconds)
    assert stall_seconds(settings) > settings.heartbeat_timeout_ms / 1000

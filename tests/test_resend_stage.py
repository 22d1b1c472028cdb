"""`resend_stage`: the watchdog's way to re-send a stage whose messages were lost from the broker."""

from __future__ import annotations

import pytest

from actors import pipeline
from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent


def tasks_of(session_id: int) -> dict[str, AgentTask]:
    return {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == session_id)}


def finished(session_id: int):
    return lambda: (s := ExecutionSession.get_by_id(session_id)).status != "active" and s


def completed_once(session_id: int) -> None:
    events = list(SessionEvent.select().where(SessionEvent.session == session_id).order_by(SessionEvent.seq))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    completed = sorted(e.payload["task"]["agent_role"] for e in events if e.type == "agent_task_completed")
    assert completed == sorted(pipeline.ROLE_TASKS)
    assert AgentSnapshot.select().join(AgentTask).where(AgentTask.session == session_id).count() == 7


def lose_what_follows(monkeypatch, task, advance: bool, lost: list | None = None) -> list:
    """Make `task`'s stage gate lose the next stage's messages (after advancing, or without).

    Returns the list each lost gate call is added to. A test waits for it before undoing the
    patch: the gate runs after the completion commits, so a test that undid the patch as soon as
    it saw the task completed could let the real gate send after all."""
    lost = [] if lost is None else lost
    real_gate = task.gate

    def losing_gate(results, send):
        if advance:
            real_gate(results, lambda: True)  # the advance commits; the sent messages vanish
        lost.append(results)

    monkeypatch.setattr(task, "gate", losing_gate)
    return lost


def test_resend_stage_sends_the_lost_stage_and_the_pipeline_continues(
    personal_team, user, stub_worker, wait, monkeypatch
):
    session = pipeline.create_session(personal_team.id, user.id, "Team chat", "real-time")
    lost = lose_what_follows(monkeypatch, pipeline.execute_architect_task, advance=True)
    pipeline.start_session(session.id)
    wait(lambda: ExecutionSession.get_by_id(session.id).current_stage == 1 and lost)
    monkeypatch.undo()
    # The stage-1 messages are gone, and backend_dev's worker died holding it as `running`.
    AgentTask.update(status="running", celery_task_id="lost-message").where(
        (AgentTask.session == session.id) & (AgentTask.agent_role == "backend_dev")
    ).execute()
    assert tasks_of(session.id)["dba"].status == "pending"

    assert pipeline.resend_stage(session.id) == 2
    session = wait(finished(session.id))
    assert session.status == "completed"
    tasks = tasks_of(session.id)
    assert tasks["backend_dev"].celery_task_id == "lost-message"  # re-claimed under its own id
    completed_once(session.id)


def test_resend_stage_makes_a_lost_advance_and_sends_the_next_stage(
    personal_team, user, stub_worker, wait, monkeypatch
):
    session = pipeline.create_session(personal_team.id, user.id, "Search", "find recipes")
    lost: list = []
    for task in (pipeline.execute_backend_task, pipeline.execute_dba_task):
        lost = lose_what_follows(monkeypatch, task, advance=False, lost=lost)
    pipeline.start_session(session.id)
    wait(lambda: all(tasks_of(session.id)[r].status == "completed" for r in ("backend_dev", "dba")) and lost)
    monkeypatch.undo()
    # The stage's last completion moves the session on itself when it sees the other task
    # completed; two completing at the same moment each see the other running and leave the move
    # to the gate. That race is simulated here: the stage set back to 1, and the gate lost.
    ExecutionSession.update(current_stage=1).where(ExecutionSession.id == session.id).execute()

    assert pipeline.resend_stage(session.id) == 2  # frontend_dev and ui_ux
    session = wait(finished(session.id))
    assert session.status == "completed"
    completed_once(session.id)


def test_resending_a_stage_that_was_not_lost_runs_nothing_twice(personal_team, user, stub_worker, wait, monkeypatch):
    monkeypatch.setenv("SAGE_TEST_AGENT_SLEEP", "backend_dev=0.4,dba=0.4")
    session = pipeline.create_session(personal_team.id, user.id, "Bookings", "calendar")
    pipeline.start_session(session.id)
    wait(lambda: tasks_of(session.id)["dba"].status == "running")
    assert pipeline.resend_stage(session.id) in (1, 2)
    session = wait(finished(session.id))
    assert session.status == "completed" and session.current_stage == 3
    completed_once(session.id)


def test_resend_stage_of_an_ended_or_unknown_session(personal_team, user):
    session = pipeline.create_session(personal_team.id, user.id, "Search")
    pipeline.end_session(session.id)
    assert pipeline.resend_stage(session.id) == 0
    with pytest.raises(pipeline.SessionNotFound):
        pipeline.resend_stage(424242)


def test_a_redelivered_last_members_gate_sends_the_stage_its_completion_moved_to(
    personal_team, user, stub_worker, wait, monkeypatch
):
    """The architect's completion moved the session to stage 1 itself; its worker then died before
    its gate sent anything. The redelivered message finds the task completed and returns the same
    result, without `advanced`: its gate's `advance` moves nothing and must send stage 1 all the same."""
    session = pipeline.create_session(personal_team.id, user.id, "Invoices", "pdf export")
    lost = lose_what_follows(monkeypatch, pipeline.execute_architect_task, advance=False)
    pipeline.start_session(session.id)
    wait(lambda: tasks_of(session.id)["architect"].status == "completed" and lost)
    monkeypatch.undo()
    assert ExecutionSession.get_by_id(session.id).current_stage == 1  # moved by the completion
    assert {tasks_of(session.id)[r].status for r in ("backend_dev", "dba")} == {"pending"}

    redelivered = pipeline._result(tasks_of(session.id)["architect"])
    assert "advanced" not in redelivered
    pipeline.execute_architect_task.gate([redelivered], lambda: False)  # no chain behind it: a new one
    session = wait(finished(session.id))
    assert session.status == "completed"
    completed_once(session.id)

"""Sessions written straight into the database, for read-side and page tests that need no worker."""

from __future__ import annotations

import datetime as dt

from models import (
    AGENT_ROLES,
    STAGE_OF_ROLE,
    AgentSnapshot,
    AgentTask,
    ExecutionSession,
    SessionDecision,
    SessionEvent,
    TaskDecision,
    db,
    utcnow,
)
from models.events import record_event
from models.serialize import session_dict, snapshot_dict, task_dict


def seed_session(
    team,
    user,
    feature: str = "Search",
    *,
    roles: list[str] | None = None,
    extra_events: int = 0,
    status: str = "completed",
    with_work: bool = False,
    ended_by=None,
) -> ExecutionSession:
    """A finished session: per role a task, two decisions (each based on the previous role's),
    a snapshot and its started/completed events; one session decision; `extra_events` more
    `decision_created` events; then `session_completed` (or `session_error` for status "error").
    `with_work` stores the knowledge base's real output per agent (artifacts and all) instead of
    a one-line summary; `ended_by` (a user) makes it a session that user ended early.
    """
    roles = roles or list(AGENT_ROLES)
    outputs = agent_outputs(feature, roles) if with_work else {}
    start = utcnow() - dt.timedelta(seconds=10)
    timeline: list[tuple[dt.datetime, int, str, dict]] = []  # logged in time order at the end

    def log(at: dt.datetime, type_: str, payload: dict) -> None:
        timeline.append((at, len(timeline), type_, payload))

    with db.atomic():
        session = ExecutionSession.create(team=team, user=user, feature_name=feature, started_at=start)
        log(start, "session_started", {"session": session_dict(session)})
        SessionDecision.create(session=session, user=user, decision_text="Keep it simple", category="process")
        previous: list[int] = []
        task = None
        for index, role in enumerate(roles):
            began = start + dt.timedelta(seconds=2 * STAGE_OF_ROLE[role] + 0.1 * index)
            task = AgentTask.create(
                session=session,
                agent_role=role,
                stage=STAGE_OF_ROLE[role],
                task_description=f"{role} work on {feature}",
                status="running",
                started_at=began,
            )
            log(began, "agent_task_started", {"task": task_dict(task)})
            task.status, task.completed_at, task.duration_seconds = "completed", began + dt.timedelta(seconds=1.5), 1.5
            task.output_data = outputs.get(role) or {"summary": f"{role} planned {feature}"}
            task.save(
                only=[AgentTask.status, AgentTask.completed_at, AgentTask.duration_seconds, AgentTask.output_data]
            )
            made = [
                TaskDecision.create(
                    agent_task=task,
                    decision_text=f"{role} decides on {feature} ({n + 1})",
                    rationale="because",
                    category="design",
                    based_on=previous,
                )
                for n in range(2)
            ]
            previous = [d.id for d in made]
            snapshot = AgentSnapshot.create(
                agent_task=task,
                agent_role=role,
                context_state={"feature_name": feature, "stage": task.stage},
                capabilities=[f"{role}_skill", "shared_skill"],
                decisions=[{"text": d.decision_text} for d in made],
                execution_metadata={"attempt": 1},
            )
            log(
                task.completed_at,
                "agent_task_completed",
                {"task": task_dict(task, made), "snapshot": snapshot_dict(snapshot)},
            )
        if ended_by is not None:  # the agents that never started keep their pending rows
            for role in (r for r in AGENT_ROLES if r not in roles):
                AgentTask.create(
                    session=session,
                    agent_role=role,
                    stage=STAGE_OF_ROLE[role],
                    task_description=f"{role} work on {feature}",
                )
        for n in range(extra_events):
            log(start + dt.timedelta(seconds=5), "decision_created", {"decision": {"n": n}})
        session.status = status
        session.end_reason = "user" if ended_by is not None else status
        session.ended_by = ended_by
        session.ended_at = start + dt.timedelta(seconds=8)
        session.duration_seconds = 8.0
        session.save()
        # The session ends after its last task, even when the seeded clock says otherwise.
        ended = max([session.ended_at, *(entry[0] for entry in timeline)])
        if status == "completed":
            log(ended, "session_completed", {"session": session_dict(session)})
        else:
            log(ended, "session_error", {"error": f"{roles[-1]} failed", "task_id": task.id})
        for at, _, type_, payload in sorted(timeline, key=lambda entry: entry[:2]):
            log_at(session.id, at, type_, payload)
    return ExecutionSession.get_by_id(session.id)


def log_at(session_id: int, at: dt.datetime, type_: str, payload: dict) -> None:
    """Record an event as if it had happened `at` (so a replay of seeded data has a real timeline)."""
    seq = record_event(session_id, type_, payload)["seq"]
    SessionEvent.update(created_at=at).where((SessionEvent.session == session_id) & (SessionEvent.seq == seq)).execute()


def agent_outputs(feature: str, roles: list[str]) -> dict[str, dict]:
    """What the knowledge-base brain writes for `roles` of `feature`, each seeing the ones before."""
    from actors.agents import make_agent

    outputs: dict[str, dict] = {}
    for role in roles:
        agent = make_agent(role)
        upstream = {
            r: {"task_id": 0, "output": o} for r, o in outputs.items() if STAGE_OF_ROLE[r] < STAGE_OF_ROLE[role]
        }
        agent.set_context({"feature_name": feature, "description": None, "session_decisions": [], "upstream": upstream})
        outputs[role] = agent.execute_task(f"{role} work on {feature}")
    return outputs

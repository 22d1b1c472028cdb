"""Sessions written straight into the database, for read-side tests that need no worker."""

from __future__ import annotations

import datetime as dt

from models import PIPELINE, AgentSnapshot, AgentTask, ExecutionSession, SessionDecision, TaskDecision, db, utcnow
from models.events import record_event
from models.serialize import session_dict, snapshot_dict, task_dict


def seed_session(team, user, *, roles=None, extra_events: int = 0, feature: str = "Search") -> ExecutionSession:
    """A finished session with a task, two decisions and a snapshot per role, and its events."""
    roles = roles or [role for stage in PIPELINE for role in stage]
    start = utcnow() - dt.timedelta(minutes=5)
    with db.atomic():
        session = ExecutionSession.create(team=team, user=user, feature_name=feature, started_at=start)
        record_event(session.id, "session_started", {"session": session_dict(session)})
        SessionDecision.create(session=session, user=user, decision_text="Keep it simple", category="process")
        previous: list[int] = []
        for index, role in enumerate(roles):
            stage = next(i for i, members in enumerate(PIPELINE) if role in members)
            began = start + dt.timedelta(seconds=index)
            task = AgentTask.create(
                session=session,
                agent_role=role,
                stage=stage,
                task_description=f"{role} work",
                status="completed",
                started_at=began,
                completed_at=began + dt.timedelta(seconds=1),
                duration_seconds=1.0,
                output_data={"summary": f"{role} done"},
            )
            record_event(session.id, "agent_task_started", {"task": task_dict(task)})
            made = [
                TaskDecision.create(
                    agent_task=task, decision_text=f"{role} choice {n}", category="architecture", based_on=previous
                )
                for n in range(2)
            ]
            previous = [d.id for d in made]
            snapshot = AgentSnapshot.create(
                agent_task=task, agent_role=role, context_state={"role": role}, capabilities=["DESIGN"], decisions=[]
            )
            record_event(
                session.id,
                "agent_task_completed",
                {"task": task_dict(task, made), "snapshot": snapshot_dict(snapshot)},
            )
        for n in range(extra_events):
            record_event(session.id, "decision_created", {"decision": {"n": n}})
        session.status = "completed"
        session.ended_at = start + dt.timedelta(seconds=len(roles) + 1)
        session.save()
        record_event(session.id, "session_completed", {"session": session_dict(session)})
    return ExecutionSession.get_by_id(session.id)

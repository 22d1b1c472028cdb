"""Reruns: a new session linked to the original, so history is never overwritten.

`rerun_session(id)` replays the whole feature in a new session (`rerun_of` = the original) with
copies of the original's session decisions. `rerun_session(id, from_role=R)` copies the completed
tasks of every stage before R's stage (output, decisions, snapshot; each copy's `rerun_of` points
at its original task) and runs R's stage and everything after it. A stage is the unit: rerunning
`dba` also reruns `backend_dev`, its parallel partner, because both read the same upstream work.
`rerun_task(id)` is `rerun_session(task's session, from_role=task's role)`; a new session is
needed because a session has one task per role.

`decisions=[...]` replaces the session decisions for the new run (add, remove, edit; `[]` runs
with none); left out, the original's are copied. Copied stages keep what they saw: when the
decisions change, `rerun_warnings` names each copied agent that worked from the original ones.
"""

from __future__ import annotations

from typing import Any

from actors.pipeline import SessionNotFound, _outside_transaction, _publish, _task_payload, start_session
from models.compare import same_text
from models.db import db
from models.events import record_event
from models.schema import (
    AGENT_ROLES,
    STAGE_OF_ROLE,
    AgentSnapshot,
    AgentTask,
    ExecutionSession,
    SessionDecision,
    TaskDecision,
)
from models.serialize import session_dict, snapshot_dict


class NotRerunnable(ValueError):
    """The rerun asked for cannot be built (unknown role, or an upstream task never completed)."""


def _remap_output(output: dict[str, Any], decision_ids: dict[int, int], session_ids: dict[int, int]) -> dict[str, Any]:
    output = dict(output)
    decisions = []
    for decision in output.get("decisions", []):
        decision = dict(decision)
        decision["based_on"] = [decision_ids.get(i, i) for i in decision.get("based_on", [])]
        decision["based_on_session_decisions"] = [
            session_ids.get(i, i) for i in decision.get("based_on_session_decisions", [])
        ]
        decisions.append(decision)
    output["decisions"] = decisions
    if "provenance" in output:
        provenance = dict(output["provenance"])
        provenance["session_decisions"] = [session_ids.get(i, i) for i in provenance.get("session_decisions", [])]
        output["provenance"] = provenance
    return output


def _decision_signature(decision: dict[str, Any]) -> tuple:
    return (
        same_text(str(decision.get("decision_text", ""))),
        decision.get("category"),
        decision.get("confidence") or "high",
    )


def rerun_warnings(session_id: int, from_role: str | None, decisions: list[dict[str, Any]] | None) -> list[str]:
    """What a rerun with these settings should tell the user before and after it starts.

    When the session decisions change, every stage copied from the original (those before
    `from_role`'s) was made with the original decisions and will not see the new ones.
    """
    if decisions is None:
        return []
    original = [
        {"decision_text": d.decision_text, "category": d.category, "confidence": d.confidence}
        for d in SessionDecision.select().where(SessionDecision.session == session_id)
    ]
    if sorted(map(_decision_signature, original)) == sorted(map(_decision_signature, decisions)):
        return []
    from_stage = STAGE_OF_ROLE[from_role] if from_role else 0
    copied = [role for role in AGENT_ROLES if STAGE_OF_ROLE[role] < from_stage]
    return [
        f"{role} is copied from session {session_id} and was built on the original session decisions, "
        f"not the changed ones; rerun from {role} to apply them to its work"
        for role in copied
    ]


def rerun_session(
    session_id: int,
    from_role: str | None = None,
    user_id: int | None = None,
    start: bool = True,
    decisions: list[dict[str, Any]] | None = None,
    brain: str | None = None,
) -> ExecutionSession:
    """Create (and by default start) a rerun of a session, from its first stage or from `from_role`'s.

    `decisions` (each `{decision_text, category?, confidence?}`) replaces the session decisions;
    None copies the original's. The rerun thinks with the original's brain unless `brain` names
    another.
    """
    _outside_transaction("rerun_session")
    if from_role is not None and from_role not in AGENT_ROLES:
        raise NotRerunnable(f"unknown role {from_role!r}; roles: {', '.join(AGENT_ROLES)}")
    original = ExecutionSession.get_or_none(ExecutionSession.id == session_id)
    if original is None:
        raise SessionNotFound(session_id)
    from_stage = STAGE_OF_ROLE[from_role] if from_role else 0
    originals = {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == session_id)}
    events = []
    with db.atomic():
        rerun = ExecutionSession.create(
            team=original.team_id,
            user=user_id if user_id is not None else original.user_id,
            feature_name=original.feature_name,
            description=original.description,
            rerun_of=original.id,
            current_stage=from_stage,
            brain=brain or original.brain,
        )
        old_decisions = list(
            SessionDecision.select().where(SessionDecision.session == session_id).order_by(SessionDecision.id)
        )
        if decisions is None:
            given = [
                {
                    "decision_text": d.decision_text,
                    "category": d.category,
                    "confidence": d.confidence,
                    "user": d.user_id,
                }
                for d in old_decisions
            ]
        else:
            author = user_id if user_id is not None else original.user_id
            given = [{**d, "user": author} for d in decisions]
        # A kept decision (same text) stands for its original in the copied stages' provenance;
        # a removed or edited one is still cited by them with its original id: what they saw.
        by_text = {same_text(d.decision_text): d for d in old_decisions}
        session_ids = {}
        for decision in given:
            copy = SessionDecision.create(
                session=rerun,
                user=decision["user"],
                decision_text=decision["decision_text"],
                category=decision.get("category"),
                confidence=decision.get("confidence") or "high",
            )
            kept = by_text.get(same_text(copy.decision_text))
            if kept is not None:
                session_ids[kept.id] = copy.id
        events.append(record_event(rerun.id, "session_started", {"session": session_dict(rerun)}))
        decision_ids: dict[int, int] = {}
        for role in AGENT_ROLES:
            old = originals[role]
            if old.stage >= from_stage:
                AgentTask.create(
                    session=rerun,
                    agent_role=role,
                    stage=old.stage,
                    task_description=old.task_description,
                    rerun_of=old.id,
                )
                continue
            if old.status != "completed":
                raise NotRerunnable(f"{role} of session {session_id} is {old.status}; rerun from an earlier role")
            task = AgentTask.create(
                session=rerun,
                agent_role=role,
                stage=old.stage,
                task_description=old.task_description,
                status="completed",
                input_data=old.input_data,
                started_at=old.started_at,
                completed_at=old.completed_at,
                duration_seconds=old.duration_seconds,
                retry_count=old.retry_count,
                rerun_of=old.id,
            )
            for made in TaskDecision.select().where(TaskDecision.agent_task == old.id).order_by(TaskDecision.id):
                made_copy = TaskDecision.create(
                    agent_task=task,
                    user=made.user_id,
                    source=made.source,
                    decision_text=made.decision_text,
                    rationale=made.rationale,
                    category=made.category,
                    confidence=made.confidence,
                    based_on=[decision_ids.get(i, i) for i in made.based_on or []],
                )
                decision_ids[made.id] = made_copy.id
            output = _remap_output(old.output_data or {}, decision_ids, session_ids)
            output["decisions"] = [{**d, "id": decision_ids.get(d.get("id"), d.get("id"))} for d in output["decisions"]]
            AgentTask.update(output_data=output).where(AgentTask.id == task.id).execute()
            snapshot = None
            old_snapshot = (
                AgentSnapshot.select()
                .where(AgentSnapshot.agent_task == old.id)
                .order_by(AgentSnapshot.id.desc())
                .first()
            )
            if old_snapshot is not None:
                snapshot = AgentSnapshot.create(
                    agent_task=task,
                    agent_role=role,
                    context_state=old_snapshot.context_state,
                    capabilities=old_snapshot.capabilities,
                    decisions=output["decisions"],
                    execution_metadata={**(old_snapshot.execution_metadata or {}), "copied_from_task": old.id},
                )
            events.append(
                record_event(
                    rerun.id,
                    "agent_task_completed",
                    {"task": _task_payload(task.id), "snapshot": snapshot_dict(snapshot)},
                )
            )
    _publish(events)
    if start:
        start_session(rerun.id)
    return ExecutionSession.get_by_id(rerun.id)


def rerun_task(task_id: int, user_id: int | None = None, start: bool = True) -> ExecutionSession:
    """Rerun one task (and its stage and all later stages) in a new session linked to the original."""
    task = AgentTask.get_or_none(AgentTask.id == task_id)
    if task is None:
        raise NotRerunnable(f"no task {task_id}")
    return rerun_session(task.session_id, from_role=task.agent_role, user_id=user_id, start=start)

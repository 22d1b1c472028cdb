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

from actors.pipeline import start_session
from models import lifecycle
from models.compare import same_text
from models.lifecycle import NotRerunnable, SessionNotFound
from models.schema import AGENT_ROLES, STAGE_OF_ROLE, AgentTask, ExecutionSession, SessionDecision

__all__ = ["NotRerunnable", "SessionNotFound", "rerun_session", "rerun_task", "rerun_warnings"]


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
    rerun = lifecycle.create_rerun(session_id, from_role, user_id, decisions, brain).value
    if start:
        start_session(rerun.id)
    return ExecutionSession.get_by_id(rerun.id)


def rerun_task(task_id: int, user_id: int | None = None, start: bool = True) -> ExecutionSession:
    """Rerun one task (and its stage and all later stages) in a new session linked to the original."""
    task = AgentTask.get_or_none(AgentTask.id == task_id)
    if task is None:
        raise NotRerunnable(f"no task {task_id}")
    return rerun_session(task.session_id, from_role=task.agent_role, user_id=user_id, start=start)

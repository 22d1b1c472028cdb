"""The JSON shapes of `docs/api.md`, built from rows; shared by REST views and event payloads."""

from __future__ import annotations

import datetime as dt
from typing import Any, overload

from models.brains import session_usage_dict
from models.schema import (
    AgentSnapshot,
    AgentTask,
    ExecutionSession,
    Invitation,
    SessionDecision,
    SessionEvent,
    TaskDecision,
    Team,
    User,
)


@overload
def iso(value: dt.datetime) -> str: ...
@overload
def iso(value: dt.datetime | None) -> str | None: ...
def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`, or None."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def user_dict(user: User) -> dict[str, Any]:
    """`User`: never the password hash."""
    return {"id": user.id, "username": user.username, "email": user.email, "created_at": iso(user.created_at)}


def team_dict(team: Team, role: str | None) -> dict[str, Any]:
    """`Team`, with the caller's `role`."""
    return {
        "id": team.id,
        "name": team.name,
        "description": team.description,
        "is_shared": team.is_shared,
        "owner_id": team.owner_id,
        "role": role,
        "created_at": iso(team.created_at),
    }


def invitation_dict(invitation: Invitation) -> dict[str, Any]:
    """`Invitation`: `invitee` is what the owner typed, never another account's data."""
    return {
        "id": invitation.id,
        "team_id": invitation.team_id,
        "invitee": invitation.invitee_text,
        "role": invitation.role,
        "status": invitation.status,
        "created_at": iso(invitation.created_at),
    }


def received_invitation_dict(invitation: Invitation) -> dict[str, Any]:
    """An `Invitation` as its invitee sees it (`GET /invitations`): with the team and the inviter."""
    return {
        **invitation_dict(invitation),
        "team": {"id": invitation.team.id, "name": invitation.team.name},
        # `pending_for_user` joins the inviter under this name; the model does not declare it.
        "invited_by": invitation.inviter.username,  # type: ignore[attr-defined]
    }


def session_dict(session: ExecutionSession) -> dict[str, Any]:
    """`Session`."""
    return {
        "id": session.id,
        "team_id": session.team_id,
        "user_id": session.user_id,
        "feature_name": session.feature_name,
        "description": session.description,
        "status": session.status,
        "current_stage": session.current_stage,
        "error_message": session.error_message,
        "rerun_of": session.rerun_of_id,
        "started_at": iso(session.started_at),
        "ended_at": iso(session.ended_at),
        "duration_seconds": session.duration_seconds,
        "brain": session.brain,
        "usage": session_usage_dict(session.usage),
        "ended_by": session.ended_by_id,
        "end_reason": session.end_reason,
    }


def session_decision_dict(decision: SessionDecision) -> dict[str, Any]:
    """`SessionDecision`."""
    return {
        "id": decision.id,
        "session_id": decision.session_id,
        "user_id": decision.user_id,
        "decision_text": decision.decision_text,
        "category": decision.category,
        "confidence": decision.confidence,
        "created_at": iso(decision.created_at),
    }


def task_decision_dict(decision: TaskDecision) -> dict[str, Any]:
    """`TaskDecision`, with the upstream decisions it was based on."""
    return {
        "id": decision.id,
        "task_id": decision.agent_task_id,
        "user_id": decision.user_id,
        "source": decision.source,
        "decision_text": decision.decision_text,
        "rationale": decision.rationale,
        "category": decision.category,
        "confidence": decision.confidence,
        "based_on": decision.based_on or [],
        "created_at": iso(decision.created_at),
    }


def task_dict(task: AgentTask, decisions: list[TaskDecision] | None = None) -> dict[str, Any]:
    """`Task`; `decisions` are passed in (prefetched) so that no query runs per task."""
    return {
        "id": task.id,
        "session_id": task.session_id,
        "agent_role": task.agent_role,
        "stage": task.stage,
        "task_description": task.task_description,
        "status": task.status,
        "input_data": task.input_data,
        "output_data": task.output_data,
        "started_at": iso(task.started_at),
        "completed_at": iso(task.completed_at),
        "duration_seconds": task.duration_seconds,
        "error_message": task.error_message,
        "retry_count": task.retry_count,
        "rerun_of": task.rerun_of_id,
        "decisions": [task_decision_dict(d) for d in (decisions or [])],
        "usage": task.usage,
    }


def snapshot_dict(snapshot: AgentSnapshot | None) -> dict[str, Any] | None:
    """An agent snapshot, or None."""
    if snapshot is None:
        return None
    return {
        "id": snapshot.id,
        "task_id": snapshot.agent_task_id,
        "agent_role": snapshot.agent_role,
        "context_state": snapshot.context_state,
        "capabilities": snapshot.capabilities,
        "decisions": snapshot.decisions,
        "execution_metadata": snapshot.execution_metadata,
        "created_at": iso(snapshot.created_at),
    }


def event_dict(event: SessionEvent) -> dict[str, Any]:
    """An event as sent on the WebSocket: the payload's keys plus `type`, `seq`, `at`, `session_id`."""
    return event_message(event.session_id, event.seq, event.type, event.payload, event.created_at)


def event_message(session_id: int, seq: int, type_: str, payload: dict[str, Any], created_at: Any) -> dict[str, Any]:
    """`event_dict` of a stored event's values (for the writer, which has them without a row)."""
    return {**payload, "type": type_, "seq": seq, "at": iso(created_at), "session_id": session_id}


def member_dict(member: Any) -> dict[str, Any]:
    """`Member`: anything with `user_id`, `username`, `role`, `joined_at` (see `models.teams.Member`)."""
    return {
        "user_id": member.user_id,
        "username": member.username,
        "role": member.role,
        "joined_at": iso(member.joined_at),
    }

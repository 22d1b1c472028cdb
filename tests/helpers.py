"""Helpers for tests that need real accounts and logged-in clients (import with `from helpers import ...`).

Passwords are hashed at bcrypt cost 4 here and in the app under test (conftest sets
BCRYPT_ROUNDS=4), so logging in costs milliseconds.
"""

from __future__ import annotations

from typing import Any

import bcrypt

from models import Team, TeamMembership, User

PASSWORD = "correct horse battery"


def password_hash(password: str = PASSWORD) -> str:
    """A cheap (cost 4) bcrypt hash of `password`."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(4)).decode("ascii")


_PASSWORD_HASH = password_hash()


def make_user(username: str, *, password: str = PASSWORD, email: str | None = None) -> User:
    """A user who can log in with `password` (default `PASSWORD`)."""
    hashed = _PASSWORD_HASH if password == PASSWORD else password_hash(password)
    return User.create(username=username, email=email or f"{username.lower()}@example.com", password_hash=hashed)


def add_member(team: Team, user: User, role: str = "member") -> TeamMembership:
    """Put `user` in `team` with `role` directly in the database."""
    return TeamMembership.create(team=team, user=user, role=role)


async def login(client: Any, username: str, password: str = PASSWORD) -> dict[str, Any]:
    """Log `client` in through `POST /auth/login`; return the user JSON (fails the test otherwise)."""
    response = await client.post("/auth/login", json={"username": username, "password": password})
    body = await response.get_json()
    assert response.status_code == 200, body
    return body["user"]


async def logged_in_client(app: Any, username: str, password: str = PASSWORD) -> Any:
    """A fresh test client of `app`, logged in as `username`."""
    client = app.test_client()
    await login(client, username, password)
    return client


async def error_of(response: Any) -> dict[str, Any]:
    """The `error` object of an envelope response (asserting the envelope's shape)."""
    body = await response.get_json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def finished_session(team: Team, user: User, feature: str = "Search", *, status: str = "completed") -> Any:
    """A session with its seven tasks done, snapshots, agent decisions and its event log, written
    straight to the database (no worker): for page tests that need history to show.
    """
    import datetime as dt

    from models import db
    from models.events import record_event
    from models.schema import (
        AGENT_ROLES,
        STAGE_OF_ROLE,
        AgentSnapshot,
        AgentTask,
        ExecutionSession,
        TaskDecision,
        utcnow,
    )
    from models.serialize import session_dict, snapshot_dict, task_dict

    start = utcnow() - dt.timedelta(seconds=10)
    with db.atomic():
        session = ExecutionSession.create(team=team, user=user, feature_name=feature, started_at=start)
        record_event(session.id, "session_started", {"session": session_dict(session)})
        for index, role in enumerate(AGENT_ROLES):
            began = start + dt.timedelta(seconds=2 * STAGE_OF_ROLE[role] + 0.1 * index)
            task = AgentTask.create(
                session=session,
                agent_role=role,
                stage=STAGE_OF_ROLE[role],
                task_description=f"{role} work on {feature}",
                status="running",
                started_at=began,
            )
            record_event(session.id, "agent_task_started", {"task": task_dict(task)})
            task.status, task.completed_at, task.duration_seconds = "completed", began + dt.timedelta(seconds=1.5), 1.5
            task.output_data = {"summary": f"{role} planned {feature}"}
            task.save(
                only=[AgentTask.status, AgentTask.completed_at, AgentTask.duration_seconds, AgentTask.output_data]
            )
            decision = TaskDecision.create(
                agent_task=task, decision_text=f"{role} decides on {feature}", rationale="because", category="design"
            )
            snapshot = AgentSnapshot.create(
                agent_task=task,
                agent_role=role,
                context_state={"feature_name": feature, "stage": task.stage},
                capabilities=[f"{role}_skill", "shared_skill"],
                decisions=[{"text": decision.decision_text}],
                execution_metadata={"attempt": 1},
            )
            record_event(
                session.id,
                "agent_task_completed",
                {"task": task_dict(task, [decision]), "snapshot": snapshot_dict(snapshot)},
            )
        session.status = status
        session.ended_at = start + dt.timedelta(seconds=8)
        session.duration_seconds = 8.0
        # `only`: a full save would write back the stale `last_seq` that record_event advanced.
        session.save(only=[ExecutionSession.status, ExecutionSession.ended_at, ExecutionSession.duration_seconds])
        if status == "completed":
            record_event(session.id, "session_completed", {"session": session_dict(session)})
        else:
            record_event(session.id, "session_error", {"error": "it_admin failed", "task_id": task.id})
    return session

"""Helpers for tests that need real accounts and logged-in clients (import with `from helpers import ...`).

Passwords are hashed at bcrypt cost 4 here and in the app under test (conftest sets
BCRYPT_ROUNDS=4), so logging in costs milliseconds.
"""

from __future__ import annotations

import threading
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


def team_cast(team: Team, owner: User) -> dict[str, User]:
    """The owner plus a member, a viewer (both in `team`) and an outsider, by role name."""
    people = {"owner": owner, "outsider": make_user("outsider")}
    for role in ("member", "viewer"):
        people[role] = make_user(role)
        add_member(team, people[role], role)
    return people


def rebuild_completed(task: dict[str, Any], snapshot: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored `output_data` and snapshot of an `agent_task_completed` event's `task` and
    `snapshot`, put back together as docs/api.md ("What events carry") says a client does."""
    rows = {row["id"]: row for row in task["decisions"]}
    decisions = []
    for decision in snapshot["decisions"]:
        row = rows.get(decision.get("id"))
        if row is not None and "text" not in decision:
            decision = {
                **decision,
                "text": row["decision_text"],
                "rationale": row["rationale"],
                "category": row["category"],
                "confidence": row["confidence"],
                "based_on": row["based_on"],
            }
        decisions.append(decision)
    given = {k: task["input_data"][k] for k in ("task_description", "feature_name", "description")}
    whole = {**snapshot, "decisions": decisions, "context_state": {**given, **snapshot["context_state"]}}
    return {**task["output_data"], "decisions": decisions}, whole


def spy_statements(monkeypatch) -> list[str]:
    """Record every SQL statement the database runs from now on (in this process), in order; one
    run as a prepared statement (`execute_prepared`) as "PREPARED " and its SQL."""
    from models.db import PostgresDatabase

    statements: list[str] = []
    execute_sql, execute_prepared = PostgresDatabase.execute_sql, PostgresDatabase.execute_prepared
    inside = threading.local()

    def spy(self, sql, *args, **kwargs):
        if not getattr(inside, "prepared", False):
            statements.append(sql)
        return execute_sql(self, sql, *args, **kwargs)

    def spy_prepared(self, sql, *args, **kwargs):
        # A prepared statement is recorded once, as "PREPARED " and its text (not as its lookup,
        # PREPARE and EXECUTE).
        statements.append(f"PREPARED {sql}")
        inside.prepared = True
        try:
            return execute_prepared(self, sql, *args, **kwargs)
        finally:
            inside.prepared = False

    monkeypatch.setattr(PostgresDatabase, "execute_sql", spy)
    monkeypatch.setattr(PostgresDatabase, "execute_prepared", spy_prepared)
    return statements

"""A database connection terminated under a request or a task: reconnect and retry once, else 503."""

from __future__ import annotations

import peewee
import psycopg2
import pytest
from conftest import PG, TEST_DB_NAME
from helpers import error_of, make_user

from actors import pipeline
from models import AgentTask, ExecutionSession, SessionEvent, Team, db
from models.db import DatabaseUnavailable, unit_of_work


def terminate_backends(keep: tuple[int, ...] = (), only: int | None = None) -> int:
    """pg_terminate_backend the connections to the test database (never another database's),
    all of them or `only` one, except those in `keep`; return how many."""
    conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid() AND NOT (pid = ANY(%s))"
                " AND (%s IS NULL OR pid = %s)",
                (TEST_DB_NAME, list(keep), only, only),
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


def sever_this_connection() -> None:
    """Terminate the connection this thread is using, as an operator or a failover would."""
    pid = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    assert terminate_backends(only=pid) == 1


def test_a_unit_of_work_whose_connection_is_terminated_runs_once_more_in_a_new_transaction():
    attempts = []

    def create_team_then_lose_the_connection(owner_id: int) -> int:
        attempts.append(1)
        team = Team.create(name="Kept once", owner=owner_id, is_shared=False)
        if len(attempts) == 1:
            sever_this_connection()  # before the commit: PostgreSQL rolls the insert back
        return team.id

    owner = make_user("owner")
    team_id = unit_of_work(create_team_then_lose_the_connection)(owner.id)
    assert len(attempts) == 2
    assert [t.id for t in Team.select()] == [team_id]


def test_a_write_whose_commit_went_through_before_the_connection_died_is_not_run_again(monkeypatch):
    from playhouse.pool import PooledPostgresqlDatabase

    owner = make_user("owner")
    attempts = []

    def commit_then_die(self):
        peewee.Database.commit(self)  # the server commits...
        sever_this_connection()  # ...and the answer is lost with the connection
        self.execute_sql("SELECT 1")

    def write() -> None:
        attempts.append(1)
        Team.create(name="Written once", owner=owner.id, is_shared=False)

    monkeypatch.setattr(PooledPostgresqlDatabase, "commit", commit_then_die, raising=False)
    with pytest.raises(DatabaseUnavailable):
        unit_of_work(write)()
    monkeypatch.undo()
    assert len(attempts) == 1 and Team.select().count() == 1


def test_a_write_whose_connection_died_at_commit_and_rolled_back_is_run_again(monkeypatch):
    from playhouse.pool import PooledPostgresqlDatabase

    owner = make_user("owner")
    attempts = []

    def die_then_commit(self):
        if len(attempts) == 1:
            sever_this_connection()  # COMMIT reaches no server: the transaction is rolled back
        peewee.Database.commit(self)

    def write() -> None:
        attempts.append(1)
        Team.create(name="Written once", owner=owner.id, is_shared=False)

    monkeypatch.setattr(PooledPostgresqlDatabase, "commit", die_then_commit, raising=False)
    unit_of_work(write)()
    monkeypatch.undo()
    assert len(attempts) == 2 and Team.select().count() == 1


async def test_requests_whose_connection_is_terminated_still_succeed(app, user, login_as, monkeypatch):
    import app.teams as teams_routes

    client = await login_as(user)
    for name, real in (("visible_teams", teams_routes.visible_teams), ("create_team", teams_routes.create_team)):

        def once(*args, _real=real, _calls=[], **kwargs):  # noqa: B006 - counts calls per function
            result = _real(*args, **kwargs)
            _calls.append(1)
            if len(_calls) == 1:
                sever_this_connection()
            return result

        monkeypatch.setattr(teams_routes, name, once)

    response = await client.post("/teams", json={"name": "Made once"})
    assert response.status_code == 201, await response.get_data()
    response = await client.get("/teams")
    assert response.status_code == 200
    assert [t["name"] for t in (await response.get_json())["teams"]] == ["Made once"]


async def test_a_request_gets_503_with_the_envelope_when_the_database_stays_unreachable(
    app, user, login_as, monkeypatch
):
    import app.teams as teams_routes

    client = await login_as(user)

    def always_severed(*args, **kwargs):
        sever_this_connection()
        return db.execute_sql("SELECT 1")

    monkeypatch.setattr(teams_routes, "visible_teams", always_severed)
    response = await client.get("/teams")
    assert response.status_code == 503
    assert (await error_of(response))["code"] == "unavailable"


def test_a_task_whose_connection_is_terminated_mid_run_uses_no_retry(
    personal_team, user, stub_broker, stub_worker, wait, monkeypatch
):
    monkeypatch.setenv("SAGE_TEST_AGENT_SLEEP", "architect=0.6,dba=0.6")
    session = pipeline.create_session(personal_team.id, user.id, "Team chat", "real-time messaging")
    pipeline.start_session(session.id)
    own = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    for role in ("architect", "dba"):
        wait(
            lambda r=role: AgentTask.get(AgentTask.session == session.id, AgentTask.agent_role == r).status == "running"
        )
        assert terminate_backends(keep=(own,)) >= 1  # the worker's connection, held while the agent thinks

    done = wait(lambda: (s := ExecutionSession.get_by_id(session.id)).status != "active" and s, timeout=30)
    assert done.status == "completed"
    tasks = list(AgentTask.select().where(AgentTask.session == session.id))
    assert [(t.status, t.retry_count) for t in tasks] == [("completed", 0)] * 7
    types = [e.type for e in SessionEvent.select().where(SessionEvent.session == session.id)]
    assert "agent_task_retrying" not in types and types.count("agent_task_completed") == 7

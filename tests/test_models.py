"""Model CRUD, database-enforced constraints, and the ON DELETE policy against real PostgreSQL."""

from __future__ import annotations

import peewee
import pytest

from models import (
    AgentSnapshot,
    AgentTask,
    ExecutionSession,
    SessionDecision,
    SessionEvent,
    TaskDecision,
    Team,
    TeamMembership,
    User,
    db,
)


def make_task(session: ExecutionSession, role: str = "architect", **fields) -> AgentTask:
    return AgentTask.create(session=session, agent_role=role, task_description=f"{role} work", **fields)


def test_user_round_trips_and_updates(user):
    fetched = User.get_by_id(user.id)
    assert (fetched.username, fetched.email) == ("test", "test@test.com")
    fetched.email = "new@test.com"
    fetched.save()
    assert User.get_by_id(user.id).email == "new@test.com"


def test_usernames_and_emails_are_unique_regardless_of_case(user):
    with pytest.raises(peewee.IntegrityError), db.atomic():
        User.create(username="TEST", email="another@test.com", password_hash="x")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        User.create(username="another", email="Test@Test.com", password_hash="x")


def test_teams_default_to_personal_and_memberships_default_to_member(user, other_user):
    team = Team.create(name="T", owner=user)
    assert Team.get_by_id(team.id).is_shared is False
    membership = TeamMembership.create(team=team, user=other_user)
    assert TeamMembership.get_by_id(membership.id).role == "member"


def test_server_defaults_apply_to_rows_inserted_by_hand(user):
    cursor = db.execute_sql(
        "INSERT INTO teams (name, owner_id) VALUES ('raw', %s) RETURNING is_shared, created_at", (user.id,)
    )
    is_shared, created_at = cursor.fetchone()
    assert is_shared is False and created_at is not None


def test_a_user_joins_a_team_once(shared_team, other_user):
    TeamMembership.create(team=shared_team, user=other_user, role="viewer")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        TeamMembership.create(team=shared_team, user=other_user, role="member")


def test_session_crud_and_jsonb_round_trip(session):
    task = make_task(session, input_data={"feature": "x", "nested": {"n": [1, 2]}})
    task.output_data = {"summary": "done", "decisions": [{"text": "a"}]}
    task.status = "completed"
    task.save()
    fetched = AgentTask.get_by_id(task.id)
    assert fetched.input_data == {"feature": "x", "nested": {"n": [1, 2]}}
    assert fetched.output_data["decisions"][0]["text"] == "a"
    kind = db.execute_sql(
        "SELECT data_type FROM information_schema.columns WHERE table_name='agent_tasks' AND column_name='output_data'"
    ).fetchone()[0]
    assert kind == "jsonb"
    session.status = "completed"
    session.save()
    assert ExecutionSession.get_by_id(session.id).status == "completed"
    task.delete_instance()
    assert AgentTask.select().count() == 0


def test_jsonb_can_be_queried_by_key(session):
    make_task(session, "architect", output_data={"brain": "knowledge-base"})
    make_task(session, "dba", output_data={"brain": "other"})
    rows = AgentTask.select().where(AgentTask.output_data["brain"] == "knowledge-base")
    assert [t.agent_role for t in rows] == ["architect"]


def test_decisions_and_snapshots_belong_to_their_task(session):
    task = make_task(session)
    TaskDecision.create(agent_task=task, decision_text="Use REST", rationale="simple", category="architecture")
    AgentSnapshot.create(
        agent_task=task, agent_role="architect", context_state={"k": 1}, capabilities=["DESIGN"], decisions=[]
    )
    SessionDecision.create(session=session, decision_text="Ship Friday", category="process")
    assert [d.decision_text for d in task.decisions] == ["Use REST"]
    assert task.snapshots.get().capabilities == ["DESIGN"]
    assert SessionDecision.get().confidence == "high"
    assert TaskDecision.get().based_on == []


@pytest.mark.parametrize(
    ("model", "field", "bad"),
    [
        ("membership", "role", "admin"),
        ("session", "status", "running"),
        ("task", "status", "done"),
        ("task", "agent_role", "manager"),
        ("session_decision", "confidence", "certain"),
        ("session_decision", "category", "vibes"),
        ("task_decision", "category", "vibes"),
        ("task_decision", "confidence", "sure"),
        ("snapshot", "agent_role", "intern"),
        ("event", "type", "session_exploded"),
        ("event", "seq", 0),
        ("task", "retry_count", -1),
    ],
)
def test_the_database_refuses_values_outside_the_vocabulary(session, shared_team, other_user, model, field, bad):
    task = make_task(session)
    builders = {
        "membership": lambda: TeamMembership.create(team=shared_team, user=other_user, **{field: bad}),
        "session": lambda: ExecutionSession.create(team=shared_team, feature_name="f", **{field: bad}),
        "task": lambda: AgentTask.create(session=session, task_description="d", **{"agent_role": "dba", field: bad}),
        "session_decision": lambda: SessionDecision.create(session=session, decision_text="t", **{field: bad}),
        "task_decision": lambda: TaskDecision.create(agent_task=task, decision_text="t", **{field: bad}),
        "snapshot": lambda: AgentSnapshot.create(
            agent_task=task, context_state={}, capabilities=[], decisions=[], **{field: bad}
        ),
        "event": lambda: SessionEvent.create(
            session=session, payload={}, **{"seq": 1, "type": "session_started", field: bad}
        ),
    }
    with pytest.raises(peewee.IntegrityError) as raised, db.atomic():
        builders[model]()
    assert "check" in str(raised.value).lower()


def test_the_database_refuses_a_raw_insert_with_a_bad_status(session):
    with pytest.raises(peewee.IntegrityError), db.atomic():
        db.execute_sql(
            "INSERT INTO agent_tasks (session_id, agent_role, task_description, status) VALUES (%s, 'dba', 'x', 'bogus')",
            (session.id,),
        )


def test_one_task_per_role_per_session(session):
    make_task(session, "dba")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        make_task(session, "dba")


def test_one_event_per_seq_per_session(session):
    SessionEvent.create(session=session, seq=1, type="session_started", payload={})
    with pytest.raises(peewee.IntegrityError), db.atomic():
        SessionEvent.create(session=session, seq=1, type="session_completed", payload={})


def _populate(session: ExecutionSession) -> AgentTask:
    task = make_task(session)
    TaskDecision.create(agent_task=task, decision_text="d")
    AgentSnapshot.create(agent_task=task, agent_role="architect", context_state={}, capabilities=[], decisions=[])
    SessionDecision.create(session=session, decision_text="s")
    SessionEvent.create(session=session, seq=1, type="session_started", payload={})
    return task


def _counts() -> dict[str, int]:
    models = (TeamMembership, ExecutionSession, SessionDecision, AgentTask, TaskDecision, AgentSnapshot, SessionEvent)
    return {m.__name__: m.select().count() for m in models}


def test_deleting_a_team_deletes_everything_done_in_it(shared_team, other_user, user):
    TeamMembership.create(team=shared_team, user=other_user)
    _populate(ExecutionSession.create(team=shared_team, user=user, feature_name="f"))
    shared_team.delete_instance()
    assert set(_counts().values()) == {0}
    assert User.select().count() == 2


def test_deleting_a_user_removes_their_teams_but_keeps_their_work_in_other_teams(user, other_user):
    theirs = Team.create(name="Theirs", owner=other_user, is_shared=True)
    TeamMembership.create(team=theirs, user=user)
    kept = ExecutionSession.create(team=theirs, user=user, feature_name="kept")
    _populate(kept)
    SessionDecision.create(session=kept, user=user, decision_text="mine")
    own = Team.create(name="Own", owner=user)
    _populate(ExecutionSession.create(team=own, user=user, feature_name="gone"))

    user.delete_instance()

    assert not Team.select().where(Team.id == own.id).exists()
    assert TeamMembership.select().count() == 0
    survivor = ExecutionSession.get_by_id(kept.id)
    assert survivor.user_id is None
    assert survivor.tasks.count() == 1 and survivor.events.count() == 1
    assert [d.user_id for d in survivor.decisions] == [None, None]
    assert ExecutionSession.select().count() == 1


def test_deleting_a_session_deletes_its_tasks_snapshots_decisions_and_events(session):
    _populate(session)
    session.delete_instance()
    assert set(_counts().values()) == {0}


def test_deleting_an_original_session_keeps_its_rerun(session):
    rerun = ExecutionSession.create(team=session.team, feature_name="again", rerun_of=session)
    session.delete_instance()
    assert ExecutionSession.get_by_id(rerun.id).rerun_of_id is None

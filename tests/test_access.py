"""app/access.py, called directly: the one answer to "may this user do this to this team?"."""

from __future__ import annotations

import pytest
from helpers import add_member, make_user

from app.access import may, require_session, require_task, require_team, team_role
from app.errors import ApiError
from models import AgentTask, ExecutionSession, Team


@pytest.fixture
def people(user, shared_team, personal_team):
    member, viewer, outsider = make_user("member"), make_user("viewer"), make_user("outsider")
    add_member(shared_team, member, "member")
    add_member(shared_team, viewer, "viewer")
    add_member(personal_team, member, "member")  # grants nothing: personal teams are owner-only
    return {"owner": user, "member": member, "viewer": viewer, "outsider": outsider}


@pytest.fixture
def shared_task(shared_team, user):
    session = ExecutionSession.create(team=shared_team, user=user, feature_name="Login page")
    return AgentTask.create(session=session, agent_role="architect", task_description="plan")


EXPECTED = {  # role -> action -> None (allowed) or the status
    "owner": {"read": None, "write": None, "manage": None},
    "member": {"read": None, "write": None, "manage": 403},
    "viewer": {"read": None, "write": 403, "manage": 403},
    "outsider": {"read": 404, "write": 404, "manage": 404},
}
CASES = [(who, action, status) for who, actions in EXPECTED.items() for action, status in actions.items()]


@pytest.mark.parametrize(("who", "action", "status"), CASES)
def test_require_team_applies_the_role_table(people, shared_team, who, action, status):
    if status is None:
        team, role = require_team(people[who].id, shared_team.id, action)
        assert team.id == shared_team.id and role == who
    else:
        with pytest.raises(ApiError) as caught:
            require_team(people[who].id, shared_team.id, action)
        assert caught.value.status == status


@pytest.mark.parametrize(("who", "action", "status"), CASES)
def test_require_session_applies_the_same_rules_through_the_session(people, shared_task, who, action, status):
    session_id = shared_task.session_id
    if status is None:
        session, role = require_session(people[who].id, session_id, action)
        assert session.id == session_id and session.team.name == "Shared" and role == who
    else:
        with pytest.raises(ApiError) as caught:
            require_session(people[who].id, session_id, action)
        assert caught.value.status == status


@pytest.mark.parametrize(("who", "action", "status"), CASES)
def test_require_task_applies_the_same_rules_through_the_task(people, shared_task, who, action, status):
    if status is None:
        task, role = require_task(people[who].id, shared_task.id, action)
        assert task.id == shared_task.id and task.session.team.id == shared_task.session.team_id and role == who
    else:
        with pytest.raises(ApiError) as caught:
            require_task(people[who].id, shared_task.id, action)
        assert caught.value.status == status


@pytest.mark.parametrize("who", ["member", "viewer", "outsider"])
def test_a_personal_team_is_the_owners_alone_whatever_rows_exist(people, personal_team, session, who):
    assert team_role(people["owner"].id, personal_team.id) == "owner"
    assert team_role(people[who].id, personal_team.id) is None
    for check, target in ((require_team, personal_team.id), (require_session, session.id)):
        with pytest.raises(ApiError) as caught:
            check(people[who].id, target, "read")
        assert caught.value.status == 404


@pytest.mark.parametrize("check", [require_team, require_session, require_task])
def test_missing_objects_are_404_with_the_same_answer_as_hidden_ones(user, check):
    with pytest.raises(ApiError) as caught:
        check(user.id, 987654, "read")
    assert caught.value.status == 404 and caught.value.code == "not_found"


def test_an_owner_without_a_membership_row_is_still_owner(user):
    team = Team.create(name="Shared later", owner=user, is_shared=True)
    assert team_role(user.id, team.id) == "owner"


def test_a_removed_member_has_no_role(people, shared_team):
    from models.teams import remove_member

    assert team_role(people["member"].id, shared_team.id) == "member"
    remove_member(shared_team.id, people["member"].id)
    assert team_role(people["member"].id, shared_team.id) is None


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [("viewer", "read", True), ("viewer", "write", False), ("member", "manage", False), (None, "read", False)],
)
def test_may_answers_the_role_table(role, action, allowed):
    assert may(role, action) is allowed


def test_an_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError):
        may("owner", "delete everything")  # type: ignore[arg-type]


def test_each_check_is_one_query(people, shared_task, monkeypatch):
    from models import db

    calls = []
    original = db.obj.execute_sql
    monkeypatch.setattr(db.obj, "execute_sql", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    require_team(people["viewer"].id, shared_task.session.team_id, "read")
    require_session(people["viewer"].id, shared_task.session_id, "read")
    require_task(people["viewer"].id, shared_task.id, "read")
    assert len(calls) == 3

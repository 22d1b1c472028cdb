"""Teams: the access grid of docs/api.md, then each route's behaviour."""

from __future__ import annotations

import pytest
from helpers import add_member, error_of, make_user

from models import Team, TeamMembership, db

ROLES = ("owner", "member", "viewer", "outsider", "anonymous")


@pytest.fixture
def cast(user, shared_team, personal_team):
    """Owner (`user`), a member, a viewer and an outsider; `extra` is a removable member, `newbie` invitable.

    The personal team also holds membership rows for the member and the viewer, which must
    grant nothing: a personal team is visible to its owner only.
    """
    people = {
        "owner": user,
        "member": make_user("member"),
        "viewer": make_user("viewer"),
        "outsider": make_user("outsider"),
        "extra": make_user("extra"),
        "newbie": make_user("newbie"),
    }
    add_member(shared_team, people["member"], "member")
    add_member(shared_team, people["viewer"], "viewer")
    add_member(shared_team, people["extra"], "member")
    add_member(personal_team, people["member"], "member")
    add_member(personal_team, people["viewer"], "viewer")
    return {"people": people, "teams": {"shared": shared_team, "personal": personal_team}}


# (endpoint, team kind) -> expected status per role, from the Roles table of API.md.
GRID = {
    ("show", "shared"): dict(owner=200, member=200, viewer=200, outsider=404, anonymous=401),
    ("share", "shared"): dict(owner=200, member=403, viewer=403, outsider=404, anonymous=401),
    ("invite", "shared"): dict(owner=202, member=403, viewer=403, outsider=404, anonymous=401),
    ("remove", "shared"): dict(owner=204, member=403, viewer=403, outsider=404, anonymous=401),
    ("show", "personal"): dict(owner=200, member=404, viewer=404, outsider=404, anonymous=401),
    ("share", "personal"): dict(owner=200, member=404, viewer=404, outsider=404, anonymous=401),
    # The owner may manage, but a personal team takes no members until shared.
    ("invite", "personal"): dict(owner=409, member=404, viewer=404, outsider=404, anonymous=401),
    # `extra` is not in the personal team.
    ("remove", "personal"): dict(owner=404, member=404, viewer=404, outsider=404, anonymous=401),
    ("change_role", "shared"): dict(owner=200, member=403, viewer=403, outsider=404, anonymous=401),
    ("change_role", "personal"): dict(owner=404, member=404, viewer=404, outsider=404, anonymous=401),
}
CASES = [(endpoint, kind, role, statuses[role]) for (endpoint, kind), statuses in GRID.items() for role in ROLES]


def request_for(endpoint: str, team: Team, people: dict) -> tuple[str, str, dict | None]:
    if endpoint == "show":
        return "GET", f"/teams/{team.id}", None
    if endpoint == "share":
        return "POST", f"/teams/{team.id}/share", None
    if endpoint == "invite":
        return "POST", f"/teams/{team.id}/invite", {"username": "newbie"}
    if endpoint == "change_role":
        return "PATCH", f"/teams/{team.id}/members/{people['extra'].id}", {"role": "viewer"}
    return "DELETE", f"/teams/{team.id}/members/{people['extra'].id}", None


@pytest.mark.parametrize(("endpoint", "kind", "role", "expected"), CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
async def test_each_role_gets_the_status_api_md_gives_it(app, login_as, cast, endpoint, kind, role, expected):
    client = app.test_client() if role == "anonymous" else await login_as(cast["people"][role])
    method, path, body = request_for(endpoint, cast["teams"][kind], cast["people"])
    response = await client.open(path, method=method, json=body)
    assert response.status_code == expected, await response.get_data(as_text=True)
    if expected >= 400:
        error = await error_of(response)
        assert error["code"] == {401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "conflict"}[expected]


@pytest.mark.parametrize(("method", "path"), [("GET", "/teams"), ("POST", "/teams")])
async def test_team_collection_routes_need_a_login(client, method, path):
    response = await client.open(path, method=method, json={"name": "x"} if method == "POST" else None)
    assert response.status_code == 401
    assert (await error_of(response))["code"] == "unauthenticated"


async def test_a_hidden_team_answers_exactly_like_a_missing_one(login_as, cast):
    client = await login_as(cast["people"]["outsider"])
    hidden = await client.get(f"/teams/{cast['teams']['personal'].id}")
    missing = await client.get("/teams/999999")
    assert hidden.status_code == missing.status_code == 404
    assert await hidden.get_json() == await missing.get_json()


async def test_team_list_holds_own_teams_and_shared_memberships_with_the_callers_role(login_as, cast, other_user):
    Team.create(name="Not mine", owner=other_user, is_shared=False)
    Team.create(name="Shared without me", owner=other_user, is_shared=True)
    listed = {}
    for role in ("owner", "member", "viewer", "outsider"):
        body = await (await (await login_as(cast["people"][role])).get("/teams")).get_json()
        listed[role] = {t["name"]: t["role"] for t in body["teams"]}
    assert listed == {
        "owner": {"Shared": "owner", "Personal": "owner"},
        "member": {"Shared": "member"},
        "viewer": {"Shared": "viewer"},
        "outsider": {},
    }


async def test_creating_a_team_makes_a_personal_team_owned_by_the_caller(login_as, user):
    client = await login_as(user)
    response = await client.post("/teams", json={"name": "  Rocket  ", "description": "Goes up"})
    assert response.status_code == 201
    team = (await response.get_json())["team"]
    assert set(team) == {"id", "name", "description", "is_shared", "owner_id", "role", "created_at"}
    assert team["name"] == "Rocket" and team["description"] == "Goes up"
    assert team["is_shared"] is False and team["owner_id"] == user.id and team["role"] == "owner"
    assert team["created_at"].endswith("Z")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "body"),
        ({"name": 5}, "name"),
        ({"name": "x" * 256}, "name"),
    ],
)
async def test_a_team_needs_a_real_name(login_as, user, body, field):
    response = await (await login_as(user)).post("/teams", json=body)
    assert response.status_code == 400
    assert field in (await error_of(response))["fields"]


async def test_showing_a_team_lists_owner_first_then_members_by_join_time(login_as, cast):
    response = await (await login_as(cast["people"]["viewer"])).get(f"/teams/{cast['teams']['shared'].id}")
    body = await response.get_json()
    assert body["team"]["role"] == "viewer"
    assert [(m["username"], m["role"]) for m in body["members"]] == [
        ("test", "owner"),
        ("member", "member"),
        ("viewer", "viewer"),
        ("extra", "member"),
    ]
    assert set(body["members"][0]) == {"user_id", "username", "role", "joined_at"}


async def test_a_personal_teams_only_member_is_its_owner(login_as, user, personal_team):
    body = await (await (await login_as(user)).get(f"/teams/{personal_team.id}")).get_json()
    assert [(m["user_id"], m["role"]) for m in body["members"]] == [(user.id, "owner")]


async def test_sharing_marks_the_team_shared_once_and_records_the_owner(login_as, user, personal_team):
    client = await login_as(user)
    for _ in range(2):
        response = await client.post(f"/teams/{personal_team.id}/share")
        assert response.status_code == 200
        assert (await response.get_json())["team"]["is_shared"] is True
    assert Team.get_by_id(personal_team.id).is_shared
    assert [(m.user_id, m.role) for m in TeamMembership.select().where(TeamMembership.team == personal_team)] == [
        (user.id, "owner")
    ]


async def test_inviting_into_a_personal_team_asks_to_share_it_first(login_as, user, personal_team, other_user):
    response = await (await login_as(user)).post(f"/teams/{personal_team.id}/invite", json={"username": "other"})
    assert response.status_code == 409
    assert "share the team first" in (await error_of(response))["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"username": "a", "email": "a@example.com"}, "body"),
        ({"username": "other", "role": "owner"}, "role"),
        ({"username": "   "}, "body"),
    ],
)
async def test_an_invite_names_exactly_one_user_and_a_grantable_role(
    login_as, user, shared_team, other_user, body, field
):
    response = await (await login_as(user)).post(f"/teams/{shared_team.id}/invite", json=body)
    assert response.status_code == 400
    assert field in (await error_of(response))["fields"]


async def test_a_removed_member_loses_access_at_once_and_is_announced(login_as, cast, revocations):
    team = cast["teams"]["shared"]
    member_client = await login_as(cast["people"]["member"])
    assert (await member_client.get(f"/teams/{team.id}")).status_code == 200
    owner_client = await login_as(cast["people"]["owner"])

    response = await owner_client.delete(f"/teams/{team.id}/members/{cast['people']['member'].id}")

    assert response.status_code == 204
    assert (await member_client.get(f"/teams/{team.id}")).status_code == 404
    remaining = await (await member_client.get("/teams")).get_json()
    assert team.name not in [t["name"] for t in remaining["teams"]]
    assert revocations.messages() == [{"user_id": cast["people"]["member"].id, "team_id": team.id, "reason": "removed"}]


async def test_the_owner_cannot_be_removed_from_their_team(login_as, user, shared_team, revocations):
    response = await (await login_as(user)).delete(f"/teams/{shared_team.id}/members/{user.id}")
    assert response.status_code == 409
    assert "owner" in (await error_of(response))["message"]
    assert revocations.messages(wait=0.2) == []


async def test_removing_someone_who_is_not_a_member_is_not_found(login_as, user, shared_team, other_user):
    response = await (await login_as(user)).delete(f"/teams/{shared_team.id}/members/{other_user.id}")
    assert response.status_code == 404


class QueryCounter:
    def __init__(self, monkeypatch) -> None:
        self.count = 0
        database = db.obj
        original = database.execute_sql

        def counting(sql, params=None, *args, **kwargs):
            self.count += 1
            return original(sql, params, *args, **kwargs)

        monkeypatch.setattr(database, "execute_sql", counting)


@pytest.mark.parametrize("path", ["/teams", "/teams/{id}"])
async def test_team_reads_cost_the_same_number_of_queries_however_many_rows(
    login_as, user, shared_team, monkeypatch, path
):
    client = await login_as(user)
    counter = QueryCounter(monkeypatch)

    async def queries() -> int:
        before = counter.count
        response = await client.get(path.format(id=shared_team.id))
        assert response.status_code == 200
        return counter.count - before

    small = await queries()
    # The read itself takes at most 3; every request also checks that its user still exists, and
    # each transaction asks for its id before committing (to know, if the commit is cut off,
    # whether it happened): fixed costs, whatever the number of rows.
    assert 0 < small <= 5
    for i in range(6):
        someone = make_user(f"someone{i}")
        add_member(shared_team, someone)
        shared = Team.create(name=f"Shared {i}", owner=someone, is_shared=True)
        add_member(shared, user)
        Team.create(name=f"Personal {i}", owner=user)
    assert await queries() == small


async def test_the_owner_changes_a_role_and_it_applies_to_the_next_request(login_as, cast):
    team, member_user = cast["teams"]["shared"], cast["people"]["member"]
    owner, member = await login_as(cast["people"]["owner"]), await login_as(member_user)
    response = await owner.patch(f"/teams/{team.id}/members/{member_user.id}", json={"role": "viewer"})
    assert response.status_code == 200
    body = await response.get_json()
    assert body["member"]["user_id"] == member_user.id and body["member"]["role"] == "viewer"
    refused = await member.post("/sessions", json={"team_id": team.id, "feature_name": "Chat"})
    assert refused.status_code == 403
    shown = await (await member.get(f"/teams/{team.id}")).get_json()
    assert shown["team"]["role"] == "viewer"


@pytest.mark.parametrize(
    ("body", "target", "expected"),
    [
        ({"role": "owner"}, "member", 400),
        ({"role": 3}, "member", 400),
        ({}, "member", 400),
        ({"role": "viewer"}, "owner", 409),
        ({"role": "viewer"}, "outsider", 404),
    ],
)
async def test_bad_role_changes_are_refused_and_change_nothing(login_as, cast, body, target, expected):
    team = cast["teams"]["shared"]
    owner = await login_as(cast["people"]["owner"])
    before = {m.user_id: m.role for m in TeamMembership.select().where(TeamMembership.team == team.id)}
    response = await owner.patch(f"/teams/{team.id}/members/{cast['people'][target].id}", json=body)
    assert response.status_code == expected
    await error_of(response)
    after = {m.user_id: m.role for m in TeamMembership.select().where(TeamMembership.team == team.id)}
    assert after == before

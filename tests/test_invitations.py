"""Invitations the invitee accepts (issue 14, finding 5; docs/api.md "Teams")."""

from __future__ import annotations

import pytest
from helpers import add_member, error_of, make_user

from models import Invitation, TeamMembership


@pytest.fixture
async def owner_client(login_as, user):
    return await login_as(user)


async def invite(client, team_id: int, **body):
    return await client.post(f"/teams/{team_id}/invite", json=body)


def shape_without_ids(invitation: dict) -> dict:
    return {k: v for k, v in invitation.items() if k not in {"id", "created_at"}}


@pytest.mark.parametrize(
    "body",
    [{"username": "other"}, {"email": "OTHER@test.com"}, {"username": "nobody"}, {"email": "nobody@example.com"}],
)
async def test_inviting_answers_alike_whether_or_not_an_account_matches(owner_client, shared_team, other_user, body):
    response = await invite(owner_client, shared_team.id, **body)
    assert response.status_code == 202
    returned = await response.get_json()
    assert set(returned) == {"invitation"}
    invitation = returned["invitation"]
    assert set(invitation) == {"id", "team_id", "invitee", "role", "status", "created_at"}
    typed = next(iter(body.values()))
    assert shape_without_ids(invitation) == {
        "team_id": shared_team.id,
        "invitee": typed,
        "role": "member",
        "status": "pending",
    }
    # Nothing of the account leaks: not its id, its username for an email, nor its email.
    text = str(returned)
    assert str(other_user.email) not in text.lower() or typed.lower() == other_user.email
    assert "user_id" not in text


async def test_an_invitation_grants_nothing_until_the_invitee_accepts(
    app, login_as, owner_client, shared_team, other_user
):
    response = await invite(owner_client, shared_team.id, username="other", role="viewer")
    invitation_id = (await response.get_json())["invitation"]["id"]
    other = await login_as(other_user)
    assert (await other.get(f"/teams/{shared_team.id}")).status_code == 404
    assert not TeamMembership.select().where(TeamMembership.user == other_user.id).exists()

    mine = (await (await other.get("/invitations")).get_json())["invitations"]
    assert [(i["id"], i["team"], i["invited_by"], i["role"], i["status"]) for i in mine] == [
        (invitation_id, {"id": shared_team.id, "name": "Shared"}, "test", "viewer", "pending")
    ]

    accepted = await other.post(f"/invitations/{invitation_id}/accept")
    assert accepted.status_code == 200
    team = (await accepted.get_json())["team"]
    assert (team["id"], team["role"], team["is_shared"]) == (shared_team.id, "viewer", True)
    assert (await other.get(f"/teams/{shared_team.id}")).status_code == 200
    assert (await (await other.get("/invitations")).get_json())["invitations"] == []
    assert Invitation.get_by_id(invitation_id).status == "accepted"
    # Accepting twice is a conflict, not a second membership.
    again = await other.post(f"/invitations/{invitation_id}/accept")
    assert again.status_code == 409
    assert TeamMembership.select().where(TeamMembership.user == other_user.id).count() == 1


async def test_declining_leaves_the_invitee_outside_and_clears_the_owners_list(
    login_as, owner_client, shared_team, other_user
):
    invitation_id = (await (await invite(owner_client, shared_team.id, username="other")).get_json())["invitation"][
        "id"
    ]
    pending = (await (await owner_client.get(f"/teams/{shared_team.id}/invitations")).get_json())["invitations"]
    assert [i["id"] for i in pending] == [invitation_id]
    other = await login_as(other_user)
    declined = await other.post(f"/invitations/{invitation_id}/decline")
    assert declined.status_code == 204
    assert (await other.get(f"/teams/{shared_team.id}")).status_code == 404
    assert (await (await owner_client.get(f"/teams/{shared_team.id}/invitations")).get_json())["invitations"] == []
    assert (await other.post(f"/invitations/{invitation_id}/accept")).status_code == 409


async def test_the_owner_cancels_a_pending_invitation_and_it_can_no_longer_be_accepted(
    login_as, owner_client, shared_team, other_user
):
    invitation_id = (await (await invite(owner_client, shared_team.id, email="other@test.com")).get_json())[
        "invitation"
    ]["id"]
    response = await owner_client.delete(f"/teams/{shared_team.id}/invitations/{invitation_id}")
    assert response.status_code == 204
    other = await login_as(other_user)
    assert (await (await other.get("/invitations")).get_json())["invitations"] == []
    assert (await other.post(f"/invitations/{invitation_id}/accept")).status_code == 409
    assert (await owner_client.delete(f"/teams/{shared_team.id}/invitations/{invitation_id}")).status_code == 409
    assert (await owner_client.delete(f"/teams/{shared_team.id}/invitations/999999")).status_code == 404


async def test_someone_elses_invitation_answers_404(login_as, owner_client, shared_team, other_user):
    invitation_id = (await (await invite(owner_client, shared_team.id, username="other")).get_json())["invitation"][
        "id"
    ]
    stranger = await login_as(make_user("stranger"))
    for action in ("accept", "decline"):
        response = await stranger.post(f"/invitations/{invitation_id}/{action}")
        assert response.status_code == 404
        assert (await error_of(response))["code"] == "not_found"
    assert (await (await stranger.get("/invitations")).get_json())["invitations"] == []
    # The owner is no invitee either: an invitation to nobody can never be accepted.
    assert (await owner_client.post(f"/invitations/{invitation_id}/accept")).status_code == 404


@pytest.mark.parametrize("role", ["member", "viewer"])
async def test_only_the_owner_sees_and_cancels_a_teams_invitations(app, login_as, owner_client, shared_team, role):
    someone = make_user(f"a{role}")
    add_member(shared_team, someone, role)
    invitation_id = (await (await invite(owner_client, shared_team.id, username="nobody")).get_json())["invitation"][
        "id"
    ]
    client = await login_as(someone)
    assert (await client.get(f"/teams/{shared_team.id}/invitations")).status_code == 403
    assert (await client.delete(f"/teams/{shared_team.id}/invitations/{invitation_id}")).status_code == 403
    outsider = await login_as(make_user("outsider"))
    assert (await outsider.get(f"/teams/{shared_team.id}/invitations")).status_code == 404


async def test_inviting_the_same_name_again_keeps_one_pending_invitation(owner_client, shared_team, other_user):
    first = (await (await invite(owner_client, shared_team.id, username="other")).get_json())["invitation"]
    second = (await (await invite(owner_client, shared_team.id, username="OTHER", role="viewer")).get_json())[
        "invitation"
    ]
    assert second["id"] == first["id"] and second["role"] == "viewer"


async def test_inviting_is_rate_limited_per_inviter(owner_client, shared_team, settings):
    statuses = [
        (await invite(owner_client, shared_team.id, username=f"probe{i}")).status_code
        for i in range(settings.invite_max_attempts + 3)
    ]
    assert statuses[: settings.invite_max_attempts] == [202] * settings.invite_max_attempts
    assert statuses[settings.invite_max_attempts :] == [429] * 3
    response = await invite(owner_client, shared_team.id, username="late")
    assert int(response.headers["Retry-After"]) > 0


async def test_deleting_the_invitee_deletes_their_invitations(owner_client, shared_team, other_user):
    await invite(owner_client, shared_team.id, username="other")
    other_user.delete_instance()
    assert Invitation.select().count() == 0

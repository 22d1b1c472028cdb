"""The `invitations` blueprint: invitations that the invitee accepts (docs/api.md "Teams").

- `POST /teams/{id}/invite` (owner): 202 `{"invitation"}`, the same answer whether or not the
  username or email names an account, and nothing about that account; limited per inviter
  (`Settings.invite_max_attempts` per `Settings.invite_window_seconds`, then 429).
- `GET /teams/{id}/invitations` (owner): the pending ones; `DELETE .../{invitation_id}` cancels.
- `GET /invitations`: the caller's pending invitations, with the team's id and name and the
  inviter's username; `POST /invitations/{id}/accept` (200 `{"team"}`, membership begins now)
  and `/decline` (204). Another user's invitation answers 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator
from quart import Blueprint, Response, current_app
from quart_schema import validate_request

from app import ratelimit
from app.access import require_team
from app.db_thread import run_db
from app.errors import ApiError
from app.login_sessions import current_user_id, login_required
from models.invitations import (
    accept,
    invitation_for_invitee,
    invitation_for_team,
    invite,
    pending_for_team,
    pending_for_user,
    respond,
)
from models.serialize import invitation_dict, received_invitation_dict, team_dict
from models.users import get_user

blueprint = Blueprint("invitations", __name__)


class InviteBody(BaseModel):
    username: str | None = Field(default=None, min_length=1, max_length=64)
    email: str | None = Field(default=None, min_length=1, max_length=255)
    role: Literal["member", "viewer"] = "member"

    @model_validator(mode="after")
    def _exactly_one_identifier(self) -> InviteBody:
        given = [v for v in (self.username, self.email) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of username or email")
        if not given[0].strip():
            raise ValueError("the username or email must not be blank")
        return self

    @property
    def invitee(self) -> str:
        return (self.username if self.username is not None else self.email or "").strip()


def _invite(user_id: int, team_id: int, invitee: str, role: str):
    team, _ = require_team(user_id, team_id, "manage")
    if not team.is_shared:
        raise ApiError(409, "this is a personal team: share the team first")
    return invite(team, user_id, invitee, role)


@blueprint.post("/teams/<int:team_id>/invite")
@login_required
@validate_request(InviteBody)
async def create(team_id: int, data: InviteBody):
    """202 `{"invitation": Invitation}`: a pending invitation, whoever it names (or nobody)."""
    settings = current_app.extensions["sage_settings"]
    user_id = await current_user_id()
    retry = await ratelimit.reserve(
        current_app.extensions["sage_redis"],
        [
            ratelimit.Counter(
                ratelimit.invite_key(user_id), settings.invite_max_attempts, settings.invite_window_seconds
            )
        ],
    )
    if retry:
        raise ratelimit.too_many(retry, "invitations")
    invitation = await run_db(_invite, user_id, team_id, data.invitee, data.role)
    return {"invitation": invitation_dict(invitation)}, 202


def _team_invitations(user_id: int, team_id: int):
    require_team(user_id, team_id, "manage")
    return pending_for_team(team_id)


@blueprint.get("/teams/<int:team_id>/invitations")
@login_required
async def team_invitations(team_id: int):
    """200 `{"invitations": [Invitation]}`: the team's pending invitations (owner only)."""
    rows = await run_db(_team_invitations, await current_user_id(), team_id)
    return {"invitations": [invitation_dict(row) for row in rows]}


def _cancel(user_id: int, team_id: int, invitation_id: int) -> None:
    require_team(user_id, team_id, "manage")
    invitation = invitation_for_team(team_id, invitation_id)
    if invitation is None:
        raise ApiError(404, "invitation not found")
    if invitation.status != "pending":
        raise ApiError(409, f"this invitation was already {invitation.status}")
    respond(invitation, "cancelled")


@blueprint.delete("/teams/<int:team_id>/invitations/<int:invitation_id>")
@login_required
async def cancel(team_id: int, invitation_id: int):
    """204: the pending invitation is cancelled and can no longer be accepted."""
    await run_db(_cancel, await current_user_id(), team_id, invitation_id)
    return Response(status=204)


@blueprint.get("/invitations")
@login_required
async def mine():
    """200 `{"invitations": [...]}`: the caller's pending invitations, with team and inviter."""
    rows = await run_db(pending_for_user, await current_user_id())
    return {"invitations": [received_invitation_dict(row) for row in rows]}


def _pending_of(user_id: int, invitation_id: int):
    invitation = invitation_for_invitee(user_id, invitation_id)
    if invitation is None:
        raise ApiError(404, "invitation not found")
    if invitation.status != "pending":
        raise ApiError(409, f"this invitation was already {invitation.status}")
    return invitation


def _accept(user_id: int, invitation_id: int):
    invitation = _pending_of(user_id, invitation_id)
    user = get_user(user_id)
    assert user is not None, "the invitee of a pending invitation exists"
    team = accept(invitation, user)
    _, role = require_team(user_id, team.id, "read")
    return team, role


@blueprint.post("/invitations/<int:invitation_id>/accept")
@login_required
async def accept_invitation(invitation_id: int):
    """200 `{"team": Team}`: the caller is a member (or viewer) of the team from now on."""
    team, role = await run_db(_accept, await current_user_id(), invitation_id)
    return {"team": team_dict(team, role)}


def _decline(user_id: int, invitation_id: int) -> None:
    respond(_pending_of(user_id, invitation_id), "declined")


@blueprint.post("/invitations/<int:invitation_id>/decline")
@login_required
async def decline(invitation_id: int):
    """204: the invitation is declined; the owner no longer sees it pending."""
    await run_db(_decline, await current_user_id(), invitation_id)
    return Response(status=204)

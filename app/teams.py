"""The `teams` blueprint: list, create, show, share, change a role, remove (docs/api.md "Teams").

Inviting lives in `app.invitations`.

Every route asks `app.access` first, in the same unit of work as what it then does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator
from quart import Blueprint, Response, current_app
from quart_schema import validate_request

from app.access import require_team
from app.db_thread import run_db
from app.errors import ApiError
from app.login_sessions import current_user_id, login_required
from app.revocations import publish_revocation
from models.serialize import member_dict, team_dict
from models.teams import (
    change_role,
    create_team,
    remove_member,
    share_team,
    team_members,
    visible_teams,
)

blueprint = Blueprint("teams", __name__, url_prefix="/teams")


class TeamBody(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=5000)

    @model_validator(mode="after")
    def _name_not_blank(self) -> TeamBody:
        self.name = self.name.strip()
        if not self.name:
            raise ValueError("name must not be blank")
        return self


@blueprint.get("")
@login_required
async def list_teams():
    """200 `{"teams": [Team]}`: owned teams plus shared teams the user belongs to."""
    rows = await run_db(visible_teams, await current_user_id())
    return {"teams": [team_dict(team, role) for team, role in rows]}


@blueprint.post("")
@login_required
@validate_request(TeamBody)
async def create(data: TeamBody):
    """201 `{"team": Team}`: a new personal team owned by the caller."""
    team = await run_db(create_team, await current_user_id(), data.name, data.description)
    return {"team": team_dict(team, "owner")}, 201


def _show(user_id: int, team_id: int):
    team, role = require_team(user_id, team_id, "read")
    return team, role, team_members(team)


@blueprint.get("/<int:team_id>")
@login_required
async def show(team_id: int):
    """200 `{"team": Team, "members": [Member]}`."""
    team, role, members = await run_db(_show, await current_user_id(), team_id)
    return {"team": team_dict(team, role), "members": [member_dict(m) for m in members]}


def _share(user_id: int, team_id: int):
    team, role = require_team(user_id, team_id, "manage")
    return share_team(team), role


@blueprint.post("/<int:team_id>/share")
@login_required
async def share(team_id: int):
    """200 `{"team": Team}` with `is_shared=true` (sharing a shared team changes nothing)."""
    team, role = await run_db(_share, await current_user_id(), team_id)
    return {"team": team_dict(team, role)}


class RoleBody(BaseModel):
    role: Literal["member", "viewer"]


def _change_role(user_id: int, team_id: int, member_id: int, role: str):
    team, _ = require_team(user_id, team_id, "manage")
    if member_id == team.owner_id:
        raise ApiError(409, "the owner's role cannot be changed")
    member = change_role(team.id, member_id, role)
    if member is None:
        raise ApiError(404, "that user is not a member of this team")
    return member


@blueprint.patch("/<int:team_id>/members/<int:user_id>")
@login_required
@validate_request(RoleBody)
async def set_role(team_id: int, user_id: int, data: RoleBody):
    """200 `{"member": Member}`: the owner changes a member's role (the role table's "change a
    role"; API.md lists no path for it, so this one sits beside DELETE on the same resource).
    The new role applies from the member's next request: access is checked per request."""
    member = await run_db(_change_role, await current_user_id(), team_id, user_id, data.role)
    return {"member": member_dict(member)}


def _remove(user_id: int, team_id: int, member_id: int) -> None:
    team, _ = require_team(user_id, team_id, "manage")
    if member_id == team.owner_id:
        raise ApiError(409, "the owner cannot be removed from their team")
    if not remove_member(team.id, member_id):
        raise ApiError(404, "that user is not a member of this team")


@blueprint.delete("/<int:team_id>/members/<int:user_id>")
@login_required
async def remove(team_id: int, user_id: int):
    """204: the member loses access at once; open sockets are told through `revocations`."""
    await run_db(_remove, await current_user_id(), team_id, user_id)
    # run_db has committed: only now may the sockets be told.
    await publish_revocation(current_app.extensions["sage_redis"], user_id, team_id, "removed")
    return Response(status=204)

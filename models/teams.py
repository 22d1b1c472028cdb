"""Queries on teams and memberships. Plain sync code: run it through `run_db`.

Visibility (docs/api.md "Roles"): a personal team is visible to its owner only; a shared team to
its owner and its members. Who may do what is decided in `app.access`; these functions assume
the caller has already been allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import peewee
from peewee import JOIN

from models.schema import Team, TeamMembership, User, utcnow


def role_for(team: Team, user_id: int, membership_role: str | None) -> str | None:
    """The role of `user_id` in `team` given their membership row's role (or None)."""
    if team.owner_id == user_id:
        return "owner"
    if team.is_shared and membership_role:
        return membership_role
    return None


def visible_teams(user_id: int) -> list[tuple[Team, str | None]]:
    """Every team the user may see with their role: owned teams plus shared teams they belong to (one query)."""
    mine = TeamMembership.alias("mine")
    # Rows are teams that also carry the selected `membership_role`, which their class does not declare.
    query: Iterable[Any] = (
        Team.select(Team, mine.role.alias("membership_role"))
        .join(mine, JOIN.LEFT_OUTER, on=((mine.team == Team.id) & (mine.user == user_id)))
        .where((Team.owner == user_id) | (Team.is_shared & mine.id.is_null(False)))
        .order_by(Team.created_at, Team.id)
        .objects()
    )
    return [(team, role_for(team, user_id, team.membership_role)) for team in query]


def create_team(owner_id: int, name: str, description: str | None) -> Team:
    """A new personal team owned by `owner_id`."""
    now = utcnow()
    return Team.create(
        name=name, description=description, owner=owner_id, is_shared=False, created_at=now, updated_at=now
    )


def share_team(team: Team) -> Team:
    """Make `team` shared (idempotent) and give its owner an `owner` membership row."""
    if not team.is_shared:
        team.is_shared = True
        team.updated_at = utcnow()
        Team.update(is_shared=True, updated_at=team.updated_at).where(Team.id == team.id).execute()
    TeamMembership.insert(
        team=team.id, user=team.owner_id, role="owner", joined_at=utcnow()
    ).on_conflict_ignore().execute()
    return team


@dataclass(frozen=True)
class Member:
    """One row of a team's member list."""

    user_id: int
    username: str
    role: str
    joined_at: object


def team_members(team: Team) -> list[Member]:
    """The team's members, owner first, then by join time (at most two queries).

    A personal team's only member is its owner.
    """
    members: list[Member] = []
    owner_seen = False
    if team.is_shared:
        rows: Iterable[Any] = (  # memberships carrying the joined user's `username`
            TeamMembership.select(TeamMembership, User.username)
            .join(User)
            .where(TeamMembership.team == team.id)
            .order_by(TeamMembership.joined_at, TeamMembership.id)
            .objects()
        )
        for row in rows:
            is_owner = row.user_id == team.owner_id
            owner_seen = owner_seen or is_owner
            member = Member(row.user_id, row.username, "owner" if is_owner else row.role, row.joined_at)
            if is_owner:
                members.insert(0, member)
            else:
                members.append(member)
    if not owner_seen:
        owner = User.select(User.id, User.username).where(User.id == team.owner_id).get()
        members.insert(0, Member(owner.id, owner.username, "owner", team.created_at))
    return members


class AlreadyMember(Exception):
    """The user already belongs to the team."""


def add_member(team: Team, user: User, role: str) -> Member:
    """Add `user` to the shared `team` with `role`; raise AlreadyMember if they belong already."""
    if user.id == team.owner_id:
        raise AlreadyMember()
    try:
        with Team._meta.database.atomic():
            row = TeamMembership.create(team=team.id, user=user.id, role=role, joined_at=utcnow())
    except peewee.IntegrityError:
        raise AlreadyMember() from None
    return Member(user.id, user.username, row.role, row.joined_at)


def remove_member(team_id: int, user_id: int) -> bool:
    """Delete the membership; True if there was one."""
    deleted = (
        TeamMembership.delete().where((TeamMembership.team == team_id) & (TeamMembership.user == user_id)).execute()
    )
    return deleted > 0


def change_role(team_id: int, user_id: int, role: str) -> Member | None:
    """Set a member's role; the updated member, or None if `user_id` is not a member."""
    rows = list(
        TeamMembership.update(role=role)
        .where((TeamMembership.team == team_id) & (TeamMembership.user == user_id))
        .returning(TeamMembership)
        .execute()
    )
    if not rows:
        return None
    user = User.get_by_id(user_id)
    return Member(user.id, user.username, rows[0].role, rows[0].joined_at)

"""Queries on invitations. Plain sync code: run it through `run_db`.

An invitation names a person by what the owner typed (a username or an email). When that names
an account, `invitee` points at it; when it names none (or the owner), `invitee` is NULL and
nobody can ever accept it. The owner sees the same pending invitation either way, so inviting
reveals nothing about who has an account. Membership begins only at acceptance. Who may call
what is decided in `app.access` and `app.invitations`.
"""

from __future__ import annotations

from peewee import JOIN, fn

from models.schema import Invitation, Team, User, utcnow
from models.teams import AlreadyMember, add_member


def _matching_user(invitee_text: str) -> User | None:
    """The account a username or email names, ignoring case (one query)."""
    login = invitee_text.strip().lower()
    column = fn.LOWER(User.email) if "@" in login else fn.LOWER(User.username)
    return User.select(User.id).where(column == login).first()


def invite(team: Team, invited_by: int, invitee_text: str, role: str) -> Invitation:
    """A pending invitation to `team` for whoever `invitee_text` names.

    Inviting the same name again while an invitation is pending returns that one (with the
    newer role), whether or not the name has an account.
    """
    invitee_text = invitee_text.strip()
    existing = (
        Invitation.select()
        .where(
            (Invitation.team == team.id)
            & (Invitation.status == "pending")
            & (fn.LOWER(Invitation.invitee_text) == invitee_text.lower())
        )
        .first()
    )
    if existing is not None:
        if existing.role != role:
            existing.role = role
            existing.save(only=[Invitation.role])
        return existing
    user = _matching_user(invitee_text)
    invitee = None if user is None or user.id == team.owner_id else user.id
    return Invitation.create(team=team.id, invited_by=invited_by, invitee=invitee, invitee_text=invitee_text, role=role)


def pending_for_team(team_id: int) -> list[Invitation]:
    """The team's pending invitations, oldest first."""
    return list(
        Invitation.select()
        .where((Invitation.team == team_id) & (Invitation.status == "pending"))
        .order_by(Invitation.created_at, Invitation.id)
    )


def pending_for_user(user_id: int) -> list[Invitation]:
    """The pending invitations addressed to `user_id`, with their team and inviter loaded (one query)."""
    inviter = User.alias("inviter")
    return list(
        Invitation.select(Invitation, Team, inviter)
        .join(Team, on=(Invitation.team == Team.id))
        .switch(Invitation)
        .join(inviter, JOIN.INNER, on=(Invitation.invited_by == inviter.id), attr="inviter")
        .where((Invitation.invitee == user_id) & (Invitation.status == "pending"))
        .order_by(Invitation.created_at, Invitation.id)
    )


def invitation_for_team(team_id: int, invitation_id: int) -> Invitation | None:
    """The invitation `invitation_id` if it belongs to `team_id`."""
    return Invitation.get_or_none((Invitation.id == invitation_id) & (Invitation.team == team_id))


def invitation_for_invitee(user_id: int, invitation_id: int) -> Invitation | None:
    """The invitation `invitation_id` if it is addressed to `user_id`, its row locked against a
    concurrent answer (so accepting twice at once makes one membership)."""
    return (
        Invitation.select()
        .where((Invitation.id == invitation_id) & (Invitation.invitee == user_id))
        .for_update()
        .first()
    )


def respond(invitation: Invitation, status: str) -> Invitation:
    """Record the answer (`accepted`, `declined` or `cancelled`) of a pending invitation."""
    invitation.status = status
    invitation.responded_at = utcnow()
    invitation.save(only=[Invitation.status, Invitation.responded_at])
    return invitation


def accept(invitation: Invitation, user: User) -> Team:
    """Accept a pending invitation: the membership begins now (an existing one is kept as is)."""
    team = Team.get_by_id(invitation.team_id)
    try:
        add_member(team, user, invitation.role)
    except AlreadyMember:
        pass
    respond(invitation, "accepted")
    return team

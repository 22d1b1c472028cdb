"""Access control: may this user do this to this team? Every route asks here, and only here.

Rules (docs/api.md "Roles"):

- The owner is `teams.owner_id`. A personal team (`is_shared=false`) is visible to its owner
  only, whatever membership rows exist; a shared team to its owner and its members, with the
  role of their `team_memberships` row.
- Actions: `read` (team, members, sessions, decisions, timeline, replay, WebSocket) for every
  role; `write` (start or end a session, add a decision) for owner and member; `manage` (share,
  invite, remove members, change roles) for the owner only.
- A user who may not see a team gets 404 `not_found`, exactly as if it did not exist, for the
  team and for every session, task or decision in it; a user who sees it but whose role does
  not allow the action gets 403 `forbidden`.

Each check is one query that also loads the object asked about. The functions are plain sync
code: call them inside `run_db` (in the same unit of work as the rest of the route, so the check
and the action see the same data). The WebSocket handshake calls them the same way.

With `check_account=True` the same query also asks whether the caller's account still exists,
and raises `AccountGone` when it does not: the read views, whose login check
(`login_sessions.login_required_access_checked`) leaves that question to them, so a read costs
one unit of work instead of two (issue 13). A deleted account never sees a 404 for it: when the
object is missing, the account is looked up on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, cast

from peewee import JOIN, fn

from app.errors import ApiError
from models.db import PostgresDatabase, db, rows_of
from models.schema import AgentTask, ExecutionSession, Team, TeamMembership, User
from models.teams import role_for
from models.users import user_exists

Action = Literal["read", "write", "manage"]
Role = Literal["owner", "member", "viewer"]

ALLOWED: dict[str, frozenset[str]] = {
    "read": frozenset({"owner", "member", "viewer"}),
    "write": frozenset({"owner", "member"}),
    "manage": frozenset({"owner"}),
}
FORBIDDEN_MESSAGES = {
    "write": "your role in this team does not allow this (viewers can only read)",
    "manage": "only the team owner can do this",
}


def _membership(user_id: int):
    """The caller's membership join (LEFT OUTER: absent for outsiders) and its role column.

    The role is wrapped in an expression so that Peewee puts it on the queried (root) row as
    `membership_role`, rather than on an unselected alias model where it would be lost.
    """
    mine = TeamMembership.alias("mine")
    return (
        mine,
        ((mine.team == Team.id) & (mine.user == user_id)),
        fn.COALESCE(mine.role, None).alias("membership_role"),
    )


class AccountGone(Exception):
    """The caller's account no longer exists (deleted by another path than `DELETE /auth/me`)."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} no longer exists")
        self.user_id = user_id


def _account_column(user_id: int):
    """`account_exists`: whether the user row is still there, as a column of the access query."""
    return fn.EXISTS(User.select(User.id).where(User.id == user_id)).alias("account_exists")


def _require_account(exists: bool, user_id: int) -> None:
    if not exists:
        raise AccountGone(user_id)


def _check_account(found, user_id: int) -> None:
    """Raise AccountGone unless the access query's row (or, without one, a lookup) finds the account."""
    _require_account(found.account_exists if found is not None else user_exists(user_id), user_id)


def may(role: str | None, action: Action) -> bool:
    """Whether `role` (None: cannot see the team) allows `action`."""
    if action not in ALLOWED:
        raise ValueError(f"unknown action {action!r}")
    return role is not None and role in ALLOWED[action]


def _check(role: str | None, action: Action, what: str) -> None:
    if role is None:
        raise ApiError(404, f"{what} not found")
    if not may(role, action):
        raise ApiError(403, FORBIDDEN_MESSAGES.get(action, "forbidden"))


def _decide(team: Any, membership_role: str | None, user_id: int, action: Action, what: str) -> Role:
    """The caller's role in `team` (None: the object was not found), if it allows `action`; the
    one place every check below ends in."""
    role = None if team is None else role_for(team, user_id, membership_role)
    _check(role, action, what)
    # The database's CHECK keeps a membership's role to TEAM_ROLES, so it is a Role.
    return cast("Role", role)


def _load_team(user_id: int, team_id: int, check_account: bool = False) -> tuple[Team | None, Role | None]:
    mine, on, role_column = _membership(user_id)
    columns = [Team, role_column, _account_column(user_id)] if check_account else [Team, role_column]
    team = Team.select(*columns).join(mine, JOIN.LEFT_OUTER, on=on).where(Team.id == team_id).objects().first()
    if check_account:
        _check_account(team, user_id)
    role = None if team is None else role_for(team, user_id, team.membership_role)
    # The database's CHECK keeps a membership's role to TEAM_ROLES, so it is a Role.
    return team, cast("Role | None", role)


def team_role(user_id: int, team_id: int) -> Role | None:
    """The user's role in the team, or None when they may not see it (or it does not exist)."""
    return _load_team(user_id, team_id)[1]


def require_team(user_id: int, team_id: int, action: Action, *, check_account: bool = False) -> tuple[Team, Role]:
    """The team and the user's role, if the user may do `action` to it.

    Raises:
        ApiError: 404 when the user may not see the team, 403 when the role does not allow `action`.
        AccountGone: with `check_account`, when the user no longer exists.
    """
    team, role = _load_team(user_id, team_id, check_account)
    _check(role, action, "team")
    assert team is not None and role is not None  # _check raised otherwise
    return team, role


def _require_in_team(
    query, user_id: int, action: Action, what: str, team_of, check_account: bool = False, also: tuple = ()
):
    """Run `query` (already joined to Team and the caller's membership), then apply the rules."""
    if check_account:
        query = query.select_extend(_account_column(user_id))
    if also:
        query = query.select_extend(*also)
    found = query.first()
    if check_account:
        _check_account(found, user_id)
    team = None if found is None else team_of(found)
    return found, _decide(team, getattr(found, "membership_role", None), user_id, action, what)


def require_session(
    user_id: int, session_id: int, action: Action, *, check_account: bool = False, also: tuple = ()
) -> tuple[ExecutionSession, Role]:
    """The execution session (with `.team` loaded) and the user's role in its team, if allowed.

    `also`: more aliased columns for the same query to load onto the session (a view's version).

    Raises:
        ApiError: 404 when the session does not exist or its team is not visible, 403 as `require_team`.
        AccountGone: with `check_account`, when the user no longer exists.
    """
    mine, on, role_column = _membership(user_id)
    query = (
        ExecutionSession.select(ExecutionSession, Team, role_column)
        .join(Team)
        .join(mine, JOIN.LEFT_OUTER, on=on)
        .where(ExecutionSession.id == session_id)
    )
    return _require_in_team(query, user_id, action, "session", lambda session: session.team, check_account, also)


class _TeamFacts(NamedTuple):
    """What `role_for` reads of a team."""

    owner_id: int
    is_shared: bool


# `require_session(..., check_account=True)`'s question as one prebuilt statement: always one row
# (so the account is answered when the session is missing too), the team's facts NULL when it is.
_SESSION_FACTS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM users WHERE id = %s) AS account_exists,"
    " t.owner_id, t.is_shared, m.role AS membership_role, {column} AS {alias}"
    " FROM (VALUES (1)) AS one (x)"
    " LEFT JOIN execution_sessions s ON s.id = %s"
    " LEFT JOIN teams t ON t.id = s.team_id"
    " LEFT JOIN team_memberships m ON m.team_id = t.id AND m.user_id = %s"
)


def session_access_with(
    user_id: int, session_id: int, action: Action, column: str, params: Sequence[Any], alias: str = "view_version"
) -> Any:
    """`require_session(user_id, session_id, action, check_account=True)`'s decision, by the same
    rules, without loading the session: one statement of prebuilt SQL that also selects the SQL
    expression `column` (with `params`), whose value it returns when the action is allowed.

    Run it outside a transaction: one statement is one snapshot by itself, so the access, the
    account and `column` agree (a cached read's version, `app.sessions`). PostgreSQL only: it runs
    as a prepared statement (its planning cost more than its running).

    Raises: as `require_session`.
    """
    sql = _SESSION_FACTS_SQL.format(column=column, alias=alias)
    row = db.obj.execute_prepared(sql, (user_id, *params, session_id, user_id)).fetchone()
    account_exists, owner_id, is_shared, membership_role, value = row
    _decide_facts(account_exists, owner_id, is_shared, membership_role, user_id, action, "session")
    return value


def _decide_facts(
    account_exists: bool,
    owner_id: int | None,
    is_shared: bool,
    membership_role: str | None,
    user_id: int,
    action: Action,
    what: str,
) -> Role:
    """`_decide` from the prebuilt statements' facts (the team's fields NULL when it was not found),
    after the account's check."""
    _require_account(account_exists, user_id)
    return _decide(
        None if owner_id is None else _TeamFacts(owner_id, is_shared), membership_role, user_id, action, what
    )


def session_team_id(user_id: int, session_id: int, action: Action) -> int:
    """The session's team id, when `require_session(user_id, session_id, action, check_account=True)`
    allows it: one prepared statement on PostgreSQL (the WebSocket handshake's first check).

    Raises: as `require_session`.
    """
    if isinstance(db.obj, PostgresDatabase):
        return session_access_with(user_id, session_id, action, "s.team_id", ())
    return require_session(user_id, session_id, action, check_account=True)[0].team_id


# `require_team(..., check_account=True)`'s question, in the same shape (one row, NULL team facts
# when the team is missing); its four columns come first and its names are kept apart from the rows
# `team_access_with_rows` and `team_access_with_plain_rows` add.
_TEAM_FACTS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM users WHERE id = %s) AS account_exists,"
    " t.owner_id AS team_owner_id, t.is_shared AS team_is_shared, m.role AS membership_role"
    " FROM (VALUES (1)) AS one (x)"
    " LEFT JOIN teams t ON t.id = %s"
    " LEFT JOIN team_memberships m ON m.team_id = t.id AND m.user_id = %s"
)


def team_access(user_id: int, team_id: int, action: Action) -> Role:
    """`require_team(user_id, team_id, action, check_account=True)`'s role: on PostgreSQL by the
    same rules in one prepared statement of prebuilt SQL (for `POST /sessions`, where building the
    Peewee query each time cost more than running it).

    Raises: as `require_team`.
    """
    if not isinstance(db.obj, PostgresDatabase):
        return require_team(user_id, team_id, action, check_account=True)[1]
    account_exists, owner_id, is_shared, membership_role = db.obj.execute_prepared(
        _TEAM_FACTS_SQL, (user_id, team_id, user_id)
    ).fetchone()
    return _decide_facts(account_exists, owner_id, is_shared, membership_role, user_id, action, "team")


def _with_team_facts(user_id: int, team_id: int, rows_sql: str, params: Sequence[Any]) -> Any:
    """The cursor of `rows_sql` (with `params`) joined to `_TEAM_FACTS_SQL`'s row: every row starts
    with the four facts the caller decides `action` on (`_decide_facts`), and when `rows_sql` has
    no row there is one row of facts with NULLs after them. One prepared statement, outside any
    transaction (one snapshot by itself, so the rows are those the access is decided on).
    PostgreSQL only."""
    sql = f"SELECT f.*, r.* FROM ({_TEAM_FACTS_SQL}) AS f LEFT JOIN LATERAL ({rows_sql}) AS r ON true"
    return db.obj.execute_prepared(sql, (user_id, team_id, user_id, *params))


def team_access_with_rows(
    user_id: int, team_id: int, action: Action, model: Any, rows_sql: str, params: Sequence[Any]
) -> list[Any]:
    """`require_team(user_id, team_id, action, check_account=True)`'s decision, by the same rules,
    and when allowed the rows of `rows_sql` (with `params`), their values converted by `model`'s
    fields as Peewee converts them (`models.db.rows_of`: named tuples), in one statement
    (`_with_team_facts`). PostgreSQL only.

    Raises: as `require_team`.
    """
    rows = rows_of(_with_team_facts(user_id, team_id, rows_sql, params), model)
    first = rows[0]  # always one at least: the facts
    _decide_facts(
        first.account_exists, first.team_owner_id, first.team_is_shared, first.membership_role, user_id, action, "team"
    )
    return [row for row in rows if row.id is not None]  # none: one row of facts with NULLs


def team_access_with_plain_rows(
    user_id: int, team_id: int, action: Action, rows_sql: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """`team_access_with_rows` with the rows as the driver gives them (tuples, nothing converted):
    for a statement whose columns are already what the caller sends.

    Raises: as `require_team`.
    """
    rows = _with_team_facts(user_id, team_id, rows_sql, params).fetchall()
    account_exists, owner_id, is_shared, membership_role = rows[0][:4]  # always one row at least
    _decide_facts(account_exists, owner_id, is_shared, membership_role, user_id, action, "team")
    if len(rows) == 1 and all(value is None for value in rows[0][4:]):
        return []  # the facts alone: the statement had no row
    return [row[4:] for row in rows]


def require_task(user_id: int, task_id: int, action: Action) -> tuple[AgentTask, Role]:
    """The agent task (with `.session` and `.session.team` loaded) and the user's role, if allowed.

    Raises:
        ApiError: 404 when the task does not exist or its team is not visible, 403 as `require_team`.
    """
    mine, on, role_column = _membership(user_id)
    query = (
        AgentTask.select(AgentTask, ExecutionSession, Team, role_column)
        .join(ExecutionSession)
        .join(Team)
        .join(mine, JOIN.LEFT_OUTER, on=on)
        .where(AgentTask.id == task_id)
    )
    return _require_in_team(query, user_id, action, "task", lambda task: task.session.team)

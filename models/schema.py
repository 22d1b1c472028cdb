"""The schema: eight tables of the design plus the `session_events` log and `invitations`.

ON DELETE policy (so deleting a team or a user never leaves orphans):

- A team owns everything done in it: deleting a team deletes its memberships, sessions and,
  through them, decisions, tasks, snapshots and events (CASCADE all the way down).
- Deleting a user deletes the teams they own (with all of the above) and their memberships.
  Sessions and decisions they created in *other people's* shared teams stay with those teams:
  `execution_sessions.user_id` and `session_decisions.user_id` / `task_decisions.user_id`
  become NULL ("a former member"), because that history belongs to the team.
- A rerun points at its original with `rerun_of`; deleting the original sets it to NULL.
- An invitation belongs to its team, its inviter and its invitee: deleting any of them deletes it.

Statuses, roles, confidence levels, categories and event types are enforced by CHECK
constraints, so a bad value is refused by the database, not only by Python.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal, get_args

import peewee
from peewee import SQL, Check, fn

from models.db import db
from models.vocabulary import EVENT_TYPES as EVENT_TYPES  # the one list the bundle shares (models/vocabulary.py)

# Value lists that request bodies also validate are written as Literal types (which a type checker
# can read) and the tuples taken from them, so each list is still written once.
AgentRole = Literal["architect", "backend_dev", "dba", "frontend_dev", "ui_ux", "security", "it_admin"]
AGENT_ROLES: tuple[AgentRole, ...] = get_args(AgentRole)
#: What a person calls each role, for pages and documents.
ROLE_TITLES = {
    "architect": "Architect",
    "backend_dev": "Backend developer",
    "dba": "DBA",
    "frontend_dev": "Frontend developer",
    "ui_ux": "UI/UX designer",
    "security": "Security engineer",
    "it_admin": "IT admin",
}
PIPELINE = (("architect",), ("backend_dev", "dba"), ("frontend_dev", "ui_ux"), ("security", "it_admin"))
STAGE_OF_ROLE: dict[str, int] = {role: index for index, stage in enumerate(PIPELINE) for role in stage}
TEAM_ROLES = ("owner", "member", "viewer")
SESSION_STATUSES = ("active", "completed", "error")
END_REASONS = ("completed", "user", "error")
TASK_STATUSES = ("pending", "running", "completed", "error")
Confidence = Literal["high", "medium", "low"]
CONFIDENCE_LEVELS: tuple[Confidence, ...] = get_args(Confidence)
Category = Literal[
    "architecture",
    "technology",
    "design",
    "data",
    "security",
    "performance",
    "infrastructure",
    "testing",
    "process",
    "user_experience",
]
CATEGORIES: tuple[Category, ...] = get_args(Category)
DECISION_SOURCES = ("agent", "user")
INVITABLE_ROLES = ("member", "viewer")
INVITATION_STATUSES = ("pending", "accepted", "declined", "cancelled")
NOW = SQL("DEFAULT CURRENT_TIMESTAMP")
ZERO = SQL("DEFAULT 0")


def utcnow() -> dt.datetime:
    """The current time as a naive UTC datetime (the database stores UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def one_of(column: str, values: tuple[str, ...], nullable: bool = False) -> str:
    """SQL for a CHECK that `column` holds one of `values`."""
    listed = ", ".join(f"'{v}'" for v in values)
    clause = f"{column} IN ({listed})"
    return f"{column} IS NULL OR {clause}" if nullable else clause


class BaseModel(peewee.Model):
    class Meta:
        database = db
        legacy_table_names = False


class User(BaseModel):
    id = peewee.BigAutoField()
    username = peewee.CharField(max_length=64)
    email = peewee.CharField(max_length=255)
    password_hash = peewee.CharField(max_length=255)
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])
    updated_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])

    class Meta:
        table_name = "users"


class Team(BaseModel):
    id = peewee.BigAutoField()
    name = peewee.CharField(max_length=255)
    owner = peewee.ForeignKeyField(User, backref="owned_teams", on_delete="CASCADE", index=False)
    is_shared = peewee.BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    description = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])
    updated_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        owner_id: int

    class Meta:
        table_name = "teams"


class TeamMembership(BaseModel):
    id = peewee.BigAutoField()
    team = peewee.ForeignKeyField(Team, backref="memberships", on_delete="CASCADE", index=False)
    user = peewee.ForeignKeyField(User, backref="memberships", on_delete="CASCADE", index=False)
    role = peewee.CharField(
        max_length=50,
        default="member",
        constraints=[SQL("DEFAULT 'member'"), Check(one_of("role", TEAM_ROLES), "ck_memberships_role")],
    )
    joined_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        team_id: int
        user_id: int

    class Meta:
        table_name = "team_memberships"


class ExecutionSession(BaseModel):
    id = peewee.BigAutoField()
    team = peewee.ForeignKeyField(Team, backref="sessions", on_delete="CASCADE", index=False)
    user = peewee.ForeignKeyField(User, backref="sessions", on_delete="SET NULL", null=True, index=False)
    feature_name = peewee.CharField(max_length=255)
    description = peewee.TextField(null=True)
    status = peewee.CharField(
        max_length=50,
        default="active",
        constraints=[SQL("DEFAULT 'active'"), Check(one_of("status", SESSION_STATUSES), "ck_sessions_status")],
    )
    current_stage = peewee.IntegerField(default=0, constraints=[ZERO, Check("current_stage >= 0", "ck_sessions_stage")])
    last_seq = peewee.IntegerField(default=0, constraints=[ZERO])
    celery_chain_id = peewee.CharField(max_length=255, null=True)
    error_message = peewee.TextField(null=True)
    rerun_of: peewee.ForeignKeyField[ExecutionSession | None] = peewee.ForeignKeyField(
        "self", backref="reruns", on_delete="SET NULL", null=True, index=False
    )
    started_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])
    ended_at = peewee.DateTimeField(null=True)
    duration_seconds = peewee.DoubleField(null=True)
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])
    # Migration 002: the brain that thinks for every agent of the session, and the model usage
    # totals over its tasks (null until a model brain makes a call; see models/usage.py).
    brain = peewee.CharField(max_length=64, default="knowledge-base", constraints=[SQL("DEFAULT 'knowledge-base'")])
    usage = peewee.JSONField(null=True)
    # Who ended the session early (NULL otherwise) and why it ended: see END_REASONS.
    ended_by = peewee.ForeignKeyField(User, backref="+", on_delete="SET NULL", null=True, index=False)
    end_reason = peewee.CharField(
        max_length=20,
        null=True,
        constraints=[Check(one_of("end_reason", END_REASONS, nullable=True), "ck_sessions_end_reason")],
    )

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        team_id: int
        user_id: int | None
        rerun_of_id: int | None
        ended_by_id: int | None

    class Meta:
        table_name = "execution_sessions"
        # `last_seq` is advanced by `models.events.record_event` under the row lock; a stale
        # instance's save() must never write it back, so saves write only changed fields.
        only_save_dirty = True


class SessionDecision(BaseModel):
    id = peewee.BigAutoField()
    session = peewee.ForeignKeyField(ExecutionSession, backref="decisions", on_delete="CASCADE", index=False)
    user = peewee.ForeignKeyField(User, on_delete="SET NULL", null=True, index=False)
    decision_text = peewee.TextField()
    category = peewee.CharField(
        max_length=100,
        null=True,
        constraints=[Check(one_of("category", CATEGORIES, nullable=True), "ck_session_decisions_category")],
    )
    confidence = peewee.CharField(
        max_length=50,
        default="high",
        constraints=[
            SQL("DEFAULT 'high'"),
            Check(one_of("confidence", CONFIDENCE_LEVELS), "ck_session_decisions_confidence"),
        ],
    )
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        session_id: int
        user_id: int | None

    class Meta:
        table_name = "session_decisions"


class AgentTask(BaseModel):
    id = peewee.BigAutoField()
    session = peewee.ForeignKeyField(ExecutionSession, backref="tasks", on_delete="CASCADE", index=False)
    agent_role = peewee.CharField(
        max_length=100, constraints=[Check(one_of("agent_role", AGENT_ROLES), "ck_agent_tasks_role")]
    )
    stage = peewee.IntegerField(default=0, constraints=[ZERO, Check("stage >= 0", "ck_agent_tasks_stage")])
    task_description = peewee.TextField()
    input_data = peewee.JSONField(null=True)
    output_data = peewee.JSONField(null=True)
    status = peewee.CharField(
        max_length=50,
        default="pending",
        constraints=[SQL("DEFAULT 'pending'"), Check(one_of("status", TASK_STATUSES), "ck_agent_tasks_status")],
    )
    started_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)
    duration_seconds = peewee.DoubleField(null=True)
    error_message = peewee.TextField(null=True)
    retry_count = peewee.IntegerField(
        default=0, constraints=[ZERO, Check("retry_count >= 0", "ck_agent_tasks_retry_count")]
    )
    celery_task_id = peewee.CharField(max_length=255, null=True)
    rerun_of: peewee.ForeignKeyField[AgentTask | None] = peewee.ForeignKeyField(
        "self", backref="reruns", on_delete="SET NULL", null=True, index=False
    )
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])
    # Migration 002: model calls of every attempt, summed (null for the knowledge base).
    usage = peewee.JSONField(null=True)

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        session_id: int
        rerun_of_id: int | None

    class Meta:
        table_name = "agent_tasks"


class TaskDecision(BaseModel):
    id = peewee.BigAutoField()
    agent_task = peewee.ForeignKeyField(AgentTask, backref="decisions", on_delete="CASCADE", index=False)
    user = peewee.ForeignKeyField(User, on_delete="SET NULL", null=True, index=False)
    source = peewee.CharField(
        max_length=20,
        default="agent",
        constraints=[SQL("DEFAULT 'agent'"), Check(one_of("source", DECISION_SOURCES), "ck_task_decisions_source")],
    )
    decision_text = peewee.TextField()
    rationale = peewee.TextField(null=True)
    category = peewee.CharField(
        max_length=100,
        null=True,
        constraints=[Check(one_of("category", CATEGORIES, nullable=True), "ck_task_decisions_category")],
    )
    confidence = peewee.CharField(
        max_length=50,
        null=True,
        constraints=[Check(one_of("confidence", CONFIDENCE_LEVELS, nullable=True), "ck_task_decisions_confidence")],
    )
    based_on = peewee.JSONField(default=list, constraints=[SQL("DEFAULT '[]'")])
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        agent_task_id: int
        user_id: int | None

    class Meta:
        table_name = "task_decisions"


class AgentSnapshot(BaseModel):
    id = peewee.BigAutoField()
    agent_task = peewee.ForeignKeyField(AgentTask, backref="snapshots", on_delete="CASCADE", index=False)
    agent_role = peewee.CharField(
        max_length=100, constraints=[Check(one_of("agent_role", AGENT_ROLES), "ck_agent_snapshots_role")]
    )
    context_state = peewee.JSONField()
    capabilities = peewee.JSONField()
    decisions = peewee.JSONField()
    execution_metadata = peewee.JSONField(null=True)
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        agent_task_id: int

    class Meta:
        table_name = "agent_snapshots"


class SessionEvent(BaseModel):
    id = peewee.BigAutoField()
    session = peewee.ForeignKeyField(ExecutionSession, backref="events", on_delete="CASCADE", index=False)
    seq = peewee.IntegerField(constraints=[Check("seq >= 1", "ck_session_events_seq")])
    type = peewee.CharField(max_length=64, constraints=[Check(one_of("type", EVENT_TYPES), "ck_session_events_type")])
    payload = peewee.JSONField()
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        session_id: int

    class Meta:
        table_name = "session_events"


class Invitation(BaseModel):
    """An invitation to a shared team that its invitee accepts or declines (membership begins at
    acceptance). `invitee_text` is what the owner typed; `invitee` the account it named, if any
    (NULL when none did: the owner is never told which)."""

    id = peewee.BigAutoField()
    team = peewee.ForeignKeyField(Team, backref="invitations", on_delete="CASCADE", index=False)
    invited_by = peewee.ForeignKeyField(User, on_delete="CASCADE", index=False)
    invitee = peewee.ForeignKeyField(User, backref="invitations", on_delete="CASCADE", null=True, index=False)
    invitee_text = peewee.CharField(max_length=255)
    role = peewee.CharField(
        max_length=50,
        default="member",
        constraints=[SQL("DEFAULT 'member'"), Check(one_of("role", INVITABLE_ROLES), "ck_invitations_role")],
    )
    status = peewee.CharField(
        max_length=50,
        default="pending",
        constraints=[SQL("DEFAULT 'pending'"), Check(one_of("status", INVITATION_STATUSES), "ck_invitations_status")],
    )
    created_at = peewee.DateTimeField(default=utcnow, constraints=[NOW])
    responded_at = peewee.DateTimeField(null=True)

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        team_id: int
        invited_by_id: int
        invitee_id: int | None

    class Meta:
        table_name = "invitations"


def _index(model: type[BaseModel], name: str, *columns: object, unique: bool = False) -> None:
    model.add_index(peewee.ModelIndex(model, columns, unique=unique, name=name))


# The design's indexes, by the design's names, plus those the queries need.
_index(User, "uq_users_username_lower", fn.LOWER(User.username), unique=True)
_index(User, "uq_users_email_lower", fn.LOWER(User.email), unique=True)
_index(Team, "idx_teams_owner", Team.owner)
_index(Team, "idx_teams_is_shared", Team.is_shared)
_index(TeamMembership, "uq_memberships_team_user", TeamMembership.team, TeamMembership.user, unique=True)
_index(TeamMembership, "idx_memberships_user", TeamMembership.user)
_index(TeamMembership, "idx_memberships_team", TeamMembership.team)
_index(ExecutionSession, "idx_sessions_team", ExecutionSession.team)
_index(ExecutionSession, "idx_sessions_user", ExecutionSession.user)
_index(ExecutionSession, "idx_sessions_status", ExecutionSession.status)
_index(ExecutionSession, "idx_sessions_team_id", ExecutionSession.team, ExecutionSession.id)
_index(
    ExecutionSession, "idx_sessions_team_status_id", ExecutionSession.team, ExecutionSession.status, ExecutionSession.id
)
_index(ExecutionSession, "idx_sessions_rerun_of", ExecutionSession.rerun_of)
_index(ExecutionSession, "idx_sessions_ended_by", ExecutionSession.ended_by)
_index(SessionDecision, "idx_session_decisions_session", SessionDecision.session)
_index(SessionDecision, "idx_session_decisions_user", SessionDecision.user)
_index(AgentTask, "idx_agent_tasks_session", AgentTask.session)
_index(AgentTask, "idx_agent_tasks_role", AgentTask.agent_role)
_index(AgentTask, "idx_agent_tasks_status", AgentTask.status)
_index(AgentTask, "uq_agent_tasks_session_role", AgentTask.session, AgentTask.agent_role, unique=True)
_index(AgentTask, "idx_agent_tasks_rerun_of", AgentTask.rerun_of)
_index(TaskDecision, "idx_task_decisions_task", TaskDecision.agent_task)
_index(TaskDecision, "idx_task_decisions_user", TaskDecision.user)
_index(AgentSnapshot, "idx_snapshots_task", AgentSnapshot.agent_task)
_index(SessionEvent, "uq_session_events_session_seq", SessionEvent.session, SessionEvent.seq, unique=True)
_index(Invitation, "idx_invitations_team_status", Invitation.team, Invitation.status)
_index(Invitation, "idx_invitations_invitee_status", Invitation.invitee, Invitation.status)
_index(Invitation, "idx_invitations_invited_by", Invitation.invited_by)


# Search (migration 007, `models/search.py`): a document per searchable thing, kept by triggers,
# and the vocabulary that typos are corrected against (pg_trgm, which the migration installs).
class TSVectorField(peewee.Field):
    """PostgreSQL's `tsvector`; written only by the search triggers."""

    field_type = "TSVECTOR"


SEARCH_KINDS = ("feature", "session_decision", "agent_decision")


class SearchDocument(BaseModel):
    id = peewee.BigAutoField()
    kind = peewee.CharField(
        max_length=20, constraints=[Check(one_of("kind", SEARCH_KINDS), "ck_search_documents_kind")]
    )
    session = peewee.ForeignKeyField(ExecutionSession, on_delete="CASCADE", index=False)
    decision_id = peewee.BigIntegerField(null=True)
    team_id = peewee.BigIntegerField()
    agent_role = peewee.CharField(max_length=50, null=True)
    category = peewee.CharField(max_length=50, null=True)
    created_at = peewee.DateTimeField()
    title = peewee.TextField()
    body = peewee.TextField(null=True)
    tsv = TSVectorField()

    if TYPE_CHECKING:  # the `<name>_id` columns Peewee adds for the foreign keys above
        session_id: int

    class Meta:
        table_name = "search_documents"


class SearchWord(BaseModel):
    word = peewee.CharField(max_length=64, primary_key=True)

    class Meta:
        table_name = "search_words"


_index(SearchDocument, "idx_search_documents_team_id", SearchDocument.team_id, SearchDocument.id)
_index(SearchDocument, "idx_search_documents_session", SearchDocument.session)
_index(
    SearchDocument,
    "uq_search_documents_kind_ref",
    SearchDocument.kind,
    fn.COALESCE(SearchDocument.decision_id, SearchDocument.session),
    unique=True,
)
SearchDocument.add_index(
    peewee.ModelIndex(SearchDocument, (SearchDocument.tsv,), name="idx_search_documents_tsv", using="gin")
)
SearchWord.add_index(
    peewee.ModelIndex(SearchWord, (SQL("word gist_trgm_ops"),), name="idx_search_words_trgm", using="gist")
)

ALL_MODELS: tuple[type[BaseModel], ...] = (
    User,
    Team,
    TeamMembership,
    ExecutionSession,
    SessionDecision,
    AgentTask,
    TaskDecision,
    AgentSnapshot,
    SessionEvent,
    SearchDocument,
    SearchWord,
    Invitation,
)

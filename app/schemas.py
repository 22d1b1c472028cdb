"""The response bodies of docs/api.md as pydantic models, for the OpenAPI document only.

Views build their JSON from `models/serialize.py`; these models describe it for `/openapi.json`
(and so for `/docs` and the schemathesis run in the test suite, which checks every answer
against them). `document_responses(app)` attaches them to the routes from one table, with the
error envelope on every route, so a route cannot be served without being described: a test
fails for any JSON route missing here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Quart
from quart_schema.openapi import OpenAPIProvider
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE

from models.vocabulary import EVENT_TYPES


class Shape(BaseModel):
    """Answers may carry more than is documented (additive changes are not breaking)."""

    model_config = ConfigDict(extra="allow")


class ErrorBody(Shape):
    code: str
    message: str
    fields: dict[str, str] | None = None


class ErrorEnvelope(Shape):
    """Every failure: `{"error": {code, message, fields?}}` with the matching status."""

    error: ErrorBody


class User(Shape):
    id: int
    username: str
    email: str
    created_at: str


class UserBody(Shape):
    user: User


class Team(Shape):
    id: int
    name: str
    description: str | None
    is_shared: bool
    owner_id: int
    role: Literal["owner", "member", "viewer"] | None
    created_at: str


class TeamBody(Shape):
    team: Team


class TeamList(Shape):
    teams: list[Team]


class Member(Shape):
    user_id: int
    username: str
    role: Literal["owner", "member", "viewer"]
    joined_at: str | None


class MemberBody(Shape):
    member: Member


class TeamDetail(Shape):
    team: Team
    members: list[Member]


class Invitation(Shape):
    id: int
    team_id: int
    invitee: str
    role: Literal["member", "viewer"]
    status: Literal["pending", "accepted", "declined", "cancelled"]
    created_at: str


class InvitationBody(Shape):
    invitation: Invitation


class InvitationList(Shape):
    invitations: list[Invitation]


class Usage(Shape):
    calls: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None


class TaskUsage(Usage):
    provider: str | None = None
    model: str | None = None
    latency_ms: float | None = None


class Session(Shape):
    id: int
    team_id: int
    user_id: int | None
    feature_name: str
    status: Literal["active", "completed", "error"]
    started_at: str
    ended_at: str | None
    duration_seconds: float | None


class SessionInList(Session):
    agents_done: int


class SessionList(Shape):
    sessions: list[SessionInList]
    next_before: int | None


class SessionDecision(Shape):
    id: int
    session_id: int
    decision_text: str
    category: str | None
    confidence: str


class TaskDecision(Shape):
    id: int
    task_id: int
    decision_text: str
    rationale: str | None
    category: str | None
    based_on: list[Any]


class Task(Shape):
    id: int
    session_id: int
    agent_role: str
    task_description: str
    status: Literal["pending", "running", "completed", "error"]
    input_data: dict[str, Any] | None
    output_data: dict[str, Any] | None
    started_at: str | None
    completed_at: str | None
    duration_seconds: float | None
    error_message: str | None
    retry_count: int
    decisions: list[TaskDecision]


class RerunSummary(Shape):
    id: int
    feature_name: str
    status: Literal["active", "completed", "error"]
    started_at: str


class SessionDetail(Shape):
    session: Session
    decisions: list[SessionDecision]
    tasks: list[Task]
    reruns: list[RerunSummary]


class Started(Shape):
    session_id: int
    status: Literal["active"]


class RerunStarted(Started):
    warnings: list[str]


class Event(Shape):
    # The stored event types (models/vocabulary.py), listed as the document's enum.
    type: str = Field(json_schema_extra={"enum": list(EVENT_TYPES)})
    seq: int
    at: str


class EventList(Shape):
    events: list[Event]


class Timeline(Shape):
    timeline: list[dict[str, Any]]


class DecisionTree(Shape):
    session_decisions: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


class Replay(Shape):
    session: Session
    events: list[Event]
    tasks: list[dict[str, Any]]
    decisions: dict[str, Any]


class SessionBody(Shape):
    session: Session


class SessionDecisionBody(Shape):
    decision: SessionDecision


class TaskDecisionBody(Shape):
    decision: TaskDecision


class Brain(Shape):
    name: str
    provider: str | None
    model: str | None
    configured: bool


class BrainList(Shape):
    brains: list[Brain]
    default: str


class Changes(Shape):
    added: list[Any]
    removed: list[Any]
    changed: list[Any]


class AgentComparison(Shape):
    agent_role: str
    status: list[str | None]
    duration: list[float | None]
    usage: list[Any]
    decisions: Changes
    artifacts: list[dict[str, Any]]
    caused_by: list[dict[str, Any]]


class Comparison(Shape):
    a: Session
    b: Session
    session_decisions: Changes
    agents: list[AgentComparison]


class SearchResult(Shape):
    kind: Literal["feature", "session_decision", "agent_decision"]
    session_id: int
    decision_id: int | None
    team_id: int
    agent_role: str | None
    snippet: str
    highlights: list[list[int]]
    rank: float


class SearchResults(Shape):
    results: list[SearchResult]


class Health(Shape):
    status: str
    database: str
    redis: str
    broker: str


#: (method, rule) -> (success status, body model or None for an empty answer).
RESPONSES: dict[tuple[str, str], tuple[int, type[BaseModel] | None]] = {
    ("POST", "/auth/signup"): (201, UserBody),
    ("POST", "/auth/login"): (200, UserBody),
    ("POST", "/auth/logout"): (204, None),
    ("GET", "/auth/me"): (200, UserBody),
    ("DELETE", "/auth/me"): (204, None),
    ("GET", "/teams"): (200, TeamList),
    ("POST", "/teams"): (201, TeamBody),
    ("GET", "/teams/<int:team_id>"): (200, TeamDetail),
    ("POST", "/teams/<int:team_id>/share"): (200, TeamBody),
    ("POST", "/teams/<int:team_id>/invite"): (202, InvitationBody),
    ("GET", "/teams/<int:team_id>/invitations"): (200, InvitationList),
    ("DELETE", "/teams/<int:team_id>/invitations/<int:invitation_id>"): (204, None),
    ("GET", "/invitations"): (200, InvitationList),
    ("POST", "/invitations/<int:invitation_id>/accept"): (200, TeamBody),
    ("POST", "/invitations/<int:invitation_id>/decline"): (204, None),
    ("PATCH", "/teams/<int:team_id>/members/<int:user_id>"): (200, MemberBody),
    ("DELETE", "/teams/<int:team_id>/members/<int:user_id>"): (204, None),
    ("POST", "/sessions"): (202, Started),
    ("GET", "/teams/<int:team_id>/sessions"): (200, SessionList),
    ("GET", "/sessions/<int:session_id>"): (200, SessionDetail),
    ("GET", "/sessions/<int:session_id>/timeline"): (200, Timeline),
    ("POST", "/sessions/<int:session_id>/end"): (200, SessionBody),
    ("GET", "/sessions/<int:session_id>/events"): (200, EventList),
    ("GET", "/sessions/<int:session_id>/export"): (200, None),
    ("GET", "/brains"): (200, BrainList),
    ("POST", "/sessions/<int:session_id>/rerun"): (202, RerunStarted),
    ("GET", "/sessions/<int:a>/compare/<int:b>"): (200, Comparison),
    ("GET", "/search"): (200, SearchResults),
    ("POST", "/sessions/<int:session_id>/decisions"): (201, SessionDecisionBody),
    ("POST", "/tasks/<int:task_id>/decisions"): (201, TaskDecisionBody),
    ("GET", "/sessions/<int:session_id>/decisions"): (200, DecisionTree),
    ("GET", "/sessions/<int:session_id>/replay"): (200, Replay),
}

#: The failures any JSON route can answer with, in the envelope.
ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 415, 429, 500, 503)


class _Empty(BaseModel):
    """No body (204)."""


#: Answers that are not (only) JSON, by method and OpenAPI path: their status and media types.
#: quart-schema describes every body as JSON, so these are put right in the document.
NOT_JSON: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {
    ("get", "/sessions/{session_id}/export"): (
        200,
        {"text/markdown": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}},
    ),
}


class DocumentProvider(OpenAPIProvider):
    """quart-schema's OpenAPI document, with the media types of the answers in NOT_JSON, and
    no body on a 204 (quart-schema would describe an empty JSON object)."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and 204 in operation.get("responses", {}):
                    operation["responses"][204].pop("content", None)
        for (method, path), (status, content) in NOT_JSON.items():
            operation = document.get("paths", {}).get(path, {}).get(method)
            if operation is not None:
                # quart-schema keys the responses by the status as an int.
                operation["responses"].setdefault(status, {"description": ""})["content"] = content
        return document


def document_responses(app: Quart) -> list[tuple[str, str]]:
    """Attach the success body and the error envelope to every route in RESPONSES.

    Returns the JSON routes the table does not describe (a test keeps that list empty).
    """
    by_rule = {(method, rule.rule): rule.endpoint for rule in app.url_map.iter_rules() for method in rule.methods or ()}
    for (method, rule), (status, model) in RESPONSES.items():
        endpoint = by_rule.get((method, rule))
        if endpoint is None:
            continue
        view = app.view_functions[endpoint]
        schemas = dict(getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {}))
        schemas.setdefault(status, (model or _Empty, None))
        for error in ERROR_STATUSES:
            schemas.setdefault(error, (ErrorEnvelope, None))
        setattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, schemas)
    return [key for key in by_rule if key[0] in {"GET", "POST", "PATCH", "PUT", "DELETE"} and key not in RESPONSES]

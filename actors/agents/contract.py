"""The output contract of each role, written once as pydantic models.

Every brain answers with what the knowledge base returns (`playbook.py`): `summary`, the role's
`artifacts`, `decisions` and `concerns`. The models here are that shape exactly (unknown keys are
refused), the JSON Schema sent to a language model is derived from them (`json_schema(role)`),
and `check_output` validates an answer, including provenance: a decision may only build on
decision keys that exist upstream and session decisions that exist.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.schema import Category, Confidence


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Decision(Strict):
    key: str = Field(min_length=1, description="stable id, '<role>.<topic>', unique in this output")
    text: str = Field(min_length=1, description="the decision, one sentence")
    rationale: str = Field(description="why, tied to the feature")
    category: Category
    confidence: Confidence
    based_on_keys: list[str] = Field(description="keys of upstream decisions this builds on (only existing ones)")
    based_on_session_decisions: list[int] = Field(description="ids of the session's decisions it follows")


# --- artifacts, role by role ------------------------------------------------------------------


class Component(Strict):
    key: str
    name: str
    why: str
    deploy: str


class Pattern(Strict):
    name: str
    why: str


class DomainEntity(Strict):
    entity: str
    fields: list[list[str]] = Field(
        description="[column, kind] pairs; kinds text, int, bool, money, timestamp, json, fk:<entity>"
    )
    owner_scoped: bool


class ArchitectArtifacts(Strict):
    traits: list[str]
    components: list[Component]
    patterns: list[Pattern]
    integration_points: list[str]
    domain_model: list[DomainEntity]
    preferences: dict[str, str]


class Endpoint(Strict):
    method: str
    path: str
    purpose: str
    entity: str | None
    auth: str


class Service(Strict):
    name: str
    entity: str
    responsibility: str


class BackendArtifacts(Strict):
    endpoints: list[Endpoint]
    services: list[Service]


class Column(Strict):
    name: str
    type: str
    key: str | None = None
    null: bool | None = None


class Table(Strict):
    name: str
    entity: str
    columns: list[Column]


class Index(Strict):
    table: str
    columns: list[str]
    why: str
    unique: bool | None = None
    kind: str | None = None
    how: str | None = None


class DBAArtifacts(Strict):
    engine: str
    tables: list[Table]
    indexes: list[Index]
    migrations: list[str]


class Route(Strict):
    path: str
    component: str
    loads: str


class Form(Strict):
    component: str
    submits: str


class FrontendArtifacts(Strict):
    framework: str
    routes: list[Route]
    forms: list[Form]
    components: list[str]


class Screen(Strict):
    name: str
    path: str
    states: list[str]


class Flow(Strict):
    name: str
    steps: list[str]


class UIUXArtifacts(Strict):
    screens: list[Screen]
    flows: list[Flow]
    accessibility_checks: list[str]


class Threat(Strict):
    threat: str
    target: str
    severity: Literal["low", "medium", "high"]
    mitigation: str


class SecurityArtifacts(Strict):
    threats: list[Threat]


class Unit(Strict):
    name: str
    runs: str
    replicas: int | None = None
    notes: str | None = None


class ITAdminArtifacts(Strict):
    target: str
    units: list[Unit]
    backups: str
    pipeline: list[str]
    environment: list[str]


ARTIFACTS: dict[str, type[Strict]] = {
    "architect": ArchitectArtifacts,
    "backend_dev": BackendArtifacts,
    "dba": DBAArtifacts,
    "frontend_dev": FrontendArtifacts,
    "ui_ux": UIUXArtifacts,
    "security": SecurityArtifacts,
    "it_admin": ITAdminArtifacts,
}


def _output_model(role: str, artifacts: type[Strict]) -> type[Strict]:
    return type(
        f"{role.title().replace('_', '')}Output",
        (Strict,),
        {
            "__annotations__": {
                "summary": str,
                "artifacts": artifacts,
                "decisions": list[Decision],
                "concerns": list[str],
            },
            "__doc__": f"What the {role} agent returns.",
        },
    )


OUTPUTS: dict[str, type[Strict]] = {role: _output_model(role, model) for role, model in ARTIFACTS.items()}


def schema_name(role: str) -> str:
    """The name the schema (OpenAI) or the tool (Anthropic) goes by."""
    return f"{role}_output"


@functools.cache  # generating it costs about a millisecond; it is the same for every call
def json_schema(role: str) -> dict[str, Any]:
    """The JSON Schema of the role's output, as sent to a model (shared: do not change it)."""
    return OUTPUTS[role].model_json_schema()


def check_output(
    role: str, data: Any, upstream_keys: set[str], session_decision_ids: set[int]
) -> tuple[dict[str, Any] | None, list[str]]:
    """Validate `data` against the role's contract and its provenance.

    Returns (output, []) when valid, else (None, errors): one readable line per problem, fit to
    be sent back to the model for a repair.
    """
    try:
        # Built by `_output_model`, so a type checker does not know the fields (`artifacts`).
        model: Any = OUTPUTS[role].model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors()[:20]:
            where = "/".join(str(p) for p in error["loc"]) or "(root)"
            errors.append(f"{where}: {error['msg']}")
        return None, errors
    output = model.model_dump(exclude_none=True, mode="json")
    # Optional artifact fields are left out when absent, as the knowledge base leaves them out;
    # but `entity` of an endpoint is a nullable field that is always present.
    if role == "backend_dev":
        for endpoint, raw in zip(output["artifacts"]["endpoints"], model.artifacts.endpoints, strict=True):
            endpoint["entity"] = raw.entity
    errors = []
    seen: set[str] = set()
    for index, decision in enumerate(output["decisions"]):
        if decision["key"] in seen:
            errors.append(f"decisions/{index}/key: {decision['key']!r} is used twice")
        seen.add(decision["key"])
        for key in decision["based_on_keys"]:
            if key not in upstream_keys:
                known = ", ".join(sorted(upstream_keys)) or "none"
                errors.append(f"decisions/{index}/based_on_keys: {key!r} is not an upstream decision (known: {known})")
        for ident in decision["based_on_session_decisions"]:
            if ident not in session_decision_ids:
                known = ", ".join(str(i) for i in sorted(session_decision_ids)) or "none"
                errors.append(
                    f"decisions/{index}/based_on_session_decisions: {ident} is not a session decision (known: {known})"
                )
    return (None, errors) if errors else (output, [])


def upstream_keys(context: dict[str, Any]) -> set[str]:
    """The decision keys of the upstream outputs in an agent's context."""
    return {
        d["key"]
        for u in context.get("upstream", {}).values()
        for d in (u.get("output") or {}).get("decisions", [])
        if "key" in d
    }


def session_decision_ids(context: dict[str, Any]) -> set[int]:
    """The ids of the session's decisions in an agent's context."""
    return {d["id"] for d in context.get("session_decisions", []) if "id" in d}

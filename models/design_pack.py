"""The design pack: a session's work as one document to download (`GET /sessions/{id}/export`).

Markdown for people: the feature, the session decisions, each agent's deliverable rendered as a
document (tables, SQL DDL, checklists) and every decision with its rationale, confidence and
what it was built on, as links within the document. JSON for programs: all of that plus the
tasks with their snapshots and the event log. Both are read in a fixed number of queries.

Deliverables follow the agents' output contract (`summary`, `artifacts`, `decisions`,
`concerns`); an artifact this module has no layout for (one a model brain adds) is still
shown, as a list or as JSON, so nothing a brain writes is dropped.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from models.queries import _latest_snapshots, _session_decisions, _task_decisions, _tasks, resolve_reference
from models.schema import AGENT_ROLES, ROLE_TITLES, ExecutionSession, SessionEvent, User, utcnow
from models.serialize import (
    event_dict,
    iso,
    session_decision_dict,
    session_dict,
    snapshot_dict,
    task_decision_dict,
    task_dict,
)


def filename(feature_name: str, extension: str) -> str:
    """`Team chat!` -> `team-chat-design-pack.md`: ASCII, safe in a Content-Disposition header."""
    ascii_name = unicodedata.normalize("NFKD", feature_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:80].strip("-") or "session"
    return f"{slug}-design-pack.{extension}"


def collect(session: ExecutionSession) -> dict[str, Any]:
    """Everything the pack shows, as JSON-ready data (the `format=json` body)."""
    tasks = _tasks(session.id)
    by_task = _task_decisions(session.id)
    snapshots = _latest_snapshots(session.id)
    session_decisions = [session_decision_dict(d) for d in _session_decisions(session.id)]
    events = [
        event_dict(e)
        for e in SessionEvent.select().where(SessionEvent.session == session.id).order_by(SessionEvent.seq)
    ]
    people_ids = {session.user_id, session.ended_by_id} | {d["user_id"] for d in session_decisions}
    people: dict[int | None, str] = {
        u.id: u.username for u in User.select(User.id, User.username).where(User.id.in_([i for i in people_ids if i]))
    }

    task_decisions = {d.id: task_decision_dict(d) for rows in by_task.values() for d in rows}
    role_of = {d.id: t.agent_role for t in tasks for d in by_task.get(t.id, [])}
    sessions_by_id = {d["id"]: d for d in session_decisions}
    decisions = []
    for task in tasks:
        for row in by_task.get(task.id, []):
            decision = dict(task_decisions[row.id], agent_role=task.agent_role)
            built_on = []
            for ref in decision["based_on"]:
                found = resolve_reference(ref, task_decisions, sessions_by_id)
                if found is not None:
                    ident = found["decision"]["id"]
                    built_on.append(
                        {
                            "kind": found["kind"],
                            "id": ident,
                            "agent_role": role_of.get(ident) if found["kind"] == "task" else None,
                            "decision_text": found["decision"]["decision_text"],
                        }
                    )
            decision["built_on"] = built_on
            decisions.append(decision)

    deliverables = {}
    for task in tasks:
        output = task.output_data or {}
        deliverables[task.agent_role] = {
            "status": task.status,
            "summary": output.get("summary"),
            "artifacts": output.get("artifacts") or {},
            "concerns": output.get("concerns") or [],
            "decision_keys": {d.get("key"): d.get("id") for d in output.get("decisions") or [] if d.get("key")},
        }
    return {
        "format": "sage-mode design pack",
        "exported_from": f"/dashboard/sessions/{session.id}",
        "session": session_dict(session),
        "started_by": people.get(session.user_id),
        "ended_by": people.get(session.ended_by_id),
        "team": {"id": session.team_id, "name": session.team.name},
        "session_decisions": [dict(d, username=people.get(d["user_id"])) for d in session_decisions],
        "deliverables": deliverables,
        "decisions": decisions,
        "tasks": [dict(task_dict(t, by_task.get(t.id)), snapshot=snapshot_dict(snapshots.get(t.id))) for t in tasks],
        "events": events,
    }


# --- Markdown -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else json.dumps(value, ensure_ascii=False))
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["_None._", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _bullets(items: list[Any]) -> list[str]:
    if not items:
        return ["_None._", ""]
    return [f"- {_cell(item)}" for item in items] + [""]


def _fence(language: str, text: str) -> list[str]:
    return [f"```{language}", text.rstrip(), "```", ""]


def _decision_link(decision_id: int | None, label: str) -> str:
    return f"[{label}](#decision-{decision_id})" if decision_id else label


def ddl(artifacts: dict[str, Any]) -> str:
    """The DBA's tables and indexes as PostgreSQL DDL (what the copy button copies)."""
    statements = []
    for table in artifacts.get("tables") or []:
        columns = []
        for column in table.get("columns") or []:
            line = f"    {column.get('name')} {column.get('type', 'TEXT')}"
            key = str(column.get("key") or "")
            if key == "primary":
                line += " PRIMARY KEY"
            elif key.startswith("foreign"):
                target = key.split("->", 1)[-1].strip()
                table_name, _, column_name = target.partition(".")
                line += f" REFERENCES {table_name} ({column_name or 'id'})"
            if column.get("null") is False and key != "primary":
                line += " NOT NULL"
            columns.append(line)
        statements.append(f"CREATE TABLE {table.get('name')} (\n" + ",\n".join(columns) + "\n);")
    for index in artifacts.get("indexes") or []:
        table, cols = index.get("table"), index.get("columns") or []
        name = f"idx_{table}_{'_'.join(cols)}"
        if index.get("kind") == "fulltext":
            body = f"CREATE INDEX {name} ON {table} USING GIN (to_tsvector('simple', {cols[0] if cols else 'body'}))"
        else:
            unique = "UNIQUE " if index.get("unique") else ""
            body = f"CREATE {unique}INDEX {name} ON {table} ({', '.join(cols)})"
        why = f"  -- {index['why']}" if index.get("why") else ""
        statements.append(f"{body};{why}")
    return "\n\n".join(statements)


def threat_decision(threat: dict[str, Any], decisions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The security decision a threat produced: named in the threat, or matched by its wording."""
    by_key = {d.get("key"): d for d in decisions}
    if threat.get("decision") in by_key:
        return by_key[threat["decision"]]
    title = str(threat.get("threat", "")).lower()
    for decision in decisions:
        if title and title in str(decision.get("text", "")).lower():
            return decision
    if title.startswith("insecure direct object"):
        return by_key.get("security.authz")
    if str(threat.get("target", "")).startswith("table "):
        return by_key.get("security.data")
    return None


def _architect(a: dict[str, Any], _: dict[str, Any]) -> list[str]:
    lines = ["#### Components", ""]
    lines += _table(
        ["Component", "Why", "How it is deployed"],
        [[c.get("name"), c.get("why"), c.get("deploy")] for c in a.get("components") or []],
    )
    lines += ["#### Patterns", ""]
    lines += _bullets(
        [f"{p.get('name')}: {p.get('why')}" if isinstance(p, dict) else p for p in a.get("patterns") or []]
    )
    lines += ["#### Integration points", "", *_bullets(a.get("integration_points") or [])]
    lines += ["#### Domain model", ""]
    for entity in a.get("domain_model") or []:
        fields = ", ".join(
            f"{f[0]} ({f[1]})" if isinstance(f, list | tuple) else str(f) for f in entity.get("fields") or []
        )
        scoped = " (owned by a user)" if entity.get("owner_scoped") else ""
        lines.append(f"- **{entity.get('entity')}**{scoped}: {fields}")
    return [*lines, ""]


def _backend(a: dict[str, Any], _: dict[str, Any]) -> list[str]:
    endpoints = a.get("endpoints") or []
    lines = ["#### Endpoints", ""]
    lines += _table(
        ["Method", "Path", "Purpose", "Who may call it"],
        [[e.get("method"), f"`{e.get('path')}`", e.get("purpose"), e.get("auth")] for e in endpoints],
    )
    if endpoints:
        lines += _fence("text", "\n".join(f"{e.get('method')} {e.get('path')}" for e in endpoints))
    lines += ["#### Services", ""]
    lines += _bullets([f"{s.get('name')}: {s.get('responsibility')}" for s in a.get("services") or []])
    return lines


def _dba(a: dict[str, Any], _: dict[str, Any]) -> list[str]:
    lines = [f"Engine: {a.get('engine', 'postgresql')}.", ""]
    return [*lines, "#### Schema (SQL DDL)", "", *_fence("sql", ddl(a))]


def _frontend(a: dict[str, Any], _: dict[str, Any]) -> list[str]:
    lines = [f"Framework: {a.get('framework', '')}.", "", "#### Routes", ""]
    lines += _table(
        ["Path", "Component", "Loads"],
        [[f"`{r.get('path')}`", r.get("component"), r.get("loads")] for r in a.get("routes") or []],
    )
    lines += ["#### Forms", ""]
    lines += _table(["Component", "Submits"], [[f.get("component"), f.get("submits")] for f in a.get("forms") or []])
    lines += ["#### Components", "", *_bullets(a.get("components") or [])]
    return lines


def _ui_ux(a: dict[str, Any], _: dict[str, Any]) -> list[str]:
    lines = ["#### Screens", ""]
    lines += _table(
        ["Screen", "Path", "States"],
        [[s.get("name"), f"`{s.get('path')}`", ", ".join(s.get("states") or [])] for s in a.get("screens") or []],
    )
    lines += ["#### Flows", ""]
    for flow in a.get("flows") or []:
        lines.append(f"- **{flow.get('name')}**: " + " → ".join(flow.get("steps") or []))
    lines += ["", "#### Accessibility checklist", ""]
    lines += [f"- [ ] {check}" for check in a.get("accessibility_checks") or []] or ["_None._"]
    return [*lines, ""]


def _security(a: dict[str, Any], output: dict[str, Any]) -> list[str]:
    decisions = output.get("decisions") or []
    rows = []
    for threat in a.get("threats") or []:
        decision = threat_decision(threat, decisions)
        produced = _decision_link(decision.get("id"), decision.get("text", "")) if decision else ""
        rows.append(
            [threat.get("threat"), threat.get("target"), threat.get("severity"), threat.get("mitigation"), produced]
        )
    return ["#### Threat model", "", *_table(["Threat", "Asset", "Severity", "Mitigation", "Decision"], rows)]


def _it_admin(a: dict[str, Any], _: dict[str, Any]) -> list[str]:
    lines = [f"Target: {a.get('target', '')}.", "", "#### Units", ""]
    lines += _table(
        ["Unit", "Runs", "Replicas", "Notes"],
        [[u.get("name"), u.get("runs"), u.get("replicas", ""), u.get("notes", "")] for u in a.get("units") or []],
    )
    lines += ["#### Delivery pipeline", ""]
    lines += [f"{i}. {step}" for i, step in enumerate(a.get("pipeline") or [], 1)] or ["_None._"]
    lines += ["", "#### Backups", "", str(a.get("backups") or "_None._"), "", "#### Environment", ""]
    lines += _bullets([f"`{name}`" for name in a.get("environment") or []])
    return lines


RENDERERS = {
    "architect": (
        _architect,
        {"components", "patterns", "integration_points", "domain_model", "traits", "preferences"},
    ),
    "backend_dev": (_backend, {"endpoints", "services"}),
    "dba": (_dba, {"engine", "tables", "indexes", "migrations"}),
    "frontend_dev": (_frontend, {"framework", "routes", "forms", "components"}),
    "ui_ux": (_ui_ux, {"screens", "flows", "accessibility_checks"}),
    "security": (_security, {"threats"}),
    "it_admin": (_it_admin, {"target", "units", "backups", "pipeline", "environment"}),
}


def _extra(artifacts: dict[str, Any], known: set[str]) -> list[str]:
    """Artifacts without a layout (from a model brain, say), so that nothing is dropped."""
    lines = []
    for key, value in artifacts.items():
        if key in known:
            continue
        lines += [f"#### {key.replace('_', ' ').capitalize()}", ""]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            lines += _bullets(value)
        elif isinstance(value, str):
            lines += [value, ""]
        else:
            lines += _fence("json", json.dumps(value, indent=2, ensure_ascii=False))
    return lines


def deliverable_markdown(role: str, task_output: dict[str, Any] | None) -> list[str]:
    """One agent's deliverable as Markdown lines (a `###` section)."""
    lines = [f'<a id="agent-{role}"></a>', "", f"### {ROLE_TITLES.get(role, role)}", ""]
    output = task_output or {}
    if not output:
        return [*lines, "_This agent did not finish, so it has no deliverable._", ""]
    if output.get("summary"):
        lines += [output["summary"], ""]
    artifacts = output.get("artifacts") or {}
    render, known = RENDERERS.get(role, (None, set()))
    if render is not None:
        lines += render(artifacts, output)
    lines += _extra(artifacts, known)
    if output.get("concerns"):
        lines += ["#### Concerns", "", *_bullets(output["concerns"])]
    return lines


def _state_line(pack: dict[str, Any]) -> str:
    session = pack["session"]
    done = sum(1 for t in pack["tasks"] if t["status"] == "completed")
    total = len(pack["tasks"]) or len(AGENT_ROLES)
    if session["status"] == "active":
        return f"Status: running ({done} of {total} agents done)."
    if session.get("end_reason") == "user":
        who = pack["ended_by"] or "a former member"
        return f"Status: ended early by {who} at {session['ended_at']} ({done} of {total} agents done)."
    if session["status"] == "error":
        return f"Status: stopped by an error at {session['ended_at']} ({done} of {total} agents done): {session.get('error_message') or ''}"
    return f"Status: completed at {session['ended_at']} ({done} of {total} agents done)."


def markdown(pack: dict[str, Any]) -> str:
    """The design pack as Markdown, from `collect()`'s data."""
    session = pack["session"]
    lines = [f"# {session['feature_name']}", ""]
    if session.get("description"):
        lines += [session["description"], ""]
    lines += [
        f"Team: {pack['team']['name']}. Started by {pack['started_by'] or 'a former member'} at {session['started_at']}.",
        "",
        _state_line(pack),
        "",
        "## Session decisions",
        "",
    ]
    for d in pack["session_decisions"]:
        meta = ", ".join(x for x in (d.get("category"), f"{d['confidence']} confidence") if x)
        lines.append(f'- <a id="session-decision-{d["id"]}"></a>{_cell(d["decision_text"])} ({meta})')
    if not pack["session_decisions"]:
        lines.append("_None._")
    lines += ["", "## Deliverables", ""]
    outputs = {t["agent_role"]: t["output_data"] for t in pack["tasks"]}
    for role in [r for r in AGENT_ROLES if r in outputs]:
        lines += deliverable_markdown(role, outputs[role])
    lines += ["## Decisions", ""]
    for role in [r for r in AGENT_ROLES if r in outputs]:
        mine = [d for d in pack["decisions"] if d["agent_role"] == role]
        if not mine:
            continue
        lines += [f"### {ROLE_TITLES[role]}", ""]
        for d in mine:
            lines += [f'<a id="decision-{d["id"]}"></a>', "", f"**{_cell(d['decision_text'])}**", ""]
            if d.get("rationale"):
                lines += [f"Why: {d['rationale']}", ""]
            facts = [f"confidence: {d.get('confidence') or 'not given'}"]
            if d.get("category"):
                facts.append(f"category: {d['category']}")
            if d.get("source") == "user":
                facts.append("added by a person")
            lines += ["; ".join(facts).capitalize() + ".", ""]
            if d["built_on"]:
                links = []
                for ref in d["built_on"]:
                    if ref["kind"] == "session":
                        links.append(f"[session: {_cell(ref['decision_text'])}](#session-decision-{ref['id']})")
                    else:
                        owner = ROLE_TITLES.get(ref["agent_role"] or "", "agent")
                        links.append(f"[{owner}: {_cell(ref['decision_text'])}](#decision-{ref['id']})")
                lines += ["Built on: " + "; ".join(links) + ".", ""]
    lines += ["---", "", f"Exported from Sage Mode at {iso(utcnow())}.", ""]
    return "\n".join(lines)

"""Compare two runs of a feature by decision: what the team decided differently, and why.

`compare_sessions(a, b)` answers `GET /sessions/{a}/compare/{b}` (see docs/api.md). Agent
decisions are matched by their stable `key`, never by list position; artifacts are compared by
JSON Pointer path, with list items matched by their natural name (a table's `name`, an
endpoint's method and path) where they have one. The session decisions that differ are the
causes; an agent decision that changed is an effect when it was built (`based_on`) on a changed
session decision or on an upstream decision that is itself an effect, and `via` spells out that
chain.
"""

from __future__ import annotations

from typing import Any

from models.schema import AGENT_ROLES, AgentTask, ExecutionSession, SessionDecision
from models.serialize import session_dict

#: The decision fields a user compares; `based_on` is compared as upstream decision keys.
DECISION_FIELDS = ("text", "rationale", "category", "confidence")

#: Keys that name a list item, tried in order, so "the users table" is matched across runs even
#: when the tables come in another order.
ITEM_NAMES = ("key", "name", "id", "path", "title", "threat", "route", "screen", "table")


def _pointer_token(token: Any) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _item_name(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    if "method" in item and "path" in item:
        return f"{item['method']} {item['path']}"
    for name in ITEM_NAMES:
        if isinstance(item.get(name), str | int):
            return f"{name}={item[name]}"
    return None


def diff_values(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Every difference between two JSON values as `{path, change, before, after}`.

    `change` is `added`, `removed` or `changed`; `path` is a JSON Pointer into `after` (into
    `before` for a removal). Lists whose items all carry a name are matched by name.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[dict[str, Any]] = []
        for key in list(before) + [k for k in after if k not in before]:
            child = f"{path}/{_pointer_token(key)}"
            if key not in after:
                changes.append({"path": child, "change": "removed", "before": before[key], "after": None})
            elif key not in before:
                changes.append({"path": child, "change": "added", "before": None, "after": after[key]})
            else:
                changes += diff_values(before[key], after[key], child)
        return changes
    if isinstance(before, list) and isinstance(after, list):
        return _diff_lists(before, after, path)
    if before != after:
        return [{"path": path or "", "change": "changed", "before": before, "after": after}]
    return []


def _diff_lists(before: list, after: list, path: str) -> list[dict[str, Any]]:
    names_before = [_item_name(i) for i in before]
    names_after = [_item_name(i) for i in after]
    named = all(names_before) and all(names_after)
    if not named or len(set(names_before)) < len(names_before) or len(set(names_after)) < len(names_after):
        changes: list[dict[str, Any]] = []
        for index in range(max(len(before), len(after))):
            child = f"{path}/{index}"
            if index >= len(after):
                changes.append({"path": child, "change": "removed", "before": before[index], "after": None})
            elif index >= len(before):
                changes.append({"path": child, "change": "added", "before": None, "after": after[index]})
            else:
                changes += diff_values(before[index], after[index], child)
        return changes
    index_after = {name: i for i, name in enumerate(names_after)}
    index_before = {name: i for i, name in enumerate(names_before)}
    changes = []
    for i, name in enumerate(names_before):
        if name not in index_after:
            changes.append({"path": f"{path}/{i}", "change": "removed", "before": before[i], "after": None})
        else:
            j = index_after[name]
            changes += diff_values(before[i], after[j], f"{path}/{j}")
    for j, name in enumerate(names_after):
        if name not in index_before:
            changes.append({"path": f"{path}/{j}", "change": "added", "before": None, "after": after[j]})
    return changes


def _decision_view(decision: dict[str, Any], session_texts: dict[int, str]) -> dict[str, Any]:
    """What is compared of an agent decision: its fields, upstream keys and session decision texts."""
    return {
        "key": decision.get("key"),
        **{f: decision.get(f) for f in DECISION_FIELDS},
        "based_on": sorted(decision.get("based_on_keys") or []),
        "based_on_session_decisions": sorted(
            session_texts.get(i, f"#{i}") for i in decision.get("based_on_session_decisions") or []
        ),
    }


def diff_decisions(before: list[dict], after: list[dict]) -> dict[str, list]:
    """Decisions `added`, `removed` and `changed` (`{key, before, after}`), matched by key."""
    old = {d["key"]: d for d in before}
    new = {d["key"]: d for d in after}
    return {
        "added": [new[k] for k in new if k not in old],
        "removed": [old[k] for k in old if k not in new],
        "changed": [{"key": k, "before": old[k], "after": new[k]} for k in new if k in old and old[k] != new[k]],
    }


def same_text(text: str) -> str:
    """A decision text as compared: case and runs of white space do not make another decision."""
    return " ".join(text.lower().split())


def diff_session_decisions(before: list[dict], after: list[dict]) -> dict[str, list]:
    """Session decisions have no key: the same text is the same decision; of the rest, one per
    category on each side is an edit (`changed`); anything left was added or removed."""
    texts_before = {same_text(d["decision_text"]) for d in before}
    texts_after = {same_text(d["decision_text"]) for d in after}
    old_left = [d for d in before if same_text(d["decision_text"]) not in texts_after]
    new_left = [d for d in after if same_text(d["decision_text"]) not in texts_before]
    changed = []
    for new in list(new_left):
        match = next((old for old in old_left if old["category"] == new["category"]), None)
        if match is not None:
            changed.append({"key": new["id"], "before": match, "after": new})
            old_left.remove(match)
            new_left.remove(new)
    return {"added": new_left, "removed": old_left, "changed": changed}


def _side(session_id: int) -> dict[str, Any]:
    session = ExecutionSession.get_by_id(session_id)
    decisions = [
        {
            "id": d.id,
            "decision_text": d.decision_text,
            "category": d.category,
            "confidence": d.confidence,
        }
        for d in SessionDecision.select().where(SessionDecision.session == session_id).order_by(SessionDecision.id)
    ]
    tasks = {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == session_id)}
    return {"session": session, "decisions": decisions, "tasks": tasks}


def _usage(task: AgentTask | None) -> Any:
    return task.usage if task is not None else None


def compare_sessions(a_id: int, b_id: int) -> dict[str, Any]:
    """The comparison of two sessions (six or seven queries), as `GET /sessions/{a}/compare/{b}` answers it."""
    a, b = _side(a_id), _side(b_id)
    session_changes = diff_session_decisions(a["decisions"], b["decisions"])
    texts_b = {d["id"]: d["decision_text"] for d in b["decisions"]}
    # Copied stages cite the session decisions they saw, possibly an earlier run's: name every
    # cited one by its text so that a copy compares equal to its original.
    texts = {d["id"]: d["decision_text"] for d in a["decisions"]} | texts_b
    cited = {
        i
        for side in (a, b)
        for task in side["tasks"].values()
        for d in (task.output_data or {}).get("decisions", [])
        for i in d.get("based_on_session_decisions") or []
    }
    if cited - set(texts):
        texts |= {
            d.id: d.decision_text
            for d in SessionDecision.select(SessionDecision.id, SessionDecision.decision_text).where(
                SessionDecision.id.in_(sorted(cited - set(texts)))
            )
        }
    changed_session_ids = {d["id"] for d in session_changes["added"]} | {
        c["after"]["id"] for c in session_changes["changed"]
    }
    # Texts of session decisions that are new, edited (both versions) or gone.
    changed_session_texts = (
        {texts_b[i] for i in changed_session_ids}
        | {d["decision_text"] for d in session_changes["removed"]}
        | {c["before"]["decision_text"] for c in session_changes["changed"]}
    )

    # Decision key -> the chain of keys back to a changed session decision, for every effect.
    effects: dict[str, list[str]] = {}
    agents = []
    for role in AGENT_ROLES:
        task_a, task_b = a["tasks"].get(role), b["tasks"].get(role)
        out_a = (task_a.output_data if task_a else None) or {}
        out_b = (task_b.output_data if task_b else None) or {}
        raw_a = {d["key"]: d for d in out_a.get("decisions", []) if d.get("key")}
        raw_b = {d["key"]: d for d in out_b.get("decisions", []) if d.get("key")}
        decisions = diff_decisions(
            [_decision_view(d, texts) for d in out_a.get("decisions", []) if d.get("key")],
            [_decision_view(d, texts) for d in out_b.get("decisions", []) if d.get("key")],
        )
        caused_by = []
        touched = [c["key"] for c in decisions["changed"]] + [d["key"] for d in decisions["added"]]
        for key in touched:
            chain = _cause(raw_b.get(key, {}), changed_session_ids, texts, changed_session_texts, effects)
            if chain is None and key in raw_a:  # it cited a session decision that is now gone or edited
                chain = _cause(raw_a[key], set(), texts, changed_session_texts, {})
            if chain is not None:
                effects[key] = chain
                caused_by.append({"key": key, "via": chain})
        agents.append(
            {
                "agent_role": role,
                "status": [task_a.status if task_a else None, task_b.status if task_b else None],
                "duration": [
                    task_a.duration_seconds if task_a else None,
                    task_b.duration_seconds if task_b else None,
                ],
                "usage": [_usage(task_a), _usage(task_b)],
                "decisions": decisions,
                "artifacts": diff_values(out_a.get("artifacts") or {}, out_b.get("artifacts") or {}),
                "caused_by": caused_by,
            }
        )
    return {
        "a": session_dict(a["session"]),
        "b": session_dict(b["session"]),
        "session_decisions": session_changes,
        "agents": agents,
    }


def _cause(
    decision: dict[str, Any],
    changed_session_ids: set[int],
    texts_b: dict[int, str],
    changed_texts: set[str],
    effects: dict[str, list[str]],
) -> list[str] | None:
    """The chain from `decision` to what caused its change, or None if nothing it cites changed.

    A session decision in the chain is written `session_decision:<id>` (the id in the rerun).
    """
    for sid in decision.get("based_on_session_decisions") or []:
        if sid in changed_session_ids or texts_b.get(sid) in changed_texts:
            return [f"session_decision:{sid}"]
    for key in decision.get("based_on_keys") or []:
        if key in effects:
            return [key, *effects[key]]
    return None

"""The prompts a model brain sends: versioned text files in `prompts/`, filled with the context.

`prompts/common.<version>.txt` says how to answer; `prompts/<role>.<version>.txt` says what the
role does. A change of wording is a new version file, so every snapshot names the prompt it was
made with. The user message carries the task, the feature, the session's decisions and the
upstream outputs the role needs, as JSON; when that exceeds the token budget
(`SAGE_LLM_CONTEXT_TOKENS`) the least needed parts are cut first and every cut is recorded.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import orjson

PROMPT_VERSION = "v1"
PROMPTS = Path(__file__).resolve().parent / "prompts"
DEFAULT_CONTEXT_TOKENS = 12_000

#: The upstream roles each role reads, most needed first (what the knowledge base reads too).
NEEDS: dict[str, tuple[str, ...]] = {
    "architect": (),
    "backend_dev": ("architect",),
    "dba": ("architect", "backend_dev"),
    "frontend_dev": ("backend_dev", "architect"),
    "ui_ux": ("backend_dev", "architect"),
    "security": ("backend_dev", "dba", "architect"),
    "it_admin": ("dba", "architect"),
}

TITLES = {
    "architect": "software architect (team lead)",
    "backend_dev": "backend developer",
    "dba": "database administrator",
    "frontend_dev": "frontend developer",
    "ui_ux": "UI/UX designer",
    "security": "security engineer",
    "it_admin": "IT administrator",
}


@cache
def _read(name: str) -> str:
    return (PROMPTS / name).read_text(encoding="utf-8").strip()


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate: about four characters a token."""
    return (len(text) + 3) // 4


def context_budget() -> int:
    """SAGE_LLM_CONTEXT_TOKENS, the most tokens of prompt a call may send."""
    raw = os.environ.get("SAGE_LLM_CONTEXT_TOKENS", "").strip()
    try:
        return max(1000, int(raw)) if raw else DEFAULT_CONTEXT_TOKENS
    except ValueError:
        return DEFAULT_CONTEXT_TOKENS


def system_prompt(role: str, version: str = PROMPT_VERSION) -> str:
    """The role's system prompt: how to answer, then what the role does."""
    common = _read(f"common.{version}.txt").replace("{title}", TITLES[role]).replace("{role}", role)
    return f"{common}\n\n{_read(f'{role}.{version}.txt')}"


def _payload(role: str, task_description: str, context: dict[str, Any]) -> dict[str, Any]:
    upstream = context.get("upstream", {})
    return {
        "task": task_description,
        "feature_name": context.get("feature_name"),
        "description": context.get("description"),
        "session_decisions": [
            {k: d.get(k) for k in ("id", "text", "category", "confidence")}
            for d in context.get("session_decisions", [])
        ],
        "upstream": {
            r: {
                "summary": (upstream[r].get("output") or {}).get("summary"),
                "decisions": [
                    {k: d.get(k) for k in ("key", "text", "rationale", "category")}
                    for d in (upstream[r].get("output") or {}).get("decisions", [])
                ],
                "artifacts": (upstream[r].get("output") or {}).get("artifacts", {}),
            }
            for r in NEEDS[role]
            if r in upstream
        },
    }


def _render(payload: dict[str, Any]) -> str:
    return (
        "Do your part of this feature. The context follows as JSON; cite upstream decisions by their "
        '"key" and session decisions by their "id".\n\n' + _indented_json(payload)
    )


def _indented_json(value: Any) -> str:
    """`json.dumps(value, indent=1, ensure_ascii=False)`, made by orjson.

    The standard library's indented dump is its pure-Python encoder, about a tenth of a model
    brain's worker CPU; orjson indents by two spaces only, so each line's indent is halved in one
    pass (JSON text has no raw newline inside a string, so a line's leading spaces are its
    indent). The text is the same for what a context holds (strings, integers,
    booleans, null, lists, objects; a float may be spelt differently, `1e16` for `1e+16`); what
    orjson refuses (an integer beyond 64 bits, a lone surrogate) goes through `json`.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, indent=1, ensure_ascii=False)
    return _INDENT.sub(lambda m: b"\n" + m[1][: len(m[1]) // 2], text).decode()


#: A line break and the next line's indent, in orjson's indented output.
_INDENT = re.compile(rb"\n( +)")


def build_prompt(
    role: str, task_description: str, context: dict[str, Any], budget: int | None = None
) -> tuple[str, str, list[dict[str, Any]]]:
    """(system, user message, what was trimmed) for one role, within the token budget."""
    budget = budget or context_budget()
    system = system_prompt(role)
    payload = _payload(role, task_description, context)
    trimmed: list[dict[str, Any]] = []
    # Rendered once, and again only after a cut (most prompts fit without any).
    user = _render(payload)

    def size() -> int:
        return estimate_tokens(system) + estimate_tokens(user)

    # Cut the least needed first: whole artifacts of the farthest upstream roles, then decision
    # rationales, then the description's tail. The decisions' keys always stay (they are citable).
    for upstream_role in reversed([r for r in NEEDS[role] if r in payload["upstream"]]):
        if size() <= budget:
            break
        artifacts = payload["upstream"][upstream_role]["artifacts"]
        tokens = estimate_tokens(json.dumps(artifacts))
        payload["upstream"][upstream_role]["artifacts"] = "(trimmed)"
        trimmed.append({"part": f"upstream.{upstream_role}.artifacts", "tokens": tokens})
        user = _render(payload)
    for upstream_role in reversed(list(payload["upstream"])):
        if size() <= budget:
            break
        decisions = payload["upstream"][upstream_role]["decisions"]
        tokens = sum(estimate_tokens(d.get("rationale") or "") for d in decisions)
        for decision in decisions:
            decision.pop("rationale", None)
        trimmed.append({"part": f"upstream.{upstream_role}.decisions.rationale", "tokens": tokens})
        user = _render(payload)
    description = payload.get("description") or ""
    over = size() - budget
    if over > 0 and description:
        keep = max(0, len(description) - over * 4 - 16)
        payload["description"] = description[:keep] + " (trimmed)"
        trimmed.append({"part": "description", "tokens": estimate_tokens(description[keep:])})
        user = _render(payload)
    return system, user, trimmed


def repair_message(errors: list[str]) -> str:
    """The follow-up that asks for a corrected answer once."""
    listed = "\n".join(f"- {e}" for e in errors)
    return (
        "That answer does not match the required schema or cites decisions that do not exist:\n"
        f"{listed}\nAnswer again with the whole corrected JSON object, and nothing else."
    )

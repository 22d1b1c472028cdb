"""The search results page and the compare page, rendered on the server.

Both read through the same model functions as `GET /search` and `GET /sessions/{a}/compare/{b}`
(`models/search.py`, `models/compare.py`) and the same access checks, and need no script: the
page is the answer, so it works without JavaScript, prints, and is readable by any assistive
technology. Text is escaped by Jinja; highlights are cut into segments here, never markup.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from quart import Blueprint, render_template, request
from quart_schema import hide

from app.access import require_session
from app.db_thread import run_db
from app.errors import ApiError
from app.pages import _LoggedOut, _not_found, _to_login, _user
from models.compare import compare_sessions
from models.schema import AGENT_ROLES, CATEGORIES, ROLE_TITLES
from models.search import Filters, search
from models.teams import visible_teams

blueprint = Blueprint("steer_pages", __name__)
blueprint.register_error_handler(_LoggedOut, _to_login)


def segments(snippet: str, highlights: list[list[int]]) -> list[tuple[str, bool]]:
    """The snippet as (text, highlighted) pieces, for the template to wrap in <mark>."""
    pieces, at = [], 0
    for start, end in sorted(highlights):
        if start > at:
            pieces.append((snippet[at:start], False))
        pieces.append((snippet[start:end], True))
        at = end
    if at < len(snippet):
        pieces.append((snippet[at:], False))
    return pieces


def _search_page(user_id: int, args: dict[str, str]) -> dict[str, Any]:
    teams = [(team.id, team.name) for team, _ in visible_teams(user_id)]
    q = (args.get("q") or "").strip()[:200]
    problems = {}
    team_id = role = category = since = None
    if args.get("team_id"):
        try:
            team_id = int(args["team_id"])
        except ValueError:
            problems["team_id"] = "Choose one of your teams."
        if team_id not in {t for t, _ in teams}:
            problems["team_id"] = "Choose one of your teams."
    if args.get("role"):
        role = args["role"] if args["role"] in AGENT_ROLES else None
        if role is None:
            problems["role"] = "Choose one of the seven agents."
    if args.get("category"):
        category = args["category"] if args["category"] in CATEGORIES else None
        if category is None:
            problems["category"] = "Choose one of the listed categories."
    if args.get("since"):
        try:
            since = dt.date.fromisoformat(args["since"])
        except ValueError:
            problems["since"] = "Give a date as YYYY-MM-DD."
    results = []
    if q and not problems:
        scope = (team_id,) if team_id else tuple(t for t, _ in teams)
        results = search(q, Filters(scope, role, category, since, 50))
        names = dict(teams)
        for result in results:
            result["pieces"] = segments(result["snippet"], result["highlights"])
            result["team_name"] = names.get(result["team_id"], "")
    return {
        "q": q,
        "args": args,
        "teams": teams,
        "problems": problems,
        "results": results,
        "roles": ROLE_TITLES,
        "categories": CATEGORIES,
    }


@blueprint.get("/dashboard/search")
@hide
async def search_page():
    """Search results for `q`, with the filters of `GET /search`."""
    user = await _user()
    shown = await run_db(_search_page, user["id"], dict(request.args))
    return await render_template("search.html", user=user, **shown)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compare_page(user_id: int, a: int, b: int) -> dict[str, Any]:
    require_session(user_id, a, "read")
    require_session(user_id, b, "read")
    compared = compare_sessions(a, b)
    # Decision key -> text in the rerun, so a chain of keys reads as a chain of decisions.
    texts: dict[str, str] = {}
    for agent in compared["agents"]:
        for change in agent["decisions"]["changed"]:
            texts[change["key"]] = change["after"]["text"]
        for added in agent["decisions"]["added"]:
            texts[added["key"]] = added["text"]
    session_texts = {
        f"session_decision:{c['after']['id']}": c["after"]["decision_text"]
        for c in compared["session_decisions"]["changed"]
    } | {f"session_decision:{d['id']}": d["decision_text"] for d in compared["session_decisions"]["added"]}
    for agent in compared["agents"]:
        agent["name"] = ROLE_TITLES[agent["agent_role"]]
        causes = {c["key"]: c["via"] for c in agent["caused_by"]}
        agent["effects"] = causes
        agent["chains"] = {
            key: [
                session_texts.get(step, texts.get(step, step)) if step.startswith("session_decision:")
                else f"{ROLE_TITLES.get(step.split('.')[0], step.split('.')[0])}: {texts.get(step, step)}"
                for step in via
            ]
            for key, via in causes.items()
        }  # fmt: skip
        for item in agent["artifacts"]:
            item["before_text"] = "" if item["before"] is None else _short(item["before"])
            item["after_text"] = "" if item["after"] is None else _short(item["after"])
        agent["changed_count"] = (
            len(agent["decisions"]["changed"]) + len(agent["decisions"]["added"]) + len(agent["decisions"]["removed"])
        )
    return compared


@blueprint.get("/dashboard/compare")
@hide
async def compare_page():
    """Two runs side by side: what changed, per agent, and which change caused which."""
    user = await _user()
    try:
        a, b = int(request.args.get("a", "")), int(request.args.get("b", ""))
        compared = await run_db(_compare_page, user["id"], a, b)
    except (ValueError, ApiError):
        return await _not_found(user, "pair of sessions")
    return await render_template("compare.html", user=user, c=compared)

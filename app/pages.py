"""The `pages` blueprint: the HTML pages of docs/api.md "Pages".

Pages share the JSON API's cookie and the access functions of `app.access` but no view code:
they render a skeleton (what the caller may do decides which controls exist at all), then
Alpine components (static/js/dashboard.js) and React islands (static/src/islands/) load the
data from the JSON API with `fetch` and the WebSocket.

A page for something the caller may not see answers 404, exactly like the API; a logged-out
visitor is sent to `/login`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from quart import Blueprint, redirect, render_template, request, url_for
from quart_schema import hide

from app.access import may, require_session, require_team
from app.db_thread import run_db
from app.errors import ApiError
from app.login_sessions import optional_user_id
from models import queries
from models.schema import AGENT_ROLES, CATEGORIES, CONFIDENCE_LEVELS, PIPELINE, User
from models.serialize import session_dict, team_dict, user_dict
from models.teams import team_members
from models.users import get_user

blueprint = Blueprint("pages", __name__)


class _LoggedOut(Exception):
    """No live login session: the page redirects to /login, which brings the visitor back."""


DEFAULT_NEXT = "/dashboard"


def safe_next(value: str | None) -> str | None:
    """`value` if it is a path on this site to go to after logging in, else None.

    Only a same-site absolute path is allowed: never a URL with a scheme or a host, nor a
    path a browser would read as one (`//host`, `/\\host`; browsers treat a backslash as a
    slash and drop tabs and newlines, so those and other control characters are refused too).
    """
    if not value or not value.startswith("/") or len(value) > 2000:
        return None
    if value.startswith("//") or "\\" in value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


async def _user() -> dict[str, Any]:
    user_id = await optional_user_id()
    user = await run_db(get_user, user_id) if user_id else None
    if user is None:
        raise _LoggedOut()
    return user_dict(user)


async def _not_found(user: dict[str, Any], what: str):
    return await render_template("not_found.html", user=user, what=what), 404


@blueprint.errorhandler(_LoggedOut)
async def _to_login(_: _LoggedOut):
    target = request.full_path.rstrip("?")
    if target == DEFAULT_NEXT or safe_next(target) is None:
        return redirect(url_for("pages.login"))
    return redirect(url_for("pages.login") + "?" + urlencode({"next": target}))


@blueprint.get("/")
@hide
async def index():
    """Send logged-in users to the dashboard, everyone else to the login page."""
    target = "pages.dashboard" if await optional_user_id() else "pages.login"
    return redirect(url_for(target))


@blueprint.get("/favicon.ico")
@hide
async def favicon():
    """Browsers ask for /favicon.ico whatever the page says: send them to the SVG icon."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@blueprint.get("/login")
@hide
async def login():
    """The login form; `?next=/path` (same-site paths only) is where it goes afterwards.

    A logged-in user goes straight there (or to the dashboard).
    """
    target = safe_next(request.args.get("next")) or DEFAULT_NEXT
    if await optional_user_id():
        return redirect(target)
    return await render_template("login.html", next_path=target)


@blueprint.get("/signup")
@hide
async def signup():
    """The signup form; like the login form it goes on to a same-site `?next=` afterwards."""
    target = safe_next(request.args.get("next")) or DEFAULT_NEXT
    if await optional_user_id():
        return redirect(target)
    return await render_template("signup.html", next_path=target)


@blueprint.get("/dashboard")
@hide
async def dashboard():
    """The team selector (personal and shared), the team list, recent sessions across the
    user's teams, and the create-team form."""
    user = await _user()
    recent = await run_db(queries.recent_sessions, user["id"], 10)
    return await render_template("dashboard.html", user=user, recent=recent)


def _team_page(user_id: int, team_id: int) -> dict[str, Any]:
    team, role = require_team(user_id, team_id, "read")
    return team_dict(team, role)


@blueprint.get("/dashboard/teams/<int:team_id>")
@hide
async def team(team_id: int):
    """Members, invitations, the session panel and the session history of one team."""
    user = await _user()
    try:
        shown = await run_db(_team_page, user["id"], team_id)
    except ApiError:
        return await _not_found(user, "team")
    return await render_template(
        "team.html",
        user=user,
        team=shown,
        can_write=may(shown["role"], "write"),
        can_manage=may(shown["role"], "manage"),
    )


def _session_page(
    user_id: int, session_id: int
) -> tuple[dict[str, Any], dict[str, Any], dict[int, str], list[dict[str, Any]]]:
    session, role = require_session(user_id, session_id, "read")
    # Names for "started by" and "ended early by": the team's members, plus the two people
    # named on the session should they have left it since.
    names = {m.user_id: m.username for m in team_members(session.team)}
    wanted = [i for i in (session.user_id, session.ended_by_id) if i and i not in names]
    if wanted:
        names.update({u.id: u.username for u in User.select(User.id, User.username).where(User.id.in_(wanted))})
    return session_dict(session), team_dict(session.team, role), names, queries.session_reruns(session.id)


@blueprint.get("/dashboard/sessions/<int:session_id>")
@hide
async def session(session_id: int):
    """The live execution monitor, the agent state viewer, the replay and the decision journal."""
    user = await _user()
    try:
        shown, team_shown, names, reruns = await run_db(_session_page, user["id"], session_id)
    except ApiError:
        return await _not_found(user, "session")
    config = {
        "sessionId": shown["id"],
        "brain": shown.get("brain"),
        "teamId": team_shown["id"],
        "role": team_shown["role"],
        "canWrite": may(team_shown["role"], "write"),
        "userId": user["id"],
        "pipeline": [list(stage) for stage in PIPELINE],
        "roles": list(AGENT_ROLES),
        "categories": list(CATEGORIES),
        "confidenceLevels": list(CONFIDENCE_LEVELS),
        "people": {str(k): v for k, v in names.items()},
        # How long a queued session may wait for its first task before the page says so.
        "waitingForWorkerSeconds": 5,
    }
    return await render_template(
        "session.html",
        user=user,
        session=shown,
        team=team_shown,
        reruns=reruns,
        can_write=config["canWrite"],
        config=config,
    )

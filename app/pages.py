"""The `pages` blueprint: the HTML pages of this issue (`/`, `/login`, `/signup`, `/dashboard`).

Pages share the JSON API's cookie and query functions but no view code; their forms post JSON
to `/auth/*` with `fetch` (static/js/auth.js).
"""

from __future__ import annotations

from quart import Blueprint, redirect, render_template, url_for
from quart_schema import hide

from app.db_thread import run_db
from app.login_sessions import optional_user_id
from models.users import get_user

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
@hide
async def index():
    """Send logged-in users to the dashboard, everyone else to the login page."""
    target = "pages.dashboard" if await optional_user_id() else "pages.login"
    return redirect(url_for(target))


@blueprint.get("/login")
@hide
async def login():
    """The login form (a logged-in user goes straight to the dashboard)."""
    if await optional_user_id():
        return redirect(url_for("pages.dashboard"))
    return await render_template("login.html")


@blueprint.get("/signup")
@hide
async def signup():
    """The signup form (a logged-in user goes straight to the dashboard)."""
    if await optional_user_id():
        return redirect(url_for("pages.dashboard"))
    return await render_template("signup.html")


@blueprint.get("/dashboard")
@hide
async def dashboard():
    """The logged-in landing page: who you are, and a way out."""
    user_id = await optional_user_id()
    user = await run_db(get_user, user_id) if user_id else None
    if user is None:
        return redirect(url_for("pages.login"))
    return await render_template("dashboard.html", user=user)

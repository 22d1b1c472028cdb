"""Execution sessions: start, list, read, end, the event feed, the timeline and the replay."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

import dramatiq
from pydantic import BaseModel, Field, StrictInt
from quart import Blueprint, Response, current_app, jsonify, request
from quart_schema import validate_querystring, validate_request
from redis.exceptions import RedisError

from app.access import require_session, require_team, session_access_with, team_access, team_access_with_plain_rows
from app.db_thread import read_db, read_statement, run_connected, run_db
from app.errors import ApiError
from app.login_sessions import current_user_id, login_required, login_required_access_checked, login_user_id
from app.read_cache import BodyCache
from app.validation import NonBlank
from models import design_pack, lifecycle, queries
from models.brains import BrainConfigError, usable_brain
from models.db import PostgresDatabase, db, reconnecting
from models.events import events_after
from models.schema import ExecutionSession
from models.serialize import session_dict

blueprint = Blueprint("sessions", __name__)
log = logging.getLogger(__name__)


FeatureName = Annotated[str, NonBlank(255)]


class StartSession(BaseModel):
    team_id: StrictInt = Field(gt=0)
    feature_name: FeatureName
    description: str | None = Field(default=None, max_length=10_000)
    brain: str | None = Field(default=None, max_length=64)


class SessionList(BaseModel):
    status: Literal["active", "completed", "error"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    before: int | None = Field(default=None, gt=0)


class EventsQuery(BaseModel):
    after: int = Field(default=0, ge=0)


class ExportQuery(BaseModel):
    format: Literal["markdown", "json"] = "markdown"


def usable_brain_or_400(name: str | None) -> str:
    """The brain a session will think with (the default when `name` is None); 400 with `fields.brain`
    when it is unknown or not configured."""
    try:
        return usable_brain(name)
    except BrainConfigError as exc:
        raise ApiError(400, str(exc), fields={"brain": str(exc)}) from None


def start_or_fail(session_id: int, what: str = "session", created: ExecutionSession | None = None) -> None:
    """Queue the session's pipeline; if the queue is unreachable, fail the session now and answer 503.

    Never leaves a session `active` with nothing queued: it fails at once, visibly. `created` is
    the session just returned by `lifecycle.create`, which spares `start_session` reading it again.
    """
    from actors.pipeline import start_session

    try:
        # The session is committed, so the route cannot run again; starting is idempotent, so it may.
        reconnecting(start_session, idempotent=True)(session_id, created)
    except (dramatiq.errors.BrokerError, RedisError, OSError) as exc:
        log.warning("could not queue %s %s: %s", what, session_id, exc)
        lifecycle.fail_session(session_id, f"the task queue was unavailable; start the {what} again")
        raise ApiError(503, "the task queue is unavailable; try again in a moment") from None


def _create(user_id: int, body: StartSession) -> int:
    from actors.pipeline import reserve_chain_id

    team_access(user_id, body.team_id, "write")  # it also asks whether the account still exists
    brain = usable_brain_or_400(body.brain)
    # The chain's id is chosen now and stored with the session, so sending it writes nothing more.
    session = lifecycle.create(
        body.team_id, user_id, body.feature_name, body.description, brain=brain, chain_id=reserve_chain_id()
    ).value
    start_or_fail(session.id, created=session)
    return session.id


@blueprint.post("/sessions")
@login_required_access_checked
@validate_request(StartSession)
async def start(data: StartSession):
    """Create the session and its pending tasks, then queue the pipeline (202)."""
    session_id = await run_connected(_create, await login_user_id(), data)
    return jsonify({"session_id": session_id, "status": "active"}), 202


def _list(user_id: int, team_id: int, query: SessionList) -> dict:
    require_team(user_id, team_id, "read", check_account=True)
    return queries.team_sessions(team_id, query.status, query.limit, query.before)


def list_at_once(user_id: int, team_id: int, query: SessionList) -> dict:
    """`_list` as one prepared statement (access, account and the page): no transaction needed."""
    sql, params = queries.team_sessions_items_sql(team_id, query.status, query.limit, query.before)
    rows = team_access_with_plain_rows(user_id, team_id, "read", sql, params)
    return queries.team_sessions_items_page(rows, query.limit)


@blueprint.get("/teams/<int:team_id>/sessions")
@login_required_access_checked
@validate_querystring(SessionList)
async def list_sessions(team_id: int, query_args: SessionList):
    """The team's sessions, newest first, `limit` at a time before the `before` id."""
    user_id = await login_user_id()
    if isinstance(db.obj, PostgresDatabase):
        return jsonify(await read_statement(list_at_once, user_id, team_id, query_args))
    return jsonify(await read_db(_list, user_id, team_id, query_args))


def body_cache(app: Any) -> BodyCache:
    """`app`'s cache of encoded session views (one per web process)."""
    cache = app.extensions.get("sage_read_cache")
    if cache is None:
        cache = app.extensions["sage_read_cache"] = BodyCache()
    return cache


class _Read:
    """A cached session view (`app.read_cache`): access first, always; then the kept body if the
    session's rows are still those it was built from, else a new one.

    `peek` is the cheap way, for a body that is kept: one statement of prebuilt SQL, outside any
    transaction, that checks login account and access and reads the version (`session_access_with`).
    `load` is the whole unit of work of a read-only transaction (one snapshot), which builds the
    body from the same rows as its version: for a miss, and where nothing is cached (SQLite).
    """

    def __init__(self, name: str, view: Callable[..., dict]) -> None:
        self.name, self.view, self.parts = name, view, queries.VIEW_PARTS[name]

    def peek(
        self, column: str, cache: BodyCache, user_id: int, session_id: int, *args: Any
    ) -> tuple[bytes, str] | None:
        """The kept body and its ETag if it is still the view's, else None; `column` is the version's
        SQL (`queries.session_version_sql`)."""
        version = session_access_with(user_id, session_id, "read", column, [session_id] * len(self.parts))
        return cache.peek((self.name, session_id, *args), version)

    def load(
        self, cache: BodyCache, encode: Callable[..., str], user_id: int, session_id: int, *args: Any
    ) -> tuple[bytes, str]:
        column = queries.session_version_column(session_id, self.parts)
        # The version rides on the access query: one statement to learn both.
        session, _ = require_session(user_id, session_id, "read", check_account=True, also=(column,) if column else ())
        version = getattr(session, "view_version", None)
        view = self.view

        def build() -> bytes:
            return (encode(view(session, *args), separators=(",", ":")) + "\n").encode()

        return cache.get_or_build((self.name, session.id, *args), version, build)


def _events_view(session, after: int) -> dict:
    return {"events": events_after(session.id, after)}


_detail, _timeline, _replay, _tree, _events = (
    _Read("detail", queries.session_detail),
    _Read("timeline", queries.timeline),
    _Read("replay", queries.replay),
    _Read("decisions", queries.decision_tree),
    _Read("events", _events_view),
)
#: The cached views by what follows `/sessions/{id}` in their path (`app.fast_reads`).
READS = {"": _detail, "/timeline": _timeline, "/replay": _replay, "/decisions": _tree, "/events": _events}


async def _answer(read: _Read, session_id: int, *args: Any) -> Response:
    """Run a cached view; 304 when the client already holds this body (`If-None-Match`)."""
    cache, user_id = body_cache(current_app), await login_user_id()
    column = queries.session_version_sql(read.parts)
    kept = None if column is None else await read_statement(read.peek, column, cache, user_id, session_id, *args)
    if kept is None:
        kept = await read_db(read.load, cache, current_app.json.dumps, user_id, session_id, *args)
    body, etag = kept
    if request.if_none_match.contains(etag):
        response = Response(status=304)
        response.headers.pop("Content-Type", None)
    else:
        response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    # Per user (access is checked), and it may change: a browser keeps it, but asks every time.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@blueprint.get("/sessions/<int:session_id>")
@login_required_access_checked
async def detail(session_id: int):
    """The session with its decisions and tasks."""
    return await _answer(_detail, session_id)


@blueprint.get("/sessions/<int:session_id>/timeline")
@login_required_access_checked
async def timeline(session_id: int):
    """Tasks with their snapshots, by start time then pipeline order."""
    return await _answer(_timeline, session_id)


@blueprint.get("/sessions/<int:session_id>/replay")
@login_required_access_checked
async def replay(session_id: int):
    """Everything needed to replay the session in a browser without running it again."""
    return await _answer(_replay, session_id)


@blueprint.get("/sessions/<int:session_id>/decisions")
@login_required_access_checked
async def decisions(session_id: int):
    """The decision tree: session decisions, then each task's with what it used."""
    return await _answer(_tree, session_id)


@blueprint.get("/sessions/<int:session_id>/events")
@login_required_access_checked
@validate_querystring(EventsQuery)
async def events(session_id: int, query_args: EventsQuery):
    """The catch-up feed: stored events with `seq > after`."""
    return await _answer(_events, session_id, query_args.after)


def _end(user_id: int, session_id: int) -> dict:
    require_session(user_id, session_id, "write")
    try:
        return session_dict(lifecycle.end(session_id, ended_by=user_id).value)
    except lifecycle.SessionAlreadyEnded:
        raise ApiError(409, "this session has already ended") from None


@blueprint.post("/sessions/<int:session_id>/end")
@login_required
async def end(session_id: int):
    """End the session now; tasks not yet started are not run."""
    return jsonify({"session": await run_connected(_end, await current_user_id(), session_id)})


def _export(user_id: int, session_id: int, kind: str) -> tuple[str, str]:
    session, _ = require_session(user_id, session_id, "read")
    pack = design_pack.collect(session)
    if kind == "json":
        return json.dumps(pack, ensure_ascii=False, indent=2), design_pack.filename(session.feature_name, "json")
    return design_pack.markdown(pack), design_pack.filename(session.feature_name, "md")


@blueprint.get("/sessions/<int:session_id>/export")
@login_required
@validate_querystring(ExportQuery)
async def export(session_id: int, query_args: ExportQuery):
    """The design pack as a download: Markdown (default) or JSON with tasks, snapshots and events."""
    body, name = await run_db(_export, await current_user_id(), session_id, query_args.format)
    mimetype = "application/json" if query_args.format == "json" else "text/markdown"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response

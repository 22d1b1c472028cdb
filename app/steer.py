"""Steer and compare: rerun a session from any agent with changed decisions, and compare two runs.

`POST /sessions/{id}/rerun` makes a new session linked by `rerun_of`, as the CLI does: stages
before `from_role` are copied, the rest run again, with the session decisions replaced when
`decisions` is given. `GET /sessions/{a}/compare/{b}` answers what the team decided differently
and which decisions followed from the change (`models/compare.py`). See docs/api.md.
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import BaseModel, Field
from quart import Blueprint, jsonify
from quart_schema import validate_request

from app.access import require_session
from app.db_thread import run_connected, run_db
from app.errors import ApiError
from app.login_sessions import current_user_id, login_required
from app.sessions import start_or_fail, usable_brain_or_400
from app.validation import NonBlank
from models import lifecycle
from models.compare import compare_sessions
from models.schema import AgentRole, Category, Confidence

blueprint = Blueprint("steer", __name__)
log = logging.getLogger(__name__)

Role = AgentRole


class RerunDecision(BaseModel):
    decision_text: Annotated[str, NonBlank(10_000)]
    category: Category | None = None
    confidence: Confidence = "high"


class Rerun(BaseModel):
    from_role: Role | None = None
    decisions: list[RerunDecision] | None = Field(default=None, max_length=100)
    brain: str | None = Field(default=None, max_length=64)


def _rerun(user_id: int, session_id: int, body: Rerun) -> dict:
    from actors.reruns import rerun_warnings

    require_session(user_id, session_id, "write")
    brain = None if body.brain is None else usable_brain_or_400(body.brain)  # None keeps the original's
    decisions = None if body.decisions is None else [d.model_dump() for d in body.decisions]
    warnings = rerun_warnings(session_id, body.from_role, decisions)
    try:
        rerun = lifecycle.create_rerun(session_id, body.from_role, user_id, decisions, brain).value
    except lifecycle.NotRerunnable as exc:
        raise ApiError(409, f"cannot rerun from {body.from_role}: {exc}") from None
    start_or_fail(rerun.id, "rerun")
    return {"session_id": rerun.id, "status": "active", "warnings": warnings}


@blueprint.post("/sessions/<int:session_id>/rerun")
@login_required
@validate_request(Rerun)
async def rerun(session_id: int, data: Rerun):
    """Rerun the session (from `from_role`, with `decisions` replacing its own) as a new session: 202."""
    return jsonify(await run_connected(_rerun, await current_user_id(), session_id, data)), 202


def _compare(user_id: int, a: int, b: int) -> dict:
    require_session(user_id, a, "read")
    require_session(user_id, b, "read")
    return compare_sessions(a, b)


@blueprint.get("/sessions/<int:a>/compare/<int:b>")
@login_required
async def compare(a: int, b: int):
    """Two runs side by side, by decision key and artifact path, with causes and effects."""
    return jsonify(await run_db(_compare, await current_user_id(), a, b))

"""The decision journal: decisions users add to a session or to one agent's task."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from quart import Blueprint, jsonify
from quart_schema import validate_request

from app.access import require_session, require_task
from app.db_thread import run_db
from app.login_sessions import current_user_id, login_required
from app.publish import publish_events
from app.validation import NonBlank
from models import SessionDecision, TaskDecision
from models.events import record_event
from models.schema import Category, Confidence
from models.serialize import session_decision_dict, task_decision_dict

blueprint = Blueprint("decisions", __name__)


Text = Annotated[str, NonBlank(10_000)]


class NewSessionDecision(BaseModel):
    decision_text: Text
    category: Category | None = None
    confidence: Confidence = "high"


class NewTaskDecision(BaseModel):
    decision_text: Text
    rationale: str | None = Field(default=None, max_length=10_000)
    category: Category | None = None


def _add_session_decision(user_id: int, session_id: int, body: NewSessionDecision):
    session, _ = require_session(user_id, session_id, "write")
    decision = SessionDecision.create(
        session=session,
        user=user_id,
        decision_text=body.decision_text,
        category=body.category,
        confidence=body.confidence,
    )
    shape = session_decision_dict(decision)
    message = record_event(session.id, "decision_created", {"decision": {**shape, "scope": "session"}})
    return shape, [message]


def _add_task_decision(user_id: int, task_id: int, body: NewTaskDecision):
    task, _ = require_task(user_id, task_id, "write")
    decision = TaskDecision.create(
        agent_task=task,
        user=user_id,
        source="user",
        decision_text=body.decision_text,
        rationale=body.rationale,
        category=body.category,
    )
    shape = task_decision_dict(decision)
    message = record_event(
        task.session_id, "decision_created", {"decision": {**shape, "scope": "task", "agent_role": task.agent_role}}
    )
    return shape, [message]


@blueprint.post("/sessions/<int:session_id>/decisions")
@login_required
@validate_request(NewSessionDecision)
async def add_session_decision(session_id: int, data: NewSessionDecision):
    """Record a session-level (strategic) decision; members and owners only."""
    decision, messages = await run_db(_add_session_decision, await current_user_id(), session_id, data)
    await publish_events(messages)
    return jsonify({"decision": decision}), 201


@blueprint.post("/tasks/<int:task_id>/decisions")
@login_required
@validate_request(NewTaskDecision)
async def add_task_decision(task_id: int, data: NewTaskDecision):
    """Record a task-level (tactical) decision on one agent's task; members and owners only."""
    decision, messages = await run_db(_add_task_decision, await current_user_id(), task_id, data)
    await publish_events(messages)
    return jsonify({"decision": decision}), 201

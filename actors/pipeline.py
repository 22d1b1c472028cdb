"""The agent pipeline: sessions, their seven tasks, and how a task runs, fails, retries and advances.

Public entry points for the web app and the scripts (call them inside a database connection
but outside any transaction: they commit their own and publish events after commit):

- `create_session(team_id, user_id, feature_name, description=None, rerun_of=None)`
- `start_session(session_id) -> AsyncResult`: the design's chain of `.s()` signatures and groups
- `end_session(session_id)`, raising `SessionNotFound` (404) or `SessionAlreadyEnded` (409)
- `resend_stage(session_id) -> int`: send the current stage's unfinished tasks again (watchdog)

At-least-once delivery is made harmless here (ARCHITECTURE.md decision 3):

- a task claims its row with a conditional UPDATE: `pending -> running`, or `running` again by
  the same message id (Redis redelivers a dead worker's message under its id, so a row left
  `running` by a killed worker is re-claimable by exactly that message and by no duplicate);
- every claim, completion and failure first locks the session row, so the checks "is the session
  active", "has its current stage reached mine" and "is every task of my stage completed" see
  every committed change of the other members;
- the chain moves in middleware (`actors.celery_compat.composition`), not in these bodies: a
  stage's group is a barrier that counts its members by id, and the stage's gate
  (`_stage_gate`) is the compare-and-set `current_stage = i -> i + 1`, taken with the session
  locked and only when every task of stage i is completed in the database; the next stage's
  messages are enqueued inside that transaction, before commit, so a crash can duplicate them
  (turned away by the claims) but never lose them, and a message that arrives before the
  commit waits on the session lock and then sees the new stage;
- a task that finds its row already completed (a redelivery after its worker died between
  commit and acknowledgement) returns the same result again, so its barrier still fills.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from dramatiq.middleware.time_limit import TimeLimitExceeded

from actors import celery_compat as celery
from actors import parking
from actors.agents import BrainError, get_brain, make_agent
from actors.agents.llm import ModelBrain
from actors.agents.progress import ProgressPublisher, redis_sender
from actors.config import get_settings, redis_client
from models import logs
from models.brains import add_calls, add_session_usage, default_brain
from models.db import db, reconnecting
from models.events import publish, record_event
from models.schema import (
    AGENT_ROLES,
    PIPELINE,
    STAGE_OF_ROLE,
    AgentSnapshot,
    AgentTask,
    ExecutionSession,
    SessionDecision,
    TaskDecision,
    utcnow,
)
from models.serialize import session_dict, snapshot_dict, task_dict

logger = logging.getLogger(__name__)

TASK_DESCRIPTIONS = {
    "architect": "Plan {feature}",
    "backend_dev": "Implement the backend of {feature}",
    "dba": "Design the database of {feature}",
    "frontend_dev": "Implement the frontend of {feature}",
    "ui_ux": "Design the UI of {feature}",
    "security": "Audit the security of {feature}",
    "it_admin": "Plan the deployment of {feature}",
}


class SessionNotFound(LookupError):
    """No session with that id (the web layer answers 404)."""


class SessionAlreadyEnded(Exception):
    """The session is no longer active (the web layer answers 409)."""


def _publish(messages: list[dict[str, Any]]) -> None:
    try:
        publish(redis_client(), messages)
    except Exception:  # the event is stored; clients catch up by seq
        logger.warning("could not publish %d events", len(messages), exc_info=True)


def _outside_transaction(what: str) -> None:
    if db.in_transaction():
        raise RuntimeError(f"{what} must run outside a transaction: it publishes events after its own commit")


def _locked_session(session_id: int) -> ExecutionSession | None:
    return ExecutionSession.select().where(ExecutionSession.id == session_id).for_update().first()


def _task_payload(task_id: int, task: AgentTask | None = None) -> dict[str, Any]:
    """The `task` of an event: the row (re-read unless the caller has it fresh) and its decisions."""
    task = task or AgentTask.get_by_id(task_id)
    decisions = list(TaskDecision.select().where(TaskDecision.agent_task == task_id).order_by(TaskDecision.id))
    return task_dict(task, decisions)


# --- sessions -------------------------------------------------------------------------------


def create_session(
    team_id: int,
    user_id: int | None,
    feature_name: str,
    description: str | None = None,
    rerun_of: int | None = None,
    brain: str | None = None,
) -> ExecutionSession:
    """Create an active session with its seven `pending` tasks and a `session_started` event.

    `brain` names the brain of every agent (default: `SAGE_BRAIN`, else the knowledge base);
    the caller has checked that it is configured (`models.brains.usable_brain`).
    """
    _outside_transaction("create_session")
    with db.atomic():
        session = ExecutionSession.create(
            team=team_id,
            user=user_id,
            feature_name=feature_name,
            description=description,
            rerun_of=rerun_of,
            brain=brain or default_brain(),
        )
        for role in AGENT_ROLES:
            AgentTask.create(
                session=session,
                agent_role=role,
                stage=STAGE_OF_ROLE[role],
                task_description=TASK_DESCRIPTIONS[role].format(feature=feature_name),
            )
        event = record_event(session.id, "session_started", {"session": session_dict(session)})
    _publish([event])
    return session


def _tasks_by_role(session_id: int) -> dict[str, AgentTask]:
    return {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == session_id)}


def _signature(session_id: int, task: AgentTask) -> celery.Signature:
    """One role's `.s()`: the task gets the previous stage's results first, as in any Celery chain."""
    settings = get_settings()
    return (
        ROLE_TASKS[task.agent_role]
        .s(session_id, task.task_description)
        .set(time_limit=settings.task_time_limit_seconds, max_retries=len(settings.retry_delays_seconds))
    )


def _stages(session_id: int, tasks: dict[str, AgentTask]) -> list[celery.Signature]:
    """The design's pipeline (phase3-design.md, "Session Execution Chain"), one step per stage."""

    def s(role: str) -> celery.Signature:
        return _signature(session_id, tasks[role])

    return [
        # Stage 0: the architect (team lead), always first
        s("architect"),
        # Stage 1: backend and database, in parallel
        celery.group(s("backend_dev"), s("dba")),
        # Stage 2: frontend and UI/UX, in parallel
        celery.group(s("frontend_dev"), s("ui_ux")),
        # Stage 3: security and deployment, in parallel
        celery.group(s("security"), s("it_admin")),
    ]


def start_session(session_id: int) -> celery.AsyncResult:
    """Apply the session's chain from its current stage; store and return the chain's handle.

    Idempotent: a session that already has a chain gets its handle back instead of a second chain.
    """
    _outside_transaction("start_session")
    session = ExecutionSession.get_or_none(ExecutionSession.id == session_id)
    if session is None:
        raise SessionNotFound(session_id)
    if session.celery_chain_id:
        return celery.AsyncResult(session.celery_chain_id, app=app)
    if session.status != "active":
        raise SessionAlreadyEnded(session_id)
    chain = celery.chain(*_stages(session.id, _tasks_by_role(session.id))[session.current_stage :])
    result = chain.apply_async()
    session.celery_chain_id = result.id
    session.save(only=[ExecutionSession.celery_chain_id])
    return result


def resend_stage(session_id: int) -> int:
    """Send the current stage's unfinished tasks again, followed by the rest of the chain.

    For a watchdog that finds a session's messages lost from the broker. Returns how many
    messages were sent (0 for a session that is not active). A task left `running` is resent
    under its own message id, which its claim accepts as a redelivery; a pending one gets a new
    id. Safe if the originals were not lost after all: the claims let each task run once, and
    the stage advance (a compare-and-set) happens once. If every task of the stage is already
    completed (the advance itself was lost), the advance is made now and the next stage sent.
    """
    _outside_transaction("resend_stage")
    session = ExecutionSession.get_or_none(ExecutionSession.id == session_id)
    if session is None:
        raise SessionNotFound(session_id)
    if session.status != "active":
        return 0
    stage = session.current_stage
    tasks = _tasks_by_role(session_id)
    unfinished = [tasks[r] for r in PIPELINE[stage] if tasks[r].status != "completed"]
    if not unfinished:
        _stage_gate([{"session_id": session_id, "stage": stage}], lambda: False)
        moved = ExecutionSession.get_by_id(session_id)
        return len(PIPELINE[moved.current_stage]) if moved.current_stage != stage else 0
    first = []
    for task in unfinished:
        signature = _signature(session_id, task)
        if task.status == "running" and task.celery_task_id:
            signature.set(task_id=task.celery_task_id)
        first.append(signature)
    later = _stages(session_id, tasks)[stage + 1 :]
    result = celery.chain(first[0] if len(first) == 1 else celery.group(*first), *later).apply_async()
    ExecutionSession.update(celery_chain_id=result.id).where(ExecutionSession.id == session_id).execute()
    logger.warning("session %s: resent %d task(s) of stage %d", session_id, len(first), stage)
    return len(first)


def end_session(session_id: int, ended_by: int | None = None) -> ExecutionSession:
    """End an active session now: it becomes `completed` with `end_reason` "user", and tasks not
    yet started never run.

    `ended_by` is the user who ended it. Tasks already running finish and are recorded, but start
    nothing after them. Emits `session_completed`. Raises SessionNotFound, or SessionAlreadyEnded
    if it is not active.
    """
    _outside_transaction("end_session")
    with db.atomic():
        session = _locked_session(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        if session.status != "active":
            raise SessionAlreadyEnded(session_id)
        event = _finish_session(session, "completed", end_reason="user", ended_by=ended_by)
    _publish([event])
    return ExecutionSession.get_by_id(session_id)


def fail_session(session_id: int, reason: str) -> bool:
    """Mark an active session `error` with `reason` (e.g. its pipeline could not be queued).

    Emits `session_error`; returns False when the session was not active any more.
    """
    _outside_transaction("fail_session")
    with db.atomic():
        session = _locked_session(session_id)
        if session is None or session.status != "active":
            return False
        event = _finish_session(session, "error", reason)
    _publish([event])
    return True


def _finish_session(
    session: ExecutionSession,
    status: str,
    error: str | None = None,
    task_id: int | None = None,
    *,
    end_reason: str | None = None,
    ended_by: int | None = None,
):
    """Set the final status of a locked, active session and record its event (inside a transaction).

    `end_reason` defaults to the status (`completed` or `error`); an early end passes "user".
    """
    now = utcnow()
    session.status = status
    session.end_reason = end_reason or status
    session.ended_by_id = ended_by
    session.ended_at = now
    session.duration_seconds = round((now - session.started_at).total_seconds(), 3)
    session.error_message = error
    session.save(
        only=[
            ExecutionSession.status,
            ExecutionSession.ended_at,
            ExecutionSession.duration_seconds,
            ExecutionSession.error_message,
            ExecutionSession.end_reason,
            ExecutionSession.ended_by,
        ]
    )
    if status == "completed":
        return record_event(session.id, "session_completed", {"session": session_dict(session)})
    return record_event(session.id, "session_error", {"error": error, "task_id": task_id})


# --- running one task -----------------------------------------------------------------------


def _context(session: ExecutionSession, role: str) -> dict[str, Any]:
    """What the agent sees: the feature, the user's session decisions, completed upstream outputs."""
    upstream_roles = [r for r in AGENT_ROLES if STAGE_OF_ROLE[r] < STAGE_OF_ROLE[role]]
    upstream = {}
    for task in AgentTask.select().where(
        (AgentTask.session == session.id)
        & (AgentTask.agent_role.in_(upstream_roles))
        & (AgentTask.status == "completed")
    ):
        upstream[task.agent_role] = {"task_id": task.id, "output": task.output_data}
    decisions = [
        {"id": d.id, "text": d.decision_text, "category": d.category, "confidence": d.confidence}
        for d in SessionDecision.select().where(SessionDecision.session == session.id).order_by(SessionDecision.id)
    ]
    return {
        "feature_name": session.feature_name,
        "description": session.description,
        "session_decisions": decisions,
        "upstream": {r: upstream[r] for r in upstream_roles if r in upstream},
    }


@reconnecting(idempotent=True)  # a repeated claim by the same message is a re-claim
def _claim(task_id: int, message_id: str | None, attempt: int, context_data: dict) -> tuple[str, Any]:
    """Claim the task for this message. Returns ("run", (session, task, context)) or ("skip", reason)."""
    with db.atomic():
        task = AgentTask.get_or_none(AgentTask.id == task_id)
        if task is None:
            return "skip", "task no longer exists"
        session = _locked_session(task.session_id)
        assert session is not None  # a task's session outlives it (ON DELETE CASCADE)
        if session.status != "active":
            return "skip", f"session is {session.status}"
        if session.current_stage != task.stage:
            return "skip", f"session is at stage {session.current_stage}, task belongs to {task.stage}"
        context = _context(session, task.agent_role)
        claimable = (AgentTask.status == "pending") | (
            (AgentTask.status == "running") & (AgentTask.celery_task_id == message_id)
        )
        claimed = (
            AgentTask.update(
                status="running",
                started_at=task.started_at or utcnow(),
                celery_task_id=message_id,
                retry_count=attempt,
                input_data={
                    "task_description": task.task_description,
                    "context_data": context_data,
                    "feature_name": session.feature_name,
                    "description": session.description,
                    "upstream_task_ids": {r: u["task_id"] for r, u in context["upstream"].items()},
                    "session_decision_ids": [d["id"] for d in context["session_decisions"]],
                },
            )
            .where((AgentTask.id == task_id) & claimable)
            .returning(AgentTask)
            .execute()
        )
        claimed = next(iter(claimed), None)
        if claimed is None:
            return "skip", f"task is {task.status} (claimed by {task.celery_task_id})"
        event = record_event(session.id, "agent_task_started", {"task": _task_payload(task_id, claimed)})
    _publish([event])
    return "run", (session, claimed, context)


def _test_hooks(role: str) -> None:
    """Test-only fault injection (SAGE_ENV=test): `SAGE_TEST_AGENT_SLEEP=dba=3,security=1`."""
    if os.environ.get("SAGE_ENV") != "test":
        return
    marker_dir = os.environ.get("SAGE_TEST_MARKER_DIR")
    if marker_dir:
        with open(os.path.join(marker_dir, f"{role}.{os.getpid()}.{time.time():.3f}"), "w"):
            pass
    for item in os.environ.get("SAGE_TEST_AGENT_SLEEP", "").split(","):
        name, _, seconds = item.partition("=")
        if name.strip() == role and seconds:
            deadline = time.monotonic() + float(seconds)
            while time.monotonic() < deadline:  # short steps, so a time limit can interrupt it
                time.sleep(0.05)


def _result(task: AgentTask) -> dict[str, Any]:
    """What a role's task returns (and the chain passes on): small, and the same on every delivery."""
    return {
        "session_id": task.session_id,
        "stage": task.stage,
        "task_id": task.id,
        "agent_role": task.agent_role,
        "status": task.status,
    }


@reconnecting
def _task_of(session_id: int, role: str) -> AgentTask | None:
    return AgentTask.get_or_none((AgentTask.session == session_id) & (AgentTask.agent_role == role))


def execute_role(self: celery.BoundTask, role: str, session_id: int, task_description: str, context_data: dict) -> dict:
    """The body shared by the seven actors: claim, think, record; retry or fail on error.

    Returns `_result(task)`; a message that must not run (session ended, stage not reached,
    task claimed by another live message) raises `Ignore`, so nothing after it starts.
    """
    resume = parking.resumed()
    if resume is not None:
        return resume()  # back from a parked model call: only the continuation runs, not the claim
    request = self.request
    task_row = _task_of(session_id, role)
    if task_row is None:
        logger.warning("no %s task in session %s; dropping message", role, session_id)
        raise celery.Ignore()
    logs.bind(session_id=session_id, task_id=task_row.id, agent_role=role)  # reset after the message
    if task_row.status == "completed":
        return _result(task_row)  # done by an earlier delivery: same answer, so the barrier fills
    # A duplicate message may find the task waiting for its retry: keep counting from the row.
    attempt = max(request.retries, task_row.retry_count) if task_row.status == "pending" else request.retries
    outcome, value = _claim(task_row.id, request.id, attempt, context_data)
    if outcome == "skip":
        logger.info("%s of session %s not run: %s", role, session_id, value)
        raise celery.Ignore()
    session, task, context = value
    started = time.monotonic()
    agent = None
    thinking = None
    output: dict[str, Any] = {}
    try:
        agent = make_agent(role, _brain_for(session, task))
        agent.set_context(context)
        _test_hooks(role)
        if isinstance(agent.brain, ModelBrain):
            thinking = agent.brain.athink(role, task_description, agent.context)
        else:
            output = agent.execute_task(task_description)
    except (Exception, TimeLimitExceeded) as exc:
        _fail(self, task, attempt, exc, _calls(agent))
        raise  # not reached: _fail raises
    if thinking is None:
        return _complete(self, session, task, agent, output, attempt, time.monotonic() - started)
    brained = agent

    def then(outcome) -> dict:
        logs.bind(session_id=session_id, task_id=task.id, agent_role=role)  # the thread may be another
        try:
            output = brained.conclude(task_description, outcome.result())
        except (Exception, TimeLimitExceeded) as exc:
            _fail(self, task, attempt, exc, _calls(brained))
            raise  # not reached: _fail raises
        return _complete(self, session, task, brained, output, attempt, time.monotonic() - started)

    # Wait for the model without holding this thread (actors/parking.py): `then` runs when the
    # answer is in, on whichever worker thread is free, with the time limit covering the wait.
    return parking.park(thinking, then)


def _brain_for(session: ExecutionSession, task: AgentTask):
    """The session's brain, wired to publish live progress and to end its calls within the time limit."""
    brain = get_brain(session.brain)
    if isinstance(brain, ModelBrain):
        brain.on_progress = ProgressPublisher(redis_sender(redis_client(), session.id), task.id, task.agent_role)
        brain.time_limit = get_settings().task_time_limit_seconds
    return brain


def _calls(agent) -> list[dict[str, Any]]:
    """The model calls the agent's brain made in this attempt (none for the knowledge base)."""
    return list(getattr(agent.brain, "calls", None) or []) if agent is not None else []


def _add_usage(session: ExecutionSession, task_id: int, before: dict | None, calls: list[dict]) -> dict | None:
    """Inside the transaction, with the session locked: add an attempt's calls to the task and session."""
    after = add_calls(before, calls)
    if after is not before:
        AgentTask.update(usage=after).where(AgentTask.id == task_id).execute()
        session.usage = add_session_usage(session.usage, before, after)
        ExecutionSession.update(usage=session.usage).where(ExecutionSession.id == session.id).execute()
    return after


@reconnecting(idempotent=True)  # completion is conditional on this message's claim
def _complete(self, session, task, agent, output: dict, attempt: int, elapsed: float) -> dict:
    request = self.request
    settings = get_settings()
    now = utcnow()
    messages = []
    with db.atomic():
        session = _locked_session(session.id)
        done = (
            AgentTask.update(
                status="completed",
                completed_at=now,
                duration_seconds=round((now - task.started_at).total_seconds(), 3),
                error_message=None,
            )
            .where(
                (AgentTask.id == task.id) & (AgentTask.status == "running") & (AgentTask.celery_task_id == request.id)
            )
            .returning(AgentTask)
            .execute()
        )
        completed = next(iter(done), None)
        if completed is None:
            logger.info(
                "%s of session %s finished by another delivery; dropping this result", task.agent_role, session.id
            )
            return _result(AgentTask.get_by_id(task.id))
        calls = _calls(agent)
        completed.usage = _add_usage(session, task.id, completed.usage, calls)
        upstream_ids = {
            d["key"]: d["id"]
            for u in agent.context.get("upstream", {}).values()
            for d in (u.get("output") or {}).get("decisions", [])
            if "id" in d
        }
        for decision in output["decisions"]:
            decision["based_on"] = sorted({upstream_ids[k] for k in decision["based_on_keys"] if k in upstream_ids})
        if output["decisions"]:
            inserted = (
                TaskDecision.insert_many(
                    [
                        {
                            "agent_task": task.id,
                            "source": "agent",
                            "decision_text": d["text"],
                            "rationale": d["rationale"],
                            "category": d["category"],
                            "confidence": d["confidence"],
                            "based_on": d["based_on"],
                            "created_at": now,
                        }
                        for d in output["decisions"]
                    ]
                )
                .returning(TaskDecision.id)
                .execute()
            )
            # Rows come back in VALUES order; ids are assigned in that order too.
            for decision, row in zip(output["decisions"], sorted(r.id for r in inserted), strict=True):
                decision["id"] = row
        AgentTask.update(output_data=output).where(AgentTask.id == task.id).execute()
        completed.output_data = output
        snapshot = AgentSnapshot.create(
            agent_task=task.id,
            agent_role=task.agent_role,
            context_state={
                "task_description": task.task_description,
                "feature_name": agent.context.get("feature_name"),
                "description": agent.context.get("description"),
                "session_decisions": agent.context.get("session_decisions", []),
                "upstream": {
                    r: {"task_id": u["task_id"], "summary": (u.get("output") or {}).get("summary")}
                    for r, u in agent.context.get("upstream", {}).items()
                },
            },
            capabilities=[c.value for c in agent.capabilities],
            decisions=output["decisions"],
            execution_metadata={
                "started_at": completed.started_at.isoformat() + "Z",
                "completed_at": now.isoformat() + "Z",
                "duration_seconds": completed.duration_seconds,
                "attempt_seconds": round(elapsed, 3),
                "attempt": attempt + 1,
                "retries": attempt,
                "worker": {"host": socket.gethostname(), "pid": os.getpid(), "thread": threading.current_thread().name},
                "message_id": request.id,
                "chain_id": request.chain_id,
                "time_limit_seconds": settings.task_time_limit_seconds,
                "brain": output["brain"],
                **({"model": agent.brain.record()} if hasattr(agent.brain, "record") else {}),
            },
        )
        messages.append(
            record_event(
                session.id,
                "agent_task_completed",
                {"task": _task_payload(task.id, completed), "snapshot": snapshot_dict(snapshot)},
            )
        )
        if session.status == "active" and task.stage == len(PIPELINE) - 1:
            messages += _finish_if_done(session)
    _publish(messages)
    logger.info("completed in %.3f s with %d decisions", elapsed, len(output["decisions"]))
    return _result(completed)


def _finish_if_done(session: ExecutionSession) -> list[dict[str, Any]]:
    """Inside the completing transaction of a last-stage task: finish the session when all are done."""
    unfinished = (
        AgentTask.select()
        .where(
            (AgentTask.session == session.id)
            & (AgentTask.stage == len(PIPELINE) - 1)
            & (AgentTask.status != "completed")
        )
        .count()
    )
    return [] if unfinished else [_finish_session(session, "completed")]


def _stage_gate(results: list[Any], send: Any) -> None:
    """The gate of every stage's barrier: advance `current_stage = i -> i + 1`, then send stage i + 1.

    Called by the canvas middleware once a stage's group has all its members (or after a stage of
    one task), with their results. The compare-and-set runs with the session locked and only when
    every task of stage i is completed in the database and the session is active, so it succeeds
    once whatever the deliveries; the next stage is sent inside the same transaction (see the
    module docstring). A stage that was run without a chain behind it (a message sent by hand)
    starts the remaining stages as a new chain.
    """
    heads = [r for r in results if isinstance(r, dict) and "session_id" in r and "stage" in r]
    if not heads:
        return
    session_id, stage = heads[0]["session_id"], heads[0]["stage"]
    with db.atomic():
        session = _locked_session(session_id)
        if session is None or session.status != "active" or session.current_stage != stage:
            return
        unfinished = (
            AgentTask.select()
            .where((AgentTask.session == session_id) & (AgentTask.stage == stage) & (AgentTask.status != "completed"))
            .count()
        )
        if unfinished or stage == len(PIPELINE) - 1:
            return  # the last stage's final completion finishes the session itself
        moved = (
            ExecutionSession.update(current_stage=stage + 1)
            .where(
                (ExecutionSession.id == session_id)
                & (ExecutionSession.current_stage == stage)
                & (ExecutionSession.status == "active")
            )
            .execute()
        )
        if moved and not send():
            celery.chain(*_stages(session_id, _tasks_by_role(session_id))[stage + 1 :]).apply_async()


@reconnecting(idempotent=True)  # the failure is conditional on this message's claim
def _fail(self, task: AgentTask, attempt: int, exc: BaseException, calls: list[dict] | None = None) -> None:
    """Record a failed attempt (and the model calls it paid for); raise Retry with the exact delay
    (or the endpoint's longer `Retry-After`), or end the task and session in error."""
    delays = get_settings().retry_delays_seconds
    if isinstance(exc, BrainError):
        error = str(exc)  # already one line for the user, naming the brain and model
    else:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    now = utcnow()
    retry_in = None
    messages = []
    with db.atomic():
        session = _locked_session(task.session_id)
        assert session is not None  # a task's session outlives it (ON DELETE CASCADE)
        mine = (
            (AgentTask.id == task.id) & (AgentTask.status == "running") & (AgentTask.celery_task_id == self.request.id)
        )
        if calls:
            held = AgentTask.select(AgentTask.usage).where(AgentTask.id == task.id).scalar()
            _add_usage(session, task.id, held, calls)
        if attempt < len(delays) and session.status == "active":
            retry_in = delays[attempt]
            wait = getattr(exc, "retry_after", None)
            if wait and wait > retry_in:
                retry_in = round(wait, 3)  # the endpoint asked for longer: honour it
            if AgentTask.update(status="pending", retry_count=attempt + 1, error_message=error).where(mine).execute():
                messages.append(
                    record_event(
                        session.id,
                        "agent_task_retrying",
                        {"task": _task_payload(task.id), "error": error, "retry_in_seconds": retry_in},
                    )
                )
        else:
            assert task.started_at is not None  # set when this attempt claimed the task
            AgentTask.update(
                status="error",
                completed_at=now,
                duration_seconds=round((now - task.started_at).total_seconds(), 3),
                error_message=error,
                retry_count=attempt,
            ).where(mine).execute()
            if session.status == "active":
                reason = f"{task.agent_role} failed after {attempt} retries: {error}"
                messages.append(_finish_session(session, "error", reason, task.id))
    _publish(messages)
    if retry_in is not None:
        logger.info(
            "%s of session %s failed (%s); retry %d in %ss", task.agent_role, session.id, error, attempt + 1, retry_in
        )
        self.retry(exc=exc if isinstance(exc, Exception) else None, countdown=retry_in, max_retries=len(delays))
    raise exc


# --- the actors -----------------------------------------------------------------------------


#: The Celery app of the pipeline: Dramatiq's global broker (set up in `actors/__init__.py`),
#: results in the Redis of REDIS_URL.
app = celery.Celery("sage_mode", backend=get_settings().redis_url)


def _declare(role: str, name: str) -> celery.Task:
    settings = get_settings()

    def body(self, *args: Any, context_data: dict | None = None) -> dict:
        # As in any Celery chain, a stage after the first gets the previous stage's results
        # first: (results, session_id, task_description[, context_data]).
        if args and not isinstance(args[0], int):
            args = args[1:]
        session_id, task_description, *rest = args
        return execute_role(self, role, session_id, task_description, context_data or (rest[0] if rest else {}))

    body.__doc__ = f"Run the {role} agent on one session's task."
    return app.task(
        bind=True,
        name=name,
        max_retries=len(settings.retry_delays_seconds),
        time_limit=settings.task_time_limit_seconds,
        gate=_stage_gate,
    )(body)


execute_architect_task = _declare("architect", "execute_architect_task")
execute_backend_task = _declare("backend_dev", "execute_backend_task")
execute_dba_task = _declare("dba", "execute_dba_task")
execute_frontend_task = _declare("frontend_dev", "execute_frontend_task")
execute_ui_ux_task = _declare("ui_ux", "execute_ui_ux_task")
execute_security_task = _declare("security", "execute_security_task")
execute_it_admin_task = _declare("it_admin", "execute_it_admin_task")

ROLE_TASKS: dict[str, celery.Task] = {
    "architect": execute_architect_task,
    "backend_dev": execute_backend_task,
    "dba": execute_dba_task,
    "frontend_dev": execute_frontend_task,
    "ui_ux": execute_ui_ux_task,
    "security": execute_security_task,
    "it_admin": execute_it_admin_task,
}


__all__ = [
    "ROLE_TASKS",
    "SessionAlreadyEnded",
    "SessionNotFound",
    "create_session",
    "end_session",
    "resend_stage",
    "start_session",
]

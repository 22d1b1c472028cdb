"""The agent pipeline: sessions, their seven tasks, and how a task runs, fails, retries and advances.

Public entry points for the web app and the scripts (call them inside a database connection
but outside any transaction: they commit their own and publish events after commit):

- `create_session(team_id, user_id, feature_name, description=None, rerun_of=None)`
- `start_session(session_id) -> AsyncResult`
- `end_session(session_id)`, raising `SessionNotFound` (404) or `SessionAlreadyEnded` (409)
- `resend_stage(session_id) -> int`: queue the current stage's unfinished tasks again (recovery)

At-least-once delivery is made harmless here (ARCHITECTURE.md decision 3):

- a task claims its row with a conditional UPDATE: `pending -> running`, or `running` again by
  the same message id (Redis redelivers a dead worker's message under its id, so a row left
  `running` by a killed worker is re-claimable by exactly that message and by no duplicate);
- every claim, completion and failure first locks the session row, so the checks "is the session
  active", "has its current stage reached mine" and "is every task of my stage completed" see
  every committed change of the other members;
- completion, the stage check and the compare-and-set `current_stage = i -> i + 1` commit in one
  transaction; the next stage's messages are enqueued inside it, before commit, so a crash can
  duplicate them (turned away by the claims) but never lose them, and a message that arrives
  before the commit waits on the session lock and then sees the new stage.
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
from actors.agents import make_agent
from actors.config import get_settings, redis_client
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
    team_id: int, user_id: int | None, feature_name: str, description: str | None = None, rerun_of: int | None = None
) -> ExecutionSession:
    """Create an active session with its seven `pending` tasks and a `session_started` event."""
    _outside_transaction("create_session")
    with db.atomic():
        session = ExecutionSession.create(
            team=team_id, user=user_id, feature_name=feature_name, description=description, rerun_of=rerun_of
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


def stage_group(session_id: int, stage: int, tasks: dict[str, AgentTask] | None = None) -> celery.group:
    """The Celery-style group of one stage's tasks of a session (`tasks` by role, if already read)."""
    settings = get_settings()
    tasks = tasks or _tasks_by_role(session_id)
    signatures = []
    for role in PIPELINE[stage]:
        task = tasks[role]
        signature = ROLE_TASKS[role].si(session_id, task.task_description, {"stage": stage, "task_id": task.id})
        signature.set(
            time_limit=int(settings.task_time_limit_seconds * 1000), max_retries=len(settings.retry_delays_seconds)
        )
        signatures.append(signature)
    return celery.group(*signatures)


def start_session(session_id: int) -> celery.AsyncResult:
    """Queue the session's remaining stages as a chain of groups; store and return the chain id.

    Idempotent: a session that already has a chain gets its handle back instead of a second chain.
    """
    _outside_transaction("start_session")
    session = ExecutionSession.get_or_none(ExecutionSession.id == session_id)
    if session is None:
        raise SessionNotFound(session_id)
    if session.celery_chain_id:
        return celery.AsyncResult(session.celery_chain_id)
    if session.status != "active":
        raise SessionAlreadyEnded(session_id)
    tasks = _tasks_by_role(session_id)
    steps = [stage_group(session_id, stage, tasks) for stage in range(session.current_stage, len(PIPELINE))]
    result = celery.chain(*steps).apply_async()
    ExecutionSession.update(celery_chain_id=result.id).where(ExecutionSession.id == session_id).execute()
    return result


def resend_stage(session_id: int) -> int:
    """Queue again the current stage's tasks of an active session that have not completed;
    return how many were sent (0 for a session that is not active).

    For recovery when the broker lost messages (`actors.recovery`). Safe at any time: a copy of a
    message whose task is already claimed, or completed, is turned away by the claim. Each copy
    keeps the task's retry count, so a resend never hands out extra retries. The copies carry
    no chain: the stage's last completion advances with `stage_group`.
    """
    _outside_transaction("resend_stage")
    session = ExecutionSession.get_or_none(ExecutionSession.id == session_id)
    if session is None or session.status != "active":
        return 0
    tasks = _tasks_by_role(session_id)
    stage = session.current_stage
    unfinished = [
        signature.set(retries=tasks[role].retry_count)
        for role, signature in zip(PIPELINE[stage], stage_group(session_id, stage, tasks).tasks, strict=True)
        if tasks[role].status in ("pending", "running")
    ]
    if unfinished:
        celery.group(*unfinished).apply_async()
    return len(unfinished)


def end_session(session_id: int) -> ExecutionSession:
    """End an active session now: it becomes `completed`, and tasks not yet started never run.

    Tasks already running finish and are recorded, but start nothing after them. Emits
    `session_completed`. Raises SessionNotFound, or SessionAlreadyEnded if it is not active.
    """
    _outside_transaction("end_session")
    with db.atomic():
        session = _locked_session(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        if session.status != "active":
            raise SessionAlreadyEnded(session_id)
        event = _finish_session(session, "completed")
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


def _finish_session(session: ExecutionSession, status: str, error: str | None = None, task_id: int | None = None):
    """Set the final status of a locked, active session and record its event (inside a transaction)."""
    now = utcnow()
    session.status = status
    session.ended_at = now
    session.duration_seconds = round((now - session.started_at).total_seconds(), 3)
    session.error_message = error
    session.save(
        only=[
            ExecutionSession.status,
            ExecutionSession.ended_at,
            ExecutionSession.duration_seconds,
            ExecutionSession.error_message,
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


@reconnecting
def _task_of(session_id: int, role: str) -> AgentTask | None:
    return AgentTask.get_or_none((AgentTask.session == session_id) & (AgentTask.agent_role == role))


def execute_role(self: celery.BoundTask, role: str, session_id: int, task_description: str, context_data: dict) -> dict:
    """The body shared by the seven actors: claim, think, record; retry or fail on error."""
    request = self.request
    task_row = _task_of(session_id, role)
    if task_row is None:
        logger.warning("no %s task in session %s; dropping message", role, session_id)
        return {"skipped": "no such task"}
    # A duplicate message may find the task waiting for its retry: keep counting from the row.
    attempt = max(request.retries, task_row.retry_count) if task_row.status == "pending" else request.retries
    outcome, value = _claim(task_row.id, request.id, attempt, context_data)
    if outcome == "skip":
        logger.info("%s of session %s not run: %s", role, session_id, value)
        return {"skipped": value}
    session, task, context = value
    started = time.monotonic()
    agent = make_agent(role)
    try:
        agent.set_context(context)
        _test_hooks(role)
        output = agent.execute_task(task_description)
    except (Exception, TimeLimitExceeded) as exc:
        _fail(self, task, attempt, exc)
        raise  # not reached: _fail raises
    return _complete(self, session, task, agent, output, attempt, time.monotonic() - started)


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
            return {"skipped": "finished elsewhere"}
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
            },
        )
        messages.append(
            record_event(
                session.id,
                "agent_task_completed",
                {"task": _task_payload(task.id, completed), "snapshot": snapshot_dict(snapshot)},
            )
        )
        if session.status == "active":
            messages += _advance(self, session, task.stage)
    _publish(messages)
    return output


def _advance(self, session: ExecutionSession, stage: int) -> list[dict[str, Any]]:
    """Inside the completing transaction, with the session locked: finish the stage if it is done."""
    unfinished = (
        AgentTask.select()
        .where((AgentTask.session == session.id) & (AgentTask.stage == stage) & (AgentTask.status != "completed"))
        .count()
    )
    if unfinished:
        return []
    if stage == len(PIPELINE) - 1:
        return [_finish_session(session, "completed")]
    moved = (
        ExecutionSession.update(current_stage=stage + 1)
        .where(
            (ExecutionSession.id == session.id)
            & (ExecutionSession.current_stage == stage)
            & (ExecutionSession.status == "active")
        )
        .execute()
    )
    if moved:
        # Enqueued before commit on purpose: see the module docstring.
        if self.request.has_next_step:
            self.request.start_next_step()
        else:
            stage_group(session.id, stage + 1).apply_async()
    return []


@reconnecting(idempotent=True)  # the failure is conditional on this message's claim
def _fail(self, task: AgentTask, attempt: int, exc: BaseException) -> None:
    """Record a failed attempt; raise Retry with the exact delay, or end the task and session in error."""
    delays = get_settings().retry_delays_seconds
    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    now = utcnow()
    retry_in = None
    messages = []
    with db.atomic():
        session = _locked_session(task.session_id)
        mine = (
            (AgentTask.id == task.id) & (AgentTask.status == "running") & (AgentTask.celery_task_id == self.request.id)
        )
        if attempt < len(delays) and session.status == "active":
            retry_in = delays[attempt]
            if AgentTask.update(status="pending", retry_count=attempt + 1, error_message=error).where(mine).execute():
                messages.append(
                    record_event(
                        session.id,
                        "agent_task_retrying",
                        {"task": _task_payload(task.id), "error": error, "retry_in_seconds": retry_in},
                    )
                )
        else:
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


def _declare(role: str, name: str) -> celery.Task:
    settings = get_settings()

    def body(self, session_id: int, task_description: str, context_data: dict | None = None) -> dict:
        return execute_role(self, role, session_id, task_description, context_data or {})

    body.__doc__ = f"Run the {role} agent on one session's task."
    return celery.task(
        bind=True,
        name=name,
        max_retries=len(settings.retry_delays_seconds),
        time_limit=int(settings.task_time_limit_seconds * 1000),
        min_backoff=int(min(settings.retry_delays_seconds or (5.0,)) * 1000),
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


@celery.register_state_resolver
def session_state(result_id: str) -> str | None:
    """Celery states from the database: a chain id maps to its session, a message id to its task."""
    session = ExecutionSession.get_or_none(ExecutionSession.celery_chain_id == result_id)
    if session is not None:
        if session.status == "completed":
            return celery.SUCCESS
        if session.status == "error":
            return celery.FAILURE
        started = AgentTask.select().where((AgentTask.session == session.id) & (AgentTask.status != "pending")).exists()
        return celery.STARTED if started else celery.PENDING
    task = AgentTask.get_or_none(AgentTask.celery_task_id == result_id)
    if task is None:
        return None
    if task.status == "pending":
        return celery.RETRY if task.retry_count else celery.PENDING
    return {"running": celery.STARTED, "completed": celery.SUCCESS, "error": celery.FAILURE}[task.status]


__all__ = [
    "ROLE_TASKS",
    "SessionAlreadyEnded",
    "SessionNotFound",
    "create_session",
    "end_session",
    "resend_stage",
    "start_session",
]

"""The agent pipeline: the seven role actors, the chain of stages, and how a task runs.

The session lifecycle itself (create, claim, complete, fail, advance, finish, end) has one owner,
`models.lifecycle` (ARCHITECTURE.md decision 12): these functions call it, and it stores each
change with its events in one transaction and publishes them after commit. What stays here is
what needs the broker or the agents: building and sending the chain, running an agent, and the
stage gate's `send` (the next stage's messages, sent inside the gate's transaction).

Public entry points for the web app and the scripts (call them inside a database connection
but outside any transaction: they commit their own and publish events after commit):

- `create_session(team_id, user_id, feature_name, description=None, rerun_of=None)`
- `start_session(session_id) -> AsyncResult`: the design's chain of `.s()` signatures and groups
- `end_session(session_id)`, raising `SessionNotFound` (404) or `SessionAlreadyEnded` (409)
- `resend_stage(session_id) -> int`: send the current stage's unfinished tasks again (watchdog)

The chain moves in middleware (`actors.celery_compat.composition`), not in these bodies: a
stage's group is a barrier that counts its members by id, and the stage's gate (`_stage_gate`,
which calls `lifecycle.advance`) is the compare-and-set `current_stage = i -> i + 1`. A task that
finds its row already completed (a redelivery after its worker died between commit and
acknowledgement) returns the same result again, so its barrier still fills.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from dramatiq.middleware.time_limit import TimeLimitExceeded

from actors import celery_compat as celery
from actors import parking
from actors.agents import BrainError, get_brain, make_agent
from actors.agents.llm import ModelBrain
from actors.agents.progress import ProgressPublisher, redis_sender
from actors.config import get_settings, redis_client
from models import lifecycle, logs
from models.lifecycle import TASK_DESCRIPTIONS, SessionAlreadyEnded, SessionNotFound
from models.schema import PIPELINE, AgentTask, ExecutionSession

logger = logging.getLogger(__name__)


def _outside_transaction(what: str) -> None:
    from models.db import db

    if db.in_transaction():
        raise RuntimeError(f"{what} must run outside a transaction: it publishes events after its own commit")


# --- sessions -------------------------------------------------------------------------------


def create_session(
    team_id: int,
    user_id: int | None,
    feature_name: str,
    description: str | None = None,
    rerun_of: int | None = None,
    brain: str | None = None,
) -> ExecutionSession:
    """Create an active session with its seven `pending` tasks (see `lifecycle.create`)."""
    return lifecycle.create(team_id, user_id, feature_name, description, rerun_of, brain).value


def end_session(session_id: int, ended_by: int | None = None) -> ExecutionSession:
    """End an active session now (see `lifecycle.end`)."""
    return lifecycle.end(session_id, ended_by).value


def fail_session(session_id: int, reason: str) -> bool:
    """Mark an active session `error` with `reason` (see `lifecycle.fail_session`)."""
    return lifecycle.fail_session(session_id, reason).value


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


def start_session(session_id: int, created: ExecutionSession | None = None) -> celery.AsyncResult:
    """Apply the session's chain from its current stage; store and return the chain's handle.

    Idempotent: a session that already has a chain gets its handle back instead of a second chain.
    `created` is the session `lifecycle.create` has just returned (the web's POST /sessions): its
    row and its tasks are known without reading them again, so starting it costs one UPDATE, or
    nothing at all when `create` already stored the chain id it was given (`reserve_chain_id`):
    the chain is then sent under that id.
    """
    _outside_transaction("start_session")
    reserved = None
    if created is not None and created.id == session_id and not created.rerun_of_id:
        session = created
        reserved = created.celery_chain_id
        tasks = {
            role: AgentTask(session=session_id, agent_role=role, task_description=description)
            for role, description in lifecycle.task_descriptions(session.feature_name).items()
        }
    else:
        found = ExecutionSession.get_or_none(ExecutionSession.id == session_id)
        if found is None:
            raise SessionNotFound(session_id)
        session = found
        if session.celery_chain_id:
            return celery.AsyncResult(session.celery_chain_id, app=app)
        tasks = _tasks_by_role(session.id)
    if session.status != "active":
        raise SessionAlreadyEnded(session_id)
    stages = _stages(session.id, tasks)[session.current_stage :]
    if reserved:
        # The chain's handle is its last step's: sent under the id the row already holds.
        stages[-1].set(task_id=reserved)
    result = celery.chain(*stages).apply_async()
    if not reserved:
        session.celery_chain_id = result.id
        ExecutionSession.update(celery_chain_id=result.id).where(ExecutionSession.id == session_id).execute()
    return result


def reserve_chain_id() -> str:
    """A new chain id, for `lifecycle.create(..., chain_id=...)` before `start_session(id, created)`."""
    return str(uuid.uuid4())  # as the canvas makes its ids


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
        _stage_gate([{"session_id": session_id, "stage": stage}], lambda: False)  # sends the rest itself
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


# --- running one task -----------------------------------------------------------------------


def _test_hooks(role: str) -> None:
    """Test-only fault injection (SAGE_ENV=test): `SAGE_TEST_AGENT_SLEEP=dba=3,security=1`."""
    if os.environ.get("SAGE_ENV") != "test":
        return
    marker_dir = os.environ.get("SAGE_TEST_MARKER_DIR")
    if marker_dir:
        with open(os.path.join(marker_dir, f"{role}.{os.getpid()}.{time.time():.3f}"), "w"):
            pass
    seconds = _test_sleep(role)
    if seconds:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # short steps, so a time limit can interrupt it
            time.sleep(0.05)


def _test_sleep(role: str) -> float:
    """How long `_test_hooks` makes `role` sleep (0: not at all; then it runs like a slow brain)."""
    if os.environ.get("SAGE_ENV") != "test":
        return 0.0
    for item in os.environ.get("SAGE_TEST_AGENT_SLEEP", "").split(","):
        name, _, seconds = item.partition("=")
        if name.strip() == role and seconds:
            return float(seconds)
    return 0.0


def _result(task: AgentTask) -> dict[str, Any]:
    """What a role's task returns (and the chain passes on): small, and the same on every delivery,
    except `"advanced": True` from the completion that moved the session to the next stage itself
    (`lifecycle._seal`), which tells the stage gate to only send (a redelivery does not say it, and
    the gate's `advance` finds the move made)."""
    result = {
        "session_id": task.session_id,
        "stage": task.stage,
        "task_id": task.id,
        "agent_role": task.agent_role,
        "status": task.status,
    }
    if getattr(task, "advanced", False):
        result["advanced"] = True
    return result


def execute_role(self: celery.BoundTask, role: str, session_id: int, task_description: str, context_data: dict) -> dict:
    """The body shared by the seven actors: claim, think, record; retry or fail on error.

    Returns `_result(task)`; a message that must not run (session ended, stage not reached,
    task claimed by another live message) raises `Ignore`, so nothing after it starts.
    """
    resume = parking.resumed()
    if resume is not None:
        return resume()  # back from a parked model call: only the continuation runs, not the claim
    request = self.request
    started = time.monotonic()
    attempt = 0
    agent = None
    thinking = None
    failure: BaseException | None = None

    def run(claim: lifecycle.Claim) -> lifecycle.Completion | None:
        """Inside the claim's transaction: an agent that answers at once is run and recorded there
        (`lifecycle.claim_role`); a model brain only starts its call, which runs after the commit."""
        nonlocal attempt, agent, thinking, failure
        session, task, context = claim
        logs.bind(session_id=session_id, task_id=task.id, agent_role=role)  # reset after the message
        attempt = task.retry_count  # what the claim counted this attempt as
        try:
            agent = make_agent(role, _brain_for(session, task))
            agent.set_context(context)
            if isinstance(agent.brain, ModelBrain):
                _test_hooks(role)
                thinking = agent.brain.athink(role, task_description, agent.context)
                return None
            if not getattr(agent.brain, "instant", False) or _test_sleep(role):
                return None  # runs after the claim commits: it must not hold the session's lock
            _test_hooks(role)
            output = agent.execute_task(task_description)
        except (Exception, TimeLimitExceeded) as exc:  # noqa: BLE001 - recorded by `_fail` after the claim commits
            failure = exc
            return None
        return _completion(self, agent, output, attempt, time.monotonic() - started)

    # One locked read finds the task and claims it (a duplicate message may find the task waiting
    # for its retry: the claim keeps counting attempts from the row).
    claimed = lifecycle.claim_role(session_id, role, request.id, request.retries, context_data, run).value
    if claimed is None:
        logger.warning("no %s task in session %s; dropping message", role, session_id)
        raise celery.Ignore()
    if isinstance(claimed, AgentTask):
        return _result(claimed)  # done by an earlier delivery: same answer, so the barrier fills
    if isinstance(claimed, str):
        logs.bind(session_id=session_id, agent_role=role)  # reset after the message
        logger.info("%s of session %s not run: %s", role, session_id, claimed)
        raise celery.Ignore()
    if isinstance(claimed, lifecycle.Completed):
        logger.info("completed in %.3f s", time.monotonic() - started)
        return _result(claimed.task)
    session, task, _ = claimed
    if failure is not None or agent is None:
        _fail(self, task, attempt, failure or RuntimeError("the agent did not start"), _calls(agent))
        raise AssertionError("not reached: _fail raises")
    brained = agent
    if thinking is None:  # a brain that takes its time, without a model call to park
        try:
            _test_hooks(role)
            output = brained.execute_task(task_description)
        except (Exception, TimeLimitExceeded) as exc:
            _fail(self, task, attempt, exc, _calls(brained))
            raise  # not reached: _fail raises
        return _complete(self, session, task, brained, output, attempt, time.monotonic() - started)

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


def _completion(self, agent, output: dict, attempt: int, elapsed: float) -> lifecycle.Completion:
    """What `lifecycle` records of an agent's answer, with the snapshot's execution metadata."""
    request = self.request
    settings = get_settings()
    metadata = {
        "attempt_seconds": round(elapsed, 3),
        "attempt": attempt + 1,
        "retries": attempt,
        "worker": {"host": _HOST, "pid": os.getpid(), "thread": threading.current_thread().name},
        "message_id": request.id,
        "chain_id": request.chain_id,
        "time_limit_seconds": settings.task_time_limit_seconds,
        "brain": output["brain"],
        **({"model": agent.brain.record()} if hasattr(agent.brain, "record") else {}),
    }
    return lifecycle.Completion(output, [c.value for c in agent.capabilities], metadata, _calls(agent))


def _complete(self, session, task, agent, output: dict, attempt: int, elapsed: float) -> dict:
    """Record the agent's output (`lifecycle.complete`) and return the task's result for the chain."""
    completion = _completion(self, agent, output, attempt, elapsed)
    done = lifecycle.complete(task, self.request.id, completion.output, agent.context, *completion[1:]).value
    if done is None:
        logger.info("%s of session %s finished by another delivery; dropping this result", task.agent_role, session.id)
        return _result(AgentTask.get_by_id(task.id))
    logger.info("completed in %.3f s with %d decisions", elapsed, len(output["decisions"]))
    return _result(done)


_HOST = socket.gethostname()


def _stage_gate(results: list[Any], send: Any) -> None:
    """The gate of every stage's barrier: `lifecycle.advance`, then stage i + 1.

    Called by the canvas middleware once a stage's group has all its members (or after a stage of
    one task), with their results. `send` enqueues the rest of the chain inside the advance's
    transaction; when it has nothing to send (a stage run without a chain behind it: a message
    sent by hand, or `resend_stage`), the remaining stages start as a new chain.
    """
    heads = [r for r in results if isinstance(r, dict) and "session_id" in r and "stage" in r]
    if not heads:
        return
    session_id, stage = heads[0]["session_id"], heads[0]["stage"]

    def send_next() -> None:
        if not send():
            celery.chain(*_stages(session_id, _tasks_by_role(session_id))[stage + 1 :]).apply_async()

    if any(r.get("advanced") for r in heads):
        send_next()  # the stage's last completion moved the session on in its own transaction
        return
    lifecycle.advance(session_id, stage, send_next)


def _fail(self, task: AgentTask, attempt: int, exc: BaseException, calls: list[dict] | None = None) -> None:
    """Record a failed attempt (`lifecycle.fail`); raise Retry with the exact delay (or the
    endpoint's longer `Retry-After`), or re-raise once the task and session are in error."""
    delays = get_settings().retry_delays_seconds
    if isinstance(exc, BrainError):
        error = str(exc)  # already one line for the user, naming the brain and model
    else:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    failure = lifecycle.fail(
        task, self.request.id, attempt, error, delays, getattr(exc, "retry_after", None), calls
    ).value
    if failure.retry_in is not None:
        logger.info(
            "%s of session %s failed (%s); retry %d in %ss",
            task.agent_role,
            task.session_id,
            error,
            attempt + 1,
            failure.retry_in,
        )
        self.retry(exc=exc if isinstance(exc, Exception) else None, countdown=failure.retry_in, max_retries=len(delays))
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
    "TASK_DESCRIPTIONS",
    "SessionAlreadyEnded",
    "SessionNotFound",
    "create_session",
    "end_session",
    "resend_stage",
    "reserve_chain_id",
    "start_session",
]

"""The session lifecycle, with one owner (ARCHITECTURE.md decisions 2, 3 and 12).

Create, claim, complete, fail (retry or error), advance (the stage gate), finish and end live
here and nowhere else. The web, the workers (`actors.pipeline`), reruns and the sweeper call
these functions; each runs its own transaction, returns what it did together with the events it
wrote (`Outcome`), and hands those events to the one publisher
(`models.events.publish_committed`) after its commit, so nothing is ever announced that was not
stored. Call them inside a database connection but outside any transaction.

At-least-once delivery is made harmless here:

- a task claims its row with a conditional UPDATE: `pending -> running`, or `running` again by
  the same message id (Redis redelivers a dead worker's message under its id, so a row left
  `running` by a killed worker is re-claimable by exactly that message and by no duplicate);
- a claim or completion locks the session row only at the end of its transaction, after its
  task's own writes (`_seal`), so the tasks of a stage run side by side and take turns only for
  that last part; there the checks "is the session still active" (a claim) and "is every task
  of my stage completed" (the finish) are statements that start after the lock is held, so they
  see every committed change of the other members. Everything that locks a task and its session
  takes the task first (a failure and the sweeper's abandon too), so the order is one;
- completion and failure are conditional on this message's claim, so a duplicate delivery
  records nothing;
- the stage advances by a compare-and-set `current_stage = i -> i + 1` that only succeeds when
  every task of stage i is completed; the caller's `send` (the broker lives in `actors/`) runs
  inside that transaction, so a crash can duplicate the next stage's messages (turned away by
  the claims) but never lose them.

Cost per task (bench/lifecycle_cost.py counts it): a claim is one read of session and task that
also brings the agent's context, one UPDATE ... RETURNING, one INSERT of its event (which takes
the session's lock and checks the session) and the COMMIT; a completion is one INSERT of the
decisions, one UPDATE ... RETURNING (which also counts what the finish check needs), one INSERT
of the snapshot, the session's lock when it adds usage or may finish the session, one INSERT of
its event(s) and the COMMIT. BEGIN travels with the first statement (`models.db.PostgresDatabase`).
An agent that answers at once (the knowledge base) is run inside its claim's transaction
(`claim_role`'s `run`): its completion shares the claim's events INSERT and COMMIT, so a task is
one transaction of five statements. The hot statements are prebuilt SQL whose rows
become models directly (`_instance`): Peewee's query building cost more than the statements.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

import peewee
from peewee import SQL

from models.brains import add_calls, add_session_usage, default_brain, session_usage_change
from models.compare import same_text
from models.db import db, reconnecting
from models.db import execute_prepared as _prepared
from models.events import SessionMoved, publish_committed, record_events, record_events_moving, to_json
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
from models.serialize import iso, session_dict, snapshot_dict, task_decision_dict, task_dict

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=peewee.Model)
Events = list[dict[str, Any]]
LAST_STAGE = len(PIPELINE) - 1

TASK_DESCRIPTIONS = {
    "architect": "Plan {feature}",
    "backend_dev": "Implement the backend of {feature}",
    "dba": "Design the database of {feature}",
    "frontend_dev": "Implement the frontend of {feature}",
    "ui_ux": "Design the UI of {feature}",
    "security": "Audit the security of {feature}",
    "it_admin": "Plan the deployment of {feature}",
}


def task_descriptions(feature_name: str) -> dict[str, str]:
    """Each role's task description in a new session of `feature_name` (as `create` stores them)."""
    return {role: TASK_DESCRIPTIONS[role].format(feature=feature_name) for role in AGENT_ROLES}


class SessionNotFound(LookupError):
    """No session with that id (the web layer answers 404)."""


class SessionAlreadyEnded(Exception):
    """The session is no longer active (the web layer answers 409)."""


class NotRerunnable(ValueError):
    """The rerun asked for cannot be built (unknown role, or an upstream task never completed)."""


class Outcome(NamedTuple, Generic[T]):
    """What a lifecycle function did (`value`) and the events it stored and then published."""

    value: T
    events: Events


def _outside_transaction(what: str) -> None:
    if db.in_transaction():
        raise RuntimeError(f"{what} must run outside a transaction: it publishes events after its own commit")


def _done(value: T, events: Events) -> Outcome[T]:
    """After the commit: publish what the transaction stored, and report both."""
    publish_committed(events)
    return Outcome(value, events)


#: The session row's lock, as prebuilt SQL: it runs for many tasks, and building the same query
#: with Peewee each time costs more than running it.
_LOCK_SQL = "SELECT * FROM execution_sessions WHERE id = %s FOR NO KEY UPDATE"


def _locked_session(session_id: int) -> ExecutionSession | None:
    if isinstance(db.obj, peewee.PostgresqlDatabase):
        return next(iter(ExecutionSession.raw(_LOCK_SQL, session_id)), None)
    return ExecutionSession.select().where(ExecutionSession.id == session_id).for_update("FOR NO KEY UPDATE").first()  # type: ignore[arg-type]


def _lock_tasks(which: Any) -> None:
    """Lock task rows (the lock a task's own UPDATE takes), before the session's: one lock order."""
    AgentTask.select(AgentTask.id).where(which).for_update("FOR NO KEY UPDATE").execute()  # type: ignore[arg-type]


def _columns(model: type[peewee.Model], alias: str) -> str:
    """The select list of all of `model`'s columns under `alias`, in field order (for `_instance`)."""
    return ", ".join(f'"{alias}"."{f.column_name}"' for f in model._meta.sorted_fields)


def _instance(model: type[ModelT], values: Any) -> ModelT:
    """A row of `_columns(model, ...)` as the instance Peewee would build from it. psycopg2 already
    returns datetimes and decoded JSON, so there is nothing to convert; this skips Peewee's query
    building and row wrapping, which cost more than the statement on the hot path (a task's claim
    and completion run for every task)."""
    instance: Any = model(__no_default__=1)
    instance.__data__ = dict(zip(model._meta.sorted_field_names, values, strict=True))
    instance._dirty = set()
    return instance


# --- event payloads -------------------------------------------------------------------------


def task_payload(task: AgentTask, decisions: list[TaskDecision] | list[dict[str, Any]] | None = None) -> dict:
    """The `task` of an event: the row as `Task`, without repeating what the event carries elsewhere.

    The agent's decisions are in `task.decisions` (the rows, with ids and `based_on`) and, in the
    agent's own shape (keys, `based_on_keys`), in the event's `snapshot.decisions`; so the event's
    `task.output_data` leaves its `decisions` out (docs/api.md, "What events carry").
    """
    shape = task_dict(task, [d for d in decisions or [] if not isinstance(d, dict)])
    shape["decisions"] += [d for d in decisions or [] if isinstance(d, dict)]
    output = shape["output_data"]
    if isinstance(output, dict) and "decisions" in output:
        shape["output_data"] = {k: v for k, v in output.items() if k != "decisions"}
    return shape


#: Snapshot fields an `agent_task_completed` event leaves out because its `task` has them.
_CONTEXT_IN_TASK = ("task_description", "feature_name", "description")


#: An agent decision's fields that its stored row holds too (agent name -> row name).
_DECISION_IN_ROW = {
    "text": "decision_text",
    "rationale": "rationale",
    "category": "category",
    "confidence": "confidence",
    "based_on": "based_on",
}


def snapshot_payload(snapshot: AgentSnapshot | None, rows: list[dict[str, Any]] | None = None) -> dict | None:
    """The `snapshot` of an event: the stored snapshot minus what its `task` already says.

    `context_state` leaves out the task description, feature and description (`task.input_data`
    has them); each of `decisions` whose row is among `rows` (the event's `task.decisions`)
    leaves out the fields that row holds (`text` is its `decision_text`; `rationale`,
    `category`, `confidence` and `based_on` have the same names), and keeps its `id`, `key` and
    anything else of its own. A decision is only shortened when its row says exactly the same,
    so a client rebuilds the stored snapshot exactly; GET /sessions/{id}/timeline serves it whole.
    """
    shape = snapshot_dict(snapshot)
    if shape is None:
        return None
    shape["context_state"] = {k: v for k, v in (shape["context_state"] or {}).items() if k not in _CONTEXT_IN_TASK}
    by_id = {row["id"]: row for row in rows or []}
    decisions = []
    for decision in shape["decisions"] or []:
        row = by_id.get(decision.get("id")) if isinstance(decision, dict) else None
        if row is not None and all(decision.get(a) == row[r] and a in decision for a, r in _DECISION_IN_ROW.items()):
            decision = {k: v for k, v in decision.items() if k not in _DECISION_IN_ROW}
        decisions.append(decision)
    shape["decisions"] = decisions
    return shape


def _user_decisions(task_id: int, count: int) -> list[TaskDecision]:
    """Decisions users added to a task (a query only when there are any)."""
    if not count:
        return []
    return list(
        TaskDecision.select()
        .where((TaskDecision.agent_task == task_id) & (TaskDecision.source != "agent"))
        .order_by(TaskDecision.id)
    )


# --- create, end, finish --------------------------------------------------------------------


#: `create` on PostgreSQL, in one statement: the session row (its `last_seq` already 1), its seven
#: tasks and its `session_started` event (seq 1, the payload's `session.id` filled in from the new
#: row), plus the transaction id that the COMMIT would otherwise ask for (`models.db`). A
#: data-modifying CTE's inserts run in order and the tasks' and the event's foreign keys are
#: checked at the end of the statement, when the session row exists.
_CREATE_SQL = (
    "WITH s AS (INSERT INTO execution_sessions (team_id, user_id, feature_name, description, status,"
    " current_stage, last_seq, celery_chain_id, rerun_of_id, started_at, created_at, brain)"
    " VALUES (%s, %s, %s, %s, 'active', 0, 1, %s, %s, %s, %s, %s) RETURNING id),"
    " t AS (INSERT INTO agent_tasks (session_id, agent_role, stage, task_description, status, retry_count,"
    " created_at) SELECT s.id, v.role, v.stage, v.text, 'pending', 0, %s FROM s,"
    " (VALUES {tasks}) AS v (role, stage, text)),"
    " e AS (INSERT INTO session_events (session_id, seq, type, payload, created_at)"
    " SELECT s.id, 1, 'session_started', jsonb_set(%s::jsonb, '{{session,id}}', to_jsonb(s.id)), %s FROM s)"
    " SELECT s.id, txid_current() FROM s"
)


def create(
    team_id: int,
    user_id: int | None,
    feature_name: str,
    description: str | None = None,
    rerun_of: int | None = None,
    brain: str | None = None,
    chain_id: str | None = None,
) -> Outcome[ExecutionSession]:
    """Create an active session with its seven `pending` tasks and `session_started`.

    `brain` names the brain of every agent (default: `SAGE_BRAIN`, else the knowledge base);
    the caller has checked that it is configured (`models.brains.usable_brain`). `chain_id`, when
    given, is stored as the session's `celery_chain_id`: the id the caller's chain will be sent
    under right after this commit (`actors.pipeline.start_session(id, created)`), so starting it
    needs no second write. On PostgreSQL this is one statement and the COMMIT (`_CREATE_SQL`).
    """
    _outside_transaction("create")
    now = utcnow()
    session = ExecutionSession(
        team=team_id,
        user=user_id,
        feature_name=feature_name,
        description=description,
        rerun_of=rerun_of,
        brain=brain or default_brain(),
        celery_chain_id=chain_id,
        started_at=now,
        created_at=now,
    )
    descriptions = task_descriptions(feature_name)
    if not isinstance(db.obj, peewee.PostgresqlDatabase):
        with db.atomic():
            session.save(force_insert=True)
            AgentTask.insert_many(
                [
                    {"session": session.id, "agent_role": role, "stage": STAGE_OF_ROLE[role], "task_description": text}
                    for role, text in descriptions.items()
                ]
            ).execute()
            events = record_events(session.id, [("session_started", {"session": session_dict(session)})])
        return _done(session, events)
    payload = {"session": session_dict(session)}
    params: list[Any] = [team_id, user_id, feature_name, description, chain_id, rerun_of, now, now, session.brain, now]
    for role, text in descriptions.items():
        params += [role, STAGE_OF_ROLE[role], text]
    params += [to_json(payload), now]
    sql = _CREATE_SQL.format(tasks=", ".join(["(%s, %s::integer, %s)"] * len(descriptions)))
    with db.atomic():
        session.id, xid = db.execute_sql(sql, params).fetchone()
        note = getattr(db.obj, "known_transaction_id", None)
        if note is not None:
            note(xid)
    session.last_seq = 1
    payload["session"]["id"] = session.id
    event = {**payload, "type": "session_started", "seq": 1, "at": iso(now), "session_id": session.id}
    return _done(session, [event])


def _finish(
    session: ExecutionSession,
    status: str,
    error: str | None = None,
    task_id: int | None = None,
    *,
    end_reason: str | None = None,
    ended_by: int | None = None,
) -> tuple[tuple[str, dict[str, Any]], dict[str, Any]]:
    """Set the final status on a locked, active session (inside its transaction); returns the
    event to record and the row's new fields, which the caller writes with it in one statement
    (`record_events(..., sets=fields)`). `end_reason` defaults to the status; an early end passes
    "user"."""
    now = utcnow()
    session.status = status
    session.end_reason = end_reason or status
    session.ended_by_id = ended_by
    session.ended_at = now
    session.duration_seconds = round((now - session.started_at).total_seconds(), 3)
    session.error_message = error
    fields = {
        "status": status,
        "end_reason": session.end_reason,
        "ended_by": ended_by,
        "ended_at": now,
        "duration_seconds": session.duration_seconds,
        "error_message": error,
    }
    if status == "completed":
        return ("session_completed", {"session": session_dict(session)}), fields
    return ("session_error", {"error": error, "task_id": task_id}), fields


def end(session_id: int, ended_by: int | None = None) -> Outcome[ExecutionSession]:
    """End an active session now: `completed` with `end_reason` "user"; tasks not yet started never
    run, tasks already running finish and are recorded but start nothing after them.

    Emits `session_completed`. Raises SessionNotFound, or SessionAlreadyEnded if it is not active.
    """
    _outside_transaction("end")
    with db.atomic():
        session = _locked_session(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        if session.status != "active":
            raise SessionAlreadyEnded(session_id)
        event, fields = _finish(session, "completed", end_reason="user", ended_by=ended_by)
        events = record_events(session_id, [event], sets=fields)
    return _done(session, events)


def fail_session(session_id: int, reason: str) -> Outcome[bool]:
    """Mark an active session `error` with `reason` (e.g. its pipeline could not be queued).

    Emits `session_error`; the value is False when the session was not active any more.
    """
    _outside_transaction("fail_session")
    with db.atomic():
        session = _locked_session(session_id)
        if session is None or session.status != "active":
            return Outcome(False, [])
        event, fields = _finish(session, "error", reason)
        events = record_events(session_id, [event], sets=fields)
    return _done(True, events)


def abandon(session_id: int, cutoff: dt.datetime, now: dt.datetime) -> Outcome[str | None]:
    """The sweeper's end of a stalled session: when it is still active and has had no event since
    `cutoff`, mark its running tasks and itself `error`. The value is the reason, or None when the
    session moved or ended since the sweeper looked."""
    from peewee import fn

    from models.schema import SessionEvent

    _outside_transaction("abandon")
    with db.atomic():
        _lock_tasks(AgentTask.session == session_id)  # the tasks first, then their session (see `_seal`)
        session = _locked_session(session_id)
        last = SessionEvent.select(fn.MAX(SessionEvent.created_at)).where(SessionEvent.session == session_id).scalar()
        if session is None or session.status != "active" or (last is not None and last >= cutoff):
            return Outcome(None, [])
        stuck = list(
            AgentTask.select().where(
                (AgentTask.session == session_id)
                & (AgentTask.stage == session.current_stage)
                & (AgentTask.status != "completed")
            )
        )
        roles = ", ".join(f"{t.agent_role} ({t.status})" for t in stuck) or "none"
        silent = int((now - last).total_seconds()) if last else 0
        reason = f"no progress for {silent} s at stage {session.current_stage}: {roles}"
        AgentTask.update(status="error", completed_at=now, error_message=f"abandoned: {reason}").where(
            (AgentTask.session == session_id) & (AgentTask.status == "running")
        ).execute()
        event, fields = _finish(session, "error", reason, stuck[0].id if stuck else None)
        events = record_events(session_id, [event], sets=fields)
    return _done(reason, events)


# --- claim ----------------------------------------------------------------------------------

# The agent's whole context, read with the claim's row: its completed upstream outputs and
# the session decisions, as JSON arrays ("t1" is the claimed task in the claim's query).
_UPSTREAM_SQL = (
    "(SELECT coalesce(json_agg(json_build_array(u.agent_role, u.id, u.output_data) ORDER BY u.id), '[]') "
    'FROM agent_tasks u WHERE u.session_id = "t1"."session_id" AND u.stage < "t1"."stage" '
    "AND u.status = 'completed') AS upstream_rows"
)
_DECISIONS_SQL = (
    "(SELECT coalesce(json_agg(json_build_array(d.id, d.decision_text, d.category, d.confidence) ORDER BY d.id), "
    '\'[]\') FROM session_decisions d WHERE d.session_id = "t1"."session_id") AS decision_rows'
)


def context(session: ExecutionSession, role: str) -> dict[str, Any]:
    """What the agent sees: the feature, the user's session decisions, completed upstream outputs
    (two queries; a claim on PostgreSQL reads them with its row instead)."""
    stage = STAGE_OF_ROLE[role]
    upstream_rows = [
        (t.agent_role, t.id, t.output_data)
        for t in AgentTask.select()
        .where((AgentTask.session == session.id) & (AgentTask.stage < stage) & (AgentTask.status == "completed"))
        .order_by(AgentTask.id)
    ]
    decision_rows = [
        (d.id, d.decision_text, d.category, d.confidence)
        for d in SessionDecision.select().where(SessionDecision.session == session.id).order_by(SessionDecision.id)
    ]
    return _context_of(session, upstream_rows, decision_rows)


def _context_of(session: ExecutionSession, upstream_rows: Any, decision_rows: Any) -> dict[str, Any]:
    upstream = {r: {"task_id": i, "output": o} for r, i, o in upstream_rows}
    return {
        "feature_name": session.feature_name,
        "description": session.description,
        "session_decisions": [{"id": i, "text": t, "category": c, "confidence": k} for i, t, c, k in decision_rows],
        "upstream": {r: upstream[r] for r in AGENT_ROLES if r in upstream},
    }


# The claim's read for a role's message, prebuilt: the task, its session and the agent's context in
# one statement (what `_claim`'s Peewee query builds, without building it). It locks nothing: the
# session's lock is taken at the end of the claim's transaction (`_seal`).
_CLAIM_ROLE_SQL = (
    f"SELECT {_columns(AgentTask, 't1')}, {_columns(ExecutionSession, 't2')}, {_UPSTREAM_SQL}, {_DECISIONS_SQL} "
    'FROM "agent_tasks" AS "t1" INNER JOIN "execution_sessions" AS "t2" ON ("t1"."session_id" = "t2"."id") '
    'WHERE "t1"."session_id" = %s AND "t1"."agent_role" = %s'
)

#: Wait (outside any transaction) until a stage advance holding the session's lock commits.
_WAIT_FOR_ADVANCE_SQL = "SELECT 1 FROM execution_sessions WHERE id = %s FOR SHARE"
_TASK_WIDTH = len(AgentTask._meta.sorted_fields)
_SESSION_WIDTH = len(ExecutionSession._meta.sorted_fields)


def _returned(sql: str, params: tuple, *extra: str) -> Any:
    """The task row an UPDATE ... RETURNING `_columns(AgentTask)` and `extra` gave (as attributes),
    or None when it matched no row."""
    found = _prepared(sql, params).fetchone()
    if found is None:
        return None
    task: Any = _instance(AgentTask, found[:_TASK_WIDTH])
    for name, value in zip(extra, found[_TASK_WIDTH:], strict=True):
        setattr(task, name, value)
    return task


def _claim_role_row(session_id: int, role: str) -> Any:
    """The task, with `.session` and its context rows (`upstream_rows`, `decision_rows`), or None."""
    found = _prepared(_CLAIM_ROLE_SQL, (session_id, role)).fetchone()
    if found is None:
        return None
    task: Any = _instance(AgentTask, found[:_TASK_WIDTH])
    task.session = _instance(ExecutionSession, found[_TASK_WIDTH : _TASK_WIDTH + _SESSION_WIDTH])
    task._dirty = set()
    task.upstream_rows, task.decision_rows = found[_TASK_WIDTH + _SESSION_WIDTH :]
    return task


class Claim(NamedTuple):
    session: ExecutionSession
    task: AgentTask
    context: dict[str, Any]


class Completion(NamedTuple):
    """What an agent produced, for `complete` (or for `claim_role`'s `run`, in the claim's own
    transaction): its output, capabilities, the snapshot's metadata and the model calls paid for."""

    output: dict[str, Any]
    capabilities: list[str]
    metadata: dict[str, Any]
    calls: list[dict[str, Any]] | None = None


class Completed(NamedTuple):
    """`claim_role`'s value when its `run` finished the task in the claim's transaction."""

    claim: Claim
    task: AgentTask


# The claim's UPDATE, returning the row and how many decisions users added to it (read only when
# there are any: `agent_task_started` carries the task's decisions).
_CLAIM_SQL = (
    "UPDATE agent_tasks SET status = 'running', started_at = coalesce(started_at, %s), celery_task_id = %s, "
    "retry_count = %s, input_data = %s::jsonb "
    "WHERE id = %s AND (status = 'pending' OR (status = 'running' AND celery_task_id = %s)) "
    f"RETURNING {_columns(AgentTask, 'agent_tasks')}, "
    "(SELECT count(*) FROM task_decisions d WHERE d.agent_task_id = agent_tasks.id) AS n_decisions"
)


@reconnecting(idempotent=True)  # a repeated claim by the same message is a re-claim
def claim(task_id: int, message_id: str | None, attempt: int, context_data: dict) -> Outcome[Claim | str]:
    """Claim the task for this message: the value is a `Claim` to run, or the reason not to run."""
    _outside_transaction("claim")
    claimed = _claim(AgentTask.id == task_id, message_id, lambda row: attempt, context_data, completed_ok=False)
    assert not isinstance(claimed.value, AgentTask) and claimed.value is not None
    return claimed  # type: ignore[return-value]


@reconnecting(idempotent=True)  # a repeated claim by the same message is a re-claim
def claim_role(
    session_id: int,
    role: str,
    message_id: str | None,
    retries: int,
    context_data: dict,
    run: Callable[[Claim], Completion | None] | None = None,
) -> Outcome[Claim | Completed | AgentTask | str | None]:
    """`claim` for a role's message, which finds its task in the claim's own read (the
    worker's path: one query fewer than reading the task first). The value is a `Claim` to run;
    the task row itself when an earlier delivery completed it (the message answers the same
    result again, so its barrier fills); None when the session has no such task; else the reason
    not to run. The attempt is `retries` (the message's count), or the row's own `retry_count`
    when a duplicate message finds the task waiting for its retry and that count is higher.

    `run(claim)`, when given, is called inside the claim's transaction, before it takes the
    session's lock: an agent that answers at once (the knowledge base: well under a millisecond)
    returns its `Completion`, which is recorded as `complete` would, in the same transaction, and
    the value is `Completed`. One transaction, lock, event INSERT, COMMIT and publish per task
    instead of two; `agent_task_started` and `agent_task_completed` are stored and sent together. When
    `run` returns None (it will wait on a model, or it failed and will record the failure with
    `fail`), only the claim is committed and the value is the `Claim`, as without `run`. `run`
    must not raise: a rollback would undo the claim it is reporting on.
    """
    _outside_transaction("claim_role")
    return _claim(
        (AgentTask.session == session_id) & (AgentTask.agent_role == role),
        message_id,
        lambda row: max(retries, row.retry_count) if row.status == "pending" else retries,
        context_data,
        completed_ok=True,
        run=run,
        by_role=(session_id, role),
    )


class _StageAhead(Exception):
    """The claim read its session one stage behind its task: the advance that sent the message
    has not committed yet."""


class _NotActive(Exception):
    """`_seal` found the session ended (or moved on) under its lock: roll the claim back."""

    def __init__(self, session: ExecutionSession) -> None:
        super().__init__(session.status)
        self.session = session


def _claim(
    which: Any,
    message_id: str | None,
    attempt_of: Callable[[AgentTask], int],
    context_data: dict,
    completed_ok: bool,
    run: Callable[[Claim], Completion | None] | None = None,
    by_role: tuple[int, str] | None = None,
) -> Outcome[Claim | Completed | AgentTask | str | None]:
    try:
        return _claim_once(which, message_id, attempt_of, context_data, completed_ok, run, by_role, wait=True)
    except _StageAhead as ahead:
        # A stage's messages are sent inside the transaction of its advance (`advance`), so a
        # worker may read the session before that commits: wait for the advance's lock, once.
        db.execute_sql(_WAIT_FOR_ADVANCE_SQL, (ahead.args[0],))
    return _claim_once(which, message_id, attempt_of, context_data, completed_ok, run, by_role, wait=False)


def _claim_once(
    which: Any,
    message_id: str | None,
    attempt_of: Callable[[AgentTask], int],
    context_data: dict,
    completed_ok: bool,
    run: Callable[[Claim], Completion | None] | None,
    by_role: tuple[int, str] | None,
    wait: bool,
) -> Outcome[Claim | Completed | AgentTask | str | None]:
    fused = isinstance(db.obj, peewee.PostgresqlDatabase)
    extra = [SQL(_UPSTREAM_SQL), SQL(_DECISIONS_SQL)] if fused else []
    try:
        with db.atomic():
            # Task, session and context in one read, without a lock: the stage's other tasks claim
            # and run side by side, and the session's lock is taken only at the end (`_seal`),
            # where the session must still be active at this stage. The context's reads see the
            # upstream tasks as they were when this statement began, which holds all of them: they
            # committed before the stage gate that sent this message did.
            if fused and by_role is not None:
                row = _claim_role_row(*by_role)
            else:
                row = AgentTask.select(AgentTask, ExecutionSession, *extra).join(ExecutionSession).where(which).first()
            if row is None:
                return Outcome(None if completed_ok else "task no longer exists", [])
            if completed_ok and row.status == "completed":
                return Outcome(row, [])
            task_id = row.id
            attempt = attempt_of(row)
            session = row.session
            if session.status != "active":
                return Outcome(f"session is {session.status}", [])  # final: no session is active again
            if session.current_stage < row.stage and wait:
                raise _StageAhead(session.id)
            if session.current_stage != row.stage:
                return Outcome(f"session is at stage {session.current_stage}, task belongs to {row.stage}", [])
            seen = (
                _context_of(session, row.upstream_rows, row.decision_rows)
                if fused
                else context(session, row.agent_role)
            )
            input_data = {
                "task_description": row.task_description,
                "context_data": context_data,
                "feature_name": session.feature_name,
                "description": session.description,
                "upstream_task_ids": {r: u["task_id"] for r, u in seen["upstream"].items()},
                "session_decision_ids": [d["id"] for d in seen["session_decisions"]],
            }
            claimed = _returned(
                _CLAIM_SQL, (utcnow(), message_id, attempt, to_json(input_data), task_id, message_id), "n_decisions"
            )
            if claimed is None:
                return Outcome(f"task is {row.status} (claimed by {row.celery_task_id})", [])
            decisions = []
            if claimed.n_decisions:  # users wrote some before it started
                decisions = list(
                    TaskDecision.select().where(TaskDecision.agent_task == task_id).order_by(TaskDecision.id)
                )
            written = [("agent_task_started", {"task": task_payload(claimed, decisions)})]
            claim = Claim(session, claimed, seen)
            value: Claim | Completed = claim
            completion = run(claim) if run is not None else None
            done = usage = None
            if completion is not None:
                done, finished, usage = _record_completion(claimed, message_id, completion, seen)
                written += finished
                value = Completed(claim, done)
            events = _seal(session.id, row.stage, written, claiming=True, done=done, usage=usage)
    except _NotActive as moved:
        return Outcome(f"session is {moved.session.status}", [])
    return _done(value, events)


_UNFINISHED_SQL = (
    "SELECT count(*) FROM agent_tasks WHERE session_id = %s AND stage = %s AND id <> %s AND status <> 'completed'"
)


def _seal(
    session_id: int,
    stage: int,
    written: list[tuple[str, dict[str, Any]]],
    *,
    claiming: bool,
    done: AgentTask | None = None,
    usage: tuple[dict | None, dict | None] | None = None,
) -> Events:
    """The end of a claim's or completion's transaction, the only part that holds the session
    row's lock (from here to the COMMIT), so the tasks of a stage run side by side and take turns
    only for this: a claim checks that the session is still active at its stage (else
    `_NotActive`), an attempt's model calls are added to the session's usage, the last task of
    the last stage finishes the session, and the events get their seqs.

    The lock comes after the task row's own writes: every transaction that locks both a task and
    its session (claim, completion, failure, the sweeper's abandon) takes them in that order.
    Without a finish to decide, the events' own statement takes the lock, makes the claim's check
    (`active_at`), moves a finished stage on (`advance_from`) and, on PostgreSQL, adds the model
    usage to the session's totals (`usage_change`): see `record_events_moving`. Only the last
    stage's tasks (and, elsewhere than PostgreSQL, a completion with usage) read the locked row.
    """
    last = done is not None and done.stage == LAST_STAGE
    task: Any = done  # carries `unfinished` from its UPDATE, and gets `advanced`
    postgres = isinstance(db.obj, peewee.PostgresqlDatabase)
    # The stage's last completion moves the session on itself, in this transaction, once it sees
    # every other task of the stage completed; its stage gate then only sends the next stage's
    # messages (its result says `advanced`). Two tasks completing at the same moment may each
    # still see the other unfinished: then neither moves, and the gate's `advance` does.
    if not last and (usage is None or postgres):
        try:
            events, moved = record_events_moving(
                session_id,
                written,
                stage if claiming else None,
                None if done is None else done.stage,
                usage_change=None if usage is None else session_usage_change(*usage),
            )
        except SessionMoved:
            raise _NotActive(ExecutionSession.get_by_id(session_id)) from None
        if done is not None and moved:
            task.advanced = True
        return events
    session = _locked_session(session_id)
    assert session is not None  # a task's session outlives it (ON DELETE CASCADE)
    if claiming and (session.status != "active" or session.current_stage != stage):
        raise _NotActive(session)
    # What changes on the session row is written by the events' own statement (`sets`).
    sets: dict[str, Any] = {}
    if usage is not None:
        session.usage = sets["usage"] = add_session_usage(session.usage, *usage)
    if done is not None and session.status == "active" and session.current_stage == done.stage:
        # `unfinished` was counted before this transaction held the lock; a statement that starts
        # now sees every other task of the stage that committed before it (they all take the lock).
        unfinished = task.unfinished and _prepared(_UNFINISHED_SQL, (session_id, done.stage, done.id)).fetchone()[0]
        if not unfinished and last:
            event, fields = _finish(session, "completed")
            written.append(event)
            sets.update(fields)
        elif not unfinished:
            session.current_stage = sets["current_stage"] = done.stage + 1
            task.advanced = True
    return record_events(session_id, written, sets=sets)


# --- complete -------------------------------------------------------------------------------

# The completion's UPDATE, conditional on this message's claim; it also returns how many tasks of
# the stage are still unfinished (for the last stage's finish) and how many decisions users added.
_COMPLETE_SQL = (
    "UPDATE agent_tasks SET status = 'completed', completed_at = %s, "
    "duration_seconds = round(extract(epoch FROM (%s - started_at))::numeric, 3), error_message = NULL, "
    "output_data = %s::jsonb, usage = coalesce(%s::jsonb, usage) "
    "WHERE id = %s AND status = 'running' AND celery_task_id = %s "
    f"RETURNING {_columns(AgentTask, 'agent_tasks')}, "
    "(SELECT count(*) FROM agent_tasks o WHERE o.session_id = agent_tasks.session_id "
    "AND o.stage = agent_tasks.stage AND o.id <> agent_tasks.id AND o.status <> 'completed') AS unfinished, "
    "(SELECT count(*) FROM task_decisions d WHERE d.agent_task_id = agent_tasks.id AND d.source <> 'agent') "
    "AS n_user_decisions"
)


# A completion's decisions and snapshot, prebuilt (see `_instance`).
_DECISION_VALUES = "(%s, 'agent', %s, %s, %s, %s, %s::jsonb, %s)"
_INSERT_DECISIONS_SQL = (
    "INSERT INTO task_decisions (agent_task_id, source, decision_text, rationale, category, confidence, based_on, "
    "created_at) VALUES {values} RETURNING " + _columns(TaskDecision, "task_decisions").replace("{", "{{")
)
_INSERT_SNAPSHOT_SQL = (
    "INSERT INTO agent_snapshots (agent_task_id, agent_role, context_state, capabilities, decisions, "
    "execution_metadata, created_at) VALUES (%s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb, %s) RETURNING id"
)


class _Superseded(Exception):
    """Another delivery finished the task first: roll this completion back."""


def _add_usage(session: ExecutionSession, task_id: int, before: dict | None, calls: list[dict]) -> dict | None:
    """Inside the transaction, with the session locked: add an attempt's calls to the task and session."""
    after = add_calls(before, calls)
    if after is not before:
        AgentTask.update(usage=after).where(AgentTask.id == task_id).execute()
        session.usage = add_session_usage(session.usage, before, after)
        ExecutionSession.update(usage=session.usage).where(ExecutionSession.id == session.id).execute()
    return after


@reconnecting(idempotent=True)  # completion is conditional on this message's claim
def complete(
    task: AgentTask,
    message_id: str | None,
    output: dict[str, Any],
    seen: dict[str, Any],
    capabilities: list[str],
    metadata: dict[str, Any],
    calls: list[dict[str, Any]] | None = None,
) -> Outcome[AgentTask | None]:
    """Record a claimed task's result: its decisions, output, snapshot and `agent_task_completed`,
    and finish the session when this was the last task. `seen` is the context the agent was given
    (`Claim.context`), `metadata` the snapshot's `execution_metadata` (this adds the times).

    The value is the completed row, or None when another delivery had finished the task (then
    nothing is written).
    """
    _outside_transaction("complete")
    try:
        with db.atomic():
            done, written, usage = _record_completion(
                task, message_id, Completion(output, capabilities, metadata, calls), seen
            )
            events = _seal(task.session_id, done.stage, written, claiming=False, done=done, usage=usage)
    except _Superseded:
        return Outcome(None, [])
    return _done(done, events)


def _record_completion(
    task: AgentTask, message_id: str | None, completion: Completion, seen: dict[str, Any]
) -> tuple[AgentTask, list[tuple[str, dict[str, Any]]], tuple[dict | None, dict | None] | None]:
    """`complete`'s writes to the task, before its transaction takes the session's lock (`_seal`):
    the completed row, its event, and the task's usage before and after the attempt's model calls
    (None without calls). Raises `_Superseded` when the task is no longer this message's."""
    now = utcnow()
    output, calls = completion.output, completion.calls
    upstream_ids = {
        d["key"]: d["id"]
        for u in seen.get("upstream", {}).values()
        for d in (u.get("output") or {}).get("decisions", [])
        if "id" in d
    }
    rows: list[TaskDecision] = []
    postgres = isinstance(db.obj, peewee.PostgresqlDatabase)
    if output["decisions"]:
        for decision in output["decisions"]:
            decision["based_on"] = sorted({upstream_ids[k] for k in decision["based_on_keys"] if k in upstream_ids})
    if output["decisions"] and postgres:
        params: list[Any] = []
        for d in output["decisions"]:
            params += [
                task.id,
                d["text"],
                d["rationale"],
                d["category"],
                d["confidence"],
                to_json(d["based_on"]),
                now,
            ]
        values = ", ".join([_DECISION_VALUES] * len(output["decisions"]))
        found = _prepared(_INSERT_DECISIONS_SQL.format(values=values), params).fetchall()
        rows = sorted((_instance(TaskDecision, r) for r in found), key=lambda r: r.id)
        for decision, made in zip(output["decisions"], rows, strict=True):
            decision["id"] = made.id
    elif output["decisions"]:
        rows = sorted(
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
            .returning(TaskDecision)
            .execute(),
            key=lambda r: r.id,
        )
        # Ids are assigned in VALUES order.
        for decision, made in zip(output["decisions"], rows, strict=True):
            decision["id"] = made.id
    # The attempt's model calls go into the completion's own UPDATE. The usage they add to is the
    # one the claim returned: only the message holding the claim writes a task's usage
    # (completion and failure are both conditional on it).
    usage = add_calls(task.usage, calls) if calls else task.usage
    added = to_json(usage) if usage is not task.usage else None
    done = _returned(
        _COMPLETE_SQL, (now, now, to_json(output), added, task.id, message_id), "unfinished", "n_user_decisions"
    )
    if done is None:
        raise _Superseded
    shot = {
        "agent_task": task.id,
        "agent_role": task.agent_role,
        "context_state": {
            "task_description": task.task_description,
            "feature_name": seen.get("feature_name"),
            "description": seen.get("description"),
            "session_decisions": seen.get("session_decisions", []),
            "upstream": {
                r: {"task_id": u["task_id"], "summary": (u.get("output") or {}).get("summary")}
                for r, u in seen.get("upstream", {}).items()
            },
        },
        "capabilities": completion.capabilities,
        "decisions": output["decisions"],
        "execution_metadata": {
            "started_at": done.started_at.isoformat() + "Z",
            "completed_at": now.isoformat() + "Z",
            "duration_seconds": done.duration_seconds,
            **completion.metadata,
        },
        "created_at": now,
    }
    if postgres:
        encoded = [to_json(shot[k]) for k in ("context_state", "capabilities", "decisions", "execution_metadata")]
        (shot["id"],) = _prepared(_INSERT_SNAPSHOT_SQL, [task.id, task.agent_role, *encoded, now]).fetchone()
        snapshot: Any = AgentSnapshot(__no_default__=1)
        snapshot.__data__, snapshot._dirty = shot, set()
    else:
        snapshot = AgentSnapshot.create(**shot)
    decisions = _user_decisions(task.id, done.n_user_decisions) + rows
    decisions.sort(key=lambda d: d.id)
    shown = task_payload(done, decisions)
    payload = {"task": shown, "snapshot": snapshot_payload(snapshot, shown["decisions"])}
    return done, [("agent_task_completed", payload)], ((task.usage, usage) if added is not None else None)


# --- fail -----------------------------------------------------------------------------------


class Failure(NamedTuple):
    retry_in: float | None  # seconds until the retry, or None when the task ended in error
    recorded: bool  # False when the task was no longer this message's (nothing changed)


@reconnecting(idempotent=True)  # the failure is conditional on this message's claim
def fail(
    task: AgentTask,
    message_id: str | None,
    attempt: int,
    error: str,
    delays: tuple[float, ...] | list[float],
    retry_after: float | None = None,
    calls: list[dict[str, Any]] | None = None,
) -> Outcome[Failure]:
    """Record a failed attempt (and the model calls it paid for): back to `pending` for a retry in
    `delays[attempt]` seconds (or the endpoint's longer `retry_after`) with `agent_task_retrying`,
    or, after the last retry or once the session is not active, `error` for the task and session.
    """
    _outside_transaction("fail")
    now = utcnow()
    retry_in = None
    recorded = False
    with db.atomic():
        _lock_tasks(AgentTask.id == task.id)  # the task first, then its session (see `_seal`)
        session = _locked_session(task.session_id)
        assert session is not None  # a task's session outlives it (ON DELETE CASCADE)
        mine = (AgentTask.id == task.id) & (AgentTask.status == "running") & (AgentTask.celery_task_id == message_id)
        if calls:
            held = AgentTask.select(AgentTask.usage).where(AgentTask.id == task.id).scalar()
            _add_usage(session, task.id, held, calls)
        written: list[tuple[str, dict[str, Any]]] = []
        finished: dict[str, Any] = {}  # the session row's fields when this failure ends it
        if attempt < len(delays) and session.status == "active":
            retry_in = delays[attempt]
            if retry_after and retry_after > retry_in:
                retry_in = round(retry_after, 3)  # the endpoint asked for longer: honour it
            back = next(
                iter(
                    AgentTask.update(status="pending", retry_count=attempt + 1, error_message=error)
                    .where(mine)
                    .returning(AgentTask)
                    .execute()
                ),
                None,
            )
            if back is not None:
                recorded = True
                decisions = list(
                    TaskDecision.select().where(TaskDecision.agent_task == task.id).order_by(TaskDecision.id)
                )
                written.append(
                    (
                        "agent_task_retrying",
                        {"task": task_payload(back, decisions), "error": error, "retry_in_seconds": retry_in},
                    )
                )
        else:
            assert task.started_at is not None  # set when this attempt claimed the task
            recorded = bool(
                AgentTask.update(
                    status="error",
                    completed_at=now,
                    duration_seconds=round((now - task.started_at).total_seconds(), 3),
                    error_message=error,
                    retry_count=attempt,
                )
                .where(mine)
                .execute()
            )
            if session.status == "active":
                reason = f"{task.agent_role} failed after {attempt} retries: {error}"
                event, finished = _finish(session, "error", reason, task.id)
                written.append(event)
        events = record_events(session.id, written, sets=finished)
    return _done(Failure(retry_in, recorded), events)


# --- advance (the stage gate) ---------------------------------------------------------------

_ADVANCE_SQL = (
    "UPDATE execution_sessions SET current_stage = %s "
    "WHERE id = %s AND current_stage = %s AND status = 'active' AND NOT EXISTS "
    "(SELECT 1 FROM agent_tasks t WHERE t.session_id = %s AND t.stage = %s AND t.status <> 'completed')"
)


@reconnecting(idempotent=True)  # a compare-and-set: once moved, running it again changes nothing
def advance(session_id: int, stage: int, send: Callable[[], Any]) -> Outcome[bool]:
    """The gate of a stage's barrier: the compare-and-set `current_stage = stage -> stage + 1`,
    made only when the session is active and every task of `stage` is completed; then `send()`
    (the next stage's messages, from `actors/`) inside the same transaction. The value is
    whether this call moved the session. The last stage never advances: its final completion
    finishes the session (`complete`).

    One UPDATE: it waits for the session row's lock and rechecks the stage and status on the row's
    newest version. Its task check reads the tasks as they were when the statement began, which
    already holds every completion of the stage (the gate runs after its members committed);
    a completion that commits later calls the gate again through its own barrier.
    """
    _outside_transaction("advance")
    if stage >= LAST_STAGE:
        return Outcome(False, [])
    with db.atomic():
        if isinstance(db.obj, peewee.PostgresqlDatabase):
            moved = _prepared(_ADVANCE_SQL, (stage + 1, session_id, stage, session_id, stage)).rowcount
        else:
            unfinished = (
                AgentTask.select()
                .where(
                    (AgentTask.session == session_id) & (AgentTask.stage == stage) & (AgentTask.status != "completed")
                )
                .exists()
            )
            moved = 0
            if not unfinished:
                moved = (
                    ExecutionSession.update(current_stage=stage + 1)
                    .where(
                        (ExecutionSession.id == session_id)
                        & (ExecutionSession.current_stage == stage)
                        & (ExecutionSession.status == "active")
                    )
                    .execute()
                )
        if moved:
            send()
        elif isinstance(db.obj, peewee.PostgresqlDatabase):
            # The stage's last completion may have moved the session itself (`_seal`) and then
            # lost its sending (its worker died before its gate ran, and this is the redelivery's
            # gate, whose result does not say it moved): send while no task of the next stage has
            # been claimed. A duplicate is harmless: each task's claim lets it run once.
            if _prepared(_MOVED_UNSENT_SQL, (session_id, stage + 1, session_id, stage + 1)).fetchone():
                send()
    return Outcome(bool(moved), [])


_MOVED_UNSENT_SQL = (
    "SELECT 1 FROM execution_sessions WHERE id = %s AND status = 'active' AND current_stage = %s AND NOT EXISTS "
    "(SELECT 1 FROM agent_tasks t WHERE t.session_id = %s AND t.stage = %s AND t.status <> 'pending')"
)


# --- reruns ---------------------------------------------------------------------------------


def _remap_output(output: dict[str, Any], decision_ids: dict[int, int], session_ids: dict[int, int]) -> dict[str, Any]:
    output = dict(output)
    decisions = []
    for decision in output.get("decisions", []):
        decision = dict(decision)
        decision["based_on"] = [decision_ids.get(i, i) for i in decision.get("based_on", [])]
        decision["based_on_session_decisions"] = [
            session_ids.get(i, i) for i in decision.get("based_on_session_decisions", [])
        ]
        decisions.append(decision)
    output["decisions"] = decisions
    if "provenance" in output:
        provenance = dict(output["provenance"])
        provenance["session_decisions"] = [session_ids.get(i, i) for i in provenance.get("session_decisions", [])]
        output["provenance"] = provenance
    return output


def create_rerun(
    session_id: int,
    from_role: str | None = None,
    user_id: int | None = None,
    decisions: list[dict[str, Any]] | None = None,
    brain: str | None = None,
) -> Outcome[ExecutionSession]:
    """Create (not start) a rerun of a session: a new session with `rerun_of`, copies of the
    completed tasks of every stage before `from_role`'s (output, decisions, snapshot, each copy's
    `rerun_of` at its original) and pending tasks from that stage on.

    `decisions` (each `{decision_text, category?, confidence?}`) replaces the session decisions;
    None copies the original's. Emits `session_started` and an `agent_task_completed` per copy.
    """
    _outside_transaction("create_rerun")
    if from_role is not None and from_role not in AGENT_ROLES:
        raise NotRerunnable(f"unknown role {from_role!r}; roles: {', '.join(AGENT_ROLES)}")
    original = ExecutionSession.get_or_none(ExecutionSession.id == session_id)
    if original is None:
        raise SessionNotFound(session_id)
    from_stage = STAGE_OF_ROLE[from_role] if from_role else 0
    originals = {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == session_id)}
    written: list[tuple[str, dict[str, Any]]] = []
    with db.atomic():
        rerun = ExecutionSession.create(
            team=original.team_id,
            user=user_id if user_id is not None else original.user_id,
            feature_name=original.feature_name,
            description=original.description,
            rerun_of=original.id,
            current_stage=from_stage,
            brain=brain or original.brain,
        )
        old_decisions = list(
            SessionDecision.select().where(SessionDecision.session == session_id).order_by(SessionDecision.id)
        )
        if decisions is None:
            given = [
                {
                    "decision_text": d.decision_text,
                    "category": d.category,
                    "confidence": d.confidence,
                    "user": d.user_id,
                }
                for d in old_decisions
            ]
        else:
            author = user_id if user_id is not None else original.user_id
            given = [{**d, "user": author} for d in decisions]
        # A kept decision (same text) stands for its original in the copied stages' provenance;
        # a removed or edited one is still cited by them with its original id: what they saw.
        by_text = {same_text(d.decision_text): d for d in old_decisions}
        session_ids = {}
        for decision in given:
            copy = SessionDecision.create(
                session=rerun,
                user=decision["user"],
                decision_text=decision["decision_text"],
                category=decision.get("category"),
                confidence=decision.get("confidence") or "high",
            )
            kept = by_text.get(same_text(copy.decision_text))
            if kept is not None:
                session_ids[kept.id] = copy.id
        written.append(("session_started", {"session": session_dict(rerun)}))
        decision_ids: dict[int, int] = {}
        for role in AGENT_ROLES:
            old = originals[role]
            if old.stage >= from_stage:
                AgentTask.create(
                    session=rerun,
                    agent_role=role,
                    stage=old.stage,
                    task_description=old.task_description,
                    rerun_of=old.id,
                )
                continue
            if old.status != "completed":
                raise NotRerunnable(f"{role} of session {session_id} is {old.status}; rerun from an earlier role")
            task = AgentTask.create(
                session=rerun,
                agent_role=role,
                stage=old.stage,
                task_description=old.task_description,
                status="completed",
                input_data=old.input_data,
                started_at=old.started_at,
                completed_at=old.completed_at,
                duration_seconds=old.duration_seconds,
                retry_count=old.retry_count,
                rerun_of=old.id,
            )
            copies = []
            for made in TaskDecision.select().where(TaskDecision.agent_task == old.id).order_by(TaskDecision.id):
                made_copy = TaskDecision.create(
                    agent_task=task,
                    user=made.user_id,
                    source=made.source,
                    decision_text=made.decision_text,
                    rationale=made.rationale,
                    category=made.category,
                    confidence=made.confidence,
                    based_on=[decision_ids.get(i, i) for i in made.based_on or []],
                )
                decision_ids[made.id] = made_copy.id
                copies.append(made_copy)
            output = _remap_output(old.output_data or {}, decision_ids, session_ids)
            output["decisions"] = [{**d, "id": decision_ids.get(d.get("id"), d.get("id"))} for d in output["decisions"]]
            AgentTask.update(output_data=output).where(AgentTask.id == task.id).execute()
            task.output_data = output
            snapshot = None
            old_snapshot = (
                AgentSnapshot.select()
                .where(AgentSnapshot.agent_task == old.id)
                .order_by(AgentSnapshot.id.desc())
                .first()
            )
            if old_snapshot is not None:
                snapshot = AgentSnapshot.create(
                    agent_task=task,
                    agent_role=role,
                    context_state=old_snapshot.context_state,
                    capabilities=old_snapshot.capabilities,
                    decisions=output["decisions"],
                    execution_metadata={**(old_snapshot.execution_metadata or {}), "copied_from_task": old.id},
                )
            shown = task_payload(task, copies)
            written.append(
                ("agent_task_completed", {"task": shown, "snapshot": snapshot_payload(snapshot, shown["decisions"])})
            )
        events = record_events(rerun.id, written)
    return _done(rerun, events)


__all__ = [
    "TASK_DESCRIPTIONS",
    "Claim",
    "Failure",
    "NotRerunnable",
    "Outcome",
    "SessionAlreadyEnded",
    "SessionNotFound",
    "abandon",
    "advance",
    "claim",
    "claim_role",
    "complete",
    "context",
    "create",
    "create_rerun",
    "end",
    "fail",
    "fail_session",
    "iso",
    "snapshot_payload",
    "task_decision_dict",
    "task_descriptions",
    "task_payload",
]

"""The lifecycle's locking (models/lifecycle.py, `_seal`): a claim or completion holds the session
row's lock only at the end of its transaction, so a stage's tasks run side by side; what the lock
used to guard for the whole transaction still holds: an end in between wins, exactly one task
finishes the session, and a message read before its stage's advance committed waits for it."""

from __future__ import annotations

import threading

import psycopg2
import pytest
from test_lifecycle import output_for, run_task

from models import AgentTask, ExecutionSession, SessionEvent, lifecycle
from models.db import db

#: How long a thread that should not be blocked may take (a deadlock detector, not a timing).
NOT_BLOCKED_SECONDS = 15


class InThread:
    """Run `func` in a thread with its own database connection; keeps its value or error."""

    def __init__(self, func, *args) -> None:
        self.value = self.error = None

        def target() -> None:
            with db.connection_context():
                try:
                    self.value = func(*args)
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def result(self, timeout: float = NOT_BLOCKED_SECONDS):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "blocked: still waiting"
        if self.error is not None:
            raise self.error
        return self.value


def held_run(role: str, entered: threading.Event, release: threading.Event):
    """A `claim_role` run that stops inside the claim's transaction until `release` is set."""

    def run(claim: lifecycle.Claim) -> lifecycle.Completion:
        entered.set()
        assert release.wait(NOT_BLOCKED_SECONDS * 2), "never released"
        return lifecycle.Completion(output_for(role), ["DESIGN"], {})

    return run


def instant(role: str):
    return lambda claim: lifecycle.Completion(output_for(role), ["DESIGN"], {})


def at_stage(team, user, stage: int) -> int:
    """A session whose stages before `stage` are done and advanced."""
    session_id = lifecycle.create(team.id, user.id, "Chat").value.id
    for done, roles in enumerate((("architect",), ("backend_dev", "dba"), ("frontend_dev", "ui_ux"))[:stage]):
        for role in roles:
            run_task(session_id, role, f"m-{role}")
        assert ExecutionSession.get_by_id(session_id).current_stage == done + 1  # moved by its last completion
    return session_id


def seqs(session_id: int) -> list[int]:
    return [e.seq for e in SessionEvent.select().where(SessionEvent.session == session_id).order_by(SessionEvent.seq)]


def test_a_stages_two_tasks_claim_and_complete_side_by_side(personal_team, user):
    session_id = at_stage(personal_team, user, 1)
    entered, release = threading.Event(), threading.Event()
    first = InThread(
        lifecycle.claim_role, session_id, "backend_dev", "m-b", 0, {}, held_run("backend_dev", entered, release)
    )
    assert entered.wait(NOT_BLOCKED_SECONDS)
    try:
        # The backend's transaction is open, its task claimed and its completion written: the
        # database task of the same stage does not wait for it.
        second = InThread(lifecycle.claim_role, session_id, "dba", "m-d", 0, {}, instant("dba")).result()
        assert isinstance(second.value, lifecycle.Completed)
    finally:
        release.set()
    assert isinstance(first.result().value, lifecycle.Completed)
    statuses = {t.agent_role: t.status for t in AgentTask.select().where(AgentTask.session == session_id)}
    assert statuses["backend_dev"] == statuses["dba"] == "completed"
    assert seqs(session_id) == list(range(1, len(seqs(session_id)) + 1))  # no gap, no duplicate
    # The backend's completion, written after the database task's commit, saw it completed and
    # moved the session on; the database task's, which saw the backend running, did not.
    assert ExecutionSession.get_by_id(session_id).current_stage == 2
    assert getattr(first.result().value.task, "advanced", False)
    assert not getattr(second.value.task, "advanced", False)


def test_the_last_two_tasks_finishing_together_finish_the_session_once(personal_team, user, monkeypatch):
    session_id = at_stage(personal_team, user, 3)
    claims = {}
    for role in ("security", "it_admin"):
        task = AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == role))
        claims[role] = lifecycle.claim(task.id, f"m-{role}", 0, {}).value
    at_seal, release = threading.Event(), threading.Event()
    seal = lifecycle._seal

    def held_seal(session, stage, written, **kw):
        if kw.get("done") is not None and kw["done"].agent_role == "security":
            at_seal.set()  # its completion is written (and counted it_admin unfinished)
            assert release.wait(NOT_BLOCKED_SECONDS * 2)
        return seal(session, stage, written, **kw)

    monkeypatch.setattr(lifecycle, "_seal", held_seal)

    def complete(role: str):
        claim = claims[role]
        return lifecycle.complete(claim.task, f"m-{role}", output_for(role), claim.context, [], {})

    security = InThread(complete, "security")
    assert at_seal.wait(NOT_BLOCKED_SECONDS)
    try:
        # it_admin completes while security's completion is uncommitted: it must not finish.
        done = InThread(complete, "it_admin").result()
        assert [e["type"] for e in done.events] == ["agent_task_completed"]
        assert ExecutionSession.get_by_id(session_id).status == "active"
    finally:
        release.set()
    # security counted it_admin unfinished before it held the lock; under the lock it counts again.
    assert [e["type"] for e in security.result().events] == ["agent_task_completed", "session_completed"]
    assert ExecutionSession.get_by_id(session_id).status == "completed"
    types = [e.type for e in SessionEvent.select().where(SessionEvent.session == session_id)]
    assert types.count("session_completed") == 1


def test_a_session_ended_while_a_claim_runs_rolls_the_claim_back(personal_team, user):
    session_id = lifecycle.create(personal_team.id, user.id, "Chat").value.id
    entered, release = threading.Event(), threading.Event()
    claim = InThread(
        lifecycle.claim_role, session_id, "architect", "m-a", 0, {}, held_run("architect", entered, release)
    )
    assert entered.wait(NOT_BLOCKED_SECONDS)
    try:
        ended = InThread(lifecycle.end, session_id, user.id).result()  # the claim holds no session lock
        assert ended.value.status == "completed"
    finally:
        release.set()
    # The end committed first: the claim, checked under the lock at its end, is as if it came after.
    assert claim.result() == ("session is completed", [])
    task = AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == "architect"))
    assert task.status == "pending" and task.started_at is None
    types = [e.type for e in SessionEvent.select().where(SessionEvent.session == session_id).order_by(SessionEvent.seq)]
    assert types == ["session_started", "session_completed"]


def test_a_claim_read_before_its_stages_advance_committed_waits_for_it(personal_team, user, settings, wait):
    session_id = lifecycle.create(personal_team.id, user.id, "Chat").value.id
    run_task(session_id, "architect", "m-architect")
    # The stage gate's advance, open on another connection, as when a worker fetches the next
    # stage's message (sent inside that transaction) before its COMMIT.
    advance = psycopg2.connect(settings.database_url)
    try:
        with advance.cursor() as cur:
            cur.execute("UPDATE execution_sessions SET current_stage = 1 WHERE id = %s", (session_id,))
        claim = InThread(lifecycle.claim_role, session_id, "dba", "m-d", 0, {}, instant("dba"))

        def claim_waits() -> bool:
            with db.connection_context():
                return bool(db.execute_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0])

        wait(claim_waits)
        advance.commit()
    finally:
        advance.close()
    assert isinstance(claim.result().value, lifecycle.Completed)
    assert AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == "dba")).status == "completed"


@pytest.mark.parametrize("stage", [0, 2])
def test_a_message_for_a_later_stage_is_still_turned_away(personal_team, user, stage):
    session_id = at_stage(personal_team, user, stage)
    assert lifecycle.claim_role(session_id, "security", "m-s", 0, {}, instant("security")) == (
        f"session is at stage {stage}, task belongs to 3",
        [],
    )
    assert AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == "security")).status == "pending"

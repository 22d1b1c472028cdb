"""The worker pool of `python -m actors worker`: it outlives a killed child and stops gracefully."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import BOTH_BROKERS

from actors import pipeline
from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent

pytestmark = pytest.mark.integration


def start_sessions(team, user, count: int) -> list[int]:
    ids = []
    for n in range(count):
        session = pipeline.create_session(team.id, user.id, f"Feature {n}", "pool test")
        pipeline.start_session(session.id)
        ids.append(session.id)
    return ids


def assert_each_task_ran_once(session_ids: list[int]) -> None:
    """Every session completed; every task completed once, with no retry used."""
    for session_id in session_ids:
        assert ExecutionSession.get_by_id(session_id).status == "completed", session_id
        tasks = list(AgentTask.select().where(AgentTask.session == session_id))
        assert [(t.status, t.retry_count) for t in tasks] == [("completed", 0)] * 7, session_id
        for task in tasks:
            assert AgentSnapshot.select().where(AgentSnapshot.agent_task == task.id).count() == 1
        types = [e.type for e in SessionEvent.select().where(SessionEvent.session == session_id)]
        assert types.count("agent_task_completed") == 7 and "agent_task_retrying" not in types


def test_a_sigkilled_child_is_replaced_and_the_pool_keeps_serving(
    personal_team, user, redis_actors, start_worker, wait
):
    supervisor = start_worker(processes=2, threads=2)
    start_worker.ready(2)
    first, second = wait(lambda: len(start_worker.children(supervisor)) == 2 and start_worker.children(supervisor))

    os.kill(first, signal.SIGKILL)
    replaced = wait(lambda: (now := start_worker.children(supervisor)) and len(now) == 2 and first not in now and now)
    assert second in replaced and supervisor.poll() is None

    sessions = start_sessions(personal_team, user, 4)
    wait(lambda: all(ExecutionSession.get_by_id(s).status != "active" for s in sessions), timeout=60)
    assert_each_task_ran_once(sessions)
    assert supervisor.poll() is None


@BOTH_BROKERS
def test_sigterm_lets_running_tasks_finish_before_the_worker_exits(
    personal_team, user, actors_broker, start_worker, wait
):
    supervisor = start_worker(threads=4, SAGE_TEST_AGENT_SLEEP="architect=1.5", WORKER_GRACE_SECONDS="20")
    start_worker.ready(1)
    sessions = start_sessions(personal_team, user, 4)
    # Counted in the database: the four start within a millisecond, so their marker files can collide.
    architects = AgentTask.select().where((AgentTask.session << sessions) & (AgentTask.agent_role == "architect"))
    wait(lambda: architects.where(AgentTask.status == "running").count() == 4, timeout=30)

    os.killpg(supervisor.pid, signal.SIGTERM)  # the whole group, as a terminal or a container stop does
    assert supervisor.wait(timeout=30) == 0
    assert [(t.status, t.retry_count) for t in architects] == [("completed", 0)] * 4
    # The stage sent while it drained was left to others: the draining worker took nothing new.
    later = AgentTask.select().where((AgentTask.session << sessions) & (AgentTask.agent_role != "architect"))
    assert {t.status for t in later} == {"pending"}

    start_worker(threads=4)  # the rest of each session runs on a fresh pool
    wait(lambda: all(ExecutionSession.get_by_id(s).status != "active" for s in sessions), timeout=60)
    assert_each_task_ran_once(sessions)
    starts = SessionEvent.select().where(
        (SessionEvent.session << sessions) & (SessionEvent.type == "agent_task_started")
    )
    assert sorted(e.payload["task"]["agent_role"] for e in starts).count("architect") == 4  # none ran twice


def test_the_children_of_a_sigkilled_supervisor_stop_themselves(start_worker, wait):
    supervisor = start_worker(processes=2, threads=1)
    start_worker.ready(2)
    children = wait(lambda: len(start_worker.children(supervisor)) == 2 and start_worker.children(supervisor))
    supervisor.kill()  # SIGKILL to the supervisor alone: nobody forwards a stop
    supervisor.wait()
    wait(lambda: not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in children), timeout=20)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its (dead) parent to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

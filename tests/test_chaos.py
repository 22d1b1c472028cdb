"""Chaos against the real worker pool and services: a child SIGKILLed, a SIGTERM during running
tasks, Redis killed and restarted empty, database connections terminated. Each asserts that no
session is lost or stuck and no task ran twice (completed, recorded or journaled more than once).

The figures (sessions completed, seconds to resume, failed requests) are printed; run with `-s`.
Redis is a private redis-server on a free port, never the shared one; pg_terminate_backend only
touches the test database's connections.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis as redis_lib
from conftest import HEARTBEAT_MS
from test_db_reconnect import terminate_backends
from test_redis_restart import PrivateRedis

from actors import pipeline
from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent, TaskDecision, db
from models.db import reconnecting
from models.settings import Settings

pytestmark = pytest.mark.integration

DEFAULT = Settings()  # the pool shape a plain `python -m actors worker` has
THINKING = "architect=0.3,backend_dev=0.5,dba=0.5,frontend_dev=0.5,ui_ux=0.5,security=0.3,it_admin=0.3"


def connected(func):
    """`func` for another thread, in a connection of its own that goes back to the pool after."""

    def run(*args, **kwargs):
        with db.connection_context():
            return func(*args, **kwargs)

    return run


def start_sessions(team, user, count: int) -> list[int]:
    ids = []
    for n in range(count):
        session = pipeline.create_session(team.id, user.id, f"Chaos {n}", "under fire")
        pipeline.start_session(session.id)
        ids.append(session.id)
    return ids


def running_tasks(session_ids: list[int]) -> int:
    return AgentTask.select().where((AgentTask.session << session_ids) & (AgentTask.status == "running")).count()


def finished(session_ids: list[int]) -> bool:
    return (
        not ExecutionSession.select()
        .where((ExecutionSession.id << session_ids) & (ExecutionSession.status == "active"))
        .exists()
    )


def assert_none_lost_stuck_or_twice(session_ids: list[int]) -> None:
    sessions = {s.id: s.status for s in ExecutionSession.select().where(ExecutionSession.id << session_ids)}
    assert sessions == dict.fromkeys(session_ids, "completed")  # none lost, none stuck, none failed
    tasks = list(AgentTask.select().where(AgentTask.session << session_ids))
    assert len(tasks) == 7 * len(session_ids)
    assert {(t.status, t.retry_count) for t in tasks} == {("completed", 0)}  # no retry used
    for task in tasks:
        [snapshot] = AgentSnapshot.select().where(AgentSnapshot.agent_task == task.id)  # recorded once
        assert TaskDecision.select().where(TaskDecision.agent_task == task.id).count() == len(snapshot.decisions)
    completions = [
        e.payload["task"]["id"]
        for e in SessionEvent.select().where(
            (SessionEvent.session << session_ids) & (SessionEvent.type == "agent_task_completed")
        )
    ]
    assert sorted(completions) == sorted(t.id for t in tasks)  # each completed exactly once


def report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\nchaos: {line}")


def test_a_child_sigkilled_in_the_default_pool_loses_nothing(
    personal_team, user, redis_actors, start_worker, wait, capsys
):
    supervisor = start_worker(
        processes=DEFAULT.worker_processes, threads=DEFAULT.worker_threads, SAGE_TEST_AGENT_SLEEP=THINKING
    )
    start_worker.ready(DEFAULT.worker_processes)
    sessions = start_sessions(personal_team, user, 20)
    wait(lambda: running_tasks(sessions) >= 4, timeout=30)

    victim = start_worker.children(supervisor)[0]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    wait(lambda: finished(sessions), timeout=90)
    took = time.monotonic() - killed
    assert supervisor.poll() is None and victim not in start_worker.children(supervisor)
    assert len(start_worker.children(supervisor)) == DEFAULT.worker_processes
    assert_none_lost_stuck_or_twice(sessions)
    report(
        capsys,
        f"SIGKILL of one of {DEFAULT.worker_processes} children: 20 of 20 sessions completed, {took:.1f} s after the kill",
    )


def test_sigterm_during_running_tasks_fails_none(personal_team, user, redis_actors, start_worker, wait, capsys):
    supervisor = start_worker(
        processes=DEFAULT.worker_processes,
        threads=DEFAULT.worker_threads,
        SAGE_TEST_AGENT_SLEEP="architect=1.5",
        WORKER_GRACE_SECONDS="20",
    )
    start_worker.ready(DEFAULT.worker_processes)
    sessions = start_sessions(personal_team, user, 8)
    wait(lambda: running_tasks(sessions) >= 4, timeout=30)  # a child may prefetch more than it runs

    running = {
        t.id for t in AgentTask.select().where((AgentTask.session << sessions) & (AgentTask.status == "running"))
    }
    os.killpg(supervisor.pid, signal.SIGTERM)
    assert supervisor.wait(timeout=40) == 0
    architects = list(AgentTask.select().where((AgentTask.session << sessions) & (AgentTask.agent_role == "architect")))
    assert {(t.status, t.retry_count) for t in architects if t.id in running} == {("completed", 0)}
    assert {t.status for t in architects} <= {"completed", "pending"}  # none left running or failed

    start_worker(processes=DEFAULT.worker_processes, threads=DEFAULT.worker_threads)
    wait(lambda: finished(sessions), timeout=60)
    assert_none_lost_stuck_or_twice(sessions)
    report(
        capsys,
        f"SIGTERM with {len(running)} tasks running: {len(running)} finished before exit, 0 failed,"
        " 8 of 8 sessions completed",
    )


@pytest.fixture
def private_broker(settings):
    """A private redis-server, and the actors bound to a broker on it."""
    from actors.broker import redis_broker, use_broker

    server = PrivateRedis()
    server.start()
    broker = redis_broker(settings.with_overrides(redis_url=server.url, heartbeat_timeout_ms=HEARTBEAT_MS))
    previous = use_broker(broker)
    yield server
    use_broker(previous)
    broker.close()
    server.stop()


def test_redis_killed_and_restarted_empty_strands_no_session(
    personal_team, user, private_broker, start_worker, wait, capsys
):
    server = private_broker
    env = {"REDIS_URL": server.url, "SAGE_TEST_AGENT_SLEEP": THINKING}
    start_worker(processes=DEFAULT.worker_processes, threads=DEFAULT.worker_threads, **env)
    probe = redis_lib.Redis.from_url(server.url)
    wait(lambda: probe.zcard("dramatiq:__heartbeats__") >= DEFAULT.worker_processes, timeout=30)
    probe.close()
    sessions = start_sessions(personal_team, user, 10)
    wait(lambda: running_tasks(sessions) >= 4, timeout=30)

    server.stop()  # SIGKILL: every queued, delayed and in-flight message is gone
    time.sleep(2.0)
    server.start()  # empty (no persistence)
    back = time.monotonic()
    wait(lambda: finished(sessions), timeout=60)
    took = time.monotonic() - back
    assert_none_lost_stuck_or_twice(sessions)
    report(
        capsys, f"Redis killed for 2 s and restarted empty: 10 of 10 sessions completed {took:.1f} s after it came back"
    )


async def test_terminated_database_connections_fail_no_request_and_use_no_retry(
    app, personal_team, user, login_as, redis_actors, start_worker, wait, capsys
):
    import asyncio

    start_worker(processes=DEFAULT.worker_processes, threads=DEFAULT.worker_threads, SAGE_TEST_AGENT_SLEEP=THINKING)
    start_worker.ready(DEFAULT.worker_processes)
    client = await login_as(user)
    own = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]  # the test's own reads stay up
    sessions = await asyncio.to_thread(connected(start_sessions), personal_team, user, 20)

    stop, terminated = threading.Event(), []

    def terminator() -> None:
        # Every backend of the test database, in use or idle, every 1.5 s: often enough to hit
        # requests and tasks mid-way, seldom enough that a retry (milliseconds) is not hit too.
        while not stop.wait(1.5):
            terminated.append(terminate_backends(keep=(own,)))

    thread = threading.Thread(target=terminator, daemon=True)
    thread.start()
    statuses = []
    try:
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(connected(reconnecting(finished)), sessions) and time.monotonic() < deadline:
            for path in (f"/sessions/{sessions[len(statuses) % 20]}", "/teams", f"/teams/{personal_team.id}/sessions"):
                statuses.append((await client.get(path)).status_code)
            response = await client.post(f"/sessions/{sessions[0]}/decisions", json={"decision_text": "keep going"})
            statuses.append(response.status_code)
    finally:
        stop.set()
        thread.join()
    failed = [s for s in statuses if s >= 500]
    assert failed == [] and set(statuses) == {200, 201}
    await asyncio.to_thread(connected(wait), lambda: finished(sessions), 30)
    assert_none_lost_stuck_or_twice(sessions)
    report(
        capsys,
        f"{sum(terminated)} connections terminated in {len(terminated)} rounds: "
        f"{len(failed)} of {len(statuses)} requests failed, 0 retries used, 20 of 20 sessions completed",
    )

"""Agents that wait on a model hold no worker thread (actors/parking.py), against the fake endpoint:
many calls in flight on one thread, the cap across processes, the time limit over the wait,
SIGKILL and SIGTERM with calls parked."""

from __future__ import annotations

import os
import signal

import pytest
from fake_llm import serve_openai

from actors import parking, pipeline
from actors.config import set_settings
from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent

KEY = "sk-test-parking-5e6f7a8b"


@pytest.fixture
def fake(monkeypatch):
    yield from serve_openai(monkeypatch, KEY)


def start_sessions(team, user, count: int) -> list[int]:
    ids = []
    for n in range(count):
        session = pipeline.create_session(team.id, user.id, f"Feature {n}", "parked calls", brain="openai")
        pipeline.start_session(session.id)
        ids.append(session.id)
    return ids


def all_finished(ids: list[int]):
    def finished():
        rows = list(ExecutionSession.select().where(ExecutionSession.id.in_(ids)))
        return rows if all(r.status != "active" for r in rows) else None

    return finished


def assert_each_task_recorded_once(ids: list[int]) -> None:
    for task in AgentTask.select().where(AgentTask.session.in_(ids)):
        assert task.status == "completed", (task.agent_role, task.error_message)
        assert AgentSnapshot.select().where(AgentSnapshot.agent_task == task.id).count() == 1
        completed = SessionEvent.select().where(
            (SessionEvent.session == task.session_id) & (SessionEvent.type == "agent_task_completed")
        )
        assert [e.payload["task"]["id"] for e in completed].count(task.id) == 1


def test_outside_a_parking_worker_park_waits_and_runs_the_continuation():
    async def answer():
        return 42

    assert parking.park(answer(), lambda outcome: outcome.result() + 1) == 43

    async def fails():
        raise ValueError("no")

    assert parking.park(fails(), lambda outcome: type(outcome.exception()).__name__) == "ValueError"


def test_one_worker_thread_carries_many_sessions_model_calls_at_once(
    fake, personal_team, user, redis_actors, start_worker, wait
):
    fake.latency = 1.5
    start_worker(threads=1, processes=1)
    start_worker.ready(1)
    ids = start_sessions(personal_team, user, 6)
    rows = wait(all_finished(ids), timeout=120)
    assert all(r.status == "completed" for r in rows), [r.error_message for r in rows]
    assert fake.peak >= 4  # one thread, yet the architects of (nearly) all six sessions at once
    assert_each_task_recorded_once(ids)


def test_the_cap_on_calls_in_flight_holds_across_two_worker_processes(
    fake, personal_team, user, redis_actors, start_worker, wait
):
    fake.latency = 0.5
    start_worker(threads=2, processes=2, SAGE_LLM_MAX_CONCURRENCY="3")
    start_worker.ready(2)
    ids = start_sessions(personal_team, user, 8)
    rows = wait(all_finished(ids), timeout=180)
    assert all(r.status == "completed" for r in rows), [r.error_message for r in rows]
    assert 2 <= fake.peak <= 3
    assert_each_task_recorded_once(ids)


def test_the_time_limit_covers_a_parked_call_that_hangs_and_the_retry_succeeds(
    fake, personal_team, user, stub_worker, wait, settings, monkeypatch
):
    set_settings(settings.with_overrides(task_time_limit_seconds=5.0))
    brain_for = pipeline._brain_for

    def no_own_deadline(session, task):
        brain = brain_for(session, task)
        brain.time_limit = None  # only the attempt's limit can end the wait now
        return brain

    monkeypatch.setattr(pipeline, "_brain_for", no_own_deadline)
    fake.plan = ["hang"]
    [session_id] = start_sessions(personal_team, user, 1)
    [row] = wait(all_finished([session_id]), timeout=60)
    assert row.status == "completed", row.error_message
    retrying = SessionEvent.select().where(
        (SessionEvent.session == session_id) & (SessionEvent.type == "agent_task_retrying")
    )
    [(role, error)] = [(e.payload["task"]["agent_role"], e.payload["error"]) for e in retrying]
    assert role == "architect" and error.startswith("TimeLimitExceeded"), error
    assert AgentTask.get((AgentTask.session == session_id) & (AgentTask.agent_role == "architect")).retry_count == 1


def test_a_worker_killed_with_calls_parked_loses_nothing_and_runs_each_task_once(
    fake, personal_team, user, redis_actors, start_worker, wait
):
    fake.latency = 3.0
    proc = start_worker(threads=1, processes=1)
    start_worker.ready(1)
    ids = start_sessions(personal_team, user, 3)
    wait(lambda: fake.in_flight >= 3, timeout=60)  # three calls parked on one thread
    [child] = start_worker.children(proc)
    os.kill(child, signal.SIGKILL)  # the supervisor starts another; the broker redelivers
    fake.latency = 0.2
    rows = wait(all_finished(ids), timeout=120)
    assert all(r.status == "completed" for r in rows), [r.error_message for r in rows]
    assert_each_task_recorded_once(ids)


def test_a_graceful_stop_waits_for_parked_calls(fake, personal_team, user, redis_actors, start_worker, wait):
    fake.latency = 3.0
    proc = start_worker(threads=1, processes=1)
    start_worker.ready(1)
    ids = start_sessions(personal_team, user, 2)
    wait(lambda: fake.in_flight >= 2, timeout=60)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    architects = AgentTask.select().where((AgentTask.session.in_(ids)) & (AgentTask.agent_role == "architect"))
    assert [t.status for t in architects] == ["completed", "completed"]

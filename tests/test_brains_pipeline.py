"""Sessions on a model brain through the real pipeline (stub broker, in-process worker, fake endpoint):
usage summed over every call of every attempt, the record in the snapshot, retries and failures."""

from __future__ import annotations

import json

import pytest
from fake_llm import serve_openai

from actors import pipeline
from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent
from models.events import channel, namespace

KEY = "sk-test-pipeline-0b1c2d3e"


@pytest.fixture
def fake(monkeypatch):
    yield from serve_openai(monkeypatch, KEY)


def run(team, user, wait, feature="Saved payment methods"):
    session = pipeline.create_session(team.id, user.id, feature, "store a card and charge it later", brain="openai")
    pipeline.start_session(session.id)

    def finished():
        row = ExecutionSession.get_by_id(session.id)
        return row if row.status != "active" else None

    return wait(finished, timeout=60)


def tasks_of(session_id: int) -> dict[str, AgentTask]:
    return {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == session_id)}


def test_a_session_on_the_openai_brain_records_prompts_answers_and_usage(
    fake, personal_team, user, stub_worker, wait, redis_client
):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(channel("*", namespace(redis_client)))
    session = run(personal_team, user, wait)
    assert session.status == "completed", session.error_message
    tasks = tasks_of(session.id)
    assert len(fake.requests) == 7

    totals = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    for task in tasks.values():
        usage = task.usage
        assert usage["provider"] == "openai" and usage["model"] == "fake-gpt" and usage["calls"] == 1
        [snapshot] = AgentSnapshot.select().where(AgentSnapshot.agent_task == task.id)
        model = snapshot.execution_metadata["model"]
        [call] = model["calls"]
        assert model["prompt_version"] == "v1" and model["context_trimmed"] == []
        assert call["messages"][0]["role"] == "system" and call["messages"][1]["role"] == "user"
        assert json.loads(call["answer"])["summary"] == task.output_data["summary"]
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
            call["prompt_tokens"],
            call["completion_tokens"],
        )
        assert usage["cost_usd"] == pytest.approx((call["prompt_tokens"] * 1 + call["completion_tokens"] * 2) / 1e6)
        assert usage["latency_ms"] == call["latency_ms"]
        assert snapshot.execution_metadata["brain"] == {"name": "openai", "version": "v1"}
        for key in ("calls", "prompt_tokens", "completion_tokens", "cost_usd"):
            totals[key] += usage[key]
    assert session.usage["calls"] == 7
    assert {k: session.usage[k] for k in ("calls", "prompt_tokens", "completion_tokens")} == {
        k: totals[k] for k in ("calls", "prompt_tokens", "completion_tokens")
    }
    assert session.usage["cost_usd"] == pytest.approx(totals["cost_usd"])

    # Progress went out on the session's channel while streaming, and was never stored.
    progress = []
    quiet = 0
    while quiet < 3:  # read until the channel has been quiet for a moment
        message = pubsub.get_message(timeout=0.1)
        quiet = quiet + 1 if message is None else 0
        if message is not None and json.loads(message["data"]).get("type") == "agent_task_progress":
            progress.append(json.loads(message["data"]))
    pubsub.close()
    assert {m["agent_role"] for m in progress} == set(tasks)
    assert all("seq" not in m and m["task_id"] == tasks[m["agent_role"]].id for m in progress)
    assert not SessionEvent.select().where(SessionEvent.type == "agent_task_progress").exists()


def test_a_failed_attempts_calls_count_in_the_usage_and_the_retry_succeeds(
    fake, personal_team, user, stub_worker, wait
):
    fake.plan = ["invalid", "invalid"]  # the architect's first attempt: an answer and its repair
    session = run(personal_team, user, wait)
    assert session.status == "completed"
    architect = tasks_of(session.id)["architect"]
    assert architect.retry_count == 1 and architect.error_message is None
    assert architect.usage["calls"] == 3
    [retrying] = SessionEvent.select().where(
        (SessionEvent.session == session.id) & (SessionEvent.type == "agent_task_retrying")
    )
    assert (
        retrying.payload["error"]
        == "openai model 'fake-gpt': answer still invalid after one repair: summary: Field required"
    )
    assert retrying.payload["task"]["usage"]["calls"] == 2
    assert session.usage["calls"] == 9


def test_a_429_storm_is_absorbed_inside_the_attempts_without_using_a_retry(
    fake, personal_team, user, stub_worker, wait
):
    fake.plan = ["429"] * 6
    fake.retry_after = "0.1"
    session = run(personal_team, user, wait)
    assert session.status == "completed", session.error_message
    assert (
        not SessionEvent.select()
        .where((SessionEvent.session == session.id) & (SessionEvent.type == "agent_task_retrying"))
        .exists()
    )
    tasks = tasks_of(session.id)
    assert all(t.retry_count == 0 and t.usage["calls"] == 1 for t in tasks.values())
    throttled = 0
    for task in tasks.values():
        [snapshot] = AgentSnapshot.select().where(AgentSnapshot.agent_task == task.id)
        [call] = snapshot.execution_metadata["model"]["calls"]
        throttled += call["throttled"]
    assert throttled == 6 and len(fake.requests) == 7 + 6


def test_a_failure_that_persists_ends_the_session_in_error_with_that_reason(
    fake, personal_team, user, stub_worker, wait
):
    fake.default = "500"
    session = run(personal_team, user, wait)
    assert session.status == "error"
    reason = "openai model 'fake-gpt': the endpoint failed (500): boom"
    assert session.error_message == f"architect failed after 3 retries: {reason}"
    architect = tasks_of(session.id)["architect"]
    assert architect.status == "error" and architect.error_message == reason
    # Four attempts, one refused call each: counted, nothing generated, so nothing to pay.
    assert architect.usage["calls"] == 4 and architect.usage["completion_tokens"] == 0
    assert architect.usage["cost_usd"] == 0.0
    assert session.usage == {"calls": 4, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    assert len(fake.requests) == 4

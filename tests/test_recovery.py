"""The broker losing its messages: sessions are resumed by sending their stage again, and the web
answers 503 (not 500) while Redis is down."""

from __future__ import annotations

import pytest
from helpers import error_of, login
from test_redis_restart import PrivateRedis

from actors import pipeline
from actors.recovery import CONFIRM_SECONDS, INFLIGHT_PREFIX, find_lost, recover
from app import create_app
from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent

pytestmark = pytest.mark.integration

ACTORS = {role: task.actor.actor_name for role, task in pipeline.ROLE_TASKS.items()}


def session_with_its_messages_lost(team, user, name: str) -> int:
    session = pipeline.create_session(team.id, user.id, name, "lost")
    pipeline.start_session(session.id)
    return session.id


def test_queued_delayed_and_in_flight_messages_count_as_held_and_lost_ones_do_not(
    personal_team, user, redis_actors, redis_client
):
    queued = session_with_its_messages_lost(personal_team, user, "Queued")
    assert find_lost(redis_actors, ACTORS) == {}

    claimed = pipeline.create_session(personal_team.id, user.id, "Claimed", "running elsewhere")
    AgentTask.update(status="running", celery_task_id="m-in-flight").where(
        (AgentTask.session == claimed.id) & (AgentTask.agent_role == "architect")
    ).execute()
    redis_client.sadd(f"{INFLIGHT_PREFIX}some-worker", "m-in-flight")
    assert find_lost(redis_actors, ACTORS) == {}

    redis_client.delete(f"{INFLIGHT_PREFIX}some-worker")
    redis_actors.flush_all()
    lost = find_lost(redis_actors, ACTORS)
    assert {s: [t.agent_role for t in tasks] for s, tasks in lost.items()} == {
        queued: ["architect"],
        claimed.id: ["architect"],
    }


def test_a_queued_message_carrying_nan_still_counts_as_held(personal_team, user, redis_actors):
    import json

    session_id = session_with_its_messages_lost(personal_team, user, "Not a number")
    queue = redis_actors.get_actor(ACTORS["architect"]).queue_name
    key = f"{redis_actors.namespace}:{queue}.msgs"
    [(message_id, raw)] = redis_actors.client.hgetall(key).items()
    message = json.loads(raw)
    message["options"]["note"] = float("nan")  # Python writes NaN, which orjson refuses
    redis_actors.client.hset(key, message_id, json.dumps(message))
    assert find_lost(redis_actors, ACTORS) == {}
    redis_actors.client.hdel(key, message_id)
    assert list(find_lost(redis_actors, ACTORS)) == [session_id]


def test_a_loss_is_resent_only_when_a_second_look_confirms_it(personal_team, user, redis_actors):
    session_id = session_with_its_messages_lost(personal_team, user, "Chat")
    redis_actors.flush_all()
    assert recover(redis_actors, now=1000.0) == {}  # first look: a suspect only
    assert recover(redis_actors, now=1000.0 + CONFIRM_SECONDS / 2) == {}
    assert recover(redis_actors, now=1000.0 + CONFIRM_SECONDS) == {session_id: 1}
    assert recover(redis_actors, now=1000.0 + 2 * CONFIRM_SECONDS) == {}  # the copy is queued


def test_a_worker_resumes_sessions_whose_queued_messages_and_claims_were_lost(
    personal_team, user, redis_actors, start_worker, wait
):
    queued = session_with_its_messages_lost(personal_team, user, "Queued")
    claimed = pipeline.create_session(personal_team.id, user.id, "Claimed", "by a worker that died with Redis")
    AgentTask.update(status="running", celery_task_id="message-that-redis-forgot").where(
        (AgentTask.session == claimed.id) & (AgentTask.agent_role == "architect")
    ).execute()
    redis_actors.flush_all()  # the broker restarted empty (our Redis db only)

    start_worker(threads=4)
    sessions = [queued, claimed.id]
    wait(lambda: all(ExecutionSession.get_by_id(s).status != "active" for s in sessions), timeout=45)
    for session_id in sessions:
        assert ExecutionSession.get_by_id(session_id).status == "completed"
        tasks = list(AgentTask.select().where(AgentTask.session == session_id))
        assert [(t.status, t.retry_count) for t in tasks] == [("completed", 0)] * 7
        assert all(AgentSnapshot.select().where(AgentSnapshot.agent_task == t.id).count() == 1 for t in tasks)
        types = [e.type for e in SessionEvent.select().where(SessionEvent.session == session_id)]
        assert types.count("agent_task_completed") == 7


async def test_every_request_gets_503_with_the_envelope_while_redis_is_down(settings, database, user):
    server = PrivateRedis()
    server.start()
    try:
        app = create_app(settings, redis_url=server.url)
        async with app.test_app():
            client = app.test_client()
            await login(client, user.username)
            server.stop()
            for method, path, body in (
                ("GET", "/teams", None),
                ("POST", "/teams", {"name": "During the outage"}),
                ("GET", "/dashboard", None),
                ("POST", "/auth/login", {"username": user.username, "password": "whatever it is"}),
            ):
                response = await client.open(path, method=method, json=body)
                assert response.status_code == 503, (method, path, await response.get_data())
                assert (await error_of(response))["code"] == "unavailable"
                assert response.headers["Retry-After"]
            anonymous = await app.test_client().get("/teams")
            assert anonymous.status_code in (401, 503)
    finally:
        server.stop()

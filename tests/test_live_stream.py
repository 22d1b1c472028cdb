"""Backlog then live events, in `seq` order, each exactly once, whatever the race."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.db_thread import run_db
from app.live import CLOSE_REVOKED, CLOSE_TOO_SLOW, Hub, stream_events
from models import db
from models.events import channel, events_after, namespace, publish, record_event, revocations_channel


@pytest.fixture
async def hub(settings, redis_client):
    hub = Hub(settings.redis_url, queue_size=16)
    await hub.start()
    yield hub
    await hub.stop()


def commit_event(session_id: int, publish_to=None) -> dict:
    with db.atomic():
        message = record_event(session_id, "decision_created", {"decision": {"n": 1}})
    if publish_to is not None:
        publish(publish_to, [message])
    return message


class Client:
    """Collects what the server sends; `until(n)` waits for n messages."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.changed = asyncio.Event()

    async def send(self, message: dict) -> None:
        self.received.append(message)
        self.changed.set()

    async def until(self, count: int, timeout: float = 3.0) -> list[dict]:
        async def wait() -> None:
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)
        return self.received

    @property
    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.received]


def open_stream(hub, session, after=0, poll=10.0, load=None):
    client = Client()
    sub = hub.subscribe(session.id, user_id=1, team_id=session.team_id)

    async def default_load(last: int) -> list[dict]:
        return await run_db(events_after, session.id, last)

    task = asyncio.create_task(stream_events(sub, after, client.send, load or default_load, poll_seconds=poll))
    return client, sub, task


async def close(task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_backlog_then_live_events_arrive_once_in_order(hub, session, redis_client):
    for _ in range(3):
        commit_event(session.id, redis_client)
    client, _, task = open_stream(hub, session)
    await client.until(3)
    for _ in range(3):
        await asyncio.to_thread(commit_event, session.id, redis_client)
    assert [m["seq"] for m in await client.until(6)] == [1, 2, 3, 4, 5, 6]
    await asyncio.sleep(0.2)
    assert client.seqs == [1, 2, 3, 4, 5, 6]
    await close(task)


async def test_resuming_after_a_seq_sends_exactly_the_rest(hub, session, redis_client):
    for _ in range(5):
        commit_event(session.id, redis_client)
    client, _, task = open_stream(hub, session, after=3)
    await client.until(2)
    await asyncio.sleep(0.2)
    assert client.seqs == [4, 5]
    await close(task)


async def test_an_event_in_both_the_backlog_and_the_live_feed_is_sent_once(hub, session, redis_client):
    commit_event(session.id, redis_client)

    async def racing_load(last: int) -> list[dict]:
        # Committed and published after the socket subscribed, before the backlog query ran.
        await asyncio.to_thread(commit_event, session.id, redis_client)
        await asyncio.sleep(0.1)
        return await run_db(events_after, session.id, last)

    client, _, task = open_stream(hub, session, load=racing_load)
    await client.until(2)
    await asyncio.to_thread(commit_event, session.id, redis_client)
    await client.until(3)
    await asyncio.sleep(0.2)
    assert client.seqs == [1, 2, 3]
    await close(task)


async def test_events_published_out_of_order_or_lost_are_filled_from_the_database(hub, session, redis_client):
    client, _, task = open_stream(hub, session)
    first = await asyncio.to_thread(commit_event, session.id)  # committed, never published
    second = await asyncio.to_thread(commit_event, session.id)
    publish(redis_client, [second])  # 2 arrives before 1 was ever seen
    await client.until(2)
    publish(redis_client, [first])  # the late copy of 1 is not sent again
    await asyncio.to_thread(commit_event, session.id, redis_client)
    await client.until(3)
    await asyncio.sleep(0.2)
    assert client.seqs == [1, 2, 3]
    await close(task)


async def test_a_quiet_feed_still_picks_up_events_whose_publish_was_lost(hub, session):
    client, _, task = open_stream(hub, session, poll=0.2)
    await asyncio.to_thread(commit_event, session.id)
    assert [m["seq"] for m in await client.until(1)] == [1]
    await close(task)


async def test_revocation_sends_access_revoked_and_closes_with_4403(hub, session, redis_client):
    client, _, task = open_stream(hub, session)
    await asyncio.sleep(0.1)
    revoke = revocations_channel(namespace(redis_client))
    redis_client.publish(revoke, json.dumps({"user_id": 1, "team_id": session.team_id}))
    assert await asyncio.wait_for(task, 2) == CLOSE_REVOKED
    assert client.received[-1]["type"] == "access_revoked"


async def test_a_socket_that_falls_behind_is_closed_so_it_can_resume(hub, session, redis_client):
    stalled = asyncio.Event()

    async def stuck_send(message: dict) -> None:
        await stalled.wait()

    sub = hub.subscribe(session.id, user_id=1, team_id=session.team_id)

    async def load(last: int) -> list[dict]:
        return []

    commit_event(session.id, redis_client)
    task = asyncio.create_task(stream_events(sub, 0, stuck_send, load))
    for seq in range(2, 40):
        redis_client.publish(channel(session.id, namespace(redis_client)), json.dumps({"seq": seq}))
    await asyncio.sleep(0.3)
    stalled.set()
    assert await asyncio.wait_for(task, 2) == CLOSE_TOO_SLOW


async def test_the_inbound_guard_closes_floods_and_oversize_messages_and_tolerates_empty_ones():
    from app.live import CLOSE_POLICY, CLOSE_TOO_BIG, guard_inbound

    def feed(messages):
        queue = list(messages)

        async def receive():
            if not queue:
                await asyncio.sleep(3600)
            return queue.pop(0)

        return receive

    small = ["{}", b"", None, "ping"]
    assert await asyncio.wait_for(guard_inbound(feed([*small, "x" * 11]), 10, 100, 60), 1) == CLOSE_TOO_BIG
    assert await asyncio.wait_for(guard_inbound(feed(["é" * 6]), 10, 100, 60), 1) == CLOSE_TOO_BIG  # bytes, not chars
    assert await asyncio.wait_for(guard_inbound(feed(small * 3), 10, 11, 60), 1) == CLOSE_POLICY
    with pytest.raises(TimeoutError):  # within the limits the socket stays open
        await asyncio.wait_for(guard_inbound(feed(small * 2), 10, 11, 60), 0.2)

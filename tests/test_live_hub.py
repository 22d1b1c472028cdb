"""The live hub: one Redis pub/sub reader per process fanning out to bounded socket queues."""

from __future__ import annotations

import asyncio
import json

import pytest

from app import live
from app.live import OVERFLOW, RECHECK, RESYNC, REVOKED, Hub
from models.events import channel, namespace, revocations_channel


@pytest.fixture
async def hub(settings, redis_client):
    hub = Hub(settings.redis_url, queue_size=8)
    await hub.start()
    assert hub.connected.is_set()
    yield hub
    await hub.stop()


def send(redis_client, session_id: int, seq: int) -> None:
    message = {"type": "decision_created", "seq": seq, "session_id": session_id}
    redis_client.publish(channel(session_id, namespace(redis_client)), json.dumps(message))


async def next_item(sub, timeout: float = 2.0):
    return await asyncio.wait_for(sub.queue.get(), timeout)


async def test_each_socket_gets_the_events_of_its_own_session_only(hub, redis_client):
    mine, theirs = hub.subscribe(1, user_id=10, team_id=5), hub.subscribe(2, user_id=11, team_id=6)
    send(redis_client, 1, 1)
    send(redis_client, 2, 1)
    send(redis_client, 1, 2)
    assert [(await next_item(mine))["seq"] for _ in range(2)] == [1, 2]
    assert (await next_item(theirs))["session_id"] == 2
    assert theirs.queue.empty()


async def test_a_revocation_reaches_only_that_users_sockets_on_that_team(hub, redis_client):
    on_team = hub.subscribe(1, user_id=10, team_id=5)
    other_team = hub.subscribe(2, user_id=10, team_id=6)
    other_user = hub.subscribe(1, user_id=11, team_id=5)
    revoke = revocations_channel(namespace(redis_client))
    redis_client.publish(revoke, json.dumps({"user_id": 10, "team_id": 5}))
    assert await next_item(on_team) == REVOKED
    await asyncio.sleep(0.1)
    assert other_team.queue.empty() and other_user.queue.empty()
    # A logout (team_id null) asks every socket of the user to re-check its own login.
    redis_client.publish(revoke, json.dumps({"user_id": 10, "team_id": None}))
    assert await next_item(other_team) == RECHECK
    assert await next_item(on_team) == RECHECK
    await asyncio.sleep(0.1)
    assert other_user.queue.empty()


async def test_a_slow_socket_is_flagged_not_silently_skipped(hub, redis_client):
    slow = hub.subscribe(1, user_id=10, team_id=5)
    for seq in range(1, 21):
        send(redis_client, 1, seq)
    await asyncio.sleep(0.3)
    assert slow.overflowed
    items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert items[-1] == OVERFLOW
    assert [i["seq"] for i in items[:-1]] == list(range(1, len(items)))


async def test_unsubscribing_forgets_the_socket(hub):
    sub = hub.subscribe(1, user_id=10, team_id=5)
    hub.unsubscribe(sub)
    hub.unsubscribe(sub)
    assert hub.subscription_count == 0 and dict(hub.by_session) == {}


async def test_redis_connections_do_not_grow_with_sockets(hub, redis_client):
    def hub_connections() -> int:
        return sum(1 for c in redis_client.client_list() if c.get("name") == hub.client_name)

    assert hub_connections() == 1
    subs = [hub.subscribe(i % 5, user_id=i, team_id=1) for i in range(300)]
    assert hub_connections() == 1
    for sub in subs:
        hub.unsubscribe(sub)


async def test_the_hub_reconnects_and_asks_sockets_to_resync(hub, redis_client):
    sub = hub.subscribe(1, user_id=10, team_id=5)
    ids = [c["id"] for c in redis_client.client_list() if c.get("name") == hub.client_name]
    assert len(ids) == 1
    redis_client.client_kill_filter(_id=ids[0])
    assert await next_item(sub, timeout=5) == RESYNC
    assert hub.reconnects == 1
    send(redis_client, 1, 7)
    assert (await next_item(sub))["seq"] == 7


def test_a_message_for_a_session_no_socket_here_watches_is_dropped_undecoded(settings, monkeypatch):
    hub = Hub(settings.redis_url)
    decoded: list[str] = []
    real_decode = live.decode
    monkeypatch.setattr("app.live.decode", lambda data: decoded.append(data) or real_decode(data))
    watched = hub.subscribe(1, user_id=10, team_id=5)
    prefix = hub.prefix
    hub.dispatch(channel(2, prefix), json.dumps({"type": "decision_created", "seq": 1, "session_id": 2}))
    assert decoded == [] and watched.queue.empty()
    hub.dispatch(channel(1, prefix), json.dumps({"type": "decision_created", "seq": 1, "session_id": 1}))
    assert len(decoded) == 1 and watched.queue.get_nowait()["session_id"] == 1
    hub.dispatch(revocations_channel(prefix), json.dumps({"user_id": 10, "team_id": 5}))
    assert watched.queue.get_nowait() == REVOKED


def test_a_published_event_is_decoded_once_and_kept_as_the_text_the_web_would_send(app, settings):
    """Issue 13: the publisher encodes as the web's JSON provider does (compact, keys sorted), so a
    socket forwards the published text unchanged and every socket of the session shares one decode."""
    from models.events import encode_message

    message = {"type": "decision_created", "seq": 3, "session_id": 1, "at": "2026-01-01T00:00:00.000Z"}
    message["decision"] = {"decision_text": "Use “Postgres” ✓", "id": 7, "based_on": [1, 2], "score": 0.5}
    text = encode_message(message)
    assert text == app.json.dumps(message)  # what `websocket.send_json` sends
    assert json.loads(text) == message
    hub = Hub(settings.redis_url)
    first, second = hub.subscribe(1, user_id=10, team_id=5), hub.subscribe(1, user_id=11, team_id=5)
    hub.dispatch(channel(1, hub.prefix), text)
    one, other = first.queue.get_nowait(), second.queue.get_nowait()
    assert one == message and one is other and one.raw == text
    assert json.loads(encode_message({"n": 2**70})) == {"n": 2**70}  # beyond orjson: the standard way


def test_the_lean_reader_parses_pushes_however_the_bytes_are_split():
    """`app.live._PubSubReader` (issue 13): RESP2 pushes, whole or cut anywhere, in order; a PING's
    answer and subscription confirmations are not messages; an error reply drops the connection."""
    from app.live import _PubSubReader

    async def scenario():
        got: list[tuple[str, str]] = []
        reader = _PubSubReader(lambda name, data: got.append((name, data)))
        data = '{"seq":1,"text":"é ✓"}'.encode()
        stream = (
            b"*3\r\n$10\r\npsubscribe\r\n$4\r\na:b*\r\n:1\r\n"
            b"*3\r\n$9\r\nsubscribe\r\n$3\r\nrev\r\n:2\r\n"
            + b"*4\r\n$8\r\npmessage\r\n$4\r\na:b*\r\n$4\r\na:b1\r\n$%d\r\n%s\r\n" % (len(data), data)
            + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
            + b"*3\r\n$7\r\nmessage\r\n$3\r\nrev\r\n$2\r\n{}\r\n"
        )
        for size in (1, 3, 7, len(stream)):
            got.clear()
            for start in range(0, len(stream), size):
                reader.data_received(stream[start : start + size])
            assert got == [("a:b1", data.decode()), ("rev", "{}")]
            assert not reader.buffer
        assert reader.confirmed == 8  # two per pass
        await reader.subscribed(2)
        reader.data_received(b"-ERR unknown command\r\n")
        assert reader.lost.done() and "unknown command" in str(reader.lost.result())

    asyncio.run(scenario())


def test_the_hub_reads_plain_urls_itself_and_leaves_the_rest_to_redis_py():
    from app.live import _lean_target

    assert _lean_target("redis://127.0.0.1:6379/3") == {"host": "127.0.0.1", "port": 6379, "db": 3}
    assert _lean_target("redis://u:p@h:1/0")["password"] == "p"
    assert _lean_target("rediss://h:1/0") is None
    assert _lean_target("redis://h:1/0?ssl_cert_reqs=none") is None

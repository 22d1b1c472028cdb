"""`WS /ws/{session_id}`: handshake checks, backlog then live, resume, and revocation."""

from __future__ import annotations

import asyncio

import pytest
from helpers import spy_statements, team_cast
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from seeding import seed_session


@pytest.fixture
def cast(user, shared_team):
    """Owner (`user`), member, viewer and outsider around a shared team with one finished session."""
    return {
        "people": team_cast(shared_team, user),
        "team": shared_team,
        "session": seed_session(shared_team, user, roles=["architect"]),
    }


async def receive(ws, timeout: float = 3.0):
    return await asyncio.wait_for(ws.receive_json(), timeout)


async def refused(client, path: str, **kwargs) -> int:
    with pytest.raises(WebsocketResponseError) as raised:
        async with client.websocket(path, **kwargs) as ws:
            await receive(ws)
    return raised.value.response.status_code


async def test_the_handshake_refuses_strangers_before_accepting(app, login_as, cast):
    sid = cast["session"].id
    assert await refused(app.test_client(), f"/ws/{sid}") == 401
    outsider = await login_as(cast["people"]["outsider"])
    assert await refused(outsider, f"/ws/{sid}") == 404
    viewer = await login_as(cast["people"]["viewer"])
    assert await refused(viewer, "/ws/999999") == 404
    assert await refused(viewer, f"/ws/{sid}", headers={"Origin": "https://evil.example"}) == 403
    assert await refused(viewer, f"/ws/{sid}?after=-3") == 400


async def test_a_viewer_gets_the_backlog_then_live_events_in_order(login_as, cast):
    sid = cast["session"].id
    viewer = await login_as(cast["people"]["viewer"])
    owner = await login_as(cast["people"]["owner"])
    stored = (await (await owner.get(f"/sessions/{sid}/events")).get_json())["events"]
    async with viewer.websocket(f"/ws/{sid}", headers={"Origin": "http://localhost"}) as ws:
        backlog = [await receive(ws) for _ in stored]
        assert backlog == stored
        response = await owner.post(f"/sessions/{sid}/decisions", json={"decision_text": "Ship it"})
        assert response.status_code == 201
        live = await receive(ws)
        assert live["type"] == "decision_created" and live["seq"] == stored[-1]["seq"] + 1
        assert live["decision"]["decision_text"] == "Ship it" and live["at"].endswith("Z")


async def test_reconnecting_with_after_gets_exactly_the_rest(login_as, cast):
    sid = cast["session"].id
    member = await login_as(cast["people"]["member"])
    for text in ("a", "b", "c"):
        await member.post(f"/sessions/{sid}/decisions", json={"decision_text": text})
    all_events = (await (await member.get(f"/sessions/{sid}/events")).get_json())["events"]
    async with member.websocket(f"/ws/{sid}") as ws:
        first_part = [await receive(ws) for _ in range(2)]
    async with member.websocket(f"/ws/{sid}?after={first_part[-1]['seq']}") as ws:
        rest = [await receive(ws) for _ in range(len(all_events) - 2)]
        with pytest.raises(asyncio.TimeoutError):
            await receive(ws, timeout=0.3)
    assert first_part + rest == all_events


async def test_a_removed_viewer_is_told_and_disconnected_with_4403(login_as, cast):
    sid, team = cast["session"].id, cast["team"]
    viewer_user = cast["people"]["viewer"]
    viewer = await login_as(viewer_user)
    owner = await login_as(cast["people"]["owner"])
    async with viewer.websocket(f"/ws/{sid}") as ws:
        await receive(ws)  # at least one stored event arrived: the socket is live
        removed = await owner.delete(f"/teams/{team.id}/members/{viewer_user.id}")
        assert removed.status_code == 204
        message = None
        while message is None or message["type"] != "access_revoked":
            message = await receive(ws, timeout=1.0)
        with pytest.raises(WebsocketDisconnectError) as closed:
            await receive(ws)
        assert closed.value.args[0] == 4403
    assert await refused(viewer, f"/ws/{sid}") == 404


async def test_logging_out_closes_only_the_sockets_of_that_login(app, login_as, cast):
    sid = cast["session"].id
    member = cast["people"]["member"]
    laptop, phone = await login_as(member), await login_as(member)
    events = (await (await laptop.get(f"/sessions/{sid}/events")).get_json())["events"]
    async with laptop.websocket(f"/ws/{sid}") as on_laptop, phone.websocket(f"/ws/{sid}") as on_phone:
        for ws in (on_laptop, on_phone):
            for _ in events:
                await receive(ws)
        assert (await phone.post("/auth/logout")).status_code == 204
        assert (await receive(on_phone))["type"] == "access_revoked"
        with pytest.raises(WebsocketDisconnectError) as closed:
            await receive(on_phone)
        assert closed.value.args[0] == 4403
        # The laptop's socket is still streaming.
        await laptop.post(f"/sessions/{sid}/decisions", json={"decision_text": "still here"})
        assert (await receive(on_laptop))["type"] == "decision_created"


async def test_sockets_leave_nothing_behind_when_they_close(app, login_as, cast):
    sid = cast["session"].id
    hub = app.extensions["sage_hub"]
    member = await login_as(cast["people"]["member"])
    for _ in range(3):
        async with member.websocket(f"/ws/{sid}") as ws:
            await receive(ws)
            assert hub.subscription_count == 1
    await asyncio.sleep(0.05)
    assert hub.subscription_count == 0


# Issue 14, finding 2: the socket reads what clients send and bounds it.


async def close_code_after(ws) -> int:
    """Read until the server closes the socket; its close code."""
    with pytest.raises(WebsocketDisconnectError) as closed:
        for _ in range(100):
            await receive(ws)
    return closed.value.args[0]


async def test_a_message_over_the_size_limit_closes_the_socket_with_1009(app, login_as, cast, settings):
    member = await login_as(cast["people"]["member"])
    async with member.websocket(f"/ws/{cast['session'].id}") as ws:
        await ws.send("x" * (settings.ws_max_message_bytes + 1))
        assert await close_code_after(ws) == 1009


async def test_a_flood_of_small_messages_closes_the_socket_with_1008(app, login_as, cast, settings):
    member = await login_as(cast["people"]["member"])
    async with member.websocket(f"/ws/{cast['session'].id}") as ws:
        for _ in range(settings.ws_max_messages):
            await ws.send("{}")
        await asyncio.sleep(0.1)
        await ws.send(b"{}")  # one more than the window allows
        assert await close_code_after(ws) == 1008


async def test_a_few_small_messages_are_read_and_ignored(app, login_as, cast, settings):
    owner = await login_as(cast["people"]["owner"])
    sid = cast["session"].id
    events = (await (await owner.get(f"/sessions/{sid}/events")).get_json())["events"]
    async with owner.websocket(f"/ws/{sid}") as ws:
        for _ in events:
            await receive(ws)
        for _ in range(3):
            await ws.send('{"type": "ping"}')
        await owner.post(f"/sessions/{sid}/decisions", json={"decision_text": "still streaming"})
        assert (await receive(ws))["type"] == "decision_created"


async def test_a_user_may_hold_only_so_many_sockets(settings, login_as, cast):
    from helpers import logged_in_client

    from app import create_app

    app = create_app(settings, ws_max_sockets_per_user=2)
    async with app.test_app():
        member = await logged_in_client(app, cast["people"]["member"].username)
        sid = cast["session"].id
        async with member.websocket(f"/ws/{sid}") as first, member.websocket(f"/ws/{sid}") as second:
            await receive(first)
            await receive(second)
            assert await refused(member, f"/ws/{sid}") == 429
        await asyncio.sleep(0.05)
        async with member.websocket(f"/ws/{sid}") as again:
            assert (await receive(again))["seq"] == 1


async def test_deleting_the_account_closes_its_sockets_with_4403(app, login_as, cast):
    from helpers import PASSWORD

    sid = cast["session"].id
    member = await login_as(cast["people"]["member"])
    events = (await (await member.get(f"/sessions/{sid}/events")).get_json())["events"]
    async with member.websocket(f"/ws/{sid}") as ws:
        for _ in events:
            await receive(ws)
        assert (await member.delete("/auth/me", json={"password": PASSWORD})).status_code == 204
        assert (await receive(ws))["type"] == "access_revoked"
        with pytest.raises(WebsocketDisconnectError) as closed:
            await receive(ws)
        assert closed.value.args[0] == 4403


async def test_the_handshake_is_two_statements_and_the_backlog_rides_on_the_second(login_as, cast, monkeypatch):
    """Issue 13: the access query also checks the account; the re-check after subscribing and the
    backlog read are one statement (one snapshot); neither opens a transaction."""
    sid = cast["session"].id
    viewer = await login_as(cast["people"]["viewer"])
    stored = (await (await viewer.get(f"/sessions/{sid}/events")).get_json())["events"]
    statements = spy_statements(monkeypatch)
    async with viewer.websocket(f"/ws/{sid}") as ws:
        assert [await receive(ws) for _ in stored] == stored
    queries = [s for s in statements if s.strip().upper() != "SELECT 1"]
    assert len(queries) == 2, statements
    assert queries[0].startswith("PREPARED ") and "account_exists" in queries[0] and "execution_sessions" in queries[0]
    assert queries[1].startswith("PREPARED ") and "membership_role" in queries[1] and "session_events" in queries[1]
    assert not any("txid" in s or "BEGIN" in s or s.strip().upper() == "COMMIT" for s in statements)


async def test_a_deleted_accounts_cookie_opens_no_socket(app, login_as, cast, redis_client):
    from models import User

    member = cast["people"]["member"]
    client = await login_as(member)
    User.delete().where(User.id == member.id).execute()  # not through DELETE /auth/me
    assert await refused(client, f"/ws/{cast['session'].id}") == 401
    assert not redis_client.smembers(f"auth:user:{member.id}")


def test_the_handshakes_second_statement_decides_access_and_reads_the_backlog_in_one(cast, database):
    """`_role_and_backlog`: the backlog only for someone who may still read the team, and
    the same events `events_after` gives, in seq order, after `after`."""
    from app.ws import _role_and_backlog
    from models import User
    from models.events import events_after

    sid, team_id, people = cast["session"].id, cast["team"].id, cast["people"]
    with database.connection_context():
        everything = events_after(sid, 0)
        assert len(everything) >= 2
        assert _role_and_backlog(people["viewer"].id, team_id, sid, 0) == (True, everything)
        assert _role_and_backlog(people["member"].id, team_id, sid, 1) == (True, everything[1:])
        assert _role_and_backlog(people["outsider"].id, team_id, sid, 0) == (False, [])
        assert _role_and_backlog(people["viewer"].id, team_id + 1000, sid, 0) == (False, [])
        User.delete().where(User.id == people["viewer"].id).execute()
        assert _role_and_backlog(people["viewer"].id, team_id, sid, 0) == (False, [])

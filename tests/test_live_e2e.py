"""Whole sessions through a real worker, watched over the WebSocket and read back over REST."""

from __future__ import annotations

import asyncio

import pytest
from conftest import BOTH_BROKERS
from helpers import add_member, make_user, rebuild_completed

from models import AGENT_ROLES

pytestmark = pytest.mark.integration


@pytest.fixture
async def live(app, login_as, user, shared_team, actors_broker, start_worker):
    """A worker process on the test's broker, an owner and a viewer of a shared team, both logged in."""
    start_worker(threads=4)
    start_worker.ready(1)
    viewer_user = make_user("viewer")
    add_member(shared_team, viewer_user, "viewer")
    return {"team": shared_team, "owner": await login_as(user), "viewer": await login_as(viewer_user)}


async def start(client, team_id: int, feature: str) -> int:
    response = await client.post("/sessions", json={"team_id": team_id, "feature_name": feature})
    body = await response.get_json()
    assert response.status_code == 202, body
    assert body["status"] == "active"
    return body["session_id"]


async def watch(ws, until: str = "session_completed", limit: int | None = None, timeout: float = 60) -> list[dict]:
    received: list[dict] = []

    async def collect() -> None:
        while limit is None or len(received) < limit:
            message = await ws.receive_json()
            received.append(message)
            if message["type"] == until:
                return

    await asyncio.wait_for(collect(), timeout)
    return received


@BOTH_BROKERS
async def test_a_session_streams_every_event_once_and_matches_the_rest_views(live):
    owner, viewer = live["owner"], live["viewer"]
    session_id = await start(owner, live["team"].id, "Real-time chat with file uploads")
    async with owner.websocket(f"/ws/{session_id}") as owner_ws, viewer.websocket(f"/ws/{session_id}") as viewer_ws:
        streamed, watched = await asyncio.gather(watch(owner_ws), watch(viewer_ws))

    assert streamed == watched
    seqs = [m["seq"] for m in streamed]
    assert seqs == list(range(1, len(seqs) + 1))
    types = [m["type"] for m in streamed]
    assert types[0] == "session_started" and types[-1] == "session_completed"
    for kind in ("agent_task_started", "agent_task_completed"):
        assert sorted(m["task"]["agent_role"] for m in streamed if m["type"] == kind) == sorted(AGENT_ROLES)

    stored = (await (await viewer.get(f"/sessions/{session_id}/events")).get_json())["events"]
    assert stored == streamed
    detail = await (await viewer.get(f"/sessions/{session_id}")).get_json()
    assert detail["session"]["status"] == "completed"
    assert streamed[-1]["session"]["status"] == "completed"
    assert {t["status"] for t in detail["tasks"]} == {"completed"}
    # An `agent_task_completed` carries each thing once (docs/api.md, "What events carry"): the
    # task and its snapshot together give back the stored rows exactly.
    completed = {m["task"]["id"]: m for m in streamed if m["type"] == "agent_task_completed"}
    for task in detail["tasks"]:
        event = completed[task["id"]]
        assert "decisions" not in event["task"]["output_data"]
        assert rebuild_completed(event["task"], event["snapshot"])[0] == task["output_data"]
        assert event["task"]["decisions"] == task["decisions"]
    replay = await (await viewer.get(f"/sessions/{session_id}/replay")).get_json()
    assert replay["events"] == streamed
    for row in replay["tasks"]:
        event = completed[row["id"]]
        assert rebuild_completed(event["task"], event["snapshot"])[1] == row["snapshot"]
    # The pipeline order holds in the stream: no stage starts before the previous one completed.
    stage_of = {t["id"]: t["stage"] for t in detail["tasks"]}
    done_stages: set[int] = set()
    for message in streamed:
        if message["type"] == "agent_task_completed":
            done_stages.add(stage_of[message["task"]["id"]])
        if message["type"] == "agent_task_started":
            stage = stage_of[message["task"]["id"]]
            assert all(s in done_stages for s in range(stage))


async def test_a_client_that_disconnects_midway_resumes_with_exactly_the_rest(live):
    owner = live["owner"]
    session_id = await start(owner, live["team"].id, "Payments checkout")
    async with owner.websocket(f"/ws/{session_id}") as ws:
        first = await watch(ws, limit=4)
    assert len(first) == 4
    async with owner.websocket(f"/ws/{session_id}?after={first[-1]['seq']}") as ws:
        rest = await watch(ws)
    stored = (await (await owner.get(f"/sessions/{session_id}/events")).get_json())["events"]
    assert first + rest == stored


async def test_ending_a_session_early_stops_the_stages_not_yet_started(live):
    owner, viewer = live["owner"], live["viewer"]
    session_id = await start(owner, live["team"].id, "Search")
    assert (await viewer.post(f"/sessions/{session_id}/end")).status_code == 403
    ended = await owner.post(f"/sessions/{session_id}/end")
    assert ended.status_code == 200
    assert (await ended.get_json())["session"]["status"] == "completed"
    again = await owner.post(f"/sessions/{session_id}/end")
    assert again.status_code == 409 and (await again.get_json())["error"]["code"] == "conflict"
    await asyncio.sleep(1.5)
    detail = await (await owner.get(f"/sessions/{session_id}")).get_json()
    late = [t for t in detail["tasks"] if t["stage"] >= 2]
    assert {t["status"] for t in late} == {"pending"}

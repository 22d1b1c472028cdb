"""A session on the `openai` brain through the web and a real worker process, against the fake
endpoint: live progress on the WebSocket, prompts and usage in the record, and the key nowhere."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from fake_llm import FakeModelServer

from models import AGENT_ROLES, ALL_MODELS, db

pytestmark = pytest.mark.integration

KEY = "sk-test-e2e-secret-4d5e6f7a8b9c"


@pytest.fixture
def fake(monkeypatch):
    with FakeModelServer(key=KEY) as server:
        env = {
            "OPENAI_BASE_URL": server.openai_url,
            "OPENAI_API_KEY": KEY,
            "SAGE_OPENAI_MODEL": "fake-gpt",
            "SAGE_LLM_PRICES": json.dumps({"fake-gpt": [1.0, 2.0]}),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # the web app (this process) and the worker both see them
        yield server


async def test_a_session_on_the_openai_brain_streams_progress_and_records_usage_and_never_the_key(
    fake, app, login_as, user, personal_team, redis_actors, start_worker, caplog
):
    caplog.set_level(logging.DEBUG)  # everything the web app logs, searched for the key below
    fake.plan = ["slow"]  # the architect streams slowly, so it sends several progress messages
    worker = start_worker(threads=4)
    start_worker.ready(1)
    owner = await login_as(user)
    answers: list[str] = []

    async def get(path: str) -> dict:
        response = await owner.get(path)
        answers.append(await response.get_data(as_text=True))
        assert response.status_code == 200, answers[-1]
        return json.loads(answers[-1])

    response = await owner.post(
        "/sessions", json={"team_id": personal_team.id, "feature_name": "Saved payment methods", "brain": "openai"}
    )
    assert response.status_code == 202
    session_id = (await response.get_json())["session_id"]

    received: list[dict] = []
    async with owner.websocket(f"/ws/{session_id}") as ws:

        async def collect() -> None:
            while True:
                received.append(await ws.receive_json())
                if received[-1]["type"] in {"session_completed", "session_error"}:
                    return

        await asyncio.wait_for(collect(), 60)

    assert received[-1]["type"] == "session_completed", received[-1]
    progress = [m for m in received if m["type"] == "agent_task_progress"]
    logged = [m for m in received if m["type"] != "agent_task_progress"]
    assert [m["seq"] for m in logged] == list(range(1, len(logged) + 1))
    assert all("seq" not in m for m in progress)
    for role in AGENT_ROLES:
        mine = [i for i, m in enumerate(received) if m.get("agent_role") == role and m["type"] == "agent_task_progress"]
        [done] = [
            i for i, m in enumerate(received) if m["type"] == "agent_task_completed" and m["task"]["agent_role"] == role
        ]
        assert mine and max(mine) < done, role
        tokens = [received[i]["completion_tokens"] for i in mine]
        assert tokens == sorted(tokens) and tokens[-1] > 0
        assert json.loads(received[mine[-1]]["text"])["summary"] == received[done]["task"]["output_data"]["summary"]
    assert len([m for m in progress if m["agent_role"] == "architect"]) >= 2

    detail = await get(f"/sessions/{session_id}")
    assert detail["session"]["brain"] == "openai"
    usages = [t["usage"] for t in detail["tasks"]]
    assert all(u["provider"] == "openai" and u["model"] == "fake-gpt" and u["calls"] == 1 for u in usages)
    totals = detail["session"]["usage"]
    assert totals["calls"] == 7
    assert totals["prompt_tokens"] == sum(u["prompt_tokens"] for u in usages)
    assert totals["completion_tokens"] == sum(u["completion_tokens"] for u in usages)
    assert totals["cost_usd"] == pytest.approx(sum(u["cost_usd"] for u in usages))
    assert totals["cost_usd"] == pytest.approx((totals["prompt_tokens"] + 2 * totals["completion_tokens"]) / 1e6)

    timeline = await get(f"/sessions/{session_id}/timeline")
    replay = await get(f"/sessions/{session_id}/replay")
    assert replay["session"]["usage"] == totals
    for row in timeline["timeline"] + replay["tasks"]:
        assert row["usage"] == next(t["usage"] for t in detail["tasks"] if t["id"] == row["id"])
        [call] = row["snapshot"]["execution_metadata"]["model"]["calls"]
        assert call["messages"][0]["role"] == "system" and "Saved payment methods" in call["messages"][1]["content"]
    await get(f"/sessions/{session_id}/events")
    await get("/brains")

    # The key was sent to the endpoint, and nowhere else: not the database, the logs or any answer.
    assert fake.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    for model in ALL_MODELS:
        table = model._meta.table_name
        rows = db.execute_sql(f'SELECT row_to_json(t)::text FROM "{table}" t').fetchall()
        assert not any(KEY in row[0] for row in rows), table
    logs = "".join(path.read_text() for path in start_worker.markers.glob("worker-*.log"))
    assert KEY not in logs and KEY not in caplog.text  # the worker's logs and the web app's
    # A line per task in the worker's log, none per model call from the SDK's transport (its
    # INFO line names every request's URL; actors.supervisor.QUIET_LOGGERS).
    assert logs.count("completed in ") == 7
    assert "HTTP Request:" not in logs
    assert not any(KEY in answer for answer in answers)
    assert KEY not in json.dumps(received)
    assert worker.poll() is None

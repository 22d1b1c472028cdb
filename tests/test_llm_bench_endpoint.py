"""The fake model endpoint of bench/llm_scale.py (bench/fake_openai.py), through the real `openai` SDK.

The bench's figures mean something only if this endpoint answers as the product's openai brain
expects (streamed, usage in the last chunk, an answer that passes the role's contract) and counts
calls in flight truly (the bench's proof that a concurrency cap held). The bench itself is not run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from fake_openai import FakeOpenAI

from actors.agents import contract
from actors.agents.playbook import PLAYBOOK
from actors.agents.prompts import build_prompt
from models.schema import AGENT_ROLES, STAGE_OF_ROLE


@pytest.fixture
def endpoint() -> Iterator[FakeOpenAI]:
    """The server on its own event loop in a thread, as quick as the test needs (latency 0.05 s)."""
    loop = asyncio.new_event_loop()
    server = FakeOpenAI(latency=0.05, chunks=4)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)

    async def cancel_calls() -> None:
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    asyncio.run_coroutine_threadsafe(cancel_calls(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_every_role_gets_a_streamed_answer_that_passes_its_contract_with_usage(endpoint: FakeOpenAI) -> None:
    client = openai.OpenAI(api_key="bench", base_url=endpoint.base_url, max_retries=0, timeout=30)
    outputs: dict[str, dict] = {}
    for role in sorted(AGENT_ROLES, key=STAGE_OF_ROLE.__getitem__):
        context = {
            "feature_name": "Saved payment methods",
            "description": "store a card and charge it later",
            "session_decisions": [],
            "upstream": {r: {"output": outputs[r]} for r in outputs if STAGE_OF_ROLE[r] < STAGE_OF_ROLE[role]},
        }
        system, user, _ = build_prompt(role, "task", context)
        stream = client.chat.completions.create(
            model="bench-model",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": contract.schema_name(role), "schema": contract.json_schema(role)},
            },
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, finish, usage = [], None, None
        for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        assert len([p for p in pieces if p]) > 1, "the answer comes in several chunks"
        assert finish == "stop"
        assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
        output, errors = contract.check_output(
            role, json.loads("".join(pieces)), contract.upstream_keys(context), contract.session_decision_ids(context)
        )
        assert errors == [] and output == PLAYBOOK[role](context)
        outputs[role] = output
    stats = httpx.get(endpoint.base_url.removesuffix("/v1") + "/stats").json()
    assert stats["calls"] == stats["completed"] == len(AGENT_ROLES)
    assert stats["in_flight"] == 0 and stats["peak"] == 1 and stats["repairs"] == 0


def test_calls_in_flight_and_their_peak_are_counted(endpoint: FakeOpenAI, wait) -> None:
    endpoint.latency = 60.0  # the calls stay in flight until the test drops them
    body = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "health check"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "health_check", "schema": {}}},
    }
    base = endpoint.base_url.removesuffix("/v1")
    clients = [httpx.Client(base_url=base, timeout=120) for _ in range(3)]
    threads = [threading.Thread(target=_post_until_dropped, args=(client, body), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    wait(lambda: endpoint.counts.in_flight == 3, timeout=20)
    stats = httpx.get(base + "/stats").json()
    assert (stats["calls"], stats["in_flight"], stats["peak"], stats["completed"]) == (3, 3, 3, 0)
    httpx.post(base + "/stats/reset").raise_for_status()
    stats = httpx.get(base + "/stats").json()
    assert (stats["calls"], stats["in_flight"], stats["peak"]) == (0, 3, 3), "a reset keeps the calls in flight"
    for client in clients:
        client.close()


def _post_until_dropped(client: httpx.Client, body: dict) -> None:
    try:
        client.post("/v1/chat/completions", json=body)
    except httpx.HTTPError:
        pass  # the test closed the client under the waiting call

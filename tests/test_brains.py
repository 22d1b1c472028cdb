"""Model brains: the output contract, the prompts, both wire formats through the real SDKs against
a fake endpoint, every failure a user meets, usage and cost, live progress, GET /brains and the CLI."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from fake_llm import FakeModelServer
from helpers import error_of

from actors.__main__ import main as actors_main
from actors.agents import BrainError, get_brain, prompts
from actors.agents.contract import OUTPUTS, check_output, json_schema, session_decision_ids, upstream_keys
from actors.agents.llm import AnthropicBrain, OpenAIBrain
from actors.agents.playbook import PLAYBOOK
from actors.agents.progress import ProgressPublisher
from actors.agents.prompts import build_prompt
from app.live import Subscription, stream_events
from models import AGENT_ROLES, ExecutionSession
from models.brains import SESSION_USAGE_SQL, add_calls, add_session_usage, cost_usd, session_usage_change
from models.db import db
from models.schema import STAGE_OF_ROLE

KEY = "sk-test-not-a-real-key-7f3a9c"
FEATURES = [
    ("Real-time chat with file uploads", "teams talk and share files"),
    ("Saved payment methods", "store a card and charge it later"),
    ("Typo-tolerant product search", None),
    ("Widget", ""),
]
SQLITE_AND_SSE = [
    {"id": 1, "text": "Use SQLite", "category": "technology", "confidence": "high"},
    {"id": 2, "text": "Use server-sent events, not websockets", "category": "architecture", "confidence": "high"},
]


@pytest.fixture
def fake(monkeypatch):
    """A fake endpoint that wants `KEY`, and both brains configured to use it."""
    with FakeModelServer(key=KEY) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("SAGE_OPENAI_MODEL", "fake-gpt")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("SAGE_ANTHROPIC_MODEL", "fake-claude")
        monkeypatch.setenv("SAGE_LLM_PRICES", json.dumps({"fake-gpt": [1.0, 2.0]}))
        yield server


def kb_session(feature: str, description: str | None, decisions: list[dict]) -> dict[str, tuple[dict, dict]]:
    """Every role's (context, knowledge-base output), each role seeing the ones before it."""
    outputs: dict[str, dict] = {}
    result = {}
    for role in AGENT_ROLES:
        context = {
            "feature_name": feature,
            "description": description,
            "session_decisions": decisions,
            "upstream": {
                r: {"task_id": 1, "output": outputs[r]} for r in AGENT_ROLES if STAGE_OF_ROLE[r] < STAGE_OF_ROLE[role]
            },
        }
        outputs[role] = PLAYBOOK[role](context)
        result[role] = (context, outputs[role])
    return result


CONTEXT = kb_session("Saved payment methods", "store a card", [])


# --- the contract -----------------------------------------------------------------------------


@pytest.mark.parametrize("feature,description", FEATURES)
@pytest.mark.parametrize("decisions", [[], SQLITE_AND_SSE], ids=["defaults", "session-decisions"])
def test_the_knowledge_base_output_of_every_role_validates_against_its_contract_unchanged(
    feature, description, decisions
):
    for role, (context, output) in kb_session(feature, description, decisions).items():
        valid, errors = check_output(role, output, upstream_keys(context), session_decision_ids(context))
        assert errors == [], (role, errors)
        assert valid == json.loads(json.dumps(output)), role


def test_each_role_has_one_contract_and_its_json_schema_comes_from_it():
    assert set(OUTPUTS) == set(AGENT_ROLES)
    for role in AGENT_ROLES:
        schema = json_schema(role)
        assert set(schema["required"]) == {"summary", "artifacts", "decisions", "concerns"}
        decision = schema["$defs"]["Decision"]
        assert set(decision["properties"]["category"]["enum"]) >= {"architecture", "security", "user_experience"}
        assert decision["additionalProperties"] is False


def test_a_decision_citing_an_upstream_key_or_session_decision_that_does_not_exist_is_invalid():
    context, output = CONTEXT["backend_dev"]
    output = json.loads(json.dumps(output))
    output["decisions"][0]["based_on_keys"] = ["architect.style", "architect.imaginary"]
    output["decisions"][1]["based_on_session_decisions"] = [99]
    valid, errors = check_output("backend_dev", output, upstream_keys(context), session_decision_ids(context))
    assert valid is None
    assert any("'architect.imaginary' is not an upstream decision" in e for e in errors)
    assert any("99 is not a session decision" in e for e in errors)
    assert not any("architect.style'" in e.split("known")[0] for e in errors)


def test_an_answer_with_a_missing_field_or_an_unknown_category_is_invalid():
    context, output = CONTEXT["dba"]
    broken = json.loads(json.dumps(output))
    del broken["summary"]
    broken["decisions"][0]["category"] = "vibes"
    _, errors = check_output("dba", broken, upstream_keys(context), set())
    assert any(e.startswith("summary") for e in errors)
    assert any("decisions/0/category" in e for e in errors)


def test_prompts_are_versioned_files_and_trimming_to_the_budget_is_recorded():
    context, _ = CONTEXT["security"]
    system, user, trimmed = build_prompt("security", "Audit it", context)
    assert "Role: security." in system and trimmed == []
    payload = json.loads(user[user.index("{") :])
    assert set(payload["upstream"]) == {"backend_dev", "dba", "architect"}
    assert payload["upstream"]["dba"]["decisions"][0]["key"].startswith("dba.")

    _, small, trimmed = build_prompt("security", "Audit it", context, budget=1500)
    parts = [t["part"] for t in trimmed]
    assert parts[0] == "upstream.architect.artifacts" and all(t["tokens"] > 0 for t in trimmed)
    cut = json.loads(small[small.index("{") :])
    assert cut["upstream"]["architect"]["artifacts"] == "(trimmed)"
    # Decision keys survive every cut: they are what the model may cite.
    assert [d["key"] for d in cut["upstream"]["dba"]["decisions"]] == [
        d["key"] for d in payload["upstream"]["dba"]["decisions"]
    ]


@pytest.mark.parametrize("role", AGENT_ROLES)
def test_the_context_is_rendered_as_the_standard_librarys_indented_json_would_render_it(role):
    context, _ = CONTEXT[role]
    context = {
        **context,
        "description": 'Tabs\there, "quotes", back\\slash, \u00e9t\u00e9 \u2028 \x01',
        "session_decisions": SQLITE_AND_SSE,
    }
    _, user, _ = build_prompt(role, "Do it", context)
    payload = json.loads(user[user.index("{") :])
    assert user.endswith("\n\n" + json.dumps(payload, indent=1, ensure_ascii=False))
    odd = {"empty": {}, "none": [], "nested": [[[{"a": [1, True, None]}]]], 7: "int key"}
    assert prompts._indented_json(odd) == json.dumps(odd, indent=1, ensure_ascii=False)
    big = {"big": [2**70]}  # beyond what orjson encodes: the standard encoder's text
    assert prompts._indented_json(big) == json.dumps(big, indent=1, ensure_ascii=False)


# --- both wire formats through the SDKs ---------------------------------------------------------


BRAINS = [OpenAIBrain, AnthropicBrain]


@pytest.mark.parametrize("brain_class", BRAINS, ids=["openai", "anthropic"])
def test_a_brain_streams_a_valid_answer_and_records_the_call(fake, brain_class):
    brain = brain_class()
    updates = []
    brain.on_progress = lambda text, tokens, final: updates.append((text, tokens, final))
    context, expected = CONTEXT["backend_dev"]
    output = brain.think("backend_dev", "Implement it", context)

    assert output == json.loads(json.dumps(expected))
    [call] = brain.calls
    assert call["provider"] == brain_class.provider and call["finish_reason"] in {"stop", "tool_use"}
    assert call["messages"][0]["role"] == "system" and "Role: backend_dev." in call["messages"][0]["content"]
    assert json.loads(call["answer"]) == output
    assert call["prompt_tokens"] > 0 and call["completion_tokens"] > 0
    assert call["latency_ms"] >= call["time_to_first_token_ms"] >= 0
    assert call["prompt_version"] == "v1" and call["error"] is None
    # The text grows, the tokens never go down, and the last update is the endpoint's count.
    assert len(updates) > 1 and updates[-1][2] is True
    assert [len(u[0]) for u in updates] == sorted(len(u[0]) for u in updates)
    assert updates[-1][1] == call["completion_tokens"]

    [request] = fake.requests
    body = request["body"]
    if brain_class is OpenAIBrain:
        assert request["path"] == "/v1/chat/completions"
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == json_schema("backend_dev")
        assert call["cost_usd"] == cost_usd("fake-gpt", call["prompt_tokens"], call["completion_tokens"])
        assert call["cost_usd"] > 0
    else:
        assert request["path"] == "/v1/messages" and body["stream"] is True
        [tool] = body["tools"]
        assert tool["input_schema"] == json_schema("backend_dev")
        assert body["tool_choice"] == {"type": "tool", "name": tool["name"]}
        assert call["cost_usd"] is None  # no price for this model: unknown, never 0
    assert request["headers"].get("x-stainless-retry-count") in {None, "0"}


@pytest.mark.parametrize("brain_class", BRAINS, ids=["openai", "anthropic"])
def test_an_invalid_answer_is_repaired_once_with_the_validation_errors(fake, brain_class):
    fake.plan = ["bad-citation"]
    brain = brain_class()
    context, _ = CONTEXT["backend_dev"]
    output = brain.think("backend_dev", "Implement it", context)
    assert output["summary"]
    assert len(brain.calls) == 2 and len(fake.requests) == 2
    repair = fake.requests[1]["body"]["messages"][-1]["content"]
    assert "'nobody.said.this' is not an upstream decision" in repair


FAILURES = [
    ("invalid", "answer still invalid after one repair: summary: Field required", 2),
    ("bad-citation", "is not an upstream decision", 2),
    ("notjson", "the answer is not valid JSON", 2),
    ("length", "cut by the token limit", 1),
    ("cut", "the stream was cut midway", 1),
    ("401", "the endpoint refused the API key (401)", 1),
    ("404", "does not know this model or path (404)", 1),
    ("429", "rate limited (429); retry after 7 s", 1),
    ("500", "the endpoint failed (500)", 1),
]


@pytest.mark.parametrize("brain_class", BRAINS, ids=["openai", "anthropic"])
@pytest.mark.parametrize("mode,message,requests", FAILURES, ids=[f[0] for f in FAILURES])
def test_each_failure_is_one_clear_line_without_the_key_and_the_sdk_does_not_retry(
    fake, brain_class, mode, message, requests
):
    fake.plan = [mode, mode]
    fake.retry_after = "7"
    brain = brain_class()
    if mode == "429":
        brain.time_limit = 10  # a wait of 7 s does not fit in what is left: the task's failure
    with pytest.raises(BrainError) as raised:
        brain.think("architect", "Plan it", CONTEXT["architect"][0])
    text = str(raised.value)
    assert message in text and "\n" not in text and KEY not in text and "Traceback" not in text
    assert text.startswith(f"{brain_class.name} model 'fake-")
    assert len(fake.requests) == requests  # SDK retries are off: the pipeline's policy rules
    assert raised.value.retry_after == (7.0 if mode == "429" else None)
    assert len(brain.calls) == requests
    if requests == 2:  # the calls succeeded; their answers did not
        assert all(call["validation_errors"] and call["error"] is None for call in brain.calls)
    else:
        assert brain.calls[-1]["error"] == text


@pytest.mark.parametrize("brain_class", BRAINS, ids=["openai", "anthropic"])
def test_a_429_that_fits_in_the_attempt_is_waited_out_and_asked_again_within_the_same_call(fake, brain_class):
    fake.plan = ["429", "429"]
    fake.retry_after = "0.2"
    brain = brain_class()
    output = brain.think("architect", "Plan it", CONTEXT["architect"][0])
    assert output["summary"]
    assert len(fake.requests) == 3  # two refused, one answered
    [call] = brain.calls
    assert call["throttled"] == 2 and call["error"] is None and call["completion_tokens"]


@pytest.mark.parametrize("brain_class", BRAINS, ids=["openai", "anthropic"])
def test_an_endpoint_that_is_down_is_named_in_one_line(monkeypatch, brain_class):
    with FakeModelServer() as server:
        url = server.openai_url if brain_class is OpenAIBrain else server.anthropic_url
    monkeypatch.setenv("OPENAI_BASE_URL" if brain_class is OpenAIBrain else "ANTHROPIC_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY" if brain_class is OpenAIBrain else "ANTHROPIC_API_KEY", KEY)
    with pytest.raises(BrainError, match=r"cannot reach the endpoint at http://127\.0\.0\.1:\d+"):
        brain_class().think("architect", "Plan it", CONTEXT["architect"][0])


@pytest.mark.parametrize("brain_class", BRAINS, ids=["openai", "anthropic"])
def test_a_call_without_an_answer_in_time_is_a_request_timeout_and_the_sdks_send_through_aiohttp(fake, brain_class):
    fake.plan = ["hang"]
    fake.hang_seconds = 5
    brain = brain_class()
    brain.timeout = 2
    with pytest.raises(BrainError, match=r"no answer within 2 s \(request timeout\)"):
        brain.think("architect", "Plan it", CONTEXT["architect"][0])
    # aiohttp, not httpx's pool, carries the calls (half of a call's worker CPU; bench/README.md).
    sdk = openai if brain_class is OpenAIBrain else anthropic
    assert isinstance(brain._client()._client, sdk.DefaultAioHttpClient)


def test_a_slow_stream_sends_coalesced_progress_with_tokens_that_never_go_down(fake):
    fake.default = "slow"
    sent = []
    brain = OpenAIBrain()
    brain.on_progress = ProgressPublisher(sent.append, task_id=5, agent_role="architect", interval=0.25)
    brain.think("architect", "Plan it", CONTEXT["architect"][0])
    assert len(sent) >= 3
    assert all(set(m) == {"type", "task_id", "agent_role", "text", "completion_tokens"} for m in sent)
    tokens = [m["completion_tokens"] for m in sent]
    assert tokens == sorted(tokens) and tokens[-1] == brain.calls[-1]["completion_tokens"]
    assert json.loads(sent[-1]["text"]) == json.loads(brain.calls[-1]["answer"])


def test_progress_is_coalesced_to_one_message_per_interval_per_task_plus_each_calls_last():
    now = [0.0]
    sent = []
    publisher = ProgressPublisher(sent.append, 1, "dba", interval=0.25, clock=lambda: now[0])
    for step in range(40):  # 40 updates over one second
        now[0] = step * 0.025
        publisher("x" * step, step, False)
    publisher("x" * 40, 30, True)  # the endpoint counted fewer than the estimate
    assert len(sent) == 5  # 4 in the second, plus the call's last
    assert [m["completion_tokens"] for m in sent] == sorted(m["completion_tokens"] for m in sent)
    publisher("y", 2, False)  # a repair call starts: its tokens add to the first call's
    now[0] += 1
    publisher("yy", 3, False)
    assert sent[-1]["completion_tokens"] == 33


# --- usage and cost ---------------------------------------------------------------------------


def test_cost_is_null_when_the_price_is_unknown_and_usage_sums_every_call(monkeypatch):
    monkeypatch.setenv("SAGE_LLM_PRICES", json.dumps({"m": [1.0, 2.0]}))
    assert cost_usd("m", 1_000_000, 500_000) == 2.0
    assert cost_usd("unknown-model", 10, 10) is None
    assert cost_usd("m", None, 10) is None
    priced = {"provider": "openai", "model": "m", "prompt_tokens": 100, "completion_tokens": 50, "latency_ms": 10}
    first = add_calls(None, [{**priced, "cost_usd": 0.0002}, {**priced, "cost_usd": 0.0002}])
    assert first == {
        "provider": "openai",
        "model": "m",
        "calls": 2,
        "prompt_tokens": 200,
        "completion_tokens": 100,
        "cost_usd": 0.0004,
        "latency_ms": 20,
    }
    second = add_calls(first, [{**priced, "cost_usd": None}])
    assert second["calls"] == 3 and second["cost_usd"] is None
    session = add_session_usage(None, None, first)
    assert session == {"calls": 2, "prompt_tokens": 200, "completion_tokens": 100, "cost_usd": 0.0004}
    assert add_session_usage(session, first, second) == {
        "calls": 3,
        "prompt_tokens": 300,
        "completion_tokens": 150,
        "cost_usd": None,
    }


# --- live progress on the socket ------------------------------------------------------------------


async def test_the_socket_forwards_progress_messages_without_a_seq_between_logged_events():
    import asyncio

    sub = Subscription(1, 1, 1, asyncio.Queue(10))
    progress = {"type": "agent_task_progress", "task_id": 3, "agent_role": "dba", "text": "{", "completion_tokens": 1}
    sub.offer(progress)
    sub.offer({"type": "agent_task_completed", "seq": 1})
    sub.offer("revoked")
    sent = []

    async def send(message):
        sent.append(message)

    async def load(after):
        return []

    await stream_events(sub, 0, send, load)
    assert sent[0] == progress and sent[1]["seq"] == 1 and sent[2]["type"] == "access_revoked"


def test_progress_reaches_the_sessions_channel_in_order_and_an_idle_publisher_wakes_for_more(redis_client, wait):
    from actors.agents import progress as live
    from models.events import channel, namespace

    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel(77, namespace(redis_client)))
    send = live.redis_sender(redis_client, 77)
    received: list[dict] = []

    def got(count: int):
        def enough() -> bool:
            message = pubsub.get_message(timeout=0.05)
            if message is not None:
                received.append(json.loads(message["data"]))
            return len(received) >= count

        return enough

    for index in range(3):
        send({"type": "agent_task_progress", "task_id": 5, "text": "x" * index, "completion_tokens": index})
    wait(got(3))
    wait(lambda: live._outbox().idle)  # nothing more to send: the thread sleeps until woken
    send({"type": "agent_task_progress", "task_id": 5, "text": "done", "completion_tokens": 9})
    wait(got(4))
    pubsub.close()
    assert [m["completion_tokens"] for m in received] == [0, 1, 2, 9]


def test_a_lagging_socket_drops_progress_rather_than_being_closed():
    import asyncio

    sub = Subscription(1, 1, 1, asyncio.Queue(9))
    for _ in range(20):
        sub.offer(
            {"type": "agent_task_progress", "task_id": 3, "agent_role": "dba", "text": "", "completion_tokens": 0}
        )
    assert not sub.overflowed and sub.queue.qsize() == 4


# --- choosing brains -----------------------------------------------------------------------------


def test_the_knowledge_base_stays_the_default_even_with_keys_set(fake, monkeypatch):
    monkeypatch.delenv("SAGE_BRAIN", raising=False)
    assert get_brain().name == "knowledge-base"
    monkeypatch.setenv("SAGE_BRAIN", "anthropic")
    assert get_brain().name == "anthropic"


async def test_get_brains_lists_each_brain_and_the_default_and_never_a_key(fake, client, login_as, user):
    assert (await client.get("/brains")).status_code == 401
    owner = await login_as(user)
    response = await owner.get("/brains")
    body = await response.get_json()
    assert response.status_code == 200
    assert body == {
        "brains": [
            {"name": "knowledge-base", "provider": None, "model": None, "configured": True},
            {"name": "openai", "provider": "openai", "model": "fake-gpt", "configured": True},
            {"name": "anthropic", "provider": "anthropic", "model": "fake-claude", "configured": True},
        ],
        "default": "knowledge-base",
    }
    assert KEY not in await response.get_data(as_text=True)


async def test_post_sessions_refuses_an_unknown_or_unconfigured_brain_and_records_a_good_one(
    monkeypatch, login_as, user, personal_team, redis_actors
):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "SAGE_BRAIN"):
        monkeypatch.delenv(name, raising=False)
    owner = await login_as(user)
    for brain, reason in (("gpt-9000", "unknown brain"), ("anthropic", "not configured")):
        response = await owner.post(
            "/sessions", json={"team_id": personal_team.id, "feature_name": "X", "brain": brain}
        )
        assert response.status_code == 400
        error = await error_of(response)
        assert error["code"] == "validation_error" and reason in error["fields"]["brain"]
    assert ExecutionSession.select().count() == 0

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    response = await owner.post(
        "/sessions", json={"team_id": personal_team.id, "feature_name": "X", "brain": "anthropic"}
    )
    assert response.status_code == 202
    session_id = (await response.get_json())["session_id"]
    detail = await (await owner.get(f"/sessions/{session_id}")).get_json()
    assert detail["session"]["brain"] == "anthropic"
    assert detail["session"]["usage"] == {
        "calls": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "cost_usd": None,
    }
    assert all(t["usage"] is None for t in detail["tasks"])
    response = await owner.post("/sessions", json={"team_id": personal_team.id, "feature_name": "Y"})
    session_id = (await response.get_json())["session_id"]
    assert ExecutionSession.get_by_id(session_id).brain == "knowledge-base"


def test_a_rerun_keeps_the_brain_unless_told_otherwise(personal_team, user, monkeypatch):
    from actors import pipeline
    from actors.reruns import rerun_session

    original = pipeline.create_session(personal_team.id, user.id, "Chat", brain="openai")
    assert rerun_session(original.id, start=False).brain == "openai"
    assert rerun_session(original.id, start=False, brain="knowledge-base").brain == "knowledge-base"


# --- the CLI -----------------------------------------------------------------------------------


def test_the_brains_command_lists_them_and_check_reports_model_latency_and_tokens(fake, capsys):
    assert actors_main(["brains"]) == 0
    listed = capsys.readouterr().out
    assert "knowledge-base" in listed and "(default)" in listed and "fake-gpt" in listed and KEY not in listed

    assert actors_main(["brains", "check", "openai"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("openai ok: model fake-gpt, ") and "prompt +" in out and "completion tokens" in out

    fake.plan = ["401"]
    assert actors_main(["brains", "check", "anthropic"]) == 1
    captured = capsys.readouterr()
    assert (
        "anthropic check failed: anthropic model 'fake-claude': the endpoint refused the API key (401)" in captured.err
    )
    assert KEY not in captured.err + captured.out
    assert actors_main(["brains", "check", "nonsense"]) == 2


def test_a_malformed_price_table_is_reported_and_leaves_costs_unknown_rather_than_wrong(monkeypatch, capsys):
    monkeypatch.setenv("SAGE_LLM_PRICES", "fake-gpt=1,2")
    assert cost_usd("fake-gpt", 10, 10) is None
    assert cost_usd("gpt-4.1-mini", 1_000_000, 0) == 0.4  # the built-in table still applies
    assert actors_main(["brains"]) == 0
    assert "SAGE_LLM_PRICES must be JSON" in capsys.readouterr().err


def test_a_worker_loads_the_configured_sdks_at_boot_and_freezes_what_boot_made(monkeypatch):
    import gc

    from actors import supervisor
    from actors.agents.llm import load_configured_sdks

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert load_configured_sdks() == []
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert load_configured_sdks() == ["openai", "aiohttp"]
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    assert load_configured_sdks() == ["openai", "anthropic", "aiohttp"]
    gc.unfreeze()  # whatever froze before in this process: the count below is this call's
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's default
    try:
        supervisor._settle_heap()
        assert gc.get_freeze_count() > 0  # boot's objects are out of the collector's walks
        assert gc.get_threshold() == (50_000, 20, 10)  # and young ones are walked less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


USAGE_CASES = [
    (None, None, {"calls": 2, "prompt_tokens": 200, "completion_tokens": 100, "cost_usd": 0.0004}),
    (
        {"calls": 5, "prompt_tokens": 700, "completion_tokens": 90, "cost_usd": 0.1},
        {"calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.00000003},
        {"calls": 3, "prompt_tokens": 30, "completion_tokens": 15, "cost_usd": 0.2},
    ),
    (
        {"calls": 5, "prompt_tokens": 700, "completion_tokens": 90, "cost_usd": 0.1},
        None,
        {"calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": None},
    ),
    (
        {"calls": 5, "prompt_tokens": 700, "completion_tokens": 90, "cost_usd": None},
        None,
        {"calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.5},
    ),
    (
        {"calls": 4, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0},
        {"calls": 1, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": None},
        {"calls": 2, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0},
    ),
    (None, None, {"calls": 1, "prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 0.12345678}),
    (
        {"calls": 1, "prompt_tokens": 3, "completion_tokens": 4},
        None,
        {"calls": 1, "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0.1},
    ),
]


@pytest.mark.parametrize(("usage", "before", "after"), USAGE_CASES)
def test_the_session_usage_sql_adds_as_python_does(usage, before, after):
    """The events' statement adds a completion's usage in SQL (`SESSION_USAGE_SQL`): the same totals
    as `add_session_usage`, which the last stage and the failures still use."""
    change = session_usage_change(before, after)
    assert change is not None
    with db.connection_context():
        (stored,) = db.execute_sql(
            f"SELECT {SESSION_USAGE_SQL} FROM (SELECT %s::jsonb AS usage) AS s",
            [*change, None if usage is None else json.dumps(usage)],
        ).fetchone()
    assert stored == add_session_usage(usage, before, after)
    assert session_usage_change(after, after) is None and session_usage_change(before, None) is None

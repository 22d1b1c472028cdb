"""The agents and the knowledge-base brain: real, consistent, deterministic work."""

from __future__ import annotations

import pytest

from actors.agents import AGENT_CLASSES, Capability, InvalidOutput, UnknownBrain, get_brain, make_agent
from models.schema import AGENT_ROLES, CATEGORIES, PIPELINE


def run_team(feature: str, description: str | None = None, decisions: list[dict] | None = None) -> dict[str, dict]:
    """Run the seven agents in pipeline order, feeding each the earlier outputs (ids as the pipeline would)."""
    context = {
        "feature_name": feature,
        "description": description,
        "session_decisions": decisions or [],
        "upstream": {},
    }
    outputs: dict[str, dict] = {}
    next_id = 1
    for stage in PIPELINE:
        for role in stage:
            agent = make_agent(role)
            agent.set_context(context)
            output = agent.execute_task(f"{role} work on {feature}")
            for decision in output["decisions"]:
                decision["id"] = next_id
                next_id += 1
            outputs[role] = output
        for role in stage:
            context["upstream"][role] = {"task_id": 0, "output": outputs[role]}
    return outputs


def test_every_role_has_an_agent_with_capabilities():
    assert sorted(AGENT_CLASSES) == sorted(AGENT_ROLES)
    for role in AGENT_ROLES:
        agent = make_agent(role)
        assert agent.capabilities and all(isinstance(c, Capability) for c in agent.capabilities)
    assert Capability.AUDIT in make_agent("security").capabilities
    assert Capability.DEPLOY in make_agent("it_admin").capabilities


def test_outputs_follow_the_contract():
    for role, output in run_team("Team chat", "real-time messaging").items():
        assert output["role"] == role and output["summary"] and output["artifacts"]
        assert isinstance(output["concerns"], list)
        assert output["brain"] == {"name": "knowledge-base", "version": "1"}
        for decision in output["decisions"]:
            assert decision["text"] and decision["rationale"]
            assert decision["category"] in CATEGORIES and decision["confidence"] in {"high", "medium", "low"}
        assert set(output["provenance"]) == {"upstream_decisions", "session_decisions", "upstream_roles"}


def test_the_same_feature_and_context_give_the_same_output():
    assert run_team("Checkout", "card payments") == run_team("Checkout", "card payments")


@pytest.mark.parametrize(
    ("feature", "description", "component", "path"),
    [
        ("Team chat", "real-time messaging", "websocket_gateway", "/ws/conversations/{id}"),
        ("Checkout", "take card payments", "payment_provider", "/webhooks/payments"),
        ("Recipe search", "find recipes by ingredient", "fulltext_index", "/search"),
        ("Document upload", None, "object_storage", "/files/upload-url"),
        ("Sales report", "analytics dashboard", "read_replica", "/reports/{id}/data"),
        ("Login", "password sign in", "session_store", "/auth/login"),
    ],
)
def test_features_drive_the_architecture_and_the_api(feature, description, component, path):
    outputs = run_team(feature, description)
    assert component in {c["key"] for c in outputs["architect"]["artifacts"]["components"]}
    assert path in {e["path"] for e in outputs["backend_dev"]["artifacts"]["endpoints"]}


def test_different_features_give_visibly_different_results():
    chat, pay = run_team("Team chat", "real-time"), run_team("Checkout", "payments")
    for role in AGENT_ROLES:
        assert chat[role]["artifacts"] != pay[role]["artifacts"], role
    tables = {t["name"] for t in pay["dba"]["artifacts"]["tables"]}
    assert {"payments", "ledger_entries"} <= tables
    assert any(i.get("unique") and i["columns"] == ["idempotency_key"] for i in pay["dba"]["artifacts"]["indexes"])


def test_an_unknown_feature_becomes_a_plain_resource_named_after_it():
    outputs = run_team("Recipe box")
    assert "/boxes" in {e["path"] for e in outputs["backend_dev"]["artifacts"]["endpoints"]}
    assert "boxes" in {t["name"] for t in outputs["dba"]["artifacts"]["tables"]}
    assert outputs["architect"]["concerns"]


@pytest.mark.parametrize(
    ("text", "engine", "pk"),
    [
        ("Use SQLite", "sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        ("We must use MySQL 8", "mysql", "BIGINT UNSIGNED AUTO_INCREMENT"),
        ("Nothing about storage", "postgresql", "BIGINT GENERATED ALWAYS AS IDENTITY"),
    ],
)
def test_a_user_database_decision_changes_the_dba_output(text, engine, pk):
    outputs = run_team("Team chat", "real-time", [{"id": 7, "text": text, "category": "technology"}])
    dba = outputs["dba"]
    assert dba["artifacts"]["engine"] == engine
    assert {c["type"] for t in dba["artifacts"]["tables"] for c in t["columns"] if c["name"] == "id"} == {pk}
    if engine != "postgresql":
        assert dba["provenance"]["session_decisions"] == [7]


def test_a_decision_against_websockets_changes_the_transport_downstream():
    outputs = run_team(
        "Team chat", "real-time", [{"id": 3, "text": "No WebSockets, use polling", "category": "technology"}]
    )
    names = {c["name"] for c in outputs["architect"]["artifacts"]["components"]}
    assert "WebSocket gateway" not in names and any("polling" in n for n in names)
    assert not any(e["method"] == "WS" for e in outputs["backend_dev"]["artifacts"]["endpoints"])


def test_security_threats_target_the_endpoints_and_tables_produced_upstream():
    outputs = run_team("Checkout", "card payments and login")
    endpoints = {f"{e['method']} {e['path']}" for e in outputs["backend_dev"]["artifacts"]["endpoints"]}
    columns = {f"table {t['name']}.{c['name']}" for t in outputs["dba"]["artifacts"]["tables"] for c in t["columns"]}
    threats = outputs["security"]["artifacts"]["threats"]
    assert threats and all(t["mitigation"] for t in threats)
    for threat in threats:
        assert threat["target"] in endpoints | columns or threat["target"] in {"payments", "authentication"}
    targets = {t["target"] for t in threats}
    assert "POST /webhooks/payments" in targets and "table users.password_hash" in targets


def test_downstream_decisions_cite_upstream_decision_keys():
    outputs = run_team("Team chat", "real-time")
    upstream_keys = {d["key"] for role in ("architect", "backend_dev", "dba") for d in outputs[role]["decisions"]}
    cited = set(outputs["security"]["provenance"]["upstream_decisions"]) | set(
        outputs["it_admin"]["provenance"]["upstream_decisions"]
    )
    assert cited and cited <= upstream_keys | {k for d in outputs["frontend_dev"]["decisions"] for k in [d["key"]]}


def test_the_deployment_plan_covers_every_chosen_component():
    outputs = run_team("Photo upload", "images with notifications by email")
    units = {u["name"] for u in outputs["it_admin"]["artifacts"]["units"]}
    assert {c["key"] for c in outputs["architect"]["artifacts"]["components"]} <= units
    assert "worker" in units


def test_a_brain_is_a_pluggable_provider():
    class Echo:
        name, version = "echo", "0"

        def think(self, role, description, context):
            return {
                "summary": description,
                "artifacts": {},
                "concerns": [],
                "decisions": [{"key": "x", "text": "t", "rationale": "r", "category": "process", "confidence": "low"}],
            }

    output = make_agent("dba", Echo()).execute_task("hello")
    assert output["summary"] == "hello" and output["brain"]["name"] == "echo"

    class Bad(Echo):
        def think(self, role, description, context):
            return {
                **super().think(role, description, context),
                "decisions": [{"key": "x", "text": "t", "category": "vibes", "confidence": "low"}],
            }

    with pytest.raises(InvalidOutput):
        make_agent("dba", Bad()).execute_task("hello")
    with pytest.raises(UnknownBrain):
        get_brain("gpt-17")


class _SameAnswerBrain:
    """Answers every task with the one dict it holds (a tuple included, as a brain may use)."""

    name, version = "same", "1"

    def __init__(self) -> None:
        self.answer = {
            "summary": "s",
            "artifacts": [{"kind": "note", "lines": ("a", "b")}],
            "decisions": [{"key": "k", "text": "t", "category": "design", "confidence": "high"}],
            "concerns": [],
        }

    def think(self, role: str, task_description: str, context: dict) -> dict:
        return self.answer


def test_an_agents_output_shares_nothing_with_its_brains_answer():
    brain = _SameAnswerBrain()
    agent = make_agent("architect", brain)
    agent.set_context({"feature_name": "f", "description": None, "session_decisions": [], "upstream": {}})
    output = agent.execute_task("work")
    output["decisions"][0]["text"] = "changed"
    output["artifacts"][0]["kind"] = "changed"
    assert brain.answer["decisions"][0] == {"key": "k", "text": "t", "category": "design", "confidence": "high"}
    assert brain.answer["artifacts"][0] == {"kind": "note", "lines": ("a", "b")}
    assert agent.execute_task("work")["decisions"][0]["text"] == "t"

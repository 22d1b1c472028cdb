"""`GET /metrics`: Prometheus figures behind METRICS_TOKEN, read from PostgreSQL and Redis."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from seeding import seed_session

from app import create_app
from models import AgentTask, ExecutionSession

TOKEN = "scrape-me-0123456789"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_are_not_served_without_a_token_setting(client):
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "not_found"


async def test_metrics_refuse_a_scraper_without_the_bearer_token(settings, database, redis_client):
    app = create_app(settings, metrics_token=TOKEN)
    async with app.test_app():
        client = app.test_client()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = await client.get("/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert (await response.get_json())["error"]["code"] == "unauthenticated"


async def test_metrics_count_sessions_tasks_durations_retries_and_queued_messages(
    settings, database, redis_client, personal_team, user
):
    seed_session(personal_team, user, "One")
    seed_session(personal_team, user, "Two")
    failed = seed_session(personal_team, user, "Three", roles=["architect"], status="error")
    AgentTask.update(retry_count=3, duration_seconds=7.0).where(AgentTask.session == failed).execute()
    model_run = seed_session(personal_team, user, "Four", roles=["dba"])
    ExecutionSession.update(brain="openai").where(ExecutionSession.id == model_run.id).execute()
    AgentTask.update(usage={"prompt_tokens": 1200, "completion_tokens": 300, "cost_usd": 0.0021}).where(
        AgentTask.session == model_run
    ).execute()
    redis_client.hset("dramatiq:default.msgs", mapping={"m1": "{}", "m2": "{}"})
    redis_client.rpush("dramatiq:default", "m1", "m2")
    redis_client.rpush("dramatiq:default.DQ", "m3")

    app = create_app(settings, metrics_token=TOKEN)
    async with app.test_app():
        response = await app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    got = samples(await response.get_data(as_text=True))

    assert got[("sage_sessions", (("status", "completed"),))] == 3
    assert got[("sage_model_tokens_total", (("brain", "openai"), ("kind", "completion")))] == 300
    assert got[("sage_model_cost_usd_total", (("brain", "openai"),))] == 0.0021
    assert got[("sage_task_duration_seconds_count", (("agent_role", "dba"), ("brain", "openai")))] == 1
    assert got[("sage_sessions", (("status", "error"),))] == 1
    assert got[("sage_tasks", (("agent_role", "dba"), ("status", "completed")))] == 3
    architect = (("agent_role", "architect"), ("brain", "knowledge-base"))
    assert got[("sage_task_duration_seconds_count", architect)] == 3
    assert got[("sage_task_duration_seconds_bucket", (*architect[:1], architect[1], ("le", "5.0")))] == 2
    assert got[("sage_task_duration_seconds_bucket", (*architect[:1], architect[1], ("le", "10.0")))] == 3
    assert got[("sage_task_retries_total", (("agent_role", "architect"),))] == 3
    assert got[("sage_queue_messages", (("queue", "default"), ("state", "ready")))] == 2
    assert got[("sage_queue_messages", (("queue", "default"), ("state", "delayed")))] == 1
    assert got[("sage_websockets_open", ())] == 0


async def test_metrics_count_the_messages_waiting_on_rabbitmq_when_it_is_the_broker(
    settings, database, redis_client, rabbitmq_url
):
    import dramatiq

    from actors.broker import DrainableRabbitmqBroker

    broker = DrainableRabbitmqBroker(url=rabbitmq_url, middleware=[])

    @dramatiq.actor(broker=broker, queue_name="default", actor_name="metrics_probe")
    def probe() -> None:
        pass

    broker.flush_all()
    try:
        probe.send()
        probe.send()
        probe.send_with_options(delay=60_000)
        app = create_app(settings, metrics_token=TOKEN, broker_url=rabbitmq_url)
        async with app.test_app():
            response = await app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        got = samples(await response.get_data(as_text=True))
    finally:
        broker.flush_all()
        broker.close()
    assert got[("sage_queue_messages", (("queue", "default"), ("state", "ready")))] == 2
    assert got[("sage_queue_messages", (("queue", "default"), ("state", "delayed")))] == 1


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_worker_serves_dramatiq_metrics_on_worker_metrics_port(personal_team, user, redis_actors, start_worker, wait):
    import urllib.request

    from actors import pipeline
    from models import ExecutionSession

    port = free_port()
    start_worker(threads=4, WORKER_METRICS_PORT=str(port))
    start_worker.ready(1)
    session = pipeline.create_session(personal_team.id, user.id, "Metrics")
    pipeline.start_session(session.id)
    wait(lambda: ExecutionSession.get_by_id(session.id).status == "completed", timeout=60)

    def scrape() -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return samples(response.read().decode())
        except OSError:
            return {}

    def processed() -> float:
        return sum(v for (name, _), v in scrape().items() if name == "dramatiq_messages_total")

    assert wait(lambda: processed() >= 7, timeout=20)


def test_the_grafana_dashboard_queries_only_metrics_that_exist():
    import json
    import re
    from pathlib import Path

    import dramatiq.middleware.prometheus as dramatiq_prometheus

    from app.metrics import _Snapshot

    root = Path(__file__).resolve().parent.parent
    dashboard = json.loads((root / "deploy/monitoring/grafana/dashboards/sage-mode.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b((?:sage|dramatiq)_[a-z_]+)\b", target["expr"])
    }
    empty = {"sessions": [], "tasks": [], "durations": [], "retries": [], "usage": []}
    ours = {family.name for family in _Snapshot(empty, {}, 0).collect()}
    ours |= {f"{name}_{suffix}" for name in ours for suffix in ("bucket", "count", "sum")}
    theirs = set(re.findall(r'"(dramatiq_[a-z_]+)"', Path(dramatiq_prometheus.__file__).read_text()))
    assert queried and queried <= ours | theirs, queried - ours - theirs
    prometheus = (root / "deploy/monitoring/prometheus.yml").read_text()
    assert "credentials_file: /run/secrets/metrics_token" in prometheus and "worker:9191" in prometheus

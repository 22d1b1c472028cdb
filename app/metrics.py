"""`GET /metrics`: Prometheus metrics, read at scrape time from where the truth lives.

Served only when `METRICS_TOKEN` is set, and only to a scraper that sends it as a bearer token
(`Authorization: Bearer <token>`); otherwise the path answers 404 like any unknown path, so a
default install exposes nothing. Everything but the open-socket gauge is read from PostgreSQL
and Redis when Prometheus scrapes, so the figures are the same whichever web process answers
and whichever worker did the work:

- `sage_sessions{status}`: sessions by status;
- `sage_tasks{agent_role,status}`: agent tasks by role and status;
- `sage_task_duration_seconds{agent_role,brain}`: a histogram of finished tasks' durations;
- `sage_task_retries_total{agent_role}`: retries used, summed over tasks;
- `sage_queue_messages{queue,state}`: broker messages ready and delayed (on RabbitMQ, the
  delayed ones no worker holds yet: workers keep the rest in memory until due);
- `sage_websockets_open`: sockets this web process is streaming to;
- `sage_model_tokens_total{brain,kind}` and `sage_model_cost_usd_total{brain}`: model usage.

Workers export Dramatiq's own metrics too (`WORKER_METRICS_PORT`, see `actors/broker.py`).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from quart import Blueprint, Response, current_app, request
from quart.utils import run_sync
from quart_schema import hide

from app.db_thread import run_db
from app.errors import ApiError
from models.db import db

blueprint = Blueprint("metrics", __name__)

#: Upper bounds (seconds) of the task-duration buckets: a knowledge-base agent takes
#: milliseconds, a model brain seconds to minutes, the time limit is 5 minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: The Dramatiq namespace and the queue every actor uses unless told otherwise.
BROKER_NAMESPACE = "dramatiq"
DEFAULT_QUEUES = ("default",)


def _rows(sql: str, params: tuple = ()) -> list[tuple]:
    return list(db.execute_sql(sql, params).fetchall())


def database_figures() -> dict[str, Any]:
    """Every database-backed figure, in one connection (five aggregate queries)."""
    buckets = ", ".join(f"count(*) FILTER (WHERE t.duration_seconds <= {b})" for b in DURATION_BUCKETS)
    return {
        "sessions": _rows("SELECT status, count(*) FROM execution_sessions GROUP BY status"),
        "tasks": _rows("SELECT agent_role, status, count(*) FROM agent_tasks GROUP BY agent_role, status"),
        "durations": _rows(
            f"SELECT t.agent_role, s.brain, count(*), coalesce(sum(t.duration_seconds), 0), {buckets}"
            " FROM agent_tasks t JOIN execution_sessions s ON s.id = t.session_id"
            " WHERE t.duration_seconds IS NOT NULL AND t.status IN ('completed', 'error')"
            " GROUP BY 1, 2"
        ),
        "retries": _rows("SELECT agent_role, coalesce(sum(retry_count), 0) FROM agent_tasks GROUP BY agent_role"),
        "usage": _rows(
            "SELECT s.brain, coalesce(sum((t.usage->>'prompt_tokens')::bigint), 0),"
            " coalesce(sum((t.usage->>'completion_tokens')::bigint), 0),"
            " coalesce(sum((t.usage->>'cost_usd')::double precision), 0)"
            " FROM agent_tasks t JOIN execution_sessions s ON s.id = t.session_id"
            " WHERE t.usage IS NOT NULL GROUP BY 1"
        ),
    }


async def queue_figures(redis: Any) -> dict[str, tuple[int, int]]:
    """Ready and delayed messages per broker queue, from the Redis broker's own keys."""
    queues = set(DEFAULT_QUEUES)
    async for key in redis.scan_iter(match=f"{BROKER_NAMESPACE}:*.msgs", count=500):
        name = key.split(":", 1)[1].removesuffix(".msgs")
        if not name.endswith((".XQ", ".DQ")):
            queues.add(name)
    pipe = redis.pipeline(transaction=False)
    ordered = sorted(queues)
    for name in ordered:
        pipe.llen(f"{BROKER_NAMESPACE}:{name}")
        pipe.llen(f"{BROKER_NAMESPACE}:{name}.DQ")
    counts = await pipe.execute()
    return {name: (counts[2 * i], counts[2 * i + 1]) for i, name in enumerate(ordered)}


def rabbitmq_queue_figures(url: str, queues: tuple[str, ...] = DEFAULT_QUEUES) -> dict[str, tuple[int, int]]:
    """Ready and delayed messages per queue on RabbitMQ (a passive declare of each, off the loop)."""
    import pika
    import pika.exceptions

    from models.preflight import rabbitmq_parameters

    figures: dict[str, tuple[int, int]] = {}
    connection = pika.BlockingConnection(rabbitmq_parameters(url))
    try:
        for name in queues:
            counts = []
            for queue in (name, f"{name}.DQ"):
                channel = connection.channel()
                try:
                    counts.append(channel.queue_declare(queue, passive=True).method.message_count)
                    channel.close()
                except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing in it
                    counts.append(0)
            figures[name] = (counts[0], counts[1])
    finally:
        connection.close()
    return figures


class _Snapshot:
    """A prometheus_client collector over figures already read (collect() must not do I/O here)."""

    def __init__(self, figures: dict[str, Any], queues: dict[str, tuple[int, int]], sockets: int) -> None:
        self.figures, self.queues, self.sockets = figures, queues, sockets

    def collect(self) -> Iterator[Metric]:
        sessions = GaugeMetricFamily("sage_sessions", "Execution sessions by status.", labels=["status"])
        for status, count in self.figures["sessions"]:
            sessions.add_metric([status], count)
        yield sessions

        tasks = GaugeMetricFamily("sage_tasks", "Agent tasks by role and status.", labels=["agent_role", "status"])
        for role, status, count in self.figures["tasks"]:
            tasks.add_metric([role, status], count)
        yield tasks

        durations = HistogramMetricFamily(
            "sage_task_duration_seconds", "Durations of finished agent tasks.", labels=["agent_role", "brain"]
        )
        for role, brain, count, total, *cumulative in self.figures["durations"]:
            buckets = [(str(b), c) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)]
            durations.add_metric([role, brain or "knowledge-base"], [*buckets, ("+Inf", count)], float(total))
        yield durations

        retries = GaugeMetricFamily(
            "sage_task_retries_total", "Retries used by agent tasks, summed.", labels=["agent_role"]
        )
        for role, total in self.figures["retries"]:
            retries.add_metric([role], total)
        yield retries

        queue = GaugeMetricFamily("sage_queue_messages", "Broker messages waiting.", labels=["queue", "state"])
        for name, (ready, delayed) in self.queues.items():
            queue.add_metric([name, "ready"], ready)
            queue.add_metric([name, "delayed"], delayed)
        yield queue

        yield GaugeMetricFamily("sage_websockets_open", "WebSockets this web process streams to.", value=self.sockets)

        tokens = GaugeMetricFamily(
            "sage_model_tokens_total", "Model tokens reported by the endpoints.", labels=["brain", "kind"]
        )
        cost = GaugeMetricFamily("sage_model_cost_usd_total", "Model cost from the price table.", labels=["brain"])
        for brain, prompt, completion, usd in self.figures["usage"]:
            tokens.add_metric([brain, "prompt"], prompt)
            tokens.add_metric([brain, "completion"], completion)
            cost.add_metric([brain], usd)
        yield tokens
        yield cost


def _authorized(token: str | None) -> bool:
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    """The Prometheus text format, for a scraper holding METRICS_TOKEN; 404 for everyone else."""
    settings = current_app.extensions["sage_settings"]
    if not settings.metrics_token:
        raise ApiError(404, "not found")
    if not _authorized(settings.metrics_token):
        raise ApiError(401, "metrics need the bearer token of METRICS_TOKEN")
    figures = await run_db(database_figures)
    if settings.broker == "rabbitmq":
        queues = await run_sync(rabbitmq_queue_figures)(settings.broker_url)
    else:
        queues = await queue_figures(current_app.extensions["sage_redis"])
    sockets = current_app.extensions["sage_hub"].subscription_count
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(figures, queues, sockets))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

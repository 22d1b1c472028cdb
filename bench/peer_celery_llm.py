"""Celery peer of bench/llm_scale.py: the session's 7 model calls as `chain(task, group, group, group)`.

    celery -A peer_celery_llm worker --pool gevent --concurrency C     (cwd bench/, see llm_scale.py)

Each task is one agent's model call, made the way the product's openai brain makes it: the
official `openai` SDK (retries off), streamed, with `stream_options.include_usage`, against the
same local endpoint (bench/fake_openai.py), then the answer parsed as JSON. Every task of a role
sends the request the product's brain builds for that role (`build_prompt` over a session's
upstream outputs, written by llm_scale.py to BENCH_LLM_PEER_REQUESTS), so both systems move the
same bytes. The peer stores nothing: it is the I/O-bound canvas alone, the floor a product that
also keeps every task and event has to get close to.

Under the gevent pool, Celery monkey-patches the standard library before this module is
imported, so the SDK's blocking sockets yield to other greenlets while a call waits. One client
per worker process, shared by its greenlets (httpx's pool is sized to the concurrency).

In a chain, a group followed by another step becomes a chord, which needs a result backend:
Redis (the same database as the broker, BENCH_PEER_REDIS_URL).
"""

from __future__ import annotations

import json
import os
import time

import httpx
import openai
import redis
from celery import Celery, chain, group
from peer_shape import DONE_KEY, PEER_REDIS_URL

#: The product's pipeline: which roles run in each stage (models/schema.py PIPELINE).
STAGES = (("architect",), ("backend_dev", "dba"), ("frontend_dev", "ui_ux"), ("security", "it_admin"))
LAST = len(STAGES) - 1

app = Celery("peer_celery_llm", broker=PEER_REDIS_URL, backend=PEER_REDIS_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=600,
    # One result backend (and Redis connection pool) per process. Celery's default keeps one per
    # thread, and under gevent a "thread" is the greenlet each task runs in: every task built a
    # backend, a connection pool and a pub/sub drainer of its own, and the pool spent its time on
    # that instead of on the calls (a 1,000-session run made 12 calls/s at 200 greenlets).
    result_backend_thread_safe=True,
)
done = redis.Redis.from_url(PEER_REDIS_URL)

_requests: dict[str, dict] | None = None
_client: openai.OpenAI | None = None


def requests_by_role() -> dict[str, dict]:
    global _requests
    if _requests is None:
        with open(os.environ["BENCH_LLM_PEER_REQUESTS"]) as file:
            _requests = json.load(file)
    return _requests


def client() -> openai.OpenAI:
    """The process's one client; its connection pool holds as many connections as greenlets."""
    global _client
    if _client is None:
        size = int(os.environ.get("BENCH_LLM_PEER_CONNECTIONS", "100"))
        _client = openai.OpenAI(
            api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
            base_url=os.environ["OPENAI_BASE_URL"],
            max_retries=0,
            timeout=openai.Timeout(120.0, connect=10.0),
            http_client=httpx.Client(limits=httpx.Limits(max_connections=size, max_keepalive_connections=size)),
        )
    return _client


@app.task(name="think")
def think(run_id: str, stage: int, role: str) -> int:
    """One streamed model call for `role`; the last stage's members stamp their completion."""
    parts: list[str] = []
    usage = None
    response = client().chat.completions.create(
        **requests_by_role()[role], stream=True, stream_options={"include_usage": True}
    )
    try:
        for chunk in response:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices or ():
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
    finally:
        response.close()
    output = json.loads("".join(parts))
    if not isinstance(output, dict) or "summary" not in output or usage is None:
        raise ValueError(f"{role}: the answer is not a role output with usage")
    if stage == LAST:
        done.rpush(DONE_KEY, f"{run_id} {time.time()}")
    return usage.completion_tokens


def canvas(run_id: str) -> chain:
    """One session: the architect, then three groups of two agents."""
    steps = []
    for stage, roles in enumerate(STAGES):
        members = [think.si(run_id, stage, role) for role in roles]
        steps.append(members[0] if len(members) == 1 else group(members))
    return chain(*steps)

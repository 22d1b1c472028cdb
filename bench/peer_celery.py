"""Celery peer: the 1 + 2 + 2 + 2 shape as `chain(task, group, group, group)` on Redis.

    celery -A peer_celery worker --pool threads --concurrency T     (cwd bench/, see pipeline.py)

In a chain, a group followed by another step becomes a chord, which needs a result backend:
Redis (the same database as the broker), whose chords count members with INCR and apply the
body from the last member.
"""

from __future__ import annotations

import time

import redis
from celery import Celery, chain, group
from peer_shape import DONE_KEY, LAST, PEER_REDIS_URL, SHAPE

app = Celery("peer_celery", broker=PEER_REDIS_URL, backend=PEER_REDIS_URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False, result_expires=600)
client = redis.Redis.from_url(PEER_REDIS_URL)


@app.task(name="noop")
def noop(run_id: str, stage: int) -> None:
    """Do nothing; members of the last stage stamp their completion."""
    if stage == LAST:
        client.rpush(DONE_KEY, f"{run_id} {time.time()}")


def canvas(run_id: str) -> chain:
    """One run: the first task, then three groups of two."""
    steps = []
    for stage, size in enumerate(SHAPE):
        members = [noop.si(run_id, stage) for _ in range(size)]
        steps.append(members[0] if size == 1 else group(members))
    return chain(*steps)

"""Bare Dramatiq peer: the 1 + 2 + 2 + 2 shape as groups joined by a Redis barrier.

    dramatiq peer_dramatiq --processes P --threads T     (cwd bench/, see pipeline.py)

Dramatiq has no chain of groups. Its idiomatic group-completion tool, `group.add_completion_callback`
with the GroupCallbacks middleware, is an INCR barrier in Redis that enqueues one callback
message; a callback that only enqueues the next group would add a message hop per stage that
neither Celery's Redis chord (its last member applies the body directly) nor the product (its
last member enqueues the next stage) pays. So the barrier is the same INCR, done by the member
itself, and the member that completes the barrier enqueues the next group: the same number of
broker round trips as both peers, and no persistence at all.
"""

from __future__ import annotations

import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from peer_shape import DONE_KEY, LAST, PEER_REDIS_URL, SHAPE

broker = RedisBroker(url=PEER_REDIS_URL)
dramatiq.set_broker(broker)
client = redis.Redis.from_url(PEER_REDIS_URL)


def start_stage(run_id: str, stage: int) -> None:
    """Enqueue one stage of a run as a group."""
    dramatiq.group([noop.message(run_id, stage) for _ in range(SHAPE[stage])], broker=broker).run()


@dramatiq.actor(queue_name="bench_peer", max_retries=0)
def noop(run_id: str, stage: int) -> None:
    """Do nothing; the member that finishes its stage starts the next one."""
    if stage == LAST:
        client.rpush(DONE_KEY, f"{run_id} {time.time()}")
        return
    if SHAPE[stage] > 1 and client.incr(f"bench:barrier:{run_id}:{stage}") < SHAPE[stage]:
        return
    start_stage(run_id, stage + 1)

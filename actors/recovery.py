"""Sessions whose messages the broker lost: found within seconds, and their stage sent again.

Redis is transport (ARCHITECTURE.md decision 1): restarted empty, or failed over, it forgets
every queued, delayed and in-flight message, and the sessions waiting on them stay `active`
with nothing left to move them. The stall rule of `actors.sweeper` would mark them `error`
minutes later; this module resumes them instead.

A task of an active session's current stage that has not completed is *lost* when nothing can
still run it:

- `pending`: no message for its session and role is queued or delayed (the bodies in the
  broker's `<queue>.msgs` and `<queue>.DQ.msgs` hashes, which keep a message until it is acked,
  so a fetched one counts too), and its last message id (a retry keeps it) is not in flight;
- `running`: its claiming message id is neither in those hashes nor in flight.

*In flight* means being processed now by a live worker process, which `InFlight` re-asserts in
Redis every `INFLIGHT_REFRESH_SECONDS` (a set per process, with a short expiry), so it is known
again within seconds after Redis comes back empty, while the broker's own ack sets are gone.

A session is resumed when one of its tasks is seen lost in the same state on two looks at least
`CONFIRM_SECONDS` apart (one look can race a task that finishes between the database read and
the Redis read): lost `running` claims are released (`running` -> `pending`, only if still held
by the same message), then `actors.pipeline.resend_stage` queues the stage's unfinished tasks.
Duplicates are harmless: a claim lets one message run a task. A session is resent at most
`MAX_RESENDS` times per stage; after that it is left to the stall rule, which gives up on it.

`recover()` runs in every worker process's sweeper thread every `RECOVERY_INTERVAL_SECONDS`,
under a Redis lock, so once per interval across the fleet.

All of this is for the Redis broker only. On RabbitMQ (`BROKER_URL=amqp://`) the broker does it
natively: queues are durable and messages persistent, so a restart keeps them, and a message is
requeued the moment the connection of the worker holding it closes; `InFlight` is not installed
there and `recover_once_per_fleet` does nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import dramatiq
import orjson
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name
from dramatiq.middleware import Middleware
from peewee import fn

from models.db import db
from models.schema import PIPELINE, AgentTask, ExecutionSession

logger = logging.getLogger(__name__)

RECOVERY_INTERVAL_SECONDS = 5.0
CONFIRM_SECONDS = 4.0
INFLIGHT_REFRESH_SECONDS = 2.0
INFLIGHT_TTL_MS = 10_000
MAX_RESENDS = 5

INFLIGHT_PREFIX = "sage:inflight:"
SUSPECTS_KEY = "sage:recovery:suspects"
RESENDS_KEY = "sage:recovery:resends"
LOCK_KEY = "sage:recovery:lock"


class InFlight(Middleware):
    """Keeps `sage:inflight:<process>` in Redis: the ids of the messages this process is running."""

    def __init__(self, refresh_seconds: float = INFLIGHT_REFRESH_SECONDS) -> None:
        self.refresh_seconds = refresh_seconds
        self.key = f"{INFLIGHT_PREFIX}{uuid.uuid4().hex}"
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._client: redis.Redis | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        assert isinstance(broker, RedisBroker)  # added only to Redis brokers (actors/broker.py)
        self._client = broker.client
        self._stop.clear()
        threading.Thread(target=self._loop, name="sage-inflight", daemon=True).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Only now: while the worker drains, its running tasks are still in flight.
        self._stop.set()
        try:
            if self._client is not None:
                self._client.delete(self.key)
        except redis.RedisError:
            pass

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        with self._lock:
            self._ids.add(message.message_id)

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        with self._lock:
            self._ids.discard(message.message_id)

    after_skip_message = after_process_message

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish()
            except redis.RedisError as exc:
                logger.debug("could not refresh the in-flight set: %s", exc)
            self._stop.wait(self.refresh_seconds)

    def publish(self) -> None:
        """Write this process's in-flight ids to Redis now."""
        with self._lock:
            ids = list(self._ids)
        if self._client is None:
            return
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self.key)
        if ids:
            pipe.sadd(self.key, *ids)
            pipe.pexpire(self.key, INFLIGHT_TTL_MS)
        pipe.execute()


class BrokerView:
    """What the Redis broker holds right now: message ids, (session, actor) pairs, in-flight ids."""

    def __init__(self, broker: RedisBroker, queue_names: Iterable[str]) -> None:
        client = broker.client
        self.message_ids: set[str] = set()
        self.sessions_actors: set[tuple[int, str]] = set()
        for queue in set(queue_names):
            for name in (queue, dq_name(queue)):
                for raw in client.hvals(f"{broker.namespace}:{name}.msgs"):
                    self._add(raw)
        self.in_flight: set[str] = set()
        for key in client.scan_iter(match=f"{INFLIGHT_PREFIX}*", count=500):
            self.in_flight.update(_text(m) for m in client.smembers(key))

    def _add(self, raw: bytes | str) -> None:
        try:
            try:
                # A look reads every queued message of every active session: with orjson the
                # view of 1,000 of them took 8.8 ms instead of 16.5 (bench/README.md, ninth pass).
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = json.loads(raw)  # what Python writes and orjson refuses: NaN and infinities
            self.message_ids.add(data["message_id"])
            args = data.get("args") or []
            # A role's message is `.s(session_id, task_description)`, after the previous stage's
            # results when it is not the first stage of its chain: the session id is second to last.
            session_id = args[-2] if len(args) >= 2 else (data.get("kwargs") or {}).get("session_id")
            if isinstance(session_id, int):
                self.sessions_actors.add((session_id, data["actor_name"]))
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable message in the broker: %.80r", raw)

    def holds(self, task: AgentTask, actor_name: str) -> bool:
        """Can something in the broker or a live worker still run `task`?"""
        mid = task.celery_task_id
        if mid and (mid in self.message_ids or mid in self.in_flight):
            return True
        return task.status == "pending" and (task.session_id, actor_name) in self.sessions_actors


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _signature(task: AgentTask) -> str:
    return f"{task.status}|{task.celery_task_id}|{task.retry_count}"


def _unfinished_stage_tasks() -> list[AgentTask]:
    """The unfinished tasks of every active session's current stage (one query), with the columns
    a look reads and no others: not their inputs, decoded for every task on every look."""
    return list(
        AgentTask.select(
            AgentTask.id,
            AgentTask.session,
            AgentTask.agent_role,
            AgentTask.stage,
            AgentTask.status,
            AgentTask.retry_count,
            AgentTask.celery_task_id,
        )
        .join(ExecutionSession, on=(AgentTask.session == ExecutionSession.id))
        .where(
            (ExecutionSession.status == "active")
            & (AgentTask.stage == ExecutionSession.current_stage)
            & (AgentTask.status << ("pending", "running"))
        )
    )


def _unadvanced_sessions() -> dict[int, int]:
    """Active sessions whose current stage is all completed, by id, with that stage (one query).

    A stage advances the moment its last task completes; one still waiting lost its advance,
    for instance a group barrier's record of an earlier member, wiped with Redis.
    """
    unfinished = AgentTask.select(AgentTask.id).where(
        (AgentTask.session == ExecutionSession.id)
        & (AgentTask.stage == ExecutionSession.current_stage)
        & (AgentTask.status != "completed")
    )
    query = ExecutionSession.select(ExecutionSession.id, ExecutionSession.current_stage).where(
        (ExecutionSession.status == "active")
        & (ExecutionSession.current_stage < len(PIPELINE) - 1)  # the last stage's completion finishes it
        & ~fn.EXISTS(unfinished)
    )
    return {row.id: row.current_stage for row in query}


def find_lost(broker: RedisBroker, actor_names: dict[str, str]) -> dict[int, list[AgentTask]]:
    """Tasks nothing can run any more, by session, at this look (call inside a connection).

    `actor_names` maps a role to its actor's name. The database is read before Redis: a task
    that moves in between can only look lost, never hide a loss (hence the second look).
    """
    tasks = _unfinished_stage_tasks()
    if not tasks:
        return {}
    queues = {broker.get_actor(name).queue_name for name in actor_names.values()}
    view = BrokerView(broker, queues)
    lost: dict[int, list[AgentTask]] = {}
    for task in tasks:
        if not view.holds(task, actor_names[task.agent_role]):
            lost.setdefault(task.session_id, []).append(task)
    return lost


def recover(broker: RedisBroker, now: float | None = None) -> dict[int, int]:
    """One look: resend the stage of every session whose loss is confirmed by an earlier look.

    Returns {session_id: messages sent}. Call inside a database connection, outside a transaction.
    """
    from actors.pipeline import ROLE_TASKS, resend_stage

    now = time.time() if now is None else now
    client = broker.client
    actor_names = {role: task.actor.actor_name for role, task in ROLE_TASKS.items()}
    lost = find_lost(broker, actor_names)
    seen = {_text(k): v for k, v in client.hgetall(SUSPECTS_KEY).items()}
    suspects: dict[str, str] = {}
    confirmed: dict[int, list[AgentTask]] = {}
    for session_id, tasks in lost.items():
        for task in tasks:
            signature = _signature(task)
            before = json.loads(seen[str(task.id)]) if str(task.id) in seen else None
            if before and before["signature"] == signature:
                suspects[str(task.id)] = json.dumps(before)
                if now - before["since"] >= CONFIRM_SECONDS:
                    confirmed.setdefault(session_id, []).append(task)
            else:
                suspects[str(task.id)] = json.dumps({"signature": signature, "since": now})
    # Sessions whose stage finished but never advanced, under a key of their own.
    advances: list[int] = []
    for session_id, stage in _unadvanced_sessions().items():
        key, signature = f"session:{session_id}", f"advance|{stage}"
        before = json.loads(seen[key]) if key in seen else None
        if before and before["signature"] == signature:
            suspects[key] = json.dumps(before)
            if now - before["since"] >= CONFIRM_SECONDS:
                advances.append(session_id)
        else:
            suspects[key] = json.dumps({"signature": signature, "since": now})
    pipe = client.pipeline(transaction=True)
    pipe.delete(SUSPECTS_KEY)
    if suspects:
        pipe.hset(SUSPECTS_KEY, mapping=dict[Any, Any](suspects))
        pipe.expire(SUSPECTS_KEY, 300)
    pipe.execute()

    sent: dict[int, int] = {}
    for session_id, tasks in confirmed.items():
        stage = tasks[0].stage
        resends = client.hincrby(RESENDS_KEY, f"{session_id}:{stage}", 1)
        client.expire(RESENDS_KEY, 86_400)
        if resends > MAX_RESENDS:
            if resends == MAX_RESENDS + 1:
                logger.error(
                    "session %s lost stage %s %d times; leaving it to the stall rule", session_id, stage, MAX_RESENDS
                )
            continue
        released = _release_lost_claims(session_id, tasks)
        count = resend_stage(session_id)
        roles = ", ".join(f"{t.agent_role} ({t.status})" for t in tasks)
        logger.warning(
            "session %s: the broker lost stage %s (%s); released %d claims, sent %d messages again",
            session_id,
            stage,
            roles,
            released,
            count,
        )
        client.hdel(SUSPECTS_KEY, *[str(t.id) for t in tasks])
        sent[session_id] = count
    for session_id in advances:
        count = resend_stage(session_id)  # makes the lost advance and sends the next stage
        logger.warning("session %s: its stage finished but never advanced; advanced it, sent %d", session_id, count)
        client.hdel(SUSPECTS_KEY, f"session:{session_id}")
        sent[session_id] = count
    return sent


def _release_lost_claims(session_id: int, tasks: list[AgentTask]) -> int:
    """`running` -> `pending` for lost claims still held by the same message (each a conditional
    UPDATE of its row, which waits for a completion in flight), then the session's lock, taken
    last as in `models.lifecycle`, so that an end or failure in flight is done first."""
    claims = [(t.id, t.celery_task_id) for t in tasks if t.status == "running"]
    if not claims:
        return 0
    released = 0
    with db.atomic():
        for task_id, message_id in claims:
            released += (
                AgentTask.update(status="pending")
                .where(
                    (AgentTask.id == task_id)
                    & (AgentTask.status == "running")
                    & (AgentTask.celery_task_id == message_id)
                )
                .execute()
            )
        ExecutionSession.select().where(ExecutionSession.id == session_id).for_update("FOR NO KEY UPDATE").first()  # type: ignore[arg-type]
    return released


def fleet_turn(client: Any, key: str, interval: float) -> bool:
    """Whether this process takes the fleet's turn at `key` for this interval: a Redis lock that
    lapses just before the next interval, so each periodic duty runs about once per interval in
    all, as long as any worker is alive."""
    return bool(client.set(key, "1", nx=True, px=int(interval * 1000 * 0.9)))


def recover_once_per_fleet(broker: dramatiq.Broker, interval: float = RECOVERY_INTERVAL_SECONDS) -> dict[int, int]:
    """`recover` if this process wins the fleet's lock for this interval (else {})."""
    if not isinstance(broker, RedisBroker):
        return {}  # RabbitMQ keeps its queues durable; only Redis's can vanish this way
    if not fleet_turn(broker.client, LOCK_KEY, interval):
        return {}
    with db.connection_context():
        return recover(broker)

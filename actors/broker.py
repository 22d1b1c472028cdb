"""The workers' broker, configured from settings, with the project's middleware.

Dramatiq's Redis broker by default; its RabbitMQ broker when `BROKER_URL` is an amqp:// URL
(ARCHITECTURE.md decision 14). Login sessions, rate limits, live events and the canvas's
result backend stay on Redis either way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import dramatiq
import pika.exceptions
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import compute_backoff, current_millis, iter_queue
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage, Middleware

from actors import parking
from actors.middleware import DatabaseMiddleware, LogContextMiddleware
from models.settings import Settings

#: Out of a million broker commands, how many also requeue dead workers' messages. Dramatiq's
#: default (1000) makes an idle worker notice a dead one only after ~1000 polls (minutes at a
#: 100 ms worker timeout); 100000 makes it about a second after the heartbeat timeout. The check
#: is one ZRANGEBYSCORE on a small sorted set.
MAINTENANCE_CHANCE = 100_000


#: How many unclaimed wake-up tokens a queue keeps (extra ones would only cause empty polls).
WAKE_TOKENS_KEPT = 16

#: How long a consumer that has just taken one message after a wake-up waits for another token
#: before fetching in full: long enough for another idle process, woken by the next token, to
#: fetch its message first (a round trip), short enough to cost nothing that matters.
WAKE_TURN_SECONDS = 0.001


def wake_key(broker: RedisBroker, queue_name: str) -> str:
    """The Redis list that idle consumers of `queue_name` block on."""
    return f"{broker.namespace}:{queue_name}.wake"


class _WakeableConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, except that between empty polls it blocks on the queue's
    wake-up list (BLPOP, for at most the same backoff) instead of sleeping. An enqueue pushes a
    token, so an idle worker starts a message within a round trip instead of up to a whole
    poll interval later, and the poll interval can stay long (cheap) without adding latency.
    """

    def __init__(self, broker, queue_name, prefetch, timeout) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.wake_key = wake_key(broker, queue_name)
        #: Coming out of idle: "woken" (a token woke this consumer: take one message) or "taken"
        #: (took one: another token may be waiting for this consumer too); None when busy.
        self.waking: str | None = None

    @property
    def outstanding_message_count(self) -> int:
        # A parked message (`actors.parking`) is unacked but holds no thread: counting it would
        # cap a process at `prefetch` (threads x 2) model calls in flight.
        return super().outstanding_message_count - parking.parked_count(self.queue_name)

    def __next__(self):  # the parent's loop, with the sleep replaced
        try:
            if getattr(self.broker, "draining", False):
                # Stopping: take nothing new, but keep the heartbeat (any command refreshes it),
                # or other workers would redeliver the messages still running here.
                self.broker.do_fetch(self.queue_name, 0)
                time.sleep(self.timeout / 1000)
                return None
            while True:
                try:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return dramatiq.MessageProxy(message)
                except IndexError:
                    messages = []
                    room = self.prefetch - self.outstanding_message_count
                    if room > 0:
                        self.message_cache = messages = self.broker.do_fetch(self.queue_name, self._take(room))
                    if not messages:
                        self.waking = None
                        self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                        woken = self.broker.client.blpop([self.wake_key], timeout=max(backoff_ms, 1) / 1000)
                        self.waking = "woken" if woken else None
                        return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None

    def _take(self, room: int) -> int:
        """How many messages to fetch. Coming out of idle, one per wake-up token: an enqueue pushes
        a token per message and Redis hands tokens to blocked consumers in turn, so a stage's two
        tasks sent to two idle processes run on both (on both cores) instead of both being
        fetched by the first process woken, where they would take turns on its GIL. After taking
        one, a consumer looks briefly for another token of its own before fetching in full."""
        if self.waking == "taken":
            again = self.broker.client.blpop([self.wake_key], timeout=WAKE_TURN_SECONDS)
            self.waking = "woken" if again else None
        if self.waking == "woken":
            self.waking = "taken"
            return 1
        return room

    def close(self) -> None:
        # Dramatiq requeues what reached the work queue, but not what is still in this cache
        # (fetched, so in this worker's ack set): without this, a stopping worker's prefetched
        # messages wait for its heartbeat to expire before anyone else may run them.
        cached, self.message_cache = self.message_cache, []
        ids = [Message.decode(data).options["redis_message_id"] for data in cached if data is not None]
        if ids:
            try:
                self.broker.do_requeue(self.queue_name, *ids)
            except redis.ConnectionError:
                pass  # the dead-worker maintenance requeues them after the heartbeat timeout


class _Drains:
    """What `Draining` and the worker read on the brokers of this module; and Dramatiq's
    `emit_before` and `emit_after` calling only the middleware that has the hook.

    Dramatiq calls every middleware's method for each signal, most of them `Middleware`'s own
    empty ones: with the project's 14 middleware and the signals a message raises (process,
    ack, enqueue of the next stage), `Broker.emit_after` alone was 3.4% of a worker's time with
    the GIL under `bench/pipeline.py` (issue 13, fifth pass). The hooks of a signal are listed
    once, in Dramatiq's order, and listed again whenever middleware is added; a signal that
    `Middleware` does not define calls every middleware, as Dramatiq does.
    """

    #: Set by `Draining` while the worker stops: consumers take no new messages.
    draining = False

    #: How many messages a worker process may hold unacked besides those it runs or has
    #: prefetched: parked tasks (a task waiting on a model without a thread keeps its message
    #: unacked). `queue_prefetch` adds it to the worker's prefetch, which on RabbitMQ is a hard
    #: limit (basic_qos): without it a process whose parked tasks fill the prefetch is sent
    #: nothing more. `rabbitmq_broker` sets it from the endpoint cap; 0 means nothing is parked.
    parked_capacity = 0

    middleware: list[Middleware]
    logger: logging.Logger
    _hooks_of: dict[str, list[Any]]

    def add_middleware(self, middleware: Middleware, **kwargs: Any) -> None:
        super().add_middleware(middleware, **kwargs)  # type: ignore[misc]  # the broker this is mixed into
        self._hooks_of = {}

    def _hooks(self, signal: str) -> list[Any] | None:
        """The middleware whose `signal` method is its own, in `self.middleware`'s order; None for
        a signal `Middleware` does not define."""
        empty = getattr(Middleware, signal, None)
        if empty is None:
            return None
        hooks = self.__dict__.setdefault("_hooks_of", {}).get(signal)
        if hooks is None:
            hooks = self._hooks_of[signal] = [
                middleware
                for middleware in self.middleware
                if signal in getattr(middleware, "__dict__", ()) or getattr(type(middleware), signal, None) is not empty
            ]
        return hooks

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hook = "before_" + signal
        hooks = self._hooks(hook)
        if hooks is None:
            return super().emit_before(signal, *args, **kwargs)  # type: ignore[misc]
        for middleware in hooks:
            try:
                getattr(middleware, hook)(self, *args, **kwargs)
            except dramatiq.middleware.MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", hook, middleware, exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hook = "after_" + signal
        hooks = self._hooks(hook)
        if hooks is None:
            return super().emit_after(signal, *args, **kwargs)  # type: ignore[misc]
        for middleware in reversed(hooks):
            try:
                getattr(middleware, hook)(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", hook, middleware, exc_info=True)


class WakeableRedisBroker(_Drains, RedisBroker):
    """A RedisBroker whose consumers are woken by enqueues (see `_WakeableConsumer`), which
    stops fetching while its worker drains (see `Draining`), and which can send several messages
    in one round trip (`batch`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batches = threading.local()

    @property
    def consumer_class(self):
        return _WakeableConsumer

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Messages enqueued inside the block (and their wake-up tokens) are sent at its end, in
        one pipelined round trip, in order; none of them if the block raises. A stage's group
        is sent this way. Nested blocks join the outermost one."""
        if self.pending_batch() is not None:
            yield
            return
        pipe = self.client.pipeline(transaction=False)
        self._batches.pipe = pipe
        try:
            yield
        finally:
            self._batches.pipe = None
        if not len(pipe):
            return
        stack = list(pipe.command_stack)
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            # Redis lost its scripts (a restart): load the dispatch script and send it all again
            # (the wake-up tokens went through the first time: a spare token costs one empty poll).
            script = self.scripts["dispatch"]
            self.client.script_load(script.script)
            again = self.client.pipeline(transaction=False)
            for args, options in stack:
                again.pipeline_execute_command(*args, **options)
            again.execute()

    def pending_batch(self) -> Any:
        """This thread's open `batch` pipeline, or None."""
        return getattr(self._batches, "pipe", None)

    def do_enqueue(self, queue_name: str, *args: Any) -> Any:
        pipe = self.pending_batch()
        if pipe is None:
            return self._dispatch("enqueue")(queue_name, *args)
        # Dramatiq's `_dispatch("enqueue")`, queued on the batch's pipeline as a plain EVALSHA (a
        # script registered with the pipeline would cost a SCRIPT EXISTS round trip per batch).
        pipe.evalsha(
            self.scripts["dispatch"].sha,
            1,
            self.namespace,
            "enqueue",
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            self._should_do_maintenance("enqueue"),
            self._max_unpack_size(),
            *args,
        )
        return None


class WakeUp(Middleware):
    """After a message is enqueued for now (not delayed), push a wake-up token for its queue."""

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if delay or not isinstance(broker, WakeableRedisBroker):
            return
        key = wake_key(broker, message.queue_name)
        batch = broker.pending_batch()
        pipe = batch if batch is not None else broker.client.pipeline(transaction=False)
        pipe.rpush(key, 1)
        pipe.ltrim(key, -WAKE_TOKENS_KEPT, -1)
        pipe.pexpire(key, 60_000)
        if batch is None:
            pipe.execute()


class Draining(Middleware):
    """On a graceful stop, consumers stop taking messages while running tasks finish."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if isinstance(broker, _Drains):
            broker.draining = False

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if isinstance(broker, _Drains):  # its consumers are the ones that look
            broker.draining = True
        if isinstance(broker, DrainableRabbitmqBroker):
            _give_back_unstarted(worker)


def _give_back_unstarted(worker: dramatiq.Worker) -> None:
    """Hand the messages a stopping worker has taken but not started back to RabbitMQ now.

    Dramatiq would return them only when it closes its consumers, after the running tasks have
    finished (up to the grace period later). This runs before the worker threads are told to
    stop; a message taken off the work queue here can no longer be started by one of them.
    The consumer's thread sends them back (`_DrainableRabbitmqConsumer.give_back`).
    """
    unstarted = list(iter_queue(worker.work_queue))
    resumed = getattr(worker, "_resumable", {})  # back from a parked model call (`actors.parking`)
    for item in unstarted:
        if id(item.message) in resumed:
            worker.work_queue.put(item)  # started already: only its continuation is left to run
            continue
        thread = worker.consumers.get(item.message.queue_name)
        consumer = thread.consumer if thread is not None else None
        if isinstance(consumer, _DrainableRabbitmqConsumer):
            consumer.give_back(item.message)
        else:
            worker.work_queue.put(item)  # left to Dramatiq's own requeue at the end


class _DrainableRabbitmqConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer, except that while its worker drains it cancels its
    subscription, gives back what the worker took but had not started, and only keeps the
    connection serviced.

    Cancelling hands the messages RabbitMQ had pushed to this consumer, but that it had not yet
    given to the worker, back to the queue for other workers; the ones the worker had taken
    are handed back right after (`give_back`), so that RabbitMQ cannot push them here again.
    All of it happens on this consumer's thread, because pika's connection is not thread-safe;
    the acks of the tasks still running are queued onto it (`add_callback_threadsafe`) and
    sent from here too, and so are its heartbeats.
    """

    def __init__(self, broker, queue_name, prefetch, timeout) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.timeout = timeout
        self.cancelled = False
        self.to_give_back: deque[int] = deque()

    def give_back(self, message: dramatiq.MessageProxy) -> None:
        """Return an unstarted message to its queue once this consumer is cancelled (any thread)."""
        tag = message._tag  # a _RabbitmqMessage's delivery tag
        if tag in self.known_tags:
            self.known_tags.discard(tag)
            self.to_give_back.append(tag)

    def __next__(self):
        if not getattr(self.broker, "draining", False):
            return super().__next__()
        try:
            if not self.cancelled:
                self.cancelled = True
                self.channel.cancel()  # basic.cancel, and requeues what pika buffered
            while self.to_give_back:
                self.channel.basic_nack(self.to_give_back.popleft(), requeue=True)
            self.connection.process_data_events(time_limit=self.timeout / 1000)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            raise ConnectionClosed(exc) from None
        return None


class DrainableRabbitmqBroker(_Drains, RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, whose consumers stop taking messages while their worker drains.

    What the Redis broker needs extra code for, RabbitMQ does natively: a message stays on the
    server until it is acked, and when a worker's connection closes, a SIGKILL included, RabbitMQ
    requeues every message that connection had not acked, at once and without a heartbeat timeout.
    So this broker needs neither wake-up lists (RabbitMQ pushes messages to idle consumers) nor
    the in-flight sets and lost-message recovery of `actors.recovery` (its queues are durable and
    its messages persistent, so a restarted RabbitMQ still has them). Delayed messages, retries
    included, go to Dramatiq's delay queue (`<queue>.DQ`) and are moved to the queue when due.
    """

    @property
    def consumer_class(self):
        return _DrainableRabbitmqConsumer


def redis_broker(settings: Settings) -> RedisBroker:
    """A Redis broker whose dead-worker detection takes seconds, not minutes, and whose idle
    workers are woken by enqueues instead of waiting out their poll interval."""
    from actors.celery_compat import Composition
    from actors.recovery import InFlight
    from actors.sweeper import SweeperMiddleware

    broker = WakeableRedisBroker(
        url=settings.redis_broker_url,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        dead_message_ttl=settings.dead_message_ttl_ms,
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(WakeUp())
    broker.add_middleware(Draining())
    broker.add_middleware(DatabaseMiddleware(settings))
    broker.add_middleware(LogContextMiddleware(settings))
    broker.add_middleware(InFlight())
    broker.add_middleware(SweeperMiddleware(settings))
    if settings.worker_metrics_port:
        broker.add_middleware(prometheus_middleware(settings))
    # Last, so that its after-hooks run first (Dramatiq runs them in reverse): while the
    # message's database connection is still open, for the pipeline's stage gate.
    broker.add_middleware(Composition())
    return broker


def rabbitmq_broker(settings: Settings) -> RabbitmqBroker:
    """A RabbitMQ broker on BROKER_URL with the project's middleware (see `DrainableRabbitmqBroker`).

    Publishes are confirmed: an enqueue returns once RabbitMQ has taken the message, so a session
    the web answered 202 for cannot lose its first stage to a connection dropped mid-publish.
    """
    from actors.agents import limits
    from actors.celery_compat import Composition
    from actors.sweeper import SweeperMiddleware

    # pika logs every connection opened and closed at INFO; its warnings and errors still show.
    logging.getLogger("pika").setLevel(logging.WARNING)
    broker = DrainableRabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(Draining())
    broker.add_middleware(DatabaseMiddleware(settings))
    broker.add_middleware(LogContextMiddleware(settings))
    # The stall rule still runs (its lock is on Redis); lost-message recovery skips this broker.
    broker.add_middleware(SweeperMiddleware(settings))
    if settings.worker_metrics_port:
        broker.add_middleware(prometheus_middleware(settings))
    broker.add_middleware(Composition())  # last, as on Redis
    # A parked model call keeps its message unacked, and on RabbitMQ the prefetch is the hard
    # unacked limit: leave room for as many parked calls as the endpoint cap lets run at once
    # (all of them may land on this process), or 256 when calls are uncapped.
    broker.parked_capacity = limits.max_concurrency() or 256
    return broker


def queue_prefetch(broker: dramatiq.Broker, threads: int) -> int:
    """How many messages a worker process of `threads` threads may hold unacked from a queue:
    Dramatiq's default (twice its threads) plus what its parked tasks hold (`parked_capacity`)."""
    return min(threads * 2 + getattr(broker, "parked_capacity", 0), 65535)


def prometheus_middleware(settings: Settings) -> Middleware:
    """Dramatiq's own Prometheus middleware, serving the worker's metrics on WORKER_METRICS_PORT.

    It reads its address from the environment when first imported, and the Dramatiq CLI runs its
    exposition server as a forked process that aggregates every worker process's figures.
    """
    import os
    import tempfile

    os.environ["dramatiq_prom_port"] = str(settings.worker_metrics_port)
    os.environ.setdefault("dramatiq_prom_host", settings.host)
    os.environ.setdefault(
        "dramatiq_prom_db", os.path.join(tempfile.gettempdir(), f"sage-dramatiq-prom-{settings.worker_metrics_port}")
    )
    from dramatiq.middleware.prometheus import Prometheus

    return Prometheus()


def stub_broker(settings: Settings, middleware: list | None = None) -> StubBroker:
    """An in-memory broker for tests, with the same middleware (but no background sweeper)."""
    from actors.celery_compat import Composition

    broker = StubBroker(middleware=middleware)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(DatabaseMiddleware(settings))
    broker.add_middleware(Composition())
    return broker


def setup_broker(settings: Settings | None = None, *, stub: bool = False) -> dramatiq.Broker:
    """Create the broker and make it Dramatiq's global one (actors bind to it when declared)."""
    settings = settings or Settings.from_env()
    broker: dramatiq.Broker
    if stub:
        broker = stub_broker(settings)
    elif settings.broker == "rabbitmq":
        broker = rabbitmq_broker(settings)
    else:
        broker = redis_broker(settings)
    dramatiq.set_broker(broker)
    return broker


def use_broker(new: dramatiq.Broker) -> dramatiq.Broker:
    """Move every actor declared on the current global broker to `new` and make it global.

    Tests use this to run the real actors on a StubBroker, or on a Redis broker of their own.
    Returns the previous broker so it can be restored.
    """
    old = dramatiq.get_broker()
    for name in old.get_declared_actors():
        actor = old.get_actor(name)
        actor.broker = new
        new.declare_actor(actor)
    dramatiq.set_broker(new)
    return old

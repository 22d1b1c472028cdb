"""The RabbitMQ broker's own parts (actors/broker.py): what a stopping worker gives back, the
prefetch that leaves room for parked messages, and the Celery-compatible app on an amqp:// URL.
Whole sessions on it are in the e2e tests (`BOTH_BROKERS`)."""

from __future__ import annotations

import threading

import dramatiq
import pytest

from actors.broker import DrainableRabbitmqBroker, Draining, queue_prefetch

QUEUE = "sage_drain_test"


@pytest.fixture
def rabbit(rabbitmq_url):
    broker = DrainableRabbitmqBroker(url=rabbitmq_url, middleware=[Draining()])
    yield broker
    broker.flush_all()
    broker.close()


def ready(broker: DrainableRabbitmqBroker) -> int:
    """Messages waiting in the queue (not those delivered and unacked)."""
    return broker.get_queue_message_counts(QUEUE)[0]


def test_a_stopping_worker_gives_back_what_it_has_not_started_while_its_running_task_finishes(rabbit, wait):
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    @dramatiq.actor(broker=rabbit, queue_name=QUEUE)
    def hold(n: int) -> None:
        ran.append(n)
        started.set()
        release.wait(30)

    rabbit.flush_all()
    for n in range(3):
        hold.send(n)
    worker = dramatiq.Worker(rabbit, worker_threads=1, worker_timeout=100)
    worker.queue_prefetch = 3  # the two it cannot start yet are delivered to it too
    worker.start()
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": 30_000})
    try:
        assert started.wait(20)
        wait(lambda: ready(rabbit) == 0)  # all three are with this worker
        stopper.start()
        wait(lambda: ready(rabbit) == 2)  # handed back while message 0 still runs
        assert stopper.is_alive() and ran == [0]
        hold.send(3)  # sent while it drains: left in the queue for other workers
        wait(lambda: ready(rabbit) == 3)
    finally:
        release.set()
        stopper.join(30) if stopper.ident else worker.stop()
    assert not stopper.is_alive()
    assert ran == [0] and ready(rabbit) == 3  # the finished one acked, none of the others taken


def test_the_prefetch_leaves_room_for_parked_messages(rabbitmq_url):
    broker = DrainableRabbitmqBroker(url=rabbitmq_url)
    assert queue_prefetch(broker, 4) == 8  # Dramatiq's default: twice the threads
    broker.parked_capacity = 200  # set by the code that parks tasks waiting on a model
    assert queue_prefetch(broker, 4) == 208


def test_a_celery_app_with_an_amqp_broker_runs_its_canvas_on_rabbitmq(settings, rabbitmq_url, redis_client):
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from actors import celery_compat as celery

    app = celery.Celery("on_rabbit", broker=rabbitmq_url, backend=settings.redis_url, set_as_current=False)

    @app.task(name="on_rabbit.add")
    def plus(x: int, y: int) -> int:
        return x + y

    assert isinstance(app.broker, RabbitmqBroker)
    app.broker.flush_all()
    worker = dramatiq.Worker(app.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        assert celery.chain(plus.s(1, 2), plus.s(3)).apply_async().get(timeout=20) == 6
        assert celery.group(plus.s(i, i) for i in range(3)).apply_async().get(timeout=20) == [0, 2, 4]
    finally:
        worker.stop()
        app.broker.close()


def test_a_stopping_worker_keeps_a_resumed_parked_message_and_gives_back_only_the_unstarted():
    """A parked task whose model call has come back waits in the work queue for a thread to run
    its continuation: it has started (claimed), so a drain must not hand it back to RabbitMQ,
    where another worker would claim it and call the model again."""
    from queue import PriorityQueue
    from types import SimpleNamespace

    from dramatiq.worker import _WorkQueueItem

    from actors.broker import _DrainableRabbitmqConsumer, _give_back_unstarted

    given_back = []
    consumer = _DrainableRabbitmqConsumer.__new__(_DrainableRabbitmqConsumer)
    consumer.give_back = given_back.append  # type: ignore[method-assign]
    resumed, unstarted = (
        dramatiq.Message(queue_name="q", actor_name="a", args=(n,), kwargs={}, options={}) for n in (1, 2)
    )
    queue: PriorityQueue = PriorityQueue()
    queue.put(_WorkQueueItem(0, resumed))
    queue.put(_WorkQueueItem(1, unstarted))
    worker = SimpleNamespace(
        work_queue=queue,
        consumers={"q": SimpleNamespace(consumer=consumer)},
        _resumable={id(resumed): ("then", "outcome")},
    )
    _give_back_unstarted(worker)  # type: ignore[arg-type]
    assert given_back == [unstarted]
    assert [queue.get_nowait().message for _ in range(queue.qsize())] == [resumed]

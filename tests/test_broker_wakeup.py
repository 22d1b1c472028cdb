"""Idle Redis consumers are woken by an enqueue instead of sleeping out their poll interval."""

from __future__ import annotations

import threading
import time

import dramatiq

from actors.broker import WakeableRedisBroker, WakeUp, wake_key


def make_broker(settings) -> WakeableRedisBroker:
    broker = WakeableRedisBroker(url=settings.redis_url, middleware=[WakeUp()])
    broker.declare_queue("wakeup-test")
    return broker


def test_an_enqueue_leaves_a_wake_up_token_and_a_delayed_one_does_not(settings, redis_client):
    broker = make_broker(settings)
    message = dramatiq.Message(queue_name="wakeup-test", actor_name="noop", args=(), kwargs={}, options={})
    broker.enqueue(message, delay=60_000)
    assert redis_client.llen(wake_key(broker, "wakeup-test")) == 0
    for _ in range(20):
        broker.enqueue(message)
    assert redis_client.llen(wake_key(broker, "wakeup-test")) == 16  # capped
    broker.close()


def test_an_idle_consumer_blocked_on_its_backoff_wakes_when_a_message_arrives(settings):
    broker = make_broker(settings)
    # A 30 s idle timeout and many misses: without a wake-up this poll would sleep 30 s.
    consumer = broker.consume("wakeup-test", prefetch=1, timeout=30_000)
    consumer.misses = 20
    results: list = []
    waiting = threading.Thread(target=lambda: results.append(next(consumer)))
    waiting.start()
    message = dramatiq.Message(queue_name="wakeup-test", actor_name="noop", args=(1,), kwargs={}, options={})
    broker.enqueue(message)
    waiting.join(timeout=10)
    assert not waiting.is_alive(), "the consumer slept through the wake-up"
    # The woken poll returns None and the next one fetches the message (or, had the enqueue won
    # the race with the first fetch, that fetch already returned it).
    proxy = results[0] or next(consumer)
    assert proxy is not None and proxy.args == (1,)
    consumer.ack(proxy)
    consumer.close()
    broker.close()


def test_idle_consumers_woken_together_take_one_message_each(settings, redis_client):
    """A stage's two tasks sent to two idle worker processes run on both, not both on the first
    one woken (where they would take turns on its GIL): one message per wake-up token."""
    broker = make_broker(settings)
    consumers = [broker.consume("wakeup-test", prefetch=8, timeout=30_000) for _ in range(2)]
    got: list[list] = [[], []]
    stop = threading.Event()

    def drain(index: int) -> None:
        consumer = consumers[index]
        consumer.misses = 20  # idle for a while: blocked on the wake-up list
        while not stop.is_set():
            proxy = next(consumer)
            if proxy is not None:
                got[index].append(proxy)
                consumer.ack(proxy)
            if sum(map(len, got)) >= 2:
                stop.set()

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # both blocked on the wake-up list
    # Both messages are in the queue before either consumer wakes: a consumer that fetched in full
    # would take both.
    silent = WakeableRedisBroker(url=settings.redis_url)
    silent.declare_queue("wakeup-test")
    for n in (1, 2):
        silent.enqueue(dramatiq.Message(queue_name="wakeup-test", actor_name="noop", args=(n,), kwargs={}, options={}))
    redis_client.rpush(wake_key(broker, "wakeup-test"), 1, 1)
    for thread in threads:
        thread.join(timeout=10)
    stop.set()
    assert [len(g) for g in got] == [1, 1]
    assert sorted(g[0].args[0] for g in got) == [1, 2]
    for consumer in consumers:
        consumer.close()
    broker.close()
    silent.close()


def test_a_batch_sends_its_messages_and_tokens_in_one_round_trip_at_its_end(settings, redis_client, monkeypatch):
    broker = make_broker(settings)
    queue = f"{broker.namespace}:wakeup-test"
    trips: list[int] = []
    execute = type(broker.client.pipeline()).execute

    def counted(pipe, *args, **kwargs):
        trips.append(len(pipe))
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(type(broker.client.pipeline()), "execute", counted)
    message = dramatiq.Message(queue_name="wakeup-test", actor_name="noop", args=(), kwargs={}, options={})
    with broker.batch():
        for _ in range(3):
            broker.enqueue(message)
        with broker.batch():  # joins the outer one
            broker.enqueue(message)
        assert redis_client.llen(queue) == 0 and trips == []  # nothing sent yet
    assert trips == [4 + 4 * 3]  # four enqueues and four tokens (three commands each), one trip
    assert redis_client.llen(queue) == 4
    assert redis_client.llen(wake_key(broker, "wakeup-test")) == 4
    broker.close()


def test_a_batch_whose_block_raises_sends_nothing(settings, redis_client):
    broker = make_broker(settings)
    message = dramatiq.Message(queue_name="wakeup-test", actor_name="noop", args=(), kwargs={}, options={})
    try:
        with broker.batch():
            broker.enqueue(message)
            raise RuntimeError("the stage advance rolled back")
    except RuntimeError:
        pass
    assert redis_client.llen(f"{broker.namespace}:wakeup-test") == 0
    assert redis_client.llen(wake_key(broker, "wakeup-test")) == 0
    broker.enqueue(message)  # and the thread is not left batching
    assert redis_client.llen(f"{broker.namespace}:wakeup-test") == 1
    broker.close()


def test_a_batch_sent_after_redis_lost_its_scripts_loads_the_script_and_sends_again(settings, redis_client):
    broker = make_broker(settings)
    message = dramatiq.Message(queue_name="wakeup-test", actor_name="noop", args=(), kwargs={}, options={})
    broker.enqueue(message)  # the dispatch script is loaded
    redis_client.script_flush()  # as after a restart of Redis
    with broker.batch():
        broker.enqueue(message)
        broker.enqueue(message)
    assert redis_client.llen(f"{broker.namespace}:wakeup-test") == 3
    broker.close()


def test_signals_call_the_middleware_that_has_the_hook_in_dramatiqs_order(settings, caplog):
    """`_Drains.emit_before` / `emit_after` skip `Middleware`'s empty hooks but otherwise do what
    Dramatiq does: list order before, reverse order after, a failure logged and the rest still
    called, `MiddlewareError` raised from a `before_`, middleware added later called too, a hook
    set on an instance called, and a signal `Middleware` lacks handled by Dramatiq's own loop."""
    from dramatiq.middleware import Middleware, SkipMessage

    calls: list[str] = []

    class Records(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        def before_ack(self, broker, message) -> None:
            calls.append(f"before {self.name}")

        def after_ack(self, broker, message) -> None:
            calls.append(f"after {self.name}")

    class Fails(Middleware):
        def after_ack(self, broker, message) -> None:
            raise RuntimeError("a broken hook")

    class Skips(Middleware):
        def before_process_message(self, broker, message) -> None:
            raise SkipMessage()

    broker = WakeableRedisBroker(url=settings.redis_url, middleware=[Records("a"), Middleware(), Fails(), Records("b")])
    try:
        broker.emit_before("ack", None)
        broker.emit_after("ack", None)
        assert calls == ["before a", "before b", "after b", "after a"]  # and Fails' failure did not stop a
        assert "Unexpected failure in after_ack" in caplog.text

        calls.clear()
        broker.add_middleware(Records("c"))  # listed again: c is called from now on
        plain = Middleware()
        plain.before_ack = lambda broker, message: calls.append("before instance")  # type: ignore[method-assign]
        broker.add_middleware(plain)
        broker.emit_before("ack", None)
        assert calls == ["before a", "before b", "before c", "before instance"]

        broker.add_middleware(Skips())
        try:
            broker.emit_before("process_message", None)
        except SkipMessage:
            pass
        else:
            raise AssertionError("a MiddlewareError from a before_ hook must reach the worker")

        caplog.clear()
        broker.emit_after("no_such_signal", None)  # Dramatiq's loop: each middleware's lookup fails, logged
        assert caplog.text.count("Unexpected failure in after_no_such_signal") == len(broker.middleware)
    finally:
        broker.close()

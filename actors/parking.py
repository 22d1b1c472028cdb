"""Parking: an actor that waits on I/O gives its worker thread back until the I/O is done.

Dramatiq's own AsyncIO middleware runs a coroutine on an event loop but blocks the worker
thread until it ends, so 200 model calls in flight would need 200 threads. Here an actor body
calls `park(coro, then)` instead:

- in a `ParkingWorker`, `park` raises `Parked`; the worker thread runs the per-message hooks
  that are bound to the *thread* (the message's database connection, log context, current
  message, time-limit deadline, shutdown notification: `_thread_bound`) and none of the
  completion hooks (no ack, no retry, no chain advance; `InFlight` keeps the id, so the message
  is still in flight for lost-message recovery), schedules the coroutine on the process's one
  event loop (`event_loop()`), and takes the next message. When the coroutine ends, the message
  goes back onto the work queue, ahead of new ones, with its outcome; a worker thread processes
  it again the normal way (the thread-bound before-hooks, the actor, every after-hook, the ack),
  and the actor body, asking `resumed()` first, runs only `then(outcome)`.
- anywhere else (a plain Dramatiq worker, a StubBroker test, an eager call), `park` runs the
  coroutine to its end on the same event loop, blocking the caller, and returns `then(outcome)`:
  the same behaviour, the thread held.

`outcome` is a `concurrent.futures.Future` that is done: `outcome.result()` returns the value
or raises what the coroutine raised. The attempt's time limit covers the parked wait: the
coroutine gets what is left of it, and running out is `TimeLimitExceeded`, as on a thread.

A parked message is unacked, so the consumers must not count it against their prefetch
(`parked_count`, used by `actors.broker._WakeableConsumer`); a graceful stop waits for parked
messages as for running ones (`ParkingWorker.stop`, `ParkingWorker.parked`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage, ShutdownNotifications, SkipMessage, TimeLimit
from dramatiq.middleware.time_limit import TimeLimitExceeded
from dramatiq.worker import WorkerThread, _WorkQueueItem

logger = logging.getLogger(__name__)

#: Work-queue priority of a message coming back from its parked wait: before any new message
#: (Dramatiq takes the lowest first; actors' priorities are small non-negative numbers).
RESUME_PRIORITY = -(2**31)

#: How often a thread blocked on a coroutine (outside a parking worker) wakes, so that an
#: asynchronous `TimeLimitExceeded` can reach it.
BLOCKING_SLICE_SECONDS = 0.1

Outcome = concurrent.futures.Future
Continuation = Callable[[Outcome], Any]


class Parked(BaseException):
    """Raised by `park` inside a parking worker: not an error, so not an `Exception` either
    (the pipeline's `except Exception` must let it through to the worker)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], then: Continuation) -> None:
        super().__init__("parked")
        self.coro = coro
        self.then = then


class _AttemptTimedOut(Exception):
    """The parked coroutine outlived what was left of the attempt's time limit."""


# --- the event loop -------------------------------------------------------------------------

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's one event loop, on a daemon thread started on first use.

    One loop per process, so that the SDK clients and Redis connections made on it can be
    reused by every call (a client is bound to the loop its connections were opened on).
    """
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _loop_thread = threading.Thread(target=serve, name="sage-event-loop", daemon=True)
            _loop_thread.start()
            ready.wait()
            _loop = loop
        return _loop


def on_event_loop() -> bool:
    """Whether the caller runs on the process's event-loop thread."""
    return _loop_thread is not None and threading.current_thread() is _loop_thread


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on the process's event loop and wait for it, in short slices (so that the
    time-limit middleware can still interrupt the waiting thread: the coroutine is then cancelled)."""
    if on_event_loop():
        coro.close()
        raise RuntimeError("run() would block the event loop on itself; await the coroutine instead")
    future = asyncio.run_coroutine_threadsafe(coro, event_loop())
    try:
        while True:
            try:
                return future.result(timeout=BLOCKING_SLICE_SECONDS)
            except concurrent.futures.TimeoutError:
                continue
    except BaseException:
        future.cancel()
        raise


# --- parking --------------------------------------------------------------------------------

_parked_lock = threading.Lock()
_parked: Counter[str] = Counter()


def parked_count(queue_name: str) -> int:
    """How many messages of `queue_name` are parked in this process (unacked, holding no thread)."""
    return _parked[queue_name]


def park(coro: Coroutine[Any, Any, Any], then: Continuation) -> Any:
    """Wait for `coro` without holding the worker thread, then return `then(outcome)`.

    In a parking worker this raises `Parked` (the worker resumes the message later, and the
    actor body calls `resumed()`); elsewhere it blocks until the coroutine ends.
    """
    thread = threading.current_thread()
    if isinstance(thread, ParkingWorkerThread) and thread.may_park:
        raise Parked(coro, then)
    outcome: Outcome = concurrent.futures.Future()
    try:
        outcome.set_result(run(coro))
    except (Exception, TimeLimitExceeded) as exc:  # noqa: BLE001 - the continuation decides what it means
        outcome.set_exception(exc)
    return then(outcome)


def resumed() -> Callable[[], Any] | None:
    """The continuation of the current message's parked wait, bound to its outcome, if this
    processing of the message is its resumption; else None (run the body from the start)."""
    thread = threading.current_thread()
    if not isinstance(thread, ParkingWorkerThread) or thread.resuming is None:
        return None
    state, thread.resuming = thread.resuming, None
    then, outcome = state
    return lambda: then(outcome)


def _thread_bound(middleware: dramatiq.Middleware) -> bool:
    """Middleware whose per-message state belongs to the worker thread (undone at park, redone
    at resume); the rest (InFlight, Prometheus, Composition...) see a parked message as one
    message still being processed."""
    return isinstance(middleware, CurrentMessage | TimeLimit | ShutdownNotifications) or bool(
        getattr(middleware, "thread_bound", False)
    )


def _time_left(broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> float | None:
    """Seconds left of the attempt's time limit, as the TimeLimit middleware counts them."""
    for middleware in broker.middleware:
        if isinstance(middleware, TimeLimit):
            deadlines = getattr(middleware.manager, "deadlines", None)
            deadline = deadlines.get(threading.get_ident()) if deadlines is not None else None
            if deadline:
                return max(0.0, deadline - time.monotonic())
            actor = broker.get_actor(message.actor_name)
            limit = message.options.get("time_limit") or actor.options.get("time_limit", middleware.time_limit)
            return limit / 1000
    return None


class ParkingWorkerThread(WorkerThread):
    """A worker thread that lets an actor park (see the module docstring)."""

    def __init__(self, *, worker: ParkingWorker, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.worker = worker
        self.may_park = False
        self.resuming: tuple[Continuation, Outcome] | None = None

    def process_message(self, message: dramatiq.MessageProxy) -> None:
        """Dramatiq's `WorkerThread.process_message`, plus parking and resuming."""
        state = self.worker._resumable.pop(id(message), None)
        parked = False
        actor = None
        try:
            if state is None:
                self.broker.emit_before("process_message", message)
            else:
                for middleware in self.broker.middleware:
                    if _thread_bound(middleware):
                        middleware.before_process_message(self.broker, message)
            res = None
            if not message.failed:
                actor = self.broker.get_actor(message.actor_name)
                self.resuming, self.may_park = state, state is None
                try:
                    res = actor(*message.args, **message.kwargs)
                finally:
                    self.resuming, self.may_park = None, False
            self.broker.emit_after("process_message", message, result=res)
        except Parked as wait:
            parked = True
            self._park(message, wait)
        except SkipMessage as e:
            if message.failed:
                message.stuff_exception(e)
            self.logger.warning("Message %s was skipped.", message)
            self.broker.emit_after("skip_message", message)
        except BaseException as e:
            message.stuff_exception(e)
            throws = message.options.get("throws") or (actor and actor.options.get("throws"))
            if throws and isinstance(e, throws):
                self.logger.info("Failed to process message %s with expected exception %s.", message, type(e).__name__)
            elif not isinstance(e, dramatiq.Retry | dramatiq.RateLimitExceeded):
                self.logger.error("Failed to process message %s with unhandled exception.", message, exc_info=True)
            self.broker.emit_after("process_message", message, exception=e)
        finally:
            if not parked:
                self.consumers[message.queue_name].post_process_message(message)
                # A parked message keeps its work-queue slot (no task_done), so Worker.join()
                # still waits for it.
                self.work_queue.task_done()
                if state is not None:
                    self.worker._unpark(message)
            message.clear_exception()

    def _park(self, message: dramatiq.MessageProxy, wait: Parked) -> None:
        left = _time_left(self.broker, message)
        for middleware in reversed(self.broker.middleware):
            if _thread_bound(middleware):
                try:
                    middleware.after_process_message(self.broker, message)
                except Exception:
                    self.logger.critical("Unexpected failure parking %s in %r.", message, middleware, exc_info=True)
        self.worker._schedule(message, wait, left)


class ParkingWorker(dramatiq.Worker):
    """A Dramatiq worker whose threads let actors park; use it wherever a worker runs the pipeline."""

    def __init__(self, broker: dramatiq.Broker, **kwargs: Any) -> None:
        super().__init__(broker, **kwargs)
        self._resumable: dict[int, tuple[Continuation, Outcome]] = {}
        self._idle = threading.Condition()
        self.parked = 0  # parked, or back on the work queue with their outcome

    def _add_worker(self) -> None:
        thread = ParkingWorkerThread(
            worker=self,
            broker=self.broker,
            consumers=self.consumers,
            work_queue=self.work_queue,
            worker_timeout=self.worker_timeout,
        )
        thread.start()
        self.workers.append(thread)

    def _schedule(self, message: dramatiq.MessageProxy, wait: Parked, left: float | None) -> None:
        with self._idle:
            self.parked += 1
        with _parked_lock:
            _parked[message.queue_name] += 1

        async def within_limit() -> Any:
            if left is None:
                return await wait.coro
            try:
                return await asyncio.wait_for(wait.coro, left)
            except TimeoutError:
                raise _AttemptTimedOut() from None

        future = asyncio.run_coroutine_threadsafe(within_limit(), event_loop())
        future.add_done_callback(lambda done: self._resume(message, wait.then, done))

    def _resume(self, message: dramatiq.MessageProxy, then: Continuation, done: concurrent.futures.Future) -> None:
        outcome: Outcome = concurrent.futures.Future()
        try:
            outcome.set_result(done.result())
        except _AttemptTimedOut:
            outcome.set_exception(TimeLimitExceeded("the attempt's time limit ran out while waiting"))
        except BaseException as exc:  # noqa: BLE001 - the actor's continuation decides what it means
            outcome.set_exception(exc)
        with _parked_lock:
            _parked[message.queue_name] -= 1
        self._resumable[id(message)] = (then, outcome)
        self.work_queue.put(_WorkQueueItem(RESUME_PRIORITY, message))
        self.work_queue.task_done()  # the slot the park kept is now the resumed item's

    def _unpark(self, message: dramatiq.MessageProxy) -> None:
        with self._idle:
            self.parked -= 1
            self._idle.notify_all()

    def stop(self, timeout: int = 600000) -> None:
        """Stop taking messages, wait (within `timeout` ms) for parked ones to come back and
        finish, then stop as Dramatiq does (running tasks get what is left of `timeout`)."""
        deadline = time.monotonic() + timeout / 1000
        self.broker.emit_before("worker_shutdown", self)  # consumers stop fetching (Draining)
        with self._idle:
            while self.parked and time.monotonic() < deadline:
                self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        if self.parked:
            logger.warning("%d parked messages still waiting after the grace period", self.parked)
        super().stop(timeout=max(1, int((deadline - time.monotonic()) * 1000)))

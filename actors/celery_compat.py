"""A Celery-compatible task interface on Dramatiq (ARCHITECTURE.md decision 4).

What maps to what:

- `@task(bind=True, max_retries=3)` declares a Dramatiq actor; with `bind=True` the function
  gets `self` with `self.request.id` (the message id), `self.request.retries` and
  `self.retry(exc=..., countdown=...)`, which raises `dramatiq.Retry` with that exact delay.
- `.s()` / `.si()` are signatures (messages not yet sent). No result backend is used, so results
  are never passed between steps and `.s()` behaves like `.si()` inside a chain.
- `group(...)` runs its signatures as one `dramatiq.group`.
- `chain(step, group, ...)` is a chain of groups. Dramatiq's pipeline cannot hold a group, so
  only the first step is enqueued; every message carries the rest of the chain in its options,
  and a member that decides its step is finished (a checked advance, see `actors.pipeline`)
  calls `self.request.start_next_step()`. Each start gives the messages fresh ids, so a
  duplicated advance produces distinguishable duplicates that the tasks' claims turn away.
- `AsyncResult(id)` answers `state` and `ready()` from resolvers registered by the code that
  owns the state (the pipeline reads the database), not from a result backend.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED = "PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED"
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})

_state_resolvers: list[Callable[[str], str | None]] = []


class MaxRetriesExceededError(Exception):
    """`self.retry()` was called with no retries left and no exception to re-raise."""


def register_state_resolver(resolver: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """Register a function that maps a result id to a Celery state, or None if it does not know it."""
    if resolver not in _state_resolvers:
        _state_resolvers.append(resolver)
    return resolver


class AsyncResult:
    """The handle of something sent: a message, a group or a chain."""

    def __init__(self, id: str, children: list[AsyncResult] | None = None) -> None:
        self.id = id
        self.children = children or []

    @property
    def state(self) -> str:
        for resolver in _state_resolvers:
            state = resolver(self.id)
            if state is not None:
                return state
        return PENDING  # as in Celery: an unknown id is pending

    status = state

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"


@dataclass
class Request:
    """What a bound task knows about the message it is running."""

    id: str | None = None
    retries: int = 0
    chain_id: str | None = None
    chain_step: int = 0
    chain_rest: list[list[dict[str, Any]]] = field(default_factory=list)
    message: dramatiq.Message | None = None
    broker: dramatiq.Broker | None = None

    @property
    def has_next_step(self) -> bool:
        return bool(self.chain_rest)

    def start_next_step(self) -> AsyncResult | None:
        """Enqueue the chain's next step (a group); None at the end of the chain."""
        if not self.chain_rest or self.chain_id is None:
            return None
        return _start_step(self.chain_id, self.chain_rest, self.chain_step + 1, self.broker)


class BoundTask:
    """`self` of a `bind=True` task."""

    def __init__(self, task: Task, request: Request) -> None:
        self.task = task
        self.name = task.name
        self.max_retries = task.max_retries
        self.request = request

    def retry(self, exc: BaseException | None = None, countdown: float | None = None, max_retries: int | None = None):
        """Retry this message after `countdown` seconds, exactly; re-raise `exc` when none are left."""
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and self.request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(f"{self.name}: {self.request.retries} retries used")
        delay = None if countdown is None else int(countdown * 1000)
        raise dramatiq.Retry(str(exc) if exc else "retry", delay=delay)


class Signature:
    """A task call not yet sent."""

    def __init__(self, task: Task, args: tuple, kwargs: dict, *, immutable: bool, options: dict | None = None):
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.immutable = immutable
        self.options = dict(options or {})

    def set(self, **options: Any) -> Signature:
        """Add message options (e.g. `time_limit`, `max_retries`, `countdown`)."""
        self.options.update(options)
        return self

    def message(self) -> dramatiq.Message:
        options = {k: v for k, v in self.options.items() if k != "countdown"}
        return self.task.actor.message_with_options(args=self.args, kwargs=self.kwargs, **options)

    def apply_async(self, countdown: float | None = None) -> AsyncResult:
        countdown = countdown if countdown is not None else self.options.get("countdown")
        message = self.message()
        self.task.actor.broker.enqueue(message, delay=int(countdown * 1000) if countdown else None)
        return AsyncResult(message.message_id)

    delay = apply_async

    def __repr__(self) -> str:
        return f"{self.task.name}{'.si' if self.immutable else '.s'}{self.args!r}"


class Task:
    """A Celery-style task backed by a Dramatiq actor of the same name."""

    def __init__(self, fn: Callable[..., Any], *, bind: bool, max_retries: int | None, name: str, **options: Any):
        self.fn = fn
        self.bind = bind
        self.max_retries = max_retries
        self.name = name
        functools.update_wrapper(self, fn)

        def run(*args: Any, **kwargs: Any) -> None:
            message = CurrentMessage.get_current_message()
            # There is no result backend: the return value is for direct calls; tasks store
            # their results themselves (the pipeline in the database).
            self._invoke(_request_of(message, self.actor.broker), args, kwargs)

        run.__name__ = name
        self.actor = dramatiq.actor(run, actor_name=name, max_retries=max_retries, **options)

    def _invoke(self, request: Request, args: tuple, kwargs: dict) -> Any:
        if self.bind:
            return self.fn(BoundTask(self, request), *args, **kwargs)
        return self.fn(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run in this process, now (as Celery's `task(...)`)."""
        return self._invoke(Request(), args, kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self, args, kwargs, immutable=False)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self, args, kwargs, immutable=True)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.s(*args, **kwargs).apply_async()

    def apply_async(
        self, args: Iterable[Any] = (), kwargs: dict | None = None, countdown: float | None = None, **options
    ):
        return Signature(self, tuple(args), kwargs or {}, immutable=False, options=options).apply_async(countdown)


def task(
    fn: Callable[..., Any] | None = None,
    *,
    bind: bool = False,
    max_retries: int | None = 3,
    name: str | None = None,
    **options,
):
    """Declare a task: `@task`, `@task(bind=True, max_retries=3)`; extra options go to the actor."""

    def wrap(f: Callable[..., Any]) -> Task:
        return Task(f, bind=bind, max_retries=max_retries, name=name or f.__name__, **options)

    return wrap(fn) if fn is not None else wrap


class group:
    """Signatures that run in parallel (one `dramatiq.group`)."""

    def __init__(self, *tasks: Signature | Iterable[Signature]) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Signature):
            tasks = tuple(tasks[0])
        self.tasks: list[Signature] = list(tasks)

    def apply_async(self) -> AsyncResult:
        messages = [sig.message() for sig in self.tasks]
        dramatiq.group(messages, broker=self._broker()).run()
        return AsyncResult(uuid.uuid4().hex, [AsyncResult(m.message_id) for m in messages])

    delay = apply_async

    def _broker(self) -> dramatiq.Broker:
        return self.tasks[0].task.actor.broker if self.tasks else dramatiq.get_broker()


class chain:
    """Steps run one after the other; a step is a signature or a group (a chain of groups)."""

    def __init__(self, *steps: Signature | group) -> None:
        if not steps:
            raise ValueError("a chain needs at least one step")
        self.steps = [step if isinstance(step, group) else group(step) for step in steps]

    def apply_async(self) -> AsyncResult:
        chain_id = uuid.uuid4().hex
        encoded = [[sig.message().asdict() for sig in step.tasks] for step in self.steps]
        first = _start_step(chain_id, encoded, 0, self.steps[0]._broker())
        return AsyncResult(chain_id, first.children)

    delay = apply_async


def _start_step(
    chain_id: str, steps: list[list[dict[str, Any]]], index: int, broker: dramatiq.Broker | None
) -> AsyncResult:
    """Enqueue `steps[0]` as a group, each message carrying `steps[1:]`; `index` is its place in the chain."""
    broker = broker or dramatiq.get_broker()
    rest = steps[1:]
    messages = []
    for data in steps[0]:
        # Fresh ids and fresh option dicts: the encoded steps are shared and must stay untouched.
        options = {**data.get("options", {}), "chain_id": chain_id, "chain_step": index, "chain_rest": rest}
        messages.append(dramatiq.Message(**{**data, "message_id": str(uuid.uuid4()), "options": options}))
    dramatiq.group(messages, broker=broker).run()
    return AsyncResult(chain_id, [AsyncResult(m.message_id) for m in messages])


def _request_of(message: dramatiq.Message | None, broker: dramatiq.Broker) -> Request:
    if message is None:
        return Request(broker=broker)
    options = message.options
    return Request(
        id=message.message_id,
        retries=options.get("retries", 0),
        chain_id=options.get("chain_id"),
        chain_step=options.get("chain_step", 0),
        chain_rest=options.get("chain_rest") or [],
        message=message,
        broker=broker,
    )

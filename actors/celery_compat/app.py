"""The app and its tasks: `Celery(...)`, `@app.task`, `shared_task`, bound tasks and Celery's retry rules.

A task is a Dramatiq actor named `module.function` (or `name=`). Retries follow Celery, not
Dramatiq: nothing is retried unless the task says so, by `self.retry(...)` or `autoretry_for=`
(with `retry_backoff`, `retry_backoff_max`, `retry_jitter`, `max_retries`, `retry_kwargs`), so
the actor is declared with a `retry_when` that lets only our `Retry` through Dramatiq's
Retries middleware, at exactly the delay it carries. Time limits are in seconds.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import random
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded

from actors.celery_compat.result import AsyncResult, DisabledBackend, ResultBackend, Unsupported

# The result class under a name that Celery's `AsyncResult` methods below do not shadow.
_AsyncResult = AsyncResult

#: Celery's task options this module honours; any other is refused when the task is declared.
TASK_OPTIONS = {
    "name", "bind", "max_retries", "default_retry_delay", "autoretry_for", "dont_autoretry_for",
    "retry_backoff", "retry_backoff_max", "retry_jitter", "retry_kwargs", "time_limit",
    "soft_time_limit", "ignore_result", "track_started", "queue", "typing", "gate", "acks_late",
    "serializer",
}  # fmt: skip

#: Options Celery accepts that have no faithful Dramatiq equivalent, with the reason given when refused.
UNSUPPORTED = {
    "priority": "Redis queues are FIFO in Dramatiq; send urgent work to its own queue= instead",
    "rate_limit": "Dramatiq's rate limiters are explicit (dramatiq.rate_limits); use one in the task body",
    "pydantic": "arguments are JSON values; validate them in the task body",
    "argsrepr": "Dramatiq logs a failed message whole, so arguments cannot be masked",
    "kwargsrepr": "Dramatiq logs a failed message whole, so arguments cannot be masked",
    "compression": "messages are not compressed",
    "exchange": "there are no AMQP exchanges on the Redis broker; use queue=",
    "routing_key": "there are no AMQP routing keys on the Redis broker; use queue=",
    "headers": "message headers are not carried; pass the values as arguments",
    "shadow": "a task runs under its own name",
    "retry_policy": "publishing is not retried; a failed send raises",
    "base": "custom Task classes are not supported; use bind=True and the task's options",
    "reject_on_worker_lost": "a killed worker's message is always redelivered (acks are late)",
}

_lock = threading.Lock()
_current: Celery | None = None
_tasks: dict[str, Task] = {}


class MaxRetriesExceededError(Exception):
    """`self.retry()` was called with no retries left and no exception to re-raise."""


class Ignore(Exception):
    """Raised in a task to end it without storing a state or advancing what follows it."""


class Retry(dramatiq.Retry):
    """Raised by `self.retry()`: Dramatiq re-enqueues the message after exactly `delay` ms."""

    def __init__(self, message: str = "", delay: int | None = None, exc: BaseException | None = None) -> None:
        super().__init__(message, delay)
        self.exc = exc


def _retry_only_on_retry(retries: int, exception: BaseException) -> bool:
    """Dramatiq's `retry_when`: Celery never retries on its own, only when the task raised Retry."""
    return isinstance(exception, dramatiq.Retry)


class Config(dict):
    """`app.conf`: a dict with attribute access, holding Celery's lower-case setting names."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def current_app() -> Celery:
    """The app `shared_task` binds to: the last one created (a default app if none was)."""
    global _current
    with _lock:
        if _current is None:
            _current = Celery("default", set_as_current=False)
        return _current


def get_task(name: str) -> Task:
    try:
        return _tasks[name]
    except KeyError:
        raise KeyError(f"no task named {name!r} is registered (import its module first)") from None


class Celery:
    """A Celery app on Dramatiq: `Celery("proj", broker="redis://...", backend="redis://...")`.

    `broker` is a `redis://` URL, a Dramatiq broker, or None for Dramatiq's global broker
    (the one Sage Mode's workers set up). `backend` is a `redis://` URL for results, or None:
    tasks still run, but reading a result raises.
    """

    def __init__(
        self,
        main: str | None = None,
        broker: str | dramatiq.Broker | None = None,
        backend: str | None = None,
        include: Iterable[str] = (),
        set_as_current: bool = True,
        **settings: Any,
    ) -> None:
        global _current
        self.main = main
        self.conf = Config(
            broker_transport_options={},
            result_expires=86400,
            task_default_queue="default",
            task_routes={},
            task_ignore_result=False,
            task_track_started=False,
            include=list(include),
        )
        self.conf.update(settings)
        self._broker_spec = broker
        self._broker: dramatiq.Broker | None = broker if isinstance(broker, dramatiq.Broker) else None
        self._backend_url = backend
        self._backend: Any = None
        self.tasks: dict[str, Task] = {}
        if set_as_current:
            with _lock:
                _current = self

    def config_from_object(self, obj: Any) -> None:
        """Read lower-case settings from a module (or its name), an object or a dict."""
        if isinstance(obj, str):
            import importlib

            obj = importlib.import_module(obj)
        items = obj.items() if isinstance(obj, dict) else ((k, getattr(obj, k)) for k in dir(obj))
        for key, value in items:
            if key.startswith("_") or not key.islower():
                continue
            if key == "broker_url":
                self._broker_spec = value
            elif key == "result_backend":
                self._backend_url, self._backend = value, None
            else:
                self.conf[key] = value

    @property
    def broker(self) -> dramatiq.Broker:
        """The Dramatiq broker this app sends to, built on first use from a URL."""
        if self._broker is None:
            if self._broker_spec is None:
                return dramatiq.get_broker()
            assert isinstance(self._broker_spec, str)  # a Broker given to the constructor is `_broker`
            from actors.celery_compat.composition import broker_from_url

            self._broker = broker_from_url(self._broker_spec, self.conf.get("broker_transport_options"))
        return self._broker

    @property
    def backend(self) -> ResultBackend | DisabledBackend:
        if self._backend is None:
            url = self._backend_url
            self._backend = ResultBackend(url, self.conf.result_expires) if url else DisabledBackend()
        self._backend.expires = self.conf.result_expires
        return self._backend

    def task(self, *args: Any, **options: Any):
        """`@app.task` or `@app.task(bind=True, max_retries=3, ...)`."""
        if len(args) == 1 and callable(args[0]) and not options:
            return Task(self, args[0])

        def wrap(fn: Callable[..., Any]) -> Task:
            return Task(self, fn, **options)

        return wrap

    def route(self, name: str) -> str | None:
        """The queue `task_routes` sends `name` to (exact name or glob), if any."""
        routes = self.conf.task_routes or {}
        for pattern, route in routes.items():
            if pattern == name or fnmatch.fnmatchcase(name, pattern):
                return route["queue"] if isinstance(route, dict) else route
        return None

    def signature(self, name: str, args: Iterable[Any] = (), kwargs: dict | None = None, **options: Any):
        from actors.celery_compat.canvas import signature

        return signature(name, args, kwargs, **options)

    def send_task(self, name: str, args: Iterable[Any] = (), kwargs: dict | None = None, **options: Any):
        """Send a task by name, even one only the workers have imported."""
        from actors.celery_compat.canvas import Signature

        return Signature(name, args, kwargs, app=self).apply_async(**options)

    def AsyncResult(self, id: str) -> AsyncResult:
        return AsyncResult(id, app=self)

    def GroupResult(self, id: str, results: list[_AsyncResult]):
        from actors.celery_compat.result import GroupResult

        return GroupResult(id, results, backend=self.backend)

    def autodiscover_tasks(self, modules: Iterable[str]) -> None:
        import importlib

        for module in modules:
            importlib.import_module(module)

    def __repr__(self) -> str:
        return f"<Celery {self.main}>"


def shared_task(*args: Any, **options: Any):
    """A task of the current app, for reusable modules (`@shared_task`, `@shared_task(bind=True)`)."""
    return current_app().task(*args, **options)


task = shared_task  # the name this module had before it had an app


@dataclass
class Request:
    """`self.request` of a bound task: what it knows about the message it is running."""

    id: str | None = None
    retries: int = 0
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    task: str | None = None
    chain_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    eta: int | None = None
    expires: float | None = None
    delivery_info: dict = field(default_factory=dict)
    called_directly: bool = True
    max_retries: int | None = None
    message: dramatiq.Message | None = None

    @property
    def is_eager(self) -> bool:
        return self.called_directly

    @classmethod
    def of(cls, message: dramatiq.Message | None, task: Task, args: tuple, kwargs: dict) -> Request:
        if message is None:
            return cls(task=task.name, args=args, kwargs=kwargs)
        options = message.options
        cc = options.get("cc") or {}
        return cls(
            id=message.message_id,
            retries=options.get("retries", 0),
            args=args,
            kwargs=kwargs,
            task=task.name,
            chain_id=cc.get("chain_id"),
            group=cc.get("group"),
            group_index=cc.get("group_index"),
            eta=options.get("eta"),
            expires=cc.get("expires"),
            delivery_info={"routing_key": message.queue_name.removesuffix(".DQ"), "queue": message.queue_name},
            called_directly=False,
            max_retries=cc.get("max_retries"),
            message=message,
        )


class BoundTask:
    """`self` of a `bind=True` task: the task, with `self.request` and `self.retry()`."""

    def __init__(self, task: Task, request: Request) -> None:
        self.task = task
        self.request = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ):
        """Retry this message after `countdown` (else `default_retry_delay`) seconds, exactly.

        With no retries left, re-raise `exc` (or raise MaxRetriesExceededError). Always raises,
        so `raise self.retry(...)` reads as in Celery.
        """
        if args is not None or kwargs is not None or options:
            raise Unsupported("retry() with new arguments or options: the same message is retried")
        limit = max_retries
        if limit is None:
            limit = self.task.max_retries if self.request.max_retries is None else self.request.max_retries
        if limit is not None and self.request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(f"Can't retry {self.task.name}[{self.request.id}] args:{self.request.args}")
        if eta is not None:
            from actors.celery_compat.canvas import seconds_until

            countdown = seconds_until(eta)
        if countdown is None:
            countdown = self.task.default_retry_delay
        raise Retry(f"Retry in {countdown}s: {exc!r}" if exc else f"Retry in {countdown}s", int(countdown * 1000), exc)

    def update_state(self, task_id: str | None = None, state: str | None = None, meta: Any = None) -> None:
        """Store a custom state (e.g. progress) for this task or another id."""
        # Outside a message (a direct call) the id is None, and Celery stores under it all the same.
        self.task.app.backend.store(task_id or self.request.id, state or "PENDING", meta)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<@task: {self.task.name} bound>"


def backoff_seconds(task: Task, retries: int) -> float:
    """Celery's `retry_backoff`: factor * 2**retries, capped at `retry_backoff_max`, with full jitter."""
    factor = 1 if task.retry_backoff is True else float(task.retry_backoff)
    countdown = min(task.retry_backoff_max, factor * (2**retries))
    if task.retry_jitter:
        countdown = random.randrange(int(countdown) + 1)
    return max(0.0, countdown)


class Task:
    """A Celery-style task backed by a Dramatiq actor of the same name."""

    def __init__(self, app: Celery, fn: Callable[..., Any], **options: Any) -> None:
        for key in options:
            if key in UNSUPPORTED:
                raise Unsupported(f"task option {key}=: {UNSUPPORTED[key]}")
            if key not in TASK_OPTIONS:
                raise TypeError(f"unknown task option {key}=")
        check_serializer(options.get("serializer"))
        self.app = app
        self.fn = fn
        self.name = options.get("name") or f"{fn.__module__}.{fn.__qualname__}"
        self.bind = options.get("bind", False)
        self.max_retries = options.get("max_retries", 3)
        self.default_retry_delay = options.get("default_retry_delay", 180)
        self.autoretry_for = tuple(options.get("autoretry_for", ()))
        self.dont_autoretry_for = tuple(options.get("dont_autoretry_for", ()))
        self.retry_backoff = options.get("retry_backoff", False)
        self.retry_backoff_max = options.get("retry_backoff_max", 600)
        self.retry_jitter = options.get("retry_jitter", True)
        self.retry_kwargs = dict(options.get("retry_kwargs", {}))
        self.time_limit = options.get("time_limit")
        self.soft_time_limit = options.get("soft_time_limit")
        self.ignore_result = options.get("ignore_result", app.conf.task_ignore_result)
        self.track_started = options.get("track_started", app.conf.task_track_started)
        self.queue = options.get("queue") or app.route(self.name) or app.conf.task_default_queue
        self.typing = options.get("typing", True)
        #: An extension: `gate(results, send)` decides, around sending, whether what follows
        #: this task (or a group of it) may start; see `actors.celery_compat.composition`.
        self.gate = options.get("gate")
        functools.update_wrapper(self, fn)

        def run(*args: Any, **kwargs: Any) -> Any:
            message = CurrentMessage.get_current_message()
            return self._run_message(Request.of(message, self, args, kwargs), args, kwargs)

        run.__name__ = self.name
        actor_options: dict[str, Any] = {
            "actor_name": self.name,
            "queue_name": self.queue,
            "retry_when": _retry_only_on_retry,
            "time_limit": limit_ms(self.time_limit, self.soft_time_limit),
        }
        if app._broker_spec is not None:
            actor_options["broker"] = app.broker
        self.actor = dramatiq.actor(run, **actor_options)
        with _lock:
            _tasks[self.name] = self
        app.tasks[self.name] = self

    def _run_message(self, request: Request, args: tuple, kwargs: dict) -> Any:
        from actors.celery_compat.composition import IGNORED

        try:
            return self._invoke(request, args, kwargs)
        except Ignore:
            return IGNORED
        except Retry:
            raise
        except (Exception, TimeLimitExceeded) as exc:
            if self.autoretry_for and isinstance(exc, self.autoretry_for):
                if not (self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for)):
                    countdown = self.retry_kwargs.get("countdown")
                    if countdown is None:
                        countdown = (
                            backoff_seconds(self, request.retries) if self.retry_backoff else self.default_retry_delay
                        )
                    extra = {k: v for k, v in self.retry_kwargs.items() if k != "countdown"}
                    BoundTask(self, request).retry(exc=exc, countdown=countdown, **extra)
            raise

    def _invoke(self, request: Request, args: tuple, kwargs: dict) -> Any:
        if self.bind:
            return self.fn(BoundTask(self, request), *args, **kwargs)
        return self.fn(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run in this process, now (as calling a Celery task does)."""
        return self._invoke(Request.of(None, self, args, kwargs), args, kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self(*args, **kwargs)

    @property
    def backend(self):
        return self.app.backend

    def AsyncResult(self, id: str) -> AsyncResult:
        return AsyncResult(id, app=self.app)

    def check_arguments(self, args: tuple, kwargs: dict) -> None:
        """Raise TypeError at send time for arguments the function cannot take (Celery's `typing`)."""
        if not self.typing:
            return
        fn_args = (None, *args) if self.bind else args
        try:
            inspect.signature(self.fn).bind(*fn_args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}: {exc}") from None

    # Signatures and calling (see canvas.py)

    def s(self, *args: Any, **kwargs: Any):
        from actors.celery_compat.canvas import Signature

        return Signature(self.name, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any):
        from actors.celery_compat.canvas import Signature

        return Signature(self.name, args, kwargs, immutable=True, app=self.app)

    def signature(self, args: Iterable[Any] = (), kwargs: dict | None = None, immutable: bool = False, **options: Any):
        from actors.celery_compat.canvas import Signature

        return Signature(self.name, tuple(args or ()), kwargs or {}, options=options, immutable=immutable, app=self.app)

    subtask = signature

    def delay(self, *args: Any, **kwargs: Any) -> _AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict | None = None, **options: Any):
        return self.signature(args or (), kwargs or {}).apply_async(**options)

    def map(self, it: Iterable[Any]):
        from actors.celery_compat.canvas import xmap

        return xmap(self.s(), it)

    def starmap(self, it: Iterable[Iterable[Any]]):
        from actors.celery_compat.canvas import xstarmap

        return xstarmap(self.s(), it)

    def chunks(self, it: Iterable[Iterable[Any]], n: int):
        from actors.celery_compat.canvas import chunks

        return chunks(self.s(), it, n)

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"


def check_serializer(serializer: str | None) -> None:
    """Messages and results are JSON: `serializer="json"` is accepted, any other refused."""
    if serializer not in (None, "json"):
        raise Unsupported(f"serializer={serializer!r}: messages and results are always JSON")


def limit_ms(time_limit: float | None, soft_time_limit: float | None) -> float:
    """Dramatiq's time limit (ms) from Celery's seconds: the soft limit if given, else the hard one.

    Dramatiq interrupts the thread with an exception (it cannot kill it), which is what
    Celery's soft limit does; with both given, the soft one fires first. No limit is infinite,
    as in Celery (Dramatiq's own default is ten minutes).
    """
    limits = [x for x in (soft_time_limit, time_limit) if x is not None]
    return min(limits) * 1000 if limits else float("inf")


def new_id() -> str:
    return str(uuid.uuid4())

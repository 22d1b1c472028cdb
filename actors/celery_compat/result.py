"""Task states, the Redis result backend, and the result handles (`AsyncResult`, `GroupResult`).

Results are stored as Celery's Redis backend stores them: one JSON document per task id under
`celery-task-meta-<id>` (`status`, `result`, `traceback`, `date_done`), expiring after
`result_expires` seconds. Exceptions are stored by type, module and arguments and rebuilt on
`.get()`, but only from modules the reading process has already imported (nothing is imported
on behalf of a stored name). Groups keep their members' results in a barrier hash, see
`actors.celery_compat.composition`.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import redis

PENDING, RECEIVED, STARTED, RETRY = "PENDING", "RECEIVED", "STARTED", "RETRY"
SUCCESS, FAILURE, REVOKED = "SUCCESS", "FAILURE", "REVOKED"
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})

DEFAULT_EXPIRES = 86400  # Celery's result_expires default: one day


class TimeoutError(Exception):
    """`.get(timeout=...)` ran out of time before the result was ready."""


class TaskRevokedError(Exception):
    """The task was revoked (or expired) before it ran."""


class ChordError(Exception):
    """A member of a chord's header (or of a group inside a chain) failed, so the body cannot run."""


class Unsupported(NotImplementedError):
    """A Celery option or feature this interface refuses at once instead of ignoring it (issue 12:
    "an option that cannot be honoured raises at once"); the README's Celery table says why."""


class NoBackendError(Unsupported):
    """The app has no result backend, so results cannot be read (Celery's DisabledBackend)."""


def encode_exception(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    return {"exc_type": cls.__qualname__, "exc_module": cls.__module__, "exc_message": [str(a) for a in exc.args]}


def decode_exception(data: Any) -> BaseException:
    """Rebuild a stored exception; a type this process has not imported comes back as a plain Exception."""
    if not isinstance(data, dict) or "exc_type" not in data:
        return Exception(data)
    module = sys.modules.get(data.get("exc_module") or "")
    cls: Any = module
    for part in data["exc_type"].split("."):
        cls = getattr(cls, part, None)
    args = data.get("exc_message") or []
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(*args)
        except Exception:  # noqa: BLE001 - a constructor that wants other arguments
            pass
    return Exception(f"{data['exc_type']}: {', '.join(args)}")


class ResultBackend:
    """Task results in Redis, each expiring after `expires` seconds."""

    def __init__(self, url: str, expires: float = DEFAULT_EXPIRES) -> None:
        self.url = url
        self.expires = expires
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:  # connects on first use, never at import
            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=10)
        return self._client

    @staticmethod
    def key(task_id: str) -> str:
        return f"celery-task-meta-{task_id}"

    def store(
        self,
        task_id: str,
        state: str,
        result: Any = None,
        traceback: str | None = None,
        children: list | None = None,
        pipe: Any = None,
    ) -> None:
        """Store a task's state and result; on `pipe` (a Redis pipeline) when given, so that the
        write travels in the caller's round trip."""
        if state in EXCEPTION_STATES and isinstance(result, BaseException):
            result = encode_exception(result)
        meta = {
            "task_id": task_id,
            "status": state,
            "result": result,
            "traceback": traceback,
            "date_done": dt.datetime.now(dt.UTC).isoformat() if state in READY_STATES else None,
            "children": children or [],
        }
        (pipe if pipe is not None else self.client).set(
            self.key(task_id), json.dumps(meta, default=str), ex=max(1, int(self.expires))
        )

    def meta(self, task_id: str) -> dict[str, Any]:
        raw = self.client.get(self.key(task_id))
        if raw is None:
            return {"task_id": task_id, "status": PENDING, "result": None, "traceback": None}
        return json.loads(raw)

    def forget(self, task_id: str) -> None:
        self.client.delete(self.key(task_id))

    # Revocation: a set of ids every worker checks before running a message.

    def revoke(self, task_id: str) -> None:
        pipe = self.client.pipeline()
        pipe.sadd("celery-revoked", task_id)
        pipe.expire("celery-revoked", max(1, int(self.expires)))
        pipe.execute()
        self.store(task_id, REVOKED, TaskRevokedError(f"revoked: {task_id}"))

    def is_revoked(self, task_id: str) -> bool:
        return bool(self.client.sismember("celery-revoked", task_id))


class DisabledBackend:
    """What an app without `backend=` has: sending works, reading results raises."""

    expires = DEFAULT_EXPIRES

    def _refuse(self, *args: Any, **kwargs: Any):
        raise NoBackendError("no result backend is configured: Celery(..., backend='redis://...')")

    store = meta = forget = revoke = _refuse

    def is_revoked(self, task_id: str) -> bool:
        return False


def _in_task() -> bool:
    from dramatiq.middleware import CurrentMessage

    return CurrentMessage.get_current_message() is not None


class AsyncResult:
    """The handle of a task (or of a group, whose list of results is stored under its id)."""

    def __init__(self, id: str, backend: Any = None, parent: Any = None, app: Any = None) -> None:
        from actors.celery_compat.app import current_app

        self.id = id
        self.app = app or current_app()
        self.backend = backend or self.app.backend
        self.parent = parent
        #: Sent with `ignore_result`: nothing will be stored, so `.get()` answers None at once.
        self.ignored = False

    task_id = property(lambda self: self.id)

    @property
    def children(self) -> list[AsyncResult]:
        """The results of what this task started when it succeeded (its `link=` callbacks)."""
        return [AsyncResult(i, self.backend, self, self.app) for i in self._meta().get("children") or []]

    def collect(self, intermediate: bool = False):
        """Yield `(result, value)` for this task, then for its children, depth first."""
        yield self, self.get()
        for child in self.children:
            yield from child.collect(intermediate)

    def _meta(self) -> dict[str, Any]:
        return self.backend.meta(self.id)

    @property
    def state(self) -> str:
        return self._meta()["status"]

    status = state

    @property
    def result(self) -> Any:
        meta = self._meta()
        if meta["status"] in EXCEPTION_STATES:
            return decode_exception(meta["result"])
        return meta["result"]

    info = result

    @property
    def traceback(self) -> str | None:
        return self._meta().get("traceback")

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.05,
        disable_sync_subtasks: bool = True,
    ) -> Any:
        """Wait for the result; raise the task's exception (when `propagate`) or TimeoutError."""
        if self.ignored:
            return None
        if disable_sync_subtasks and _in_task():
            raise RuntimeError("Never call result.get() within a task: it can deadlock the worker")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            meta = self._meta()
            if meta["status"] in READY_STATES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"the operation timed out ({timeout} s): {self.id}")
            time.sleep(interval)
        if meta["status"] == SUCCESS:
            return meta["result"]
        exc = decode_exception(meta["result"])
        if meta["status"] == REVOKED and not isinstance(exc, TaskRevokedError):
            exc = TaskRevokedError(str(exc))
        if propagate:
            raise exc
        return exc

    wait = get

    def forget(self) -> None:
        self.backend.forget(self.id)

    def revoke(self, terminate: bool = False, signal: Any = None) -> None:
        """Keep the task from running; `terminate=True` (killing a running task) is not supported."""
        if terminate:
            raise Unsupported("revoke(terminate=True): a running Dramatiq worker thread cannot be killed")
        self.backend.revoke(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"


class GroupResult(AsyncResult):
    """The results of a group's members, in order; its own id holds the list once all succeeded."""

    def __init__(self, id: str, results: list[AsyncResult], backend: Any = None, parent: Any = None) -> None:
        super().__init__(id, backend, parent)
        self.results = list(results)

    children = property(lambda self: self.results)

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        return sum(1 for r in self.results if r.successful())

    @property
    def state(self) -> str:  # not in Celery's GroupResult; the states of the members taken together
        states = [r.state for r in self.results]
        if any(s == FAILURE for s in states):
            return FAILURE
        if all(s == SUCCESS for s in states):
            return SUCCESS
        return STARTED if any(s != PENDING for s in states) else PENDING

    status = state

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.05,
        disable_sync_subtasks: bool = True,
    ) -> Any:
        """The members' results in order (Celery's `join`), within one overall timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for r in self.results:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            values.append(
                r.get(timeout=left, propagate=propagate, interval=interval, disable_sync_subtasks=disable_sync_subtasks)
            )
        return values

    join = get

    def revoke(self, terminate: bool = False, signal: Any = None) -> None:
        for r in self.results:
            r.revoke(terminate=terminate)

    def forget(self) -> None:
        for r in self.results:
            r.forget()
        super().forget()

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

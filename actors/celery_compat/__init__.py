"""A Celery-compatible task interface on Dramatiq (ARCHITECTURE.md decisions 4 and 11).

Import it where Celery code imports `celery`::

    from actors.celery_compat import Celery, chain, chord, group, shared_task

    app = Celery("proj", broker="redis://localhost:6379/0", backend="redis://localhost:6379/1")

    @app.task
    def add(x, y):
        return x + y

    chain(add.s(2, 2), add.s(4))().get()   # 8

Start a worker for it with `python -m actors.celery_compat worker -A proj`. README.md's
"Celery -> Sage Mode" table lists what maps to what, and what is refused and why.

- `app.py`: the app, tasks, bound tasks and Celery's retry rules;
- `canvas.py`: signatures, `chain`, `group`, `chord`, `|`, map/starmap/chunks;
- `result.py`: states, the Redis result backend, `AsyncResult`, `GroupResult`;
- `composition.py`: sending a canvas, and the middleware that advances it.
"""

from __future__ import annotations

from dramatiq.middleware.time_limit import TimeLimitExceeded

from actors.celery_compat.app import (
    BoundTask,
    Celery,
    Ignore,
    MaxRetriesExceededError,
    Request,
    Retry,
    Task,
    current_app,
    get_task,
    shared_task,
    task,
)
from actors.celery_compat.canvas import Signature, chain, chord, chunks, group, signature, subtask, xmap, xstarmap
from actors.celery_compat.composition import Composition
from actors.celery_compat.result import (
    FAILURE,
    PENDING,
    READY_STATES,
    RECEIVED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    AsyncResult,
    ChordError,
    GroupResult,
    NoBackendError,
    TaskRevokedError,
    TimeoutError,
    Unsupported,
)

#: Celery's name for what a time limit raises in the task (see `app.limit_ms`).
SoftTimeLimitExceeded = TimeLimitExceeded

__all__ = [
    "FAILURE",
    "PENDING",
    "READY_STATES",
    "RECEIVED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "AsyncResult",
    "BoundTask",
    "Celery",
    "ChordError",
    "Composition",
    "GroupResult",
    "Ignore",
    "MaxRetriesExceededError",
    "NoBackendError",
    "Request",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "Unsupported",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "get_task",
    "group",
    "shared_task",
    "signature",
    "subtask",
    "task",
    "xmap",
    "xstarmap",
]

"""A user's task module, written as Celery's guides write theirs, run by a real worker in
tests/test_celery_compat.py (`python -m actors.celery_compat worker -A compat_tasks`)."""

from __future__ import annotations

import json
import os
import time

import redis

from actors.celery_compat import Celery, shared_task

REDIS_URL = os.environ["REDIS_URL"]
#: How long a dead worker's message waits before another worker gets it (the kill test).
VISIBILITY_TIMEOUT = 3

app = Celery(
    "compat_tasks",
    broker=REDIS_URL,
    backend=REDIS_URL,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    task_routes={"compat_tasks.routed": {"queue": "hipri"}},
)
store = redis.Redis.from_url(REDIS_URL, decode_responses=True)


class ExpectedError(Exception):
    """Raised on purpose by the failing tasks."""


class FlakyError(Exception):
    """A failure worth retrying."""


def note(key: str, value) -> None:
    """Record something a task did, for the test to read."""
    store.rpush(key, json.dumps(value))


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def identity(value):
    return value


@app.task(name="custom.hello")
def hello(to="world"):
    return f"hello {to}"


@shared_task
def shared_add(x, y):
    return x + y


@app.task
def routed():
    return "routed"


@app.task
def fail(message="expected"):
    raise ExpectedError(message)


@app.task(bind=True)
def who_am_i(self):
    return {"id": self.request.id, "retries": self.request.retries, "queue": self.request.delivery_info["routing_key"]}


@app.task(bind=True, max_retries=3)
def retry_then_succeed(self, key, failures, countdown):
    attempt = store.incr(key)
    note(f"{key}:at", time.time())
    if attempt <= failures:
        raise self.retry(exc=FlakyError(f"attempt {attempt}"), countdown=countdown)
    return attempt


@app.task(bind=True, max_retries=2, default_retry_delay=0.1)
def always_retry(self, key):
    store.incr(key)
    raise self.retry(exc=FlakyError("still down"))


@app.task(autoretry_for=(FlakyError,), retry_backoff=1, retry_jitter=False, max_retries=1)
def autoretried(key):
    store.incr(key)
    note(f"{key}:at", time.time())
    raise FlakyError("down")


@app.task(autoretry_for=(FlakyError,), retry_kwargs={"max_retries": 2, "countdown": 0.05})
def autoretried_until_it_works(key):
    if store.incr(key) < 3:
        raise FlakyError("not yet")
    return "worked"


@app.task
def fails_once_no_retry(key):
    store.incr(key)
    raise FlakyError("would be retried by Dramatiq's defaults, never by Celery's")


@app.task(ignore_result=True)
def quiet(key):
    store.set(key, "ran")
    return "not kept"


@app.task(time_limit=1)
def sleepy(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # short steps: the limit's exception lands between them
        time.sleep(0.05)
    return "woke"


@app.task
def record(value, key):
    note(key, value)
    return value


@app.task
def on_error(request, exc, traceback):
    note("compat:errors", {"id": request.id, "exc": repr(exc), "has_traceback": "Traceback" in traceback})


@app.task
def slow(value, seconds, key):
    note(key, os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return value


@app.task
def counted_sum(numbers, key):
    store.incr(key)
    return sum(numbers)


@app.task(bind=True)
def progress(self, key):
    self.update_state(state="PROGRESS", meta={"current": 1, "total": 2})
    deadline = time.monotonic() + 10
    while not store.get(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "done"


@app.task(serializer="json")
def tagged(value):
    return {"tag": value}


if os.environ.get("SAGE_CELERY_APP"):  # declared in the worker only, so the test must send it by name

    @app.task(name="worker.only")
    def worker_only(x):
        return f"worker got {x}"

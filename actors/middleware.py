"""Dramatiq middleware: each message's own database connection (decision 6), and its log context."""

from __future__ import annotations

import abc
import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from models import logs
from models.db import close_database, db, init_database
from models.settings import Settings


class AfterEachMessage(Middleware, abc.ABC):
    """A middleware with one hook, `after_message`, run after every message, processed or skipped.

    Its state belongs to the worker thread, so a parked message (`actors.parking`) runs it when
    it gives the thread back, and the before-hook again when it resumes.
    """

    thread_bound = True

    @abc.abstractmethod
    def after_message(self) -> None:
        """What to undo once the message is done."""

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self.after_message()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self.after_message()


class DatabaseMiddleware(AfterEachMessage):
    """Open a pooled connection before each message and hand it back after, whatever happened."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._owns_database = False

    def _ensure_database(self) -> None:
        if db.obj is None:
            init_database(self.settings.database_url, self.settings.db_max_connections)
            self._owns_database = True

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self._ensure_database()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._ensure_database()
        db.connect(reuse_if_open=True)

    def after_message(self) -> None:
        self._release()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # After the worker threads have been joined, never before: closing the pool while tasks
        # still run fails each of them with "connection already closed" and uses up a retry.
        # Close only a pool this middleware opened (an in-process worker shares its host's), and
        # not under tasks that outlived the grace period (the process exits without them).
        if self._owns_database and not any(thread.is_alive() for thread in worker.workers):
            close_database()

    @staticmethod
    def _release() -> None:
        if db.obj is None or db.is_closed():
            return
        if db.in_transaction():
            # An actor that raised inside `atomic()` has already rolled back; anything still
            # open here is abandoned work that must not be committed by the pool.
            db.rollback()
        db.close()


class LogContextMiddleware(AfterEachMessage):
    """Every line a worker logs names its session, task and role (`models/logs.py`).

    The process's handlers get the context filter and the `LOG_FORMAT` at boot; each message
    starts with an empty context, which the pipeline fills once it knows the task, and ends by
    dropping it, so a thread's next message never inherits the last one's ids.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tokens = threading.local()

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        logs.configure(self.settings.log_format)

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._tokens.token = logs.bind()

    def after_message(self) -> None:
        token = getattr(self._tokens, "token", None)
        if token is not None:
            self._tokens.token = None
            logs.unbind(token)

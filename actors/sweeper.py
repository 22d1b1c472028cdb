"""The watchdog that keeps a session from staying `active` forever.

A session is stalled when nothing about it has moved (no event: no task started, retried or
completed) for longer than the longest silence a healthy run can have: one attempt's time
limit, plus the longest retry delay, plus the broker's heartbeat timeout (a dead worker's
message waits that long before redelivery), plus a minute of queueing slack. `sweep()` marks
stalled sessions `error` with the reason, marks their unfinished running tasks `error`, and
records `session_error`.

Sessions whose messages the broker lost are not stalled in this sense: `actors.recovery` finds
them within seconds and sends their stage again, so this rule gives up only on sessions that
do not move even then (agents that keep failing without ending, a stage lost more than
`recovery.MAX_RESENDS` times).

Who runs it: every worker process runs `SweeperMiddleware`, a daemon thread that wakes every
`RECOVERY_INTERVAL_SECONDS` for recovery and every `SWEEP_INTERVAL_SECONDS` for the sweep, each
only if it wins a short Redis lock, so the fleet does each about once per interval in total,
and as long as any worker is alive (without workers no session moves anyway).
`python -m actors sweep` runs one sweep by hand or from cron.

The same thread refreshes the planner's statistics of tables that have doubled since their last
ANALYZE (`models.statistics`), also once per recovery interval across the fleet.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import dramatiq
import redis
from dramatiq.middleware import Middleware
from peewee import fn

from actors.config import redis_client
from actors.recovery import RECOVERY_INTERVAL_SECONDS, fleet_turn, recover_once_per_fleet
from models import lifecycle, statistics
from models.db import db
from models.schema import ExecutionSession, SessionEvent, utcnow
from models.settings import Settings

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 30.0
LOCK_KEY = "sage:sweeper"
STATISTICS_LOCK_KEY = "sage:statistics"


def stall_seconds(settings: Settings) -> float:
    """How long a session may go without any event before it is declared stalled."""
    longest_retry = max(settings.retry_delays_seconds or (0.0,))
    return settings.task_time_limit_seconds + longest_retry + settings.heartbeat_timeout_ms / 1000 + 60.0


def sweep(settings: Settings, now: dt.datetime | None = None, stall: float | None = None) -> list[int]:
    """Mark every stalled active session `error`; return their ids. Call inside a connection."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(seconds=stall if stall is not None else stall_seconds(settings))
    last_event = (
        SessionEvent.select(SessionEvent.session, fn.MAX(SessionEvent.created_at).alias("at"))
        .group_by(SessionEvent.session)
        .alias("last_event")
    )
    candidates = [
        s.id
        for s in ExecutionSession.select(ExecutionSession.id)
        .join(last_event, on=(last_event.c.session_id == ExecutionSession.id))
        .where((ExecutionSession.status == "active") & (last_event.c.at < cutoff))
    ]
    swept = []
    for session_id in candidates:
        reason = lifecycle.abandon(session_id, cutoff, now).value
        if reason is None:
            continue  # it moved, or ended, since the first look
        logger.warning("session %s marked error: %s", session_id, reason)
        swept.append(session_id)
    return swept


class SweeperMiddleware(Middleware):
    """Runs, in the background of every worker process, `recover` (lost messages) every few
    seconds and `sweep` (stalled sessions) once per interval, each once across the fleet."""

    def __init__(
        self, settings: Settings, interval: float = SWEEP_INTERVAL_SECONDS, recovery_interval: float | None = None
    ) -> None:
        self.settings = settings
        self.interval = interval
        self.recovery_interval = recovery_interval or RECOVERY_INTERVAL_SECONDS
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broker: dramatiq.Broker | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._broker = broker
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sage-sweeper", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def _loop(self) -> None:
        next_sweep = time.monotonic() + self.interval
        while not self._stop.wait(self.recovery_interval):
            try:
                if self._broker is not None:
                    recover_once_per_fleet(self._broker, self.recovery_interval)
            except redis.ConnectionError as exc:
                logger.warning("recovery skipped, Redis is unreachable: %s", exc)
            except Exception:
                logger.exception("recovery failed; will try again in %ss", self.recovery_interval)
            self._refresh_statistics()
            if time.monotonic() < next_sweep:
                continue
            next_sweep = time.monotonic() + self.interval
            try:
                if not fleet_turn(redis_client(), LOCK_KEY, self.interval):
                    continue
                with db.connection_context():
                    sweep(self.settings)
            except Exception:
                logger.exception("sweep failed; will try again in %ss", self.interval)

    def _refresh_statistics(self) -> None:
        """`statistics.analyze_grown` if this process wins the fleet's lock for this interval."""
        try:
            if fleet_turn(redis_client(), STATISTICS_LOCK_KEY, self.recovery_interval):
                with db.connection_context():
                    statistics.analyze_grown()
        except redis.ConnectionError:
            pass  # recovery has said so; the statistics wait for Redis like everything else here
        except Exception:
            logger.exception("refreshing planner statistics failed; will try again in %ss", self.recovery_interval)

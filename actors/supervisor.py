"""`python -m actors worker`: a pool of Dramatiq worker processes that outlives its children.

Dramatiq's own CLI master stops the whole pool when one child dies (`dramatiq/cli.py`: "Worker
with PID ... exited unexpectedly. Shutting down..."; by design, Bogdanp/dramatiq#505), and
nothing restarts it, so one crashed or OOM-killed process stopped every session. This
supervisor runs the children itself:

- each child is `python -m actors worker-process`, one Dramatiq `Worker` with its threads
  (`serve_one`); a child that exits without being asked to is started again at once (with a
  short backoff if children keep dying right after start), and the pool keeps serving. The dead
  child's unacked messages are redelivered by the broker: Redis after `HEARTBEAT_TIMEOUT_MS`,
  RabbitMQ as soon as the child's connection closes. The task claims make the redelivery run
  each task once.
- SIGTERM or SIGINT (to the supervisor, or to its whole process group) is a graceful stop: each
  child stops consuming, lets its running tasks finish within `WORKER_GRACE_SECONDS`, then closes
  its database connections and exits. A second signal changes nothing (Dramatiq's CLI kills a
  child at its second SIGTERM, and a signal to the process group plus the master's forward is
  already two). A child still running after the grace period (plus a margin) is SIGKILLed; its
  messages are redelivered like a crashed child's.
- SIGHUP restarts the children gracefully, one after the other (for a code reload).
- A child whose supervisor is gone (SIGKILLed) stops itself gracefully within a second.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from models import heap, logs
from models.settings import Settings

logger = logging.getLogger("sage.supervisor")

LOG_FORMAT = "[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s"

#: The model SDKs' HTTP transports (`httpx2` for openai and anthropic, `httpx` for anything on the
#: plain package) log every request at INFO, with its whole URL: one line per model call, which
#: the SDKs leave to the application to configure. A worker logs a line per task instead; their
#: warnings and errors still show. With a thousand calls in flight the lines cost about 1.3 % of
#: a worker's CPU (bench/README.md, ninth pass).
QUIET_LOGGERS = ("httpx2", "httpx")

#: A child that dies sooner than this after starting counts as a crash loop and is restarted
#: after a growing delay (up to `MAX_RESTART_DELAY`), so a broken deploy does not spin the CPU.
QUICK_DEATH_SECONDS = 5.0
MAX_RESTART_DELAY = 10.0

#: How long past its grace period a stopping child may take (closing connections, requeueing
#: prefetched messages) before it is SIGKILLed.
KILL_MARGIN_SECONDS = 5.0

ROOT = Path(__file__).resolve().parent.parent

#: How often the supervisor looks at its children and the flags its signal handlers set.
POLL_SECONDS = 0.2


def configure_logging() -> None:
    """A worker process's logging: INFO and up on stderr, in `LOG_FORMAT`, the transports quieter."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class _Flags:
    """What the signal handlers ask for. Plain attributes on purpose: a handler runs on the
    main thread between two bytecodes, possibly inside a lock that thread holds (an Event's,
    a Condition's), so taking any lock there can deadlock; polling the flags cannot."""

    stop = False
    reload = False


class _Child:
    """One worker process and what the supervisor knows about it."""

    def __init__(self, slot: int, argv: list[str], name: str = "worker") -> None:
        self.slot = slot
        self.argv = argv
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.quick_deaths = 0
        self.restart_at = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=ROOT)
        self.started = time.monotonic()
        logger.info("%s %d started (pid %d)", self.name, self.slot, self.proc.pid)

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signum)
            except ProcessLookupError:
                pass


def supervise(processes: int, threads: int, grace_seconds: float) -> int:
    """Run `processes` worker children of `threads` threads until SIGTERM/SIGINT; replace dead ones."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    argv = [
        sys.executable,
        "-m",
        "actors",
        "worker-process",
        "--threads",
        str(threads),
        "--grace",
        str(grace_seconds),
    ]
    children = [_Child(slot, argv) for slot in range(processes)]
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    if settings.worker_metrics_port:
        # Dramatiq's CLI serves the Prometheus middleware's figures from a forked process; so do we.
        children.append(_Child(0, [sys.executable, "-m", "actors.metrics_server"], name="metrics server"))
    flags = _Flags()

    def on_stop(signum: int, frame: object) -> None:
        flags.stop = True

    def on_hup(signum: int, frame: object) -> None:
        flags.reload = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)

    for child in children:
        child.start()
    logger.info("supervising %d worker processes of %d threads (grace %.0f s)", processes, threads, grace_seconds)

    while not flags.stop:
        time.sleep(POLL_SECONDS)
        if flags.stop:
            break
        if flags.reload:
            flags.reload = False
            for child in children:  # one at a time, so the pool never stops serving
                if flags.stop:
                    break
                _stop_children([child], grace_seconds)
                child.start()
            continue
        now = time.monotonic()
        for child in children:
            code = child.proc.poll() if child.proc is not None else None
            if child.proc is not None and code is None:
                continue
            if child.proc is not None:
                lived = now - child.started
                child.quick_deaths = child.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
                delay = min(MAX_RESTART_DELAY, 0.5 * (2 ** (child.quick_deaths - 1))) if child.quick_deaths else 0.0
                logger.error(
                    "%s %d (pid %d) exited unexpectedly with %s after %.1f s; restarting it%s",
                    child.name,
                    child.slot,
                    child.proc.pid,
                    _describe(code),
                    lived,
                    f" in {delay:.1f} s" if delay else "",
                )
                child.proc = None
                child.restart_at = now + delay
            if now >= child.restart_at:
                child.start()

    logger.info("stopping: letting running tasks finish (up to %.0f s)", grace_seconds)
    _stop_children(children, grace_seconds)
    logger.info("all worker processes stopped")
    return 0


def _stop_children(children: list[_Child], grace_seconds: float) -> None:
    """SIGTERM the children, wait out the grace period (plus a margin), SIGKILL what is left."""
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds + KILL_MARGIN_SECONDS
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s %d (pid %d) did not stop in time; killing it", child.name, child.slot, child.proc.pid)
            child.proc.kill()
            child.proc.wait()
        child.proc = None


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _settle_heap() -> None:
    """Load the configured model brains' SDKs now, then hide what boot made from the cycle collector.

    With a hundred model calls in flight, each holding its session's context, a worker's full
    garbage collections took about a tenth of its CPU, most of it walking the modules, classes
    and schemas loaded at boot (the SDKs among them, imported on a process's first model call),
    which live as long as the process. `gc.freeze()` moves them to the permanent generation, so
    collections walk only what the work itself makes; the collector's thresholds are raised too
    (`models.heap`).
    """
    from actors.agents.llm import load_configured_sdks

    load_configured_sdks()
    heap.settle()


def serve_one(threads: int, grace_seconds: float) -> int:
    """Run one Dramatiq worker in this process until SIGTERM/SIGINT, then stop it gracefully."""
    configure_logging()
    log = logging.getLogger("sage.worker")
    flags = _Flags()

    def on_stop(signum: int, frame: object) -> None:
        # Idempotent on purpose: the group's signal and the supervisor's forward both arrive.
        flags.stop = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` logs every thread's stack
    parent = os.getppid()

    def orphaned() -> None:
        # A supervisor that was SIGKILLed cannot stop its children: they stop themselves.
        while not flags.stop:
            time.sleep(1.0)
            if os.getppid() != parent:
                log.warning("the supervisor (pid %d) is gone; stopping", parent)
                flags.stop = True

    threading.Thread(target=orphaned, name="sage-orphan-watch", daemon=True).start()

    import dramatiq

    import actors  # noqa: F401  (sets up the broker and declares the actors on it)
    from actors.broker import queue_prefetch
    from actors.config import get_settings
    from actors.parking import ParkingWorker

    broker = dramatiq.get_broker()
    broker.emit_after("process_boot")
    _settle_heap()
    worker = ParkingWorker(broker, worker_threads=threads, worker_timeout=get_settings().worker_timeout_ms)
    # Room for parked messages too: on RabbitMQ the prefetch is the channel's unacked limit.
    worker.queue_prefetch = queue_prefetch(broker, threads)
    worker.start()
    log.info("worker process ready: %d threads", threads)

    while not flags.stop:
        time.sleep(POLL_SECONDS)
    log.info("stopping: no new messages; running and parked tasks have %.0f s to finish", grace_seconds)
    worker.stop(timeout=int(grace_seconds * 1000))
    unfinished = sum(1 for thread in worker.workers if thread.is_alive()) + worker.parked
    if unfinished:
        # Their messages stay unacked and are redelivered (Redis: after the heartbeat timeout;
        # RabbitMQ: when this process's connections close at its exit); the
        # database is left open under them (closing it would fail them and use up a retry).
        log.warning("%d tasks still running after the grace period; they will run again elsewhere", unfinished)
        logging.shutdown()
        os._exit(1)
    broker.close()
    log.info("worker process stopped")
    return 0

"""The web server: hypercorn on every core (`python -m app` is its command line).

One process serves everything on one core, so `WEB_PROCESSES` (default: one per core) web
processes serve one port: this process binds it, starts the children, and replaces any child
that dies (a crash or an OOM kill never takes the site down) or whose event loop has not turned
for `WEB_STALL_SECONDS` (it is killed first). On Linux each child listens on a socket of its
own, all bound to the port with SO_REUSEPORT, so the kernel deals new connections out among them
(`reuse_port_sockets`); elsewhere they share this process's socket. Each child is a whole app
with its own database pool, Redis pool and exactly one pub/sub reader, so live events, `?after=`
resumes and revocations reach a socket whichever process holds it (they all travel through
Redis). SIGTERM or SIGINT stops the children gracefully, then this process.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from multiprocessing.connection import wait
from typing import Any

import uvloop
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.logging import AccessLogAtoms
from hypercorn.logging import Logger as HypercornLogger
from hypercorn.utils import wrap_app

from models import heap, logs
from models.settings import Settings

log = logging.getLogger("sage.web")

#: How long a stopping child may take before it is killed (hypercorn's own grace is 5 s).
STOP_SECONDS = 10.0
#: How long an open connection may sit without a request before the server closes it (also how
#: long a new one may take to send its first request's head). A burst of 400 sessions from one
#: loaded client (`bench/pipeline.py --sessions 400`) sent some first requests about 5 s after
#: connecting; with hypercorn's default of 5 s, 2 runs of 5 lost POSTs that way (77 in one: "Server
#: disconnected without sending a response"). Kept short all the same: hypercorn has no cap on
#: connections, and an idle or slow one is held this long.
KEEP_ALIVE_SECONDS = 15.0
#: A child that dies sooner than this after starting is restarted after a pause, not at once, so a
#: broken deployment does not spin.
CRASH_LOOP_SECONDS = 2.0


def _not_a_probe(record: logging.LogRecord) -> bool:
    """Leave the session page's once-a-second connection probe (HEAD /favicon.ico) out of the access log."""
    args = record.args
    if isinstance(args, Mapping):  # the access line's atoms: no need to format the line to know
        return not str(args["r"]).startswith("HEAD /favicon.ico ")
    return '"HEAD /favicon.ico ' not in record.getMessage()


class AccessAtoms(dict):
    """hypercorn's `AccessLogAtoms`, each value worked out only when the log format asks for it.

    hypercorn builds every atom of every request up front, an entry per request header, response
    header and environment variable included (issue 13: 3% of a read's CPU); the access format
    names a few. The values, and "-" for what is unknown, are `AccessLogAtoms`'s.
    """

    def __init__(self, request: Any, response: Any, request_time: float) -> None:
        # One entry, so that logging takes this (non-empty) mapping as the format's arguments.
        super().__init__(l="-")
        self.request, self.response, self.request_time = request, response, request_time

    def _full(self) -> AccessLogAtoms:
        return AccessLogAtoms(self.request, self.response, self.request_time)

    def _header(self, headers: Any, name: str) -> str:
        wanted = name.encode("latin1")
        found = "-"
        for key, value in headers:  # the last one wins, as in AccessLogAtoms
            if key.lower() == wanted:
                found = value.decode("latin1")
        return found

    def _method(self) -> str:
        return self.request["method"] if self.request["type"] == "http" else "GET"

    def __getitem__(self, key: str) -> Any:
        request, response = self.request, self.response
        if key == "h":
            client = request.get("client")
            if client is not None and len(client) == 2:
                return f"{client[0]}:{client[1]}"
        elif key == "l":
            return "-"
        elif key == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        elif key == "r":
            return f"{self._method()} {request['path']} {request.get('http_version', 'ws')}"
        elif key == "s":
            return "-" if response is None else str(response["status"])
        elif key in ("b", "B"):
            key = "{content-length}o"
        elif key == "f":
            key = "{referer}i"
        elif key == "a":
            key = "{user-agent}i"
        if key.startswith("{") and key.endswith("}i"):
            return self._header(request["headers"], key[1:-2].lower())
        if key.startswith("{") and key.endswith("}o"):
            return "-" if response is None else self._header(response.get("headers", []), key[1:-2].lower())
        return self._full()[key]  # anything rarer: hypercorn's own


class AccessLogger(HypercornLogger):
    """hypercorn's logger with `AccessAtoms`."""

    def atoms(self, request: Any, response: Any, request_time: float) -> Mapping[str, str]:
        return AccessAtoms(request, response, request_time)


def hypercorn_config(settings: Settings, host: str | None, port: int | None) -> Config:
    """The server settings shared by every process."""
    config = Config()
    config.bind = [f"{host or settings.host}:{port or settings.port}"]
    # Through the root logger, so access lines take LOG_FORMAT too.
    access = logging.getLogger("hypercorn.access")
    if _not_a_probe not in access.filters:
        access.addFilter(_not_a_probe)
    config.accesslog = access
    config.logger_class = AccessLogger
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS  # hypercorn's 5 s cut off loaded clients' requests
    # The whole WebSocket message is assembled before the app sees it: bound it (1009 beyond).
    config.websocket_max_message_size = settings.ws_max_message_bytes
    return config


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO)
    logs.configure(settings.log_format)


def freeze_start_up_objects() -> None:
    """Collect once, then move every object alive now (modules, functions, classes, the app, its
    pools) out of the garbage collector's generations for good (`gc.freeze`).

    Every request of a web process makes some cyclic garbage and keeps objects alive for a few
    milliseconds, so objects reach the oldest generation steadily, and each full collection walked
    the ~90,000 objects of the started process: pauses of 40-126 ms every second or two at 64
    connections, during which that process answers nothing (issue 13: most of the read p99). With
    the start-up objects frozen a full collection walks only what came after: 2-7 ms. The
    collector's thresholds are raised too (`models.heap`).
    """
    heap.settle()


def preload_enqueueing() -> None:
    """Import the workers' package now: its broker and its actors, which `POST /sessions` needs
    to enqueue a session. Imported on the first POST instead, it took that request's database
    thread 124 ms on an idle machine (0.35 s under the pipeline benchmark's first burst, in each
    web process), and its objects were left out of `freeze_start_up_objects`."""
    import actors.pipeline  # noqa: F401


def served_app(settings: Settings) -> Any:
    """The app as a web process serves it: `create_app`'s, whose start-up objects are frozen
    (`freeze_start_up_objects`) once its own start-up hooks have run."""
    from app import create_app

    app = create_app(settings)

    @app.before_serving
    async def freeze() -> None:  # registered last, so it runs after the pools and the hub are up
        preload_enqueueing()
        freeze_start_up_objects()

    return app


#: How often a web process's event loop tells its supervisor it is turning.
BEAT_SECONDS = 1.0


async def _beat(heartbeat: Any) -> None:
    """Write the time into `heartbeat` (shared with the supervisor) while the event loop turns."""
    while True:
        heartbeat.value = time.monotonic()
        await asyncio.sleep(BEAT_SECONDS)


def serve(settings: Settings, config: Config, sockets: Sockets | None = None, heartbeat: Any = None) -> None:
    """Run one web process until SIGTERM or SIGINT (on `sockets` when a supervisor bound them,
    telling it through `heartbeat` that its event loop turns)."""
    from app.serving import end_on_too_big, one_write_per_response

    end_on_too_big()  # in every web process: an oversize WebSocket message ends its connection
    one_write_per_response()  # and a response's head goes out in one write with its body
    shutdown = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shutdown.set)
        beating = asyncio.create_task(_beat(heartbeat)) if heartbeat is not None else None
        app = wrap_app(served_app(settings), config.wsgi_max_body_size, "asgi")
        try:
            await worker_serve(app, config, sockets=sockets, shutdown_trigger=shutdown.wait)
        finally:
            if beating is not None:
                beating.cancel()

    # uvloop (what `hypercorn --worker-class uvloop` runs): the event loop and its socket I/O in C,
    # so the one thread that parses, routes and encodes every request of a process does less.
    uvloop.run(run())


def _child(settings: Settings, config: Config, sockets: Sockets, heartbeat: Any) -> None:
    """The entry point of a spawned web process."""
    setup_logging(settings)
    serve(settings, config, sockets, heartbeat)


def reuse_port_sockets(config: Config, processes: int) -> bool:
    """Whether each web process gets a listening socket of its own (see `reuse_port_socket`).

    A shared listening socket is accepted from by whichever process wakes first, and it takes
    every connection waiting: clients that open their connections in a burst (an HTTP client's
    pool, a proxy, a page's requests) all landed on one process, 31 of 32 in a measured burst of
    POSTs, leaving the other cores idle. With SO_REUSEPORT, Linux hashes each new connection to
    one of the listening sockets bound to the port. TCP binds only (not unix: or fd:// ones, nor
    with QUIC configured).

    The price: a web process that dies resets the connections still waiting in its own queue
    (those it had accepted were lost with it either way), and while every process is down (a
    crash loop's pause) connections are refused rather than queued; a process that is alive but
    stuck still gets its share of new connections, which wait for it (the others took them from
    a shared socket) until the supervisor replaces it (`WEB_STALL_SECONDS`).
    """
    return (
        processes > 1
        and sys.platform.startswith("linux")
        and hasattr(socket, "SO_REUSEPORT")
        and not config.quic_bind
        and all(not bind.startswith(("unix:", "fd://")) for bind in [*config.bind, *config.insecure_bind])
    )


def reuse_port_socket(like: socket.socket, address: Any = None) -> socket.socket:
    """A socket of `like`'s kind bound with SO_REUSEPORT to `address` (`like`'s own by default),
    not listening: the supervisor's, which holds the port, or one web process's to listen on."""
    sock = socket.socket(like.family, like.type)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(like.getsockname() if address is None else address)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def _reserved(bound: Sockets) -> Sockets:
    """`bound`'s sockets, each replaced by a SO_REUSEPORT one on the same address.

    hypercorn bound them without SO_REUSEPORT, so a port another server already holds failed
    there as it always did; bound with it from the start, a second server of the same user could
    have joined this one's port and been dealt a share of its connections."""

    def again(plain: socket.socket) -> socket.socket:
        address = plain.getsockname()  # the port chosen when the bind asked for port 0
        plain.close()
        return reuse_port_socket(plain, address)

    return Sockets([again(s) for s in bound.secure_sockets], [again(s) for s in bound.insecure_sockets], [])


def bind(config: Config, processes: int) -> tuple[Sockets, bool]:
    """The supervisor's sockets for `processes` web processes, and whether each process gets its
    own (`reuse_port_sockets`). OSError when another server holds the port."""
    sockets = config.create_sockets()
    own_sockets = reuse_port_sockets(config, processes)
    return (_reserved(sockets) if own_sockets else sockets), own_sockets


def supervise(settings: Settings, config: Config, processes: int) -> int:
    """Bind once, run `processes` children on the port, keep that many alive until told to stop."""
    sockets, own_sockets = bind(config, processes)
    context = multiprocessing.get_context("spawn")
    children: dict[Any, tuple[Any, float, Any]] = {}  # sentinel -> (process, started at, heartbeat)
    stopping = False

    def start() -> None:
        given = sockets
        if own_sockets:
            given = Sockets(
                [reuse_port_socket(s) for s in sockets.secure_sockets],
                [reuse_port_socket(s) for s in sockets.insecure_sockets],
                [],
            )
        heartbeat = context.Value("d", 0.0, lock=False)  # a double in shared memory
        child = context.Process(target=_child, args=(settings, config, given, heartbeat), name="sage-web", daemon=False)
        child.start()
        if own_sockets:
            # The child has its own copy now: with this one closed, the socket goes when the child
            # does, instead of staying in the port's group with nobody accepting from it.
            for sock in [*given.secure_sockets, *given.insecure_sockets]:
                sock.close()
        children[child.sentinel] = (child, time.monotonic(), heartbeat)

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def kill_stalled() -> None:
        """SIGKILL a child whose event loop has not turned for `web_stall_seconds` (it is then
        replaced like any child that dies). The time counts from its start, so a child still
        starting is given the same while."""
        limit = settings.web_stall_seconds
        if not limit:
            return
        now = time.monotonic()
        for child, started, heartbeat in children.values():
            quiet = now - max(started, heartbeat.value)
            if quiet > limit and child.is_alive():
                log.warning("web process %s has not turned its event loop for %.0f s; replacing it", child.pid, quiet)
                child.kill()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(processes):
        start()
    log.info("serving on %s with %d web processes", ", ".join(config.bind), processes)
    try:
        while not stopping:
            for sentinel in wait(list(children), timeout=0.5):
                child, started, _ = children.pop(sentinel)
                child.join()
                if stopping:
                    continue
                log.warning("web process %s exited with %s; starting another", child.pid, child.exitcode)
                if time.monotonic() - started < CRASH_LOOP_SECONDS:
                    time.sleep(CRASH_LOOP_SECONDS)
                start()
            if not stopping:
                kill_stalled()
    finally:
        for child, _, _ in children.values():
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child, _, _ in children.values():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join()
        for sock in [*sockets.insecure_sockets, *sockets.secure_sockets]:
            sock.close()
    return 0

"""Whole sessions through the real product, beside the same task shape on Celery and bare Dramatiq.

    .venv/bin/python bench/pipeline.py [--sessions 100] [--idle 20] [--processes 2] [--threads 4]
                                       [--worker-timeouts 1000,100,20]

Product: `python -m app` and `python -m actors worker` as the Procfile starts them, on the bench
database and Redis (BENCH_DATABASE_URL, BENCH_REDIS_URL: see common.py), agents with their default brain. A session is `POST /sessions`, then
its WebSocket until `session_completed`; its latency runs from sending the POST to receiving
that event. Under load, N sessions are posted at once; at idle, one at a time, each after
--idle-pause seconds of quiet (so a worker's poll backoff is at its cap, as when really idle).

Peers, on their own Redis (BENCH_PEER_REDIS_URL, see peer_shape.py) with the same worker
processes x threads: the same 7-task shape (1 + 2 + 2 + 2, no-op tasks) as a Celery canvas
(`chain` of `group`s, Redis broker and result backend; two `celery worker --pool threads`
instances), the same canvas writing the product's rows and events in plain SQL ("Celery+SQL",
peer_celery_db.py: what a user would build from Celery and our tables), and as bare Dramatiq
groups (see peer_dramatiq.py). A peer run's latency runs from submitting it to the later of the last
stage's two completion stamps, so it leaves out the delivery to a client that the product's
figure includes.

With BROKER_URL=amqp://... in the environment, the product's web and workers run on RabbitMQ
(its queues in that vhost are purged first); Redis still carries the live events, and the peers
stay on Redis.

Then, for each --worker-timeouts value, the product's idle latency again and the Redis commands
per second its idle web + worker processes send (counted with MONITOR on the product's db only,
so other databases' traffic on the shared server is not counted).

It also prints the CPU per session under load of the product's workers, web and PostgreSQL
backends (utime + stime from /proc, as bench/llm_scale.py measures them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import common
import redis
from peer_shape import DONE_KEY, PEER_REDIS_URL

BENCH = Path(__file__).resolve().parent
#: Quiet before each idle run: long enough for Dramatiq's poll backoff to reach the worker
#: timeout (5 ms doubling up to 1000 ms takes ~1.3 s of misses), as on a really idle worker.
IDLE_PAUSE = 2.0


#: A whole session's stored events: session_started, 7 x (started, completed), session_completed.
EVENTS_PER_SESSION = 16


def check_stored(team_id: int) -> int:
    """Every product session of the run is fully stored: completed, 7 completed tasks each with a
    snapshot and decisions, and 16 events with seqs 1..16. Returns how many were checked."""
    from peewee import fn

    from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent, TaskDecision

    sessions = list(ExecutionSession.select().where(ExecutionSession.team == team_id))
    for session in sessions:
        tasks = list(AgentTask.select().where(AgentTask.session == session.id))
        ids = [t.id for t in tasks]
        seqs = [
            e.seq
            for e in SessionEvent.select(SessionEvent.seq)
            .where(SessionEvent.session == session.id)
            .order_by(SessionEvent.seq)
        ]
        snapshots = (
            AgentSnapshot.select(fn.COUNT(fn.DISTINCT(AgentSnapshot.agent_task)))
            .where(AgentSnapshot.agent_task.in_(ids))
            .scalar()
        )
        decided = (
            TaskDecision.select(fn.COUNT(fn.DISTINCT(TaskDecision.agent_task)))
            .where(TaskDecision.agent_task.in_(ids))
            .scalar()
        )
        whole = (
            session.status == "completed"
            and len(tasks) == 7
            and all(t.status == "completed" for t in tasks)
            and snapshots == 7
            and decided == 7
            and seqs == list(range(1, EVENTS_PER_SESSION + 1))
        )
        if not whole:
            raise RuntimeError(f"session {session.id} is not fully stored")
    return len(sessions)


class Figures:
    """Throughput and latencies of one system."""

    def __init__(self, name: str, per_second: float, load: list[float], idle: list[float]) -> None:
        self.name, self.per_second, self.load, self.idle = name, per_second, load, idle


# --- the product ----------------------------------------------------------------------------


async def product_session(client: aiohttp.ClientSession, team_id: int, name: str) -> float:
    """POST a session and wait on its WebSocket for `session_completed`; return the seconds taken.

    Every stored event must arrive, once and in order: the seqs received are 1..N with no gap.
    """
    started = time.monotonic()
    session_id = await common.post_session(client, {"team_id": team_id, "feature_name": name})
    seqs = []
    # The handshake has the client's 120 s (on a loaded machine 100 sockets opening at once take a
    # while); what follows has no limit of its own (the load's `wait_for` bounds the whole run).
    socket = client.ws_connect(f"/ws/{session_id}", timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10))
    async with socket as ws:
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"session {session_id}: unexpected frame {frame.type!r}: {frame.data!r}")
            message = json.loads(frame.data)
            if message.get("seq") is not None:
                seqs.append(message["seq"])
            if message["type"] == "session_completed":
                elapsed = time.monotonic() - started
                if seqs != list(range(1, len(seqs) + 1)) or len(seqs) != EVENTS_PER_SESSION:
                    raise RuntimeError(f"session {session_id}: events received out of order or missing: {seqs}")
                return elapsed
            if message["type"] == "session_error":
                raise RuntimeError(f"session {session_id} failed: {message['error']}")
    raise RuntimeError(f"session {session_id}: socket closed before session_completed")


async def idle_sessions(client: aiohttp.ClientSession, team_id: int, idle: int) -> list[float]:
    """`idle` sessions one at a time, each after IDLE_PAUSE seconds of quiet; latencies in ms."""
    latencies = []
    for index in range(idle):
        await asyncio.sleep(IDLE_PAUSE)
        latencies.append(await product_session(client, team_id, f"Idle {index}") * 1000)
    return latencies


def product_cpu(worker_pid: int) -> dict[str, float]:
    """CPU seconds so far of the product's worker processes, web processes and PostgreSQL backends."""
    from llm_scale import cpu_seconds, other_cpu, tree

    return {"worker": cpu_seconds(tree(worker_pid)), **other_cpu()}


async def product_run(
    base: str, cookie: str, team_id: int, sessions: int, idle: int, cpu: Callable[[], dict[str, float]]
) -> Figures:
    async with common.product_client(base, cookie, 2 * sessions + 4) as client:
        await product_session(client, team_id, "Warm-up")
        idle_latencies = await idle_sessions(client, team_id, idle)
        from llm_scale import side_cpu

        cpu_before, side_before = cpu(), side_cpu()
        started = time.monotonic()
        load = await asyncio.wait_for(
            asyncio.gather(*(product_session(client, team_id, f"Load {i}") for i in range(sessions))),
            600,
        )
        elapsed = time.monotonic() - started
        used = {name: seconds - cpu_before.get(name, 0.0) for name, seconds in cpu().items()}
        beside = {name: seconds - side_before.get(name, 0.0) for name, seconds in side_cpu().items()}
    print(f"CPU per session under load ({sessions} sessions):")
    for name, seconds in [*used.items(), ("all of these", sum(used.values()))]:
        print(f"  {name:<21}{seconds / sessions * 1000:6.0f} ms")
    print("  on the same cores: " + ", ".join(f"{k} {v / sessions * 1000:.0f} ms" for k, v in beside.items()))
    return Figures("product", sessions / elapsed, [s * 1000 for s in load], idle_latencies)


async def product_idle(base: str, cookie: str, team_id: int, idle: int) -> list[float]:
    async with common.product_client(base, cookie) as client:
        await product_session(client, team_id, "Warm-up")
        return await idle_sessions(client, team_id, idle)


def product_worker_env(processes: int, threads: int, timeout_ms: int) -> dict[str, str]:
    return common.bench_env(
        WORKER_PROCESSES=str(processes), WORKER_THREADS=str(threads), WORKER_TIMEOUT_MS=str(timeout_ms)
    )


def idle_commands_per_second(url: str, seconds: float) -> float:
    """Commands per second sent to the database of `url` (MONITOR, filtered by db)."""
    client = redis.Redis.from_url(url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    count = 0
    with client.monitor() as monitor:
        deadline = time.monotonic() + seconds
        for command in monitor.listen():
            if time.monotonic() > deadline:
                break
            if int(command.get("db", -1)) == db:
                count += 1
    return count / seconds


# --- the peers ------------------------------------------------------------------------------


def wait_done(client: redis.Redis, submitted: dict[str, float], timeout: float = 300) -> dict[str, float]:
    """Wait for both last-stage stamps of every run; return each run's latest stamp."""
    stamps: dict[str, list[float]] = {run: [] for run in submitted}
    deadline = time.monotonic() + timeout
    remaining = 2 * len(submitted)
    while remaining:
        if time.monotonic() > deadline:
            raise RuntimeError(f"peer runs did not finish: {remaining} stamps missing")
        item = client.blpop([DONE_KEY], timeout=1)
        if item is None:
            continue
        run, stamp = item[1].decode().split()
        if run in stamps:
            stamps[run].append(float(stamp))
            remaining -= 1
    return {run: max(values) for run, values in stamps.items()}


def peer_run(name: str, submit: Callable[[str], None], sessions: int, idle: int) -> Figures:
    """Warm up, then `idle` runs one at a time, then `sessions` runs submitted at once."""
    client = redis.Redis.from_url(PEER_REDIS_URL)
    warm = uuid.uuid4().hex
    submit(warm)
    wait_done(client, {warm: time.time()}, timeout=60)
    idle_latencies = []
    for _ in range(idle):
        time.sleep(IDLE_PAUSE)
        run = uuid.uuid4().hex
        sent = time.time()
        submit(run)
        idle_latencies.append((wait_done(client, {run: sent})[run] - sent) * 1000)
    submitted = {}
    started = time.time()
    for _ in range(sessions):
        run = uuid.uuid4().hex
        submitted[run] = time.time()
        submit(run)
    done = wait_done(client, submitted)
    elapsed = max(done.values()) - started
    load = [(done[run] - sent) * 1000 for run, sent in submitted.items()]
    return Figures(name, sessions / elapsed, load, idle_latencies)


#: The team the persistence peer's sessions belong to (set by main; see peer_celery_db.py).
PEER_TEAM_ID = 0


def peer_env(timeout_ms: int) -> dict[str, str]:
    return common.bench_env(
        PYTHONPATH=str(BENCH), dramatiq_worker_timeout=str(timeout_ms), PEER_TEAM_ID=str(PEER_TEAM_ID)
    )


class Submitter:
    """A child process that submits runs: `statement` with `run` bound, one per line read.

    Each peer's client library then lives in its own process (Dramatiq's would replace the
    product's global broker here), and both peers pay the same submission path.
    """

    def __init__(self, module: str, statement: str) -> None:
        code = f"import sys, {module}\nfor line in sys.stdin:\n    run = line.strip()\n    {statement}\n    print(flush=True)\n"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=BENCH, env=peer_env(0), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def __call__(self, run: str) -> None:
        self.proc.stdin.write(run + "\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def celery_figures(
    processes: int, threads: int, sessions: int, idle: int, module: str = "peer_celery", name: str = "Celery"
) -> Figures:
    """The canvas peer (peer_celery.py), or with `module="peer_celery_db"` the same canvas writing
    the product's rows and events in plain SQL (peer_celery_db.py)."""
    redis.Redis.from_url(PEER_REDIS_URL).flushdb()
    statement = "peer_celery_db.submit(run)" if module == "peer_celery_db" else f"{module}.canvas(run).apply_async()"
    with contextlib.ExitStack() as stack:
        for index in range(processes):
            stack.enter_context(
                common.process(
                    "celery", "-A", module, "worker", "--pool", "threads", "--concurrency", str(threads),
                    "-n", f"bench{index}@%h", "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
                    env=peer_env(0), log=f"/tmp/sage-bench-{module}-{index}-{os.getpid()}.log", cwd=BENCH,
                )
            )  # fmt: skip
        submit = Submitter(module, statement)
        try:
            figures = peer_run(name, submit, sessions, idle)
        finally:
            submit.close()
    redis.Redis.from_url(PEER_REDIS_URL).flushdb()
    return figures


def dramatiq_figures(processes: int, threads: int, timeout_ms: int, sessions: int, idle: int) -> Figures:
    redis.Redis.from_url(PEER_REDIS_URL).flushdb()
    with common.process(
        "dramatiq", "peer_dramatiq", "--processes", str(processes), "--threads", str(threads),
        "--queues", "bench_peer", env=peer_env(timeout_ms), log="/tmp/sage-bench-dramatiq.log", cwd=BENCH,
    ):  # fmt: skip
        submit = Submitter("peer_dramatiq", "peer_dramatiq.start_stage(run, 0)")
        try:
            figures = peer_run("Dramatiq", submit, sessions, idle)
        finally:
            submit.close()
    redis.Redis.from_url(PEER_REDIS_URL).flushdb()
    return figures


# --- report ---------------------------------------------------------------------------------


def report(product: Figures, peers: list[Figures]) -> None:
    def pct(values: list[float], p: float) -> float:
        return common.percentile(values, p)

    rows = [("sessions/s under load", lambda f: f.per_second, "{:.1f}")]
    for label, attr in (("load", "load"), ("idle", "idle")):
        for p in (50, 90, 99):
            rows.append((f"{label} latency p{p} (ms)", lambda f, a=attr, q=p: pct(getattr(f, a), q), "{:.1f}"))
    header = f"{'':<26}{'product':>10}" + "".join(f"{p.name:>10}{'ratio':>8}" for p in peers)
    print(header)
    for label, get, fmt in rows:
        line = f"{label:<26}{fmt.format(get(product)):>10}"
        for peer in peers:
            value = get(peer)
            line += f"{fmt.format(value):>10}{get(product) / value:>7.2f}x"
        print(line)
    print("ratio = product / peer (above 1 is better for sessions/s, worse for latency)")


def purge_rabbitmq() -> None:
    """Empty the product's RabbitMQ queues when BROKER_URL names RabbitMQ (a bench starts from nothing)."""
    from models.settings import Settings

    settings = Settings.from_env()
    if settings.broker != "rabbitmq":
        return
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=settings.broker_url)
    broker.declare_queue("default")
    broker.flush_all()
    broker.close()
    print(f"broker: RabbitMQ at {settings.broker_url.rsplit('@', 1)[-1]} (queues purged)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100, help="sessions started at once under load")
    parser.add_argument("--idle", type=int, default=20, help="sessions run one at a time")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (every system)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process (every system)")
    parser.add_argument("--worker-timeout", type=int, default=100, help="WORKER_TIMEOUT_MS of the main run")
    parser.add_argument(
        "--worker-timeouts", default="1000,100,20", help="WORKER_TIMEOUT_MS values for the idle sweep ('' skips it)"
    )
    parser.add_argument("--idle-pause", type=float, default=IDLE_PAUSE, help="seconds of quiet before each idle run")
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    globals()["IDLE_PAUSE"] = args.idle_pause

    common.prepare()
    purge_rabbitmq()
    from models import Team

    team_id = Team.create(name="Bench", owner=common.make_account("pipeline")).id
    globals()["PEER_TEAM_ID"] = team_id
    p, t = args.processes, args.threads
    print(common.machine_speed())
    print(f"{p} worker processes x {t} threads; {args.sessions} sessions at once; {args.idle} one at a time")

    # One user opens every session's socket at once: lift the per-user socket cap above the load.
    with common.web_server(common.bench_env(WS_MAX_SOCKETS_PER_USER=str(args.sessions + 10))) as base:
        cookie = common.login_cookie(base, "pipeline")
        env = product_worker_env(p, t, args.worker_timeout)
        with common.process("actors", "worker", env=env, log="/tmp/sage-bench-worker.log") as worker:
            cpu = lambda: product_cpu(worker.pid)  # noqa: E731
            product = asyncio.run(product_run(base, cookie, team_id, args.sessions, args.idle, cpu))
        print(f"{check_stored(team_id)} product sessions fully stored, every event delivered in order")
        peers = []
        if not args.skip_peers:
            # The machine's speed before each system's run too: it can drift between them.
            print(f"Celery: {common.machine_speed()}")
            peers.append(celery_figures(p, t, args.sessions, args.idle))
            print(f"Celery+SQL: {common.machine_speed()}")
            peers.append(celery_figures(p, t, args.sessions, args.idle, "peer_celery_db", "Celery+SQL"))
            print(f"Dramatiq: {common.machine_speed()}")
            peers.append(dramatiq_figures(p, t, args.worker_timeout, args.sessions, args.idle))
        print(f"\nWORKER_TIMEOUT_MS={args.worker_timeout}")
        report(product, peers)

        sweep = [int(v) for v in args.worker_timeouts.split(",") if v.strip()]
        if sweep:
            print("\nidle: one session at a time, and Redis commands/s with web + worker idle (product db only)")
            print(f"{'WORKER_TIMEOUT_MS':>18}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'idle cmds/s':>13}")
        for timeout_ms in sweep:
            with common.process("actors", "worker", env=product_worker_env(p, t, timeout_ms)):
                idle = asyncio.run(product_idle(base, cookie, team_id, args.idle))
                time.sleep(2)
                rate = idle_commands_per_second(common.REDIS_URL, 10)
            print(
                f"{timeout_ms:>18}{common.percentile(idle, 50):>10.1f}{common.percentile(idle, 90):>10.1f}"
                f"{common.percentile(idle, 99):>10.1f}{rate:>13.1f}"
            )
    print(common.machine_speed())


if __name__ == "__main__":
    main()

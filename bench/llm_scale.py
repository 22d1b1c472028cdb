"""Many sessions at once on the `openai` brain against a model that takes its time, beside Celery's gevent pool.

    .venv/bin/python bench/llm_scale.py [--sessions 1000] [--latency 1.0] [--cap 200]
                                        [--processes 2] [--threads 4] [--skip-celery] [--skip-product]
    .venv/bin/python bench/llm_scale.py --sessions 50 --latency 0.5      (a quick check)

The model is bench/fake_openai.py in its own process: an asyncio server that speaks the OpenAI
Chat Completions wire format (streamed SSE, usage in the last chunk) and answers each call after
--latency seconds with the knowledge base's output for the prompt, so every answer validates. It
counts calls and the peak of calls in flight, which shows whether the cap held.

Product: `python -m app` and `python -m actors worker` (WORKER_PROCESSES x WORKER_THREADS) on the
bench database and Redis (BENCH_DATABASE_URL, BENCH_REDIS_URL), with SAGE_BRAIN=openai pointed at
the local endpoint and SAGE_LLM_MAX_CONCURRENCY=--cap. After a warm-up, --sessions
sessions are posted at once (POST /sessions with `"brain": "openai"`), and the bench polls the
database until every one has ended. Then it checks that each is fully stored: completed, with 7
completed tasks that have an output and model usage.

Celery peer: the same I/O-bound canvas, chain(task, group of 2, group of 2, group of 2) per
session, each task one streamed call through the `openai` SDK with the request the product's
brain sends for that role (peer_celery_llm.py), on `celery worker --pool gevent`; --processes
workers whose concurrencies add up to --cap, on their own Redis db (BENCH_PEER_REDIS_URL).

Printed for each: wall time from the first POST (or submission) to the last session's end; the
ideal at the cap, max(sessions x 7 / cap, 4 stages) x latency, and the ratio to it; calls made
and the peak in flight; the mean calls in flight over the run (calls x latency / wall); memory
per in-flight call (the workers' RSS at its highest during the run minus their RSS idle after
the warm-up, over the peak in flight); worker CPU seconds, and for the product the web's and the
bench database's PostgreSQL backends' CPU seconds too, each per session ended. A run that has not finished after
--timeout seconds prints what finished and the projected wall time at the rate reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import common
import httpx
import redis
from peer_shape import DONE_KEY, PEER_REDIS_URL

BENCH = Path(__file__).resolve().parent
CALLS_PER_SESSION = 7
STAGES = 4
MODEL = "bench-model"
API_KEY = "bench-key"
POLL_SECONDS = 0.25
#: Sessions run before the measured ones, so that every worker process has imported the SDK and
#: opened its connections, and the idle memory figure is not the first call's imports.
WARM_UP = 8
#: POSTs in flight at once while the sessions are created (the web answers each in milliseconds).
POST_CONNECTIONS = 32
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def ideal_seconds(sessions: int, cap: int, latency: float) -> float:
    """The fastest a run can be: the cap's throughput, or one session's 4 stages in a row."""
    return max(sessions * CALLS_PER_SESSION / cap, STAGES) * latency


# --- the model endpoint ---------------------------------------------------------------------


class Endpoint:
    """bench/fake_openai.py in a child process, and its counts."""

    def __init__(self, latency: float, chunks: int) -> None:
        self.latency, self.chunks = latency, chunks
        self.base_url = ""
        self.pid = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[Endpoint]:
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "port"
            argv = ("fake_openai", "--latency", str(self.latency), "--chunks", str(self.chunks), "--ready-file")
            env = common.bench_env(PYTHONPATH=str(BENCH), SAGE_STUB_BROKER="1")
            with common.process(*argv, str(ready), env=env, log="/tmp/sage-bench-llm-endpoint.log", cwd=BENCH) as proc:
                deadline = time.monotonic() + 30
                while not ready.exists() or not ready.read_text():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            "the fake model endpoint did not start; see /tmp/sage-bench-llm-endpoint.log"
                        )
                    time.sleep(0.05)
                self.pid = proc.pid
                self.base_url = f"http://127.0.0.1:{int(ready.read_text())}/v1"
                yield self

    def stats(self) -> dict:
        return httpx.get(self.base_url.removesuffix("/v1") + "/stats", timeout=10).json()

    def reset(self) -> None:
        httpx.post(self.base_url.removesuffix("/v1") + "/stats/reset", timeout=10).raise_for_status()


# --- processes: memory and CPU --------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from the 3rd on; the name may hold spaces


def tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            statm = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        total_kb += int(statm[1]) * PAGE_KB
    return total_kb / 1024


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def worker_processes(root: int) -> list[int]:
    """The processes that run tasks: the product's `worker-process` children, else the whole tree."""
    pids = tree(root)
    serving = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"worker-process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                serving.append(pid)
    return serving or pids


# --- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    """What one system did with the sessions."""

    name: str
    detail: str
    sessions: int
    submit_seconds: float = 0.0
    wall: float | None = None  # None: not every session ended within the timeout
    elapsed: float = 0.0
    finished: int = 0  # sessions (or canvases) that ended
    failed: int = 0
    stored: int | None = None  # fully stored sessions (product only)
    stats: dict = field(default_factory=dict)
    idle_rss: float = 0.0
    peak_rss: float = 0.0
    cpu: float = 0.0
    other_cpu: dict[str, float] = field(default_factory=dict)  # the web's and PostgreSQL's (product only)
    side_cpu: dict[str, float] = field(default_factory=dict)  # Redis's and the bench client's (product only)


class Watch:
    """Samples the workers' memory and the endpoint's calls in flight while a run goes on."""

    def __init__(self, roots: list[int], endpoint: Endpoint) -> None:
        self.roots, self.endpoint = roots, endpoint
        self.peak_rss = 0.0
        self.last_print = time.monotonic()

    def pids(self) -> list[int]:
        return [pid for root in self.roots for pid in worker_processes(root)]

    def all_pids(self) -> list[int]:
        return [pid for root in self.roots for pid in tree(root)]

    def sample(self, started: float, finished: int, total: int) -> None:
        self.peak_rss = max(self.peak_rss, rss_mb(self.pids()))
        now = time.monotonic()
        if now - self.last_print >= 5:
            self.last_print = now
            stats = self.endpoint.stats()
            print(
                f"  {now - started:6.1f} s: {finished}/{total} ended, {stats['calls']} calls, "
                f"{stats['in_flight']} in flight (peak {stats['peak']})",
                flush=True,
            )


def measure(
    run: Run, watch: Watch, endpoint: Endpoint, submit: Callable[[], None], progress: Callable[[], tuple[int, int]],
    timeout: float,
) -> Run:  # fmt: skip
    """Submit the sessions, then poll `progress` (ended, failed) until all ended or `timeout`."""
    time.sleep(1.5)  # let the warm-up's last writes and frees settle before the idle figures
    run.idle_rss = rss_mb(watch.pids())
    watch.peak_rss = run.idle_rss
    cpu_before = cpu_seconds(watch.all_pids())
    endpoint.reset()
    started = time.monotonic()
    submit()
    run.submit_seconds = time.monotonic() - started
    print(f"  submitted {run.sessions} in {run.submit_seconds:.1f} s", flush=True)
    while True:
        ended, failed = progress()
        run.finished, run.failed = ended, failed
        watch.sample(started, ended, run.sessions)
        if ended >= run.sessions:
            run.wall = time.monotonic() - started
            break
        if time.monotonic() - started > timeout:
            break
        time.sleep(POLL_SECONDS)
    run.elapsed = time.monotonic() - started
    run.cpu = cpu_seconds(watch.all_pids()) - cpu_before
    run.peak_rss = watch.peak_rss
    run.stats = endpoint.stats()
    return run


# --- the product ----------------------------------------------------------------------------


def product_env(args: argparse.Namespace, endpoint: Endpoint) -> dict[str, str]:
    return common.bench_env(
        SAGE_BRAIN="openai",
        OPENAI_BASE_URL=endpoint.base_url,
        OPENAI_API_KEY=API_KEY,
        SAGE_OPENAI_MODEL=MODEL,
        SAGE_LLM_MAX_CONCURRENCY=str(args.cap),
        WORKER_PROCESSES=str(args.processes),
        WORKER_THREADS=str(args.threads),
    )


async def post_sessions(base: str, cookie: str, team_id: int, names: list[str]) -> list[int]:
    """POST one session per name, POST_CONNECTIONS at a time; their ids."""
    async with common.product_client(base, cookie, POST_CONNECTIONS) as client:

        async def post(name: str) -> int:
            body = {"team_id": team_id, "feature_name": name, "brain": "openai"}
            for _ in range(2):
                try:
                    return await common.post_session(client, body)
                except aiohttp.ClientConnectionError:
                    # A keep-alive connection the loaded server closed as the request went out.
                    # The session may exist all the same: find it by its name before posting again.
                    await asyncio.sleep(1)
                    if found := await asyncio.to_thread(session_named, team_id, name):
                        return found
            return await common.post_session(client, body)  # a third failure is raised

        return list(await asyncio.gather(*(post(name) for name in names)))


def session_named(team_id: int, name: str) -> int | None:
    """The id of the team's session called `name` (names are unique within a bench run)."""
    from models.db import db

    row = db.execute_sql(
        "SELECT id FROM execution_sessions WHERE team_id = %s AND feature_name = %s", (team_id, name)
    ).fetchone()
    return row[0] if row else None


def session_progress(ids: list[int]) -> tuple[int, int]:
    """(ended, failed) among the sessions `ids`."""
    from models.db import db

    rows = db.execute_sql(
        "SELECT status, count(*) FROM execution_sessions WHERE id = ANY(%s) GROUP BY status", (ids,)
    ).fetchall()
    counts = dict(rows)
    return counts.get("completed", 0) + counts.get("error", 0), counts.get("error", 0)


def fully_stored(ids: list[int]) -> int:
    """Sessions completed with 7 completed tasks, each with its output and the model's usage."""
    from models.db import db

    return db.execute_sql(
        """
        SELECT count(*) FROM execution_sessions s
        WHERE s.id = ANY(%s) AND s.status = 'completed' AND s.ended_at IS NOT NULL
          AND (SELECT count(*) FROM agent_tasks t
               WHERE t.session_id = s.id AND t.status = 'completed'
                 AND t.output_data IS NOT NULL AND t.usage IS NOT NULL) = %s
        """,
        (ids, CALLS_PER_SESSION),
    ).fetchone()[0]


def first_error(ids: list[int]) -> str | None:
    from models.db import db

    row = db.execute_sql(
        "SELECT error_message FROM execution_sessions WHERE id = ANY(%s) AND status = 'error' LIMIT 1", (ids,)
    ).fetchone()
    return row[0] if row else None


def wait_sessions(ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while session_progress(ids)[0] < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the warm-up did not end within {timeout:.0f} s; see /tmp/sage-bench-llm-*.log")
        time.sleep(POLL_SECONDS)


def product_run(args: argparse.Namespace, endpoint: Endpoint, timeout: float) -> Run:
    common.prepare()
    from models import Team

    team_id = Team.create(name="Bench", owner=common.make_account("llmscale")).id
    env = product_env(args, endpoint)
    detail = (
        f"openai brain, SAGE_LLM_MAX_CONCURRENCY={args.cap}, {args.processes} worker processes x {args.threads} threads"
    )
    run = Run("product", detail, args.sessions)
    print(f"\nproduct: {detail}", flush=True)
    with common.web_server(env) as base:
        cookie = common.login_cookie(base, "llmscale")
        with common.process("actors", "worker", env=env, log="/tmp/sage-bench-llm-worker.log") as worker:
            warm_names = [f"Warm-up {index}" for index in range(WARM_UP)]
            warm = asyncio.run(post_sessions(base, cookie, team_id, warm_names))
            wait_sessions(warm, 300)
            if session_progress(warm)[1]:
                raise RuntimeError(f"a warm-up session failed: {first_error(warm)}")
            ids: list[int] = []

            def submit() -> None:
                names = [f"Feature {index}" for index in range(args.sessions)]
                ids.extend(asyncio.run(post_sessions(base, cookie, team_id, names)))

            others_before, side_before = other_cpu(), side_cpu()
            measure(run, Watch([worker.pid], endpoint), endpoint, submit, lambda: session_progress(ids), timeout)
            run.other_cpu = {k: v - others_before.get(k, 0.0) for k, v in other_cpu().items()}
            run.side_cpu = {k: v - side_before.get(k, 0.0) for k, v in side_cpu().items()}
            run.stored = fully_stored(ids)
            if run.failed:
                print(f"  first failure: {first_error(ids)}")
    return run


def other_cpu() -> dict[str, float]:
    """CPU seconds so far of the web processes this bench started and of the PostgreSQL backends
    connected to the bench database (the bench's own excepted). A backend that disconnects during
    the run takes its CPU with it; the web's and workers' pools keep theirs open."""
    import psycopg2

    web = []
    for pid in tree(os.getpid()):
        with contextlib.suppress(OSError):
            if b"app\x00--port" in Path(f"/proc/{pid}/cmdline").read_bytes():
                web += tree(pid)  # `python -m app` serves from one child process per core
    with psycopg2.connect(common.DATABASE_URL) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        backends = [row[0] for row in cur.fetchall()]
    conn.close()
    return {"web": cpu_seconds(web), "PostgreSQL backends": cpu_seconds(backends)}


def side_cpu() -> dict[str, float]:
    """CPU seconds so far of what shares the cores with the product without being it: the Redis
    server (the broker and live events; shared, but nothing else runs during a bench) and this
    bench's own process (its HTTP client, its WebSockets, its progress queries)."""
    redis_pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "redis-server":
                redis_pids.append(int(entry.name))
    own = os.times()
    return {"Redis server": cpu_seconds(redis_pids), "this bench's client": own.user + own.system}


# --- the Celery peer ------------------------------------------------------------------------


def peer_requests(path: Path) -> None:
    """Write the request the product's openai brain sends for each role (one session's prompts)."""
    from actors.agents import contract
    from actors.agents.llm import DEFAULT_MAX_TOKENS
    from actors.agents.playbook import PLAYBOOK
    from actors.agents.prompts import build_prompt
    from models.schema import AGENT_ROLES, STAGE_OF_ROLE

    outputs: dict[str, dict] = {}
    requests = {}
    for role in sorted(AGENT_ROLES, key=STAGE_OF_ROLE.__getitem__):
        context = {
            "feature_name": "Feature 0",
            "description": None,
            "session_decisions": [],
            "upstream": {r: {"output": outputs[r]} for r in outputs if STAGE_OF_ROLE[r] < STAGE_OF_ROLE[role]},
        }
        outputs[role] = PLAYBOOK[role](context)
        system, user, _ = build_prompt(role, f"Work on Feature 0 as the {role}", context)
        requests[role] = {
            "model": MODEL,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": contract.schema_name(role), "schema": contract.json_schema(role)},
            },
        }
    path.write_text(json.dumps(requests))


def celery_missing() -> str | None:
    try:
        import celery  # noqa: F401
        import gevent  # noqa: F401
    except ImportError as exc:
        return f"Celery peer skipped: {exc.name} is not installed (.venv/bin/python -m pip install -r requirements-bench.txt)"
    return None


#: Submits the canvases of the run ids on its first line of input, then answers one line. In a
#: process of its own: Celery's client subscribes to every canvas's result, which the bench has
#: no use for, and ends without its result consumer's teardown (which fails at interpreter exit).
SUBMIT = """
import os, sys, peer_celery_llm
for run_id in sys.stdin.readline().split():
    peer_celery_llm.canvas(run_id).apply_async()
print("submitted", flush=True)
sys.stdin.read()
os._exit(0)
"""


@contextlib.contextmanager
def celery_submitter() -> Iterator[subprocess.Popen]:
    """A child process ready to submit canvases (started before the clock, so imports are not timed)."""
    with open("/tmp/sage-bench-llm-submit.log", "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SUBMIT], cwd=BENCH, env=common.bench_env(PYTHONPATH=str(BENCH)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def celery_run(args: argparse.Namespace, endpoint: Endpoint, timeout: float) -> Run:
    shares = [args.cap // args.processes + (1 if i < args.cap % args.processes else 0) for i in range(args.processes)]
    shares = [share for share in shares if share > 0]
    detail = f"gevent pool, {len(shares)} worker processes, concurrency {' + '.join(map(str, shares))} = {args.cap}"
    run = Run("Celery", detail, args.sessions)
    print(f"\nCelery: {detail}", flush=True)
    client = redis.Redis.from_url(PEER_REDIS_URL)
    client.flushdb()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        requests_file = Path(tmp) / "requests.json"
        peer_requests(requests_file)
        workers = []
        for index, share in enumerate(shares):
            env = common.bench_env(
                PYTHONPATH=str(BENCH),
                OPENAI_BASE_URL=endpoint.base_url,
                OPENAI_API_KEY=API_KEY,
                BENCH_LLM_PEER_REQUESTS=str(requests_file),
                BENCH_LLM_PEER_CONNECTIONS=str(share),
            )
            workers.append(
                stack.enter_context(
                    common.process(
                        "celery", "-A", "peer_celery_llm", "worker", "--pool", "gevent", "--concurrency", str(share),
                        "-n", f"llm{index}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat",
                        "--loglevel", "WARNING", env=env, log=f"/tmp/sage-bench-llm-celery-{index}.log", cwd=BENCH,
                    )
                )
            )  # fmt: skip
        warm = [uuid.uuid4().hex for _ in range(WARM_UP)]
        with celery_submitter() as warm_up:
            warm_up.communicate(" ".join(warm) + "\n", timeout=60)
        stamps: dict[str, int] = {}
        deadline = time.monotonic() + 300
        while any(stamps.get(run_id, 0) < 2 for run_id in warm):
            if time.monotonic() > deadline:
                raise RuntimeError("the Celery warm-up run did not end; see /tmp/sage-bench-llm-celery-*.log")
            if item := client.blpop([DONE_KEY], timeout=1):
                stamps[item[1].decode().split()[0]] = stamps.get(item[1].decode().split()[0], 0) + 1
        runs = [uuid.uuid4().hex for _ in range(args.sessions)]
        submitter = stack.enter_context(celery_submitter())

        def submit() -> None:
            submitter.stdin.write(" ".join(runs) + "\n")
            submitter.stdin.flush()
            if not submitter.stdout.readline():
                raise RuntimeError("the Celery submitter failed; see /tmp/sage-bench-llm-submit.log")

        def progress() -> tuple[int, int]:
            while item := client.lpop(DONE_KEY):
                run_id = item.decode().split()[0]
                stamps[run_id] = stamps.get(run_id, 0) + 1
            return sum(1 for run_id in runs if stamps.get(run_id, 0) >= 2), 0

        measure(run, Watch([w.pid for w in workers], endpoint), endpoint, submit, progress, timeout)
    client.flushdb()
    return run


# --- report ---------------------------------------------------------------------------------


def report(run: Run, args: argparse.Namespace) -> None:
    ideal = ideal_seconds(args.sessions, args.cap, args.latency)
    stats = run.stats
    bound = (
        f"{args.sessions * CALLS_PER_SESSION:,} calls / {args.cap} x {args.latency:g} s"
        if args.sessions * CALLS_PER_SESSION / args.cap >= STAGES
        else f"one session's {STAGES} stages x {args.latency:g} s"
    )
    print(f"\n{run.name}: {run.detail}")
    if run.wall is not None:
        print(f"  wall time             {run.wall:8.1f} s   (submitting took {run.submit_seconds:.1f} s)")
        print(f"  ideal at the cap      {ideal:8.1f} s   ({bound}); ratio {run.wall / ideal:.2f}x")
    else:
        # Sessions advance stage by stage side by side and end together, so the calls answered,
        # not the sessions ended, say how far the run got.
        rate = run.stats.get("completed", 0) / run.elapsed if run.elapsed else 0
        total = args.sessions * CALLS_PER_SESSION
        projected = f"{total / rate:.0f} s" if rate else "unknown (no call answered)"
        print(f"  TIMED OUT after {run.elapsed:.0f} s: {run.finished} of {run.sessions} ended")
        print(f"  at {rate:.1f} calls/s all {total:,} calls would take {projected}; ideal {ideal:.1f} s ({bound})")
    wall = run.wall or run.elapsed
    expected = run.finished * CALLS_PER_SESSION
    print(
        f"  calls made            {stats.get('calls', 0):8d}     ({expected} for the ended sessions, "
        f"{stats.get('repairs', 0)} repairs)"
    )
    peak = stats.get("peak", 0)
    honoured = "honoured" if peak <= args.cap else "EXCEEDED"
    print(f"  peak calls in flight  {peak:8d}     (cap {args.cap}: {honoured})")
    print(f"  mean calls in flight  {stats.get('completed', 0) * args.latency / wall:8.1f}")
    grown = run.peak_rss - run.idle_rss
    per_call = f"{grown / peak * 1024:.0f} KB per in-flight call" if peak else "no call in flight"
    print(f"  worker memory         {run.idle_rss:8.0f} MB idle, {run.peak_rss:.0f} MB at most: {per_call}")
    answered = stats.get("completed", 0)
    per = [f"{run.cpu / answered * 1000:.1f} ms per call answered"] if answered else []
    per += [f"{run.cpu / run.finished * 1000:.0f} ms per session ended"] if run.finished else []
    print(f"  worker CPU            {run.cpu:8.1f} s    {', '.join(per)}")
    if run.other_cpu and run.finished:
        for name, seconds in run.other_cpu.items():
            print(f"  {name + ' CPU':<21} {seconds:8.1f} s    {seconds / run.finished * 1000:.0f} ms per session ended")
        total = run.cpu + sum(run.other_cpu.values())
        print(f"  CPU, all of these     {total:8.1f} s    {total / run.finished * 1000:.0f} ms per session ended")
        side = ", ".join(f"{name} {seconds / run.finished * 1000:.0f} ms" for name, seconds in run.side_cpu.items())
        print(f"  on the same cores     {side} per session ended")
    if run.stored is not None:
        status = "every session" if run.stored == run.sessions else f"{run.stored} of {run.sessions}"
        print(f"  fully stored          {status} (completed, 7 completed tasks with output and usage)")
        if run.failed:
            print(f"  FAILED sessions       {run.failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000, help="sessions started at once")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds each model call takes")
    parser.add_argument("--cap", type=int, default=200, help="SAGE_LLM_MAX_CONCURRENCY, and Celery's concurrency")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (product and Celery)")
    parser.add_argument("--threads", type=int, default=4, help="WORKER_THREADS of the product's workers")
    parser.add_argument("--chunks", type=int, default=6, help="SSE chunks per answer")
    parser.add_argument("--timeout", type=float, help="seconds a run may take (default: max(120, 5 x ideal))")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--skip-product", action="store_true")
    args = parser.parse_args()
    if min(args.sessions, args.cap, args.processes, args.threads) < 1 or args.latency <= 0:
        parser.error("--sessions, --cap, --processes and --threads must be at least 1, --latency above 0")
    timeout = args.timeout or max(120.0, 5 * ideal_seconds(args.sessions, args.cap, args.latency))
    # A plain `kill` stops the bench like Ctrl-C does: the blocks that started processes end them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print(common.machine_speed())
    print(
        f"{args.sessions} sessions at once, {args.latency:g} s per model call, cap {args.cap}; "
        f"ideal {ideal_seconds(args.sessions, args.cap, args.latency):.1f} s; timeout {timeout:.0f} s"
    )
    runs = []
    with Endpoint(args.latency, args.chunks).running() as endpoint:
        print(f"model endpoint {endpoint.base_url} (pid {endpoint.pid})")
        if not args.skip_product:
            runs.append(product_run(args, endpoint, timeout))
            report(runs[-1], args)
        if not args.skip_celery:
            if missing := celery_missing():
                print(f"\n{missing}")
            else:
                print(f"\n{common.machine_speed()}")  # it can drift between the two runs
                runs.append(celery_run(args, endpoint, timeout))
                report(runs[-1], args)
        endpoint_cpu = cpu_seconds([endpoint.pid])
    print(f"\nmodel endpoint CPU over the whole bench: {endpoint_cpu:.1f} s")
    if len(runs) == 2 and all(run.wall for run in runs):
        product, peer = runs
        print(f"product / Celery wall time: {product.wall / peer.wall:.2f}x (below 1 is faster than Celery)")
    print(common.machine_speed())


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: the processes the bench started are stopped", file=sys.stderr)
        sys.exit(130)

"""Shared set-up for the benchmarks: an isolated database and Redis db, and real processes.

Benchmarks never touch a developer's data: they use the database `sage_mode_bench` and Redis
database 11 unless BENCH_DATABASE_URL / BENCH_REDIS_URL say otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://root@127.0.0.1:5432/sage_mode_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
PASSWORD = "bench password 1"


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of every process a benchmark starts."""
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "SAGE_ENV": "development"}
    env.setdefault("BCRYPT_ROUNDS", "4")
    env.update(extra)
    return env


def prepare(fresh: bool = True) -> None:
    """Point this process at the bench services; recreate and migrate the bench database."""
    os.environ.update(bench_env())
    import psycopg2
    import redis

    from models.db import init_database
    from models.migrate import migrate

    name = DATABASE_URL.rsplit("/", 1)[1]
    if fresh:
        conn = psycopg2.connect(dbname="postgres", host="127.0.0.1", user="root")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
        redis.Redis.from_url(REDIS_URL).flushdb()
    migrate(DATABASE_URL)
    init_database(DATABASE_URL, 8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def process(
    *args: str, env: dict[str, str] | None = None, log: str | None = None, cwd: Path = ROOT
) -> Iterator[subprocess.Popen]:
    """Run `python -m ...args` for the duration of the block."""
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=env or bench_env(), stdout=out, stderr=out)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()


@contextlib.contextmanager
def web_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """A real web process (`python -m app`); yields its base URL once /health answers."""
    port = free_port()
    with process("app", "--port", str(port), env=env, log=f"/tmp/sage-bench-web-{port}.log"):
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the web server did not start; see /tmp/sage-bench-web-*.log")
            time.sleep(0.2)
        yield base


def make_account(username: str) -> int:
    """A user who can log in with PASSWORD; returns the id."""
    import bcrypt

    from models import User

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    return User.create(username=username, email=f"{username}@bench.local", password_hash=hashed).id


def product_client(base: str, cookie: str, connections: int = 100) -> aiohttp.ClientSession:
    """The benches' HTTP and WebSocket client for the product, logged in with `cookie`.

    aiohttp, the model SDKs' transport: the benches run on the same two cores as the product, and
    httpx cost more CPU than the web answering it (its pool also rescans every request waiting for
    a connection each time one frees up: 1,000 POSTs gathered at once took 8.2 s and a whole core).
    A WebSocket holds one of the `connections` while it is open.
    """
    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(
        base, headers={"Cookie": cookie}, connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    )


async def post_session(client: aiohttp.ClientSession, body: dict) -> int:
    """`POST /sessions` with `body`; the new session's id (anything but 202 raises)."""
    async with client.post("/sessions", json=body) as response:
        text = await response.text()
        if response.status != 202:
            raise RuntimeError(f"POST /sessions answered {response.status}: {text[:300]}")
    return json.loads(text)["session_id"]


def login_cookie(base: str, username: str) -> str:
    """Log in over HTTP; return the Cookie header value."""
    response = httpx.post(f"{base}/auth/login", json={"username": username, "password": PASSWORD})
    response.raise_for_status()
    return "; ".join(f"{k}={v}" for k, v in response.cookies.items())


#: Steps of `machine_speed`'s loop: about a quarter of a second on this project's machines.
SPEED_STEPS = 3_000_000


def machine_speed() -> str:
    """How fast this machine runs plain Python now: the best of three timings of a fixed loop.

    The benches print it before and after their runs. Machines of the same kind here differ by up
    to 2x, and one machine's speed can move by a third from one minute to the next, so a reader
    can tell a change in the machine from a change in the code.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for step in range(SPEED_STEPS):
            total += step & 7
        best = min(best, time.perf_counter() - started)
    return f"machine: a {SPEED_STEPS:,}-step Python loop takes {best * 1000:.0f} ms"


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values: list[float], unit: str = "ms") -> str:
    return (
        f"p50 {percentile(values, 50):.1f} {unit}, p90 {percentile(values, 90):.1f} {unit}, "
        f"p99 {percentile(values, 99):.1f} {unit}, mean {statistics.fmean(values):.1f} {unit} (n={len(values)})"
    )

"""Issue 14's figures for the web app, measured against real `python -m app` processes.

    .venv/bin/python bench/hardening.py [--only guesses,flood,storm,timing]

Prints, each with its target:

- guesses: a burst of 100 parallel wrong passwords for one account; how many reached the
  password check (answered 401) against LOGIN_MAX_FAILURES (finding 1);
- flood: RSS growth of the web process while sockets each send as much as they can (big
  messages, then many small ones), per socket, and how the server closed them (finding 2);
- storm: 120 logins by one account, 24 at a time, at bcrypt cost 12; another user's
  `GET /teams/{id}` p50 without and during the storm, and how many logins got 429 (finding 3);
- timing: median login time at cost 12 for a wrong password of a real user and for an unknown
  user (finding 4).

Uses the bench database and Redis db of bench/common.py (BENCH_DATABASE_URL, BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from common import PASSWORD, bench_env, login_cookie, make_account, percentile, prepare, web_server


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _server_pid(port: int) -> int:
    """The pid of the `python -m app --port PORT` process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"app" in cmdline and str(port).encode() in cmdline and b"-m" in cmdline:
                return int(entry.name)
    raise RuntimeError("web server process not found")


def _forget_limits() -> None:
    """Clear the rate-limit counters, so that one figure's burst does not lock the next one out."""
    import redis
    from common import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter("rl:*"):
        client.delete(key)


async def guesses(base: str) -> None:
    make_account("victim")
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        body = {"username": "victim", "password": "wrong password"}
        responses = await asyncio.gather(*(client.post("/auth/login", json=body) for _ in range(100)))
    checked = sum(r.status_code == 401 for r in responses)
    limited = sum(r.status_code == 429 for r in responses)
    print(f"guesses: 100 parallel wrong passwords -> {checked} password checks (401), {limited} refused (429); limit 5")


async def flood(base: str, sockets: int = 5, seconds: float = 5.0) -> None:
    import websockets

    from models import ExecutionSession, Team

    user_id = make_account("flooder")
    team = Team.create(name="Flood", owner=user_id)
    session = ExecutionSession.create(team=team, user=user_id, feature_name="Flood")
    cookie = login_cookie(base, "flooder")
    port = int(base.rsplit(":", 1)[1])
    pid = _server_pid(port)
    before = _rss_kib(pid)
    peak = before
    sent = [0] * sockets
    codes: list[object] = []

    async def one(index: int, payload: bytes) -> None:
        url = f"ws://127.0.0.1:{port}/ws/{session.id}"
        try:
            async with websockets.connect(url, additional_headers={"Cookie": cookie}, max_size=None) as ws:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    await ws.send(payload)
                    sent[index] += len(payload)
                    await asyncio.sleep(0)  # let the client's reader see a close frame
                await asyncio.wait_for(ws.recv(), 2)
        except websockets.InvalidStatus as refused:
            codes.append(f"refused {refused.response.status_code} {refused.response.body[:80]!r}")
            return
        except websockets.ConnectionClosed as closed:
            codes.append(closed.rcvd.code if closed.rcvd else "cut")
            return
        except TimeoutError:
            pass
        codes.append("open")

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _rss_kib(pid))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    big = b"x" * (1 << 20)  # 1 MiB messages
    await asyncio.gather(*(one(i, big) for i in range(sockets)))
    small = b"{}"
    await asyncio.gather(*(one(i, small) for i in range(sockets)))
    watcher.cancel()
    growth_mb = (peak - before) / 1024
    print(
        f"flood: {sockets} sockets sending 1 MiB messages, then small ones: server RSS {before / 1024:.0f} MB -> "
        f"peak {peak / 1024:.0f} MB, growth {growth_mb:.1f} MB in all, {growth_mb / sockets:.2f} MB per socket "
        f"(target <= 10 MB per socket); {sum(sent) / 1e6:.1f} MB accepted by the kernel before the closes; "
        f"close codes {sorted(map(str, codes))}"
    )


def _cost12_account(username: str) -> int:
    import bcrypt

    from models import User

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    return User.create(username=username, email=f"{username}@bench.local", password_hash=hashed).id


async def _reader_latencies(base: str, cookie: str, team_id: int, stop: asyncio.Event) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base, headers={"Cookie": cookie}, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.get(f"/teams/{team_id}")
            response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
    return latencies


async def storm(base: str) -> None:
    from models import Team

    _cost12_account("stormer")
    reader = make_account("reader")
    team = Team.create(name="Reader's", owner=reader)
    cookie = login_cookie(base, "reader")

    stop = asyncio.Event()
    quiet_task = asyncio.create_task(_reader_latencies(base, cookie, team.id, stop))
    await asyncio.sleep(3)
    stop.set()
    quiet = await quiet_task

    stop = asyncio.Event()
    busy_task = asyncio.create_task(_reader_latencies(base, cookie, team.id, stop))
    statuses: list[int] = []
    limit = asyncio.Semaphore(24)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:

        async def login() -> None:
            async with limit:
                response = await client.post("/auth/login", json={"username": "stormer", "password": PASSWORD})
                statuses.append(response.status_code)

        await asyncio.gather(*(login() for _ in range(120)))
    took = time.perf_counter() - started
    stop.set()
    busy = await busy_task
    print(
        f"storm: 120 logins of one account, 24 at a time, cost 12: {statuses.count(200)} logged in, "
        f"{statuses.count(429)} got 429, in {took:.1f} s; another user's GET /teams/{{id}} p50 "
        f"{percentile(quiet, 50):.1f} ms quiet -> {percentile(busy, 50):.1f} ms during the storm "
        f"(p90 {percentile(busy, 90):.1f} ms, n={len(busy)}; target p50 < 50 ms)"
    )


async def timing(base: str, rounds: int = 15) -> None:
    _cost12_account("realuser")
    real, unknown = [], []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for i in range(rounds):
            for name, into in (("realuser", real), ("nosuchuser", unknown)):
                started = time.perf_counter()
                response = await client.post("/auth/login", json={"username": name, "password": f"wrong {i}"})
                into.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 401, response.text
    a, b = statistics.median(real), statistics.median(unknown)
    print(
        f"timing: median wrong-password login at cost 12: real user {a:.0f} ms, unknown user {b:.0f} ms, "
        f"difference {abs(a - b) / max(a, b) * 100:.1f} % (target within 10 %)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="guesses,flood,storm,timing")
    wanted = parser.parse_args().only.split(",")
    if "guesses" in wanted or "flood" in wanted:
        prepare()
        with web_server() as base:
            if "guesses" in wanted:
                await guesses(base)
            if "flood" in wanted:
                _forget_limits()
                await flood(base)
    if "storm" in wanted:
        prepare()
        with web_server(bench_env(BCRYPT_ROUNDS="12")) as base:
            await storm(base)
    if "timing" in wanted:
        prepare()
        # Limits raised so that every attempt reaches the password check.
        limits = {"LOGIN_MAX_FAILURES": "1000", "LOGIN_RATE_PER_ACCOUNT": "1000", "LOGIN_RATE_PER_ADDRESS": "1000"}
        with web_server(bench_env(BCRYPT_ROUNDS="12", **limits)) as base:
            await timing(base)


if __name__ == "__main__":
    asyncio.run(main())

"""Many WebSockets on one session: publish-to-receive latency and Redis connections.

    .venv/bin/python bench/ws_fanout.py [--sockets 500] [--events 50]

Starts a real web process, opens N authenticated sockets on one session, then commits and
publishes events the way the workers do (record_event in a transaction, publish after commit).
Each event carries the monotonic time it was published; every socket notes when it arrived.
Prints latency percentiles over all (socket, event) pairs and the Redis connection count with
no sockets and with all of them open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import common
import redis
import websockets


def redis_connections(client: redis.Redis) -> int:
    return len(client.client_list())


async def run(sockets: int, events: int, interval: float) -> None:
    from models import ExecutionSession, Team, db
    from models.events import publish, record_event

    user_id = common.make_account("fanout")
    team = Team.create(name="Bench", owner=user_id)
    session = ExecutionSession.create(team=team, user=user_id, feature_name="Fan-out")
    client = redis.Redis.from_url(common.REDIS_URL)

    # One web process, as the figures say, and room for every socket of this one user: the per-user
    # cap (WS_MAX_SOCKETS_PER_USER, 50 by default, issue 14) would refuse the 51st with 429.
    env = common.bench_env(WEB_PROCESSES="1", WS_MAX_SOCKETS_PER_USER=str(sockets))
    with common.web_server(env) as base:
        cookie = common.login_cookie(base, "fanout")
        url = base.replace("http", "ws") + f"/ws/{session.id}"
        idle_connections = redis_connections(client)
        latencies: list[float] = []
        received = [0] * sockets

        async def listen(index: int, ready: asyncio.Event, opened: list) -> None:
            async with websockets.connect(url, additional_headers={"Cookie": cookie}, max_queue=None) as ws:
                opened.append(1)
                if len(opened) == sockets:
                    ready.set()
                while received[index] < events:
                    message = json.loads(await ws.recv())
                    latencies.append((time.monotonic() - message["decision"]["sent_at"]) * 1000)
                    received[index] += 1

        ready, opened = asyncio.Event(), []
        tasks = [asyncio.create_task(listen(i, ready, opened)) for i in range(sockets)]
        await asyncio.wait_for(ready.wait(), 120)
        await asyncio.sleep(0.5)
        open_connections = redis_connections(client)

        def emit() -> None:
            with db.atomic():
                message = record_event(session.id, "decision_created", {"decision": {"sent_at": time.monotonic()}})
            publish(client, [message])

        started = time.monotonic()
        for _ in range(events):
            await asyncio.to_thread(emit)
            await asyncio.sleep(interval)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        elapsed = time.monotonic() - started

    print(f"sockets: {sockets}, events: {events}, deliveries: {len(latencies)} in {elapsed:.1f} s")
    print(f"publish-to-receive latency: {common.summary(latencies)}")
    print(f"Redis connections: {idle_connections} with no sockets open, {open_connections} with {sockets} open")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between events")
    args = parser.parse_args()
    common.prepare()
    asyncio.run(run(args.sockets, args.events, args.interval))


if __name__ == "__main__":
    main()

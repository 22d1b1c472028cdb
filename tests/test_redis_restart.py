"""The WebSocket keeps working across a real Redis restart (a private redis-server, not the shared one)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest
import redis as redis_lib
from helpers import login
from seeding import seed_session

from app import create_app
from models import db
from models.events import publish, record_event

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis_lib.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def commit(session_id: int, client=None) -> dict:
    with db.connection_context(), db.atomic():
        message = record_event(session_id, "decision_created", {"decision": {"text": "during"}})
    if client is not None:
        publish(client, [message])
    return message


async def test_a_socket_backfills_and_carries_on_after_redis_restarts(
    settings, database, private_redis, user, personal_team
):
    session = seed_session(personal_team, user, roles=["architect"])
    app = create_app(settings, redis_url=private_redis.url, ws_poll_seconds=30.0)
    async with app.test_app():
        client = app.test_client()
        await login(client, user.username)
        hub = app.extensions["sage_hub"]
        async with client.websocket(f"/ws/{session.id}") as ws:
            stored = session.events.count()
            backlog = [await asyncio.wait_for(ws.receive_json(), 3) for _ in range(stored)]
            assert backlog[-1]["seq"] == stored

            private_redis.stop()
            await asyncio.sleep(0.3)
            missed = [await asyncio.to_thread(commit, session.id) for _ in range(2)]  # nobody can publish these
            private_redis.start()

            deadline = time.monotonic() + 10
            while hub.reconnects < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert hub.reconnects == 1
            caught_up = [await asyncio.wait_for(ws.receive_json(), 5) for _ in missed]
            assert [m["seq"] for m in caught_up] == [m["seq"] for m in missed]

            fresh = redis_lib.Redis.from_url(private_redis.url)
            live = await asyncio.to_thread(commit, session.id, fresh)
            fresh.close()
            received = await asyncio.wait_for(ws.receive_json(), 5)
            assert received["seq"] == live["seq"] == stored + 3

"""Two web processes on one port: live delivery, `?after=` resume, revocation and logout across them,
and a dead web process replaced by its supervisor."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
import websockets
from browser_support import live_server
from helpers import PASSWORD, add_member, make_user
from seeding import seed_session

from models import db
from models.events import publish, record_event

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    """The live web processes of supervisor `pid`: its spawned children, not multiprocessing's
    resource tracker (a child of it too) nor a zombie not yet reaped."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(fields[1]) != pid:
                continue
            try:
                if "spawn_main" in Path(f"/proc/{entry}/cmdline").read_text(errors="ignore"):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def serving_pid(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the server end of the connection from `client_port`."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, remote = int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16)
            if local == server_port and remote == client_port:
                inode = cols[9]
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
        except OSError:
            continue
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory, database):
    """One two-process server for the module (the kill test, last, leaves it whole again)."""
    with live_server(tmp_path_factory.mktemp("web"), processes=2) as base:
        port = int(base.rsplit(":", 1)[1])
        yield {"base": base, "port": port, "supervisor": supervisor_with_two(port)}


def supervisor_with_two(port: int) -> int:
    """The pid of the `python -m app` serving `port`, once it has its two web processes."""
    supervisor = next(
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and f"--port\x00{port}" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")
    )
    deadline = time.monotonic() + 20
    while len(children(supervisor)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    return supervisor


def cookie_for(base: str, username: str) -> str:
    response = httpx.post(f"{base}/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return "; ".join(f"{k}={v}" for k, v in response.cookies.items())


async def sockets_on_both(server, cookie: str, session_id: int, after: int = 0, tries: int = 30):
    """Open sockets until both web processes hold at least one; returns [(socket, pid)]."""
    base, pids = server["base"], children(server["supervisor"])
    opened = []
    for _ in range(tries):
        ws = await websockets.connect(
            f"{base.replace('http', 'ws', 1)}/ws/{session_id}?after={after}",
            additional_headers={"Cookie": cookie, "Origin": base},
        )
        opened.append((ws, serving_pid(server["port"], ws.local_address[1], pids)))
        if len({pid for _, pid in opened} - {None}) == 2:
            return opened
    pytest.fail(f"every socket landed on the same web process: {[pid for _, pid in opened]}")


async def receive(ws, count: int, timeout: float = 10) -> list[dict]:
    got = []
    while len(got) < count:
        got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    return got


async def test_every_socket_on_either_process_gets_each_live_event_once_in_order(
    server, shared_team, user, redis_client
):
    session = seed_session(shared_team, user, "Across processes")
    with db.atomic():
        stored = record_event(session.id, "decision_created", {"decision": {"id": 0}})["seq"]
    cookie = cookie_for(server["base"], user.username)
    opened = await sockets_on_both(server, cookie, session.id, after=stored)
    with db.atomic():
        live = [record_event(session.id, "decision_created", {"decision": {"id": i}}) for i in range(1, 4)]
    publish(redis_client, live)
    for ws, _ in opened:
        got = await receive(ws, 3)
        assert [m["seq"] for m in got] == [stored + 1, stored + 2, stored + 3]
        await ws.close()
    # A reconnect with ?after= resumes from the log, on whichever process answers.
    resumed = await sockets_on_both(server, cookie, session.id, after=stored + 1)
    for ws, _ in resumed:
        assert [m["seq"] for m in await receive(ws, 2)] == [stored + 2, stored + 3]
        await ws.close()


async def test_a_removal_and_a_logout_close_sockets_on_both_processes(server, shared_team, user):
    session = seed_session(shared_team, user, "Revocations")
    member = make_user("member")
    add_member(shared_team, member, "member")
    owner_cookie = cookie_for(server["base"], user.username)
    kept_cookie = cookie_for(server["base"], member.username)
    leaving_cookie = cookie_for(server["base"], member.username)

    kept = await sockets_on_both(server, kept_cookie, session.id, after=10_000)
    leaving = await sockets_on_both(server, leaving_cookie, session.id, after=10_000)
    owner = await sockets_on_both(server, owner_cookie, session.id, after=10_000)

    logout = httpx.post(f"{server['base']}/auth/logout", headers={"Cookie": leaving_cookie, "Origin": server["base"]})
    assert logout.status_code == 204
    for ws, _ in leaving:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == 4403
    for ws, _ in kept:  # the same user's other login stays connected
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)

    removed = httpx.delete(
        f"{server['base']}/teams/{shared_team.id}/members/{member.id}",
        headers={"Cookie": owner_cookie, "Origin": server["base"]},
    )
    assert removed.status_code == 204
    for ws, _ in kept:
        messages = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        assert [m["type"] for m in messages] == ["access_revoked"] and closed.value.rcvd.code == 4403
    for ws, _ in owner:
        assert ws.state == websockets.protocol.State.OPEN
        await ws.close()


async def test_connections_opened_in_a_burst_are_spread_over_both_processes(server):
    """A shared listening socket gave a burst of connections to whichever process woke first (31
    of 32 in a measured burst); each process listening on its own SO_REUSEPORT socket, the kernel
    deals them out. 40 at once: each process gets at least 8 (fewer by chance about 1 time in 20,000)."""
    pids = children(server["supervisor"])
    opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", server["port"]) for _ in range(40)))
    try:
        for _, writer in opened:
            writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        for reader, _ in opened:
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
        served = [serving_pid(server["port"], writer.get_extra_info("sockname")[1], pids) for _, writer in opened]
    finally:
        for _, writer in opened:
            writer.close()
    assert None not in served and len(set(served)) == 2
    assert min(served.count(pid) for pid in set(served)) >= 8, served


def test_a_second_server_cannot_join_the_port(server, settings):
    """Each web process's socket carries SO_REUSEPORT, which lets any socket of the same user that
    asks for it join the port and be dealt connections; a second server binds without it first,
    so it fails on a taken port as it always did."""
    from app.server import bind, hypercorn_config

    with pytest.raises(OSError) as taken:
        bind(hypercorn_config(settings, "127.0.0.1", server["port"]), 2)
    assert taken.value.errno == errno.EADDRINUSE
    sockets, own = bind(hypercorn_config(settings, "127.0.0.1", 0), 2)  # a free port: its own sockets
    try:
        assert own and sockets.insecure_sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        for sock in sockets.insecure_sockets:
            sock.close()


async def test_a_connection_whose_first_request_comes_late_is_still_answered(server):
    """hypercorn closed a connection 5 s after accepting it unless a request had come, and cut off
    one that came as the time ran out: a loaded client's POSTs were lost that way."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server["port"])
    try:
        await asyncio.sleep(6)
        writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


def test_a_killed_web_process_is_replaced_and_the_site_keeps_answering(server):
    before = children(server["supervisor"])
    os.kill(before[0], signal.SIGKILL)
    answered = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answered += httpx.get(f"{server['base']}/health", timeout=5).status_code == 200
        now = children(server["supervisor"])
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.2)
    assert len(children(server["supervisor"])) == 2 and before[0] not in children(server["supervisor"])
    assert answered >= 1


def test_a_web_process_whose_event_loop_stops_is_replaced(tmp_path, database):
    """A hung web process (here: stopped) is killed and replaced after WEB_STALL_SECONDS, as a dead
    one is; with a socket of its own it would otherwise keep its share of new connections."""
    with live_server(tmp_path, env={"WEB_STALL_SECONDS": "3"}, processes=2) as base:
        supervisor = supervisor_with_two(int(base.rsplit(":", 1)[1]))
        stalled = children(supervisor)[0]
        os.kill(stalled, signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = children(supervisor)
            if stalled not in now and len(now) == 2:
                break
            time.sleep(0.2)
        assert stalled not in children(supervisor) and len(children(supervisor)) == 2
        for _ in range(10):  # every new connection is answered, whichever process it is dealt to
            assert httpx.get(f"{base}/health", timeout=5).status_code == 200

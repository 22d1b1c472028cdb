"""A client that floods a WebSocket with oversize messages and ignores the close is cut off by
the real server (`python -m app`), not buffered (issue 14, finding 2; app/serving.py)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

from browser_support import live_server
from helpers import PASSWORD
from seeding import seed_session
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request

from models import Team


def login_cookie(base: str, username: str) -> str:
    request = urllib.request.Request(
        f"{base}/auth/login",
        data=json.dumps({"username": username, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Set-Cookie"].split(";", 1)[0]


def test_oversize_messages_end_the_connection_after_one_message(tmp_path, user):
    team = Team.create(name="Flood", owner=user)
    session = seed_session(team, user, roles=["architect"])
    with live_server(tmp_path, {"WS_MAX_MESSAGE_BYTES": "4096"}) as base:
        port = int(base.rsplit(":", 1)[1])
        cookie = login_cookie(base, user.username)
        client = WSConnection(ConnectionType.CLIENT)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                client.send(
                    Request(host="127.0.0.1", target=f"/ws/{session.id}", extra_headers=[(b"cookie", cookie.encode())])
                )
            )
            client.receive_data(sock.recv(65536))
            assert any(isinstance(event, AcceptConnection) for event in client.events())
            frame = client.send(BytesMessage(data=b"x" * (1 << 20)))
            sent, cut_off = 0, False
            deadline = time.monotonic() + 30  # a bound on the test, not a timing assertion
            sock.settimeout(1)
            while time.monotonic() < deadline:  # never reads: the close frame is ignored
                try:
                    sock.sendall(frame)
                except OSError:
                    cut_off = True
                    break
                sent += len(frame)
        assert cut_off, f"still accepting after {sent / 1e6:.0f} MB"
        # One message reaches the limit; whatever more went out sat in kernel buffers.
        assert sent < 32 * (1 << 20)

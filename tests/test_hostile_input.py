"""Hostile input gets a 400 envelope, never a 500 (issue 14, findings 9 and 12)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from helpers import error_of

from models import ExecutionSession, Team, TeamMembership, User


@pytest.fixture
async def owner(login_as, user):
    team = Team.create(name="Shared", owner=user, is_shared=True)
    TeamMembership.create(team=team, user=user, role="owner")
    session = ExecutionSession.create(team=team, user=user, feature_name="Feature")
    return {"client": await login_as(user), "team": team, "session": session}


async def test_a_body_that_is_not_utf8_is_a_validation_error(client):
    response = await client.post(
        "/auth/login", data=b'{"username": "\xff\xfe", "password": "x"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert await error_of(response) == {
        "code": "validation_error",
        "message": "request body must be UTF-8 encoded JSON",
        "fields": {"body": "not UTF-8"},
    }


@pytest.mark.parametrize("opening", ["[", '{"a":'])
async def test_json_nested_10000_deep_is_a_validation_error(client, opening):
    closing = "]" if opening == "[" else "}"
    body = opening * 10_000 + "1" + closing * 10_000
    response = await client.post("/auth/login", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert (await error_of(response))["fields"] == {"body": "nested too deep"}


async def test_brackets_inside_strings_do_not_count_as_nesting(client, user):
    response = await client.post(
        "/auth/login", json={"username": '\\"' + "[" * 100 + '"\\' + "[" * 100, "password": "{" * 60}
    )
    assert response.status_code == 401, await response.get_data()


def nul_cases(owner: dict) -> list[tuple[str, str, dict]]:
    team, session = owner["team"].id, owner["session"].id
    return [
        ("POST", "/auth/login", {"username": "te\x00st", "password": "whatever1"}),
        ("POST", "/auth/login", {"username": "test", "password": "what\x00ever"}),
        ("POST", "/auth/signup", {"username": "nul\x00", "email": "n@example.com", "password": "long enough"}),
        ("POST", "/auth/signup", {"username": "nul", "email": "n\x00@example.com", "password": "long enough"}),
        ("POST", "/teams", {"name": "A\x00B"}),
        ("POST", "/teams", {"name": "AB", "description": "\x00"}),
        ("POST", f"/teams/{team}/invite", {"username": "x\x00"}),
        ("POST", "/sessions", {"team_id": team, "feature_name": "F\x00"}),
        ("POST", f"/sessions/{session}/decisions", {"decision_text": "D\x00"}),
        ("POST", f"/sessions/{session}/decisions", {"decision_text": "D", "category\x00": "x"}),
    ]


@pytest.mark.parametrize("case", range(10))
async def test_a_nul_character_in_any_text_field_is_a_validation_error(owner, case):
    method, path, body = nul_cases(owner)[case]
    before = (User.select().count(), Team.select().count())
    response = await owner["client"].open(path, method=method, json=body)
    assert response.status_code == 400, await response.get_data()
    error = await error_of(response)
    assert error["code"] == "validation_error"
    assert "NUL" in error["message"]
    assert (User.select().count(), Team.select().count()) == before


@pytest.mark.parametrize("query", ["status=%00", "before=%00", "limit=1%00"])
async def test_a_nul_character_in_a_query_string_is_a_validation_error(owner, query):
    response = await owner["client"].get(f"/teams/{owner['team'].id}/sessions?{query}")
    assert response.status_code == 400
    assert (await error_of(response))["code"] == "validation_error"


# Finding 12: a body that trickles in is cut off at the deadline.


def test_a_slow_request_body_is_cut_off_at_the_deadline(tmp_path):
    from browser_support import live_server

    with live_server(tmp_path, {"BODY_TIMEOUT_SECONDS": "2"}) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            started = time.monotonic()
            answer = b""
            sock.settimeout(0.3)
            while time.monotonic() - started < 30:  # a bound on the test, not a timing assertion
                try:
                    sock.sendall(b" ")  # one byte at a time, never finishing
                except OSError:
                    break
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request_timeout" in answer or b"content-length" in answer.lower()


async def test_the_body_deadline_defaults_to_30_seconds_or_less(app):
    assert 0 < app.config["BODY_TIMEOUT"] <= 30
    await asyncio.sleep(0)

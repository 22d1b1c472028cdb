"""The error envelope of docs/api.md for every failure class, and the cross-site guard."""

from __future__ import annotations

import pytest
from helpers import error_of

from app import create_app
from app.csrf import origin_allowed


@pytest.fixture
async def app(settings, database, redis_client):
    """The app plus test-only routes that fail on purpose."""
    application = create_app(settings, max_body_bytes=1024, allowed_origins=("https://partner.example",))

    @application.get("/_test/boom")
    async def boom():
        raise RuntimeError("secret internals: password=hunter2 at /srv/db.py")

    @application.post("/_test/echo")
    async def echo():
        from quart import request

        return {"json": await request.get_json()}

    async with application.test_app():
        yield application


async def test_malformed_json_is_a_validation_error_naming_the_body(client):
    response = await client.post("/auth/login", data="{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert await error_of(response) == {
        "code": "validation_error",
        "message": "request body must be valid JSON",
        "fields": {"body": "malformed JSON"},
    }


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "42"])
async def test_json_that_is_not_an_object_is_a_validation_error(client, body):
    response = await client.post("/auth/login", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = await error_of(response)
    assert error["code"] == "validation_error" and "body" in error["fields"]


async def test_a_wrong_type_names_the_field(client):
    response = await client.post("/auth/login", json={"username": ["a"], "password": 12345678})
    assert response.status_code == 400
    error = await error_of(response)
    assert error["code"] == "validation_error"
    assert set(error["fields"]) == {"username", "password"}


async def test_a_missing_body_on_a_route_that_needs_one_is_a_validation_error(client):
    response = await client.post("/auth/login")
    assert response.status_code == 400
    assert "body" in (await error_of(response))["fields"]


async def test_unauthenticated_is_401(client):
    response = await client.get("/teams")
    assert response.status_code == 401
    assert (await error_of(response))["code"] == "unauthenticated"


async def test_a_role_that_may_not_act_is_403(login_as, user, shared_team, other_user):
    from helpers import add_member

    add_member(shared_team, other_user, "viewer")
    response = await (await login_as(other_user)).post(f"/teams/{shared_team.id}/share")
    assert response.status_code == 403
    assert (await error_of(response))["code"] == "forbidden"


@pytest.mark.parametrize("path", ["/teams/999", "/no/such/page"])
async def test_not_found_is_404(login_as, user, path):
    response = await (await login_as(user)).get(path)
    assert response.status_code == 404
    assert (await error_of(response))["code"] == "not_found"


async def test_a_conflict_is_409(client, user):
    response = await client.post(
        "/auth/signup", json={"username": "test", "email": "x@y.org", "password": "long enough"}
    )
    assert response.status_code == 409
    assert (await error_of(response))["code"] == "conflict"


@pytest.mark.parametrize("path", ["/auth/login", "/_test/echo"])
async def test_an_oversize_body_is_413(client, path):
    response = await client.post(path, json={"username": "x" * 2000, "password": "y"})
    assert response.status_code == 413
    assert (await error_of(response))["code"] == "payload_too_large"


async def test_too_many_attempts_is_429_with_retry_after(client, settings):
    for _ in range(settings.login_max_failures):
        await client.post("/auth/login", json={"username": "x", "password": "wrong password"})
    response = await client.post("/auth/login", json={"username": "x", "password": "wrong password"})
    assert response.status_code == 429
    assert (await error_of(response))["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


async def test_an_unexpected_exception_is_500_naming_no_internals(client, caplog):
    response = await client.get("/_test/boom")
    assert response.status_code == 500
    assert await error_of(response) == {"code": "internal_error", "message": "internal server error"}
    assert "hunter2" not in await response.get_data(as_text=True)
    assert "secret internals" in caplog.text  # logged for us, not shown to them


async def test_a_wrong_method_is_405_in_the_envelope(client):
    response = await client.put("/auth/me", json={})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    await error_of(response)


# Cross-site request forgery.


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),
        ({"Origin": "http://localhost"}, True),
        ({"Origin": "https://partner.example"}, True),
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "http://localhost.evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"}, False),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/auth/logout"), ("POST", "/teams"), ("DELETE", "/teams/1/members/2")]
)
async def test_state_changes_from_foreign_origins_are_refused(login_as, user, method, path, headers, allowed):
    client = await login_as(user)
    response = await client.open(path, method=method, headers=headers, json={"name": "x"} if path == "/teams" else None)
    if allowed:
        assert response.status_code != 403
    else:
        assert response.status_code == 403
        assert await error_of(response) == {"code": "forbidden", "message": "cross-site requests are not allowed"}


async def test_a_cross_site_refusal_happens_before_any_change(login_as, user, redis_client):
    client = await login_as(user)
    response = await client.post("/auth/logout", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert (await client.get("/auth/me")).status_code == 200


async def test_reads_are_not_refused_for_their_origin(login_as, user):
    client = await login_as(user)
    assert (await client.get("/teams", headers={"Sec-Fetch-Site": "cross-site"})).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"]
)
async def test_state_changes_with_non_json_bodies_are_refused(login_as, user, content_type):
    client = await login_as(user)
    response = await client.post("/teams", data="name=Evil", headers={"Content-Type": content_type})
    assert response.status_code == 415
    error = await error_of(response)
    assert error["code"] == "validation_error" and error["fields"] == {"body": "not JSON"}
    assert (await (await client.get("/teams")).get_json())["teams"] == []


def test_origin_check_compares_hosts_not_prefixes(settings):
    assert origin_allowed("https://app.example:8443", "app.example:8443", settings)
    assert not origin_allowed("https://app.example", "app.example:8443", settings)
    assert not origin_allowed("https://app.example.evil", "app.example", settings)
    assert origin_allowed(None, "app.example", settings)

"""Strict browser headers on every response, pages without inline script, and the production
Host check (issue 14, finding 14)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import error_of
from quart.testing.connections import WebsocketResponseError
from seeding import seed_session

from app import create_app
from models import Team, TeamMembership

ROOT = Path(__file__).resolve().parent.parent


def directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {part.split(" ", 1)[0]: part.partition(" ")[2] for part in (p.strip() for p in policy.split(";")) if part}


@pytest.mark.parametrize(
    "path", ["/login", "/dashboard", "/teams", "/health", "/static/vendor/alpine.min.js", "/teams/999", "/nowhere"]
)
async def test_every_response_carries_the_strict_headers(login_as, user, path):
    response = await (await login_as(user)).get(path)
    policy = directives(response)
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


class _Scripts(HTMLParser):
    """Collects inline scripts and inline event handlers of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        named = dict(attrs)
        for name, _ in attrs:
            if name.startswith("on"):
                self.inline.append(f"{tag} {name}=")
        if tag == "script" and "src" not in named and named.get("type") != "application/json":
            self.inline.append(f"<script {named}>")
        if tag in {"a", "form", "iframe"} and (named.get("href") or named.get("action") or "").startswith(
            "javascript:"
        ):
            self.inline.append(f"{tag} javascript: URL")


async def test_no_page_has_inline_script_or_handlers(login_as, user):
    team = Team.create(name="Shared", owner=user, is_shared=True)
    TeamMembership.create(team=team, user=user, role="owner")
    session = seed_session(team, user, roles=["architect"])
    client = await login_as(user)
    anonymous_pages = ["/login", "/signup"]
    pages = ["/dashboard", f"/dashboard/teams/{team.id}", f"/dashboard/sessions/{session.id}", "/dashboard/teams/999"]
    for path in anonymous_pages + pages:
        page_client = client if path in pages else None
        response = await (page_client or _anonymous(client)).get(path)
        parser = _Scripts()
        parser.feed((await response.get_data()).decode())
        assert parser.inline == [], path


def _anonymous(client):
    return client.app.test_client()


def test_the_vendored_alpine_is_the_csp_build_that_never_evaluates_strings():
    alpine = (ROOT / "static/vendor/alpine.min.js").read_text()
    assert "new Function" not in alpine and not re.search(r"\beval\(", alpine)


def test_templates_use_no_template_literals_that_alpines_csp_build_cannot_parse():
    for template in (ROOT / "templates").glob("*.html"):
        assert "`" not in template.read_text(), template.name


@pytest.fixture
async def production_app(settings, database, redis_client):
    app = create_app(settings, env="production", allowed_hosts=("sage.example", "localhost"))
    async with app.test_app():
        yield app


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("sage.example", True),
        ("SAGE.example:443", True),
        ("localhost:8000", True),
        ("evil.example", False),
        ("", False),
    ],
)
async def test_production_refuses_hosts_not_in_allowed_hosts(production_app, host, allowed):
    response = await production_app.test_client().get("/health", headers={"Host": host})
    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert (await error_of(response))["fields"] == {"host": "not allowed"}


async def test_production_refuses_a_foreign_host_before_a_websocket_handshake(production_app, user):
    client = production_app.test_client()
    with pytest.raises(WebsocketResponseError) as raised:
        async with client.websocket("/ws/1", headers={"Host": "evil.example"}) as ws:
            await ws.receive()
    assert raised.value.response.status_code == 400


async def test_development_answers_any_host(client):
    assert (await client.get("/health", headers={"Host": "anything.example"})).status_code == 200


def test_allowed_hosts_come_from_the_environment_and_default_to_this_machine_in_production(tmp_path):
    from models.settings import Settings

    base = {"SAGE_ENV": "production", "SECRET_KEY": "k" * 40}
    listed = Settings.from_env({**base, "ALLOWED_HOSTS": "Sage.example, www.sage.example"}, instance_dir=tmp_path)
    assert listed.allowed_hosts == ("sage.example", "www.sage.example")
    assert Settings.from_env(base, instance_dir=tmp_path).allowed_hosts == ("localhost", "127.0.0.1")

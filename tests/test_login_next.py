"""`/login?next=`: after logging in a visitor goes back to the page asked for, on this site only."""

from __future__ import annotations

import pytest
from helpers import login

from app.pages import safe_next


@pytest.mark.parametrize(
    "value",
    [
        "/dashboard",
        "/dashboard/teams/3",
        "/dashboard/sessions/7?agent=dba&t=12#decision-40",
        "/%2F%2Fevil.example",  # an encoded slash stays in the path
    ],
)
def test_same_site_paths_are_allowed(value):
    assert safe_next(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "dashboard",
        "//evil.example",
        "//evil.example/dashboard",
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "http:/evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "/\n/evil.example",
        "/" + "a" * 2001,
    ],
)
def test_other_sites_and_what_a_browser_would_read_as_one_are_refused(value):
    assert safe_next(value) is None


async def test_the_login_page_carries_a_safe_next_and_drops_a_foreign_one(client):
    page = await (await client.get("/login?next=/dashboard/teams/9")).get_data(as_text=True)
    assert 'data-next="/dashboard/teams/9"' in page
    foreign = await (await client.get("/login?next=//evil.example")).get_data(as_text=True)
    assert 'data-next="/dashboard"' in foreign and "evil" not in foreign


async def test_a_logged_in_visitor_is_sent_on_to_next_but_never_off_site(client, user):
    await login(client, "test")
    going = await client.get("/login?next=/dashboard/teams/9")
    assert going.status_code == 302 and going.headers["Location"] == "/dashboard/teams/9"
    refused = await client.get("/login?next=/\\evil.example")
    assert refused.status_code == 302 and refused.headers["Location"] == "/dashboard"

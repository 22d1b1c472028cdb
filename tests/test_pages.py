"""The HTML pages of this issue: `/`, `/login`, `/signup`, `/dashboard`."""

from __future__ import annotations

import gzip
import re

import pytest
from helpers import login

from models.settings import ROOT


@pytest.mark.parametrize(("path", "target"), [("/", "/login"), ("/dashboard", "/login")])
async def test_anonymous_visitors_are_sent_to_the_login_page(client, path, target):
    response = await client.get(path)
    assert response.status_code == 302 and response.headers["Location"] == target


@pytest.mark.parametrize("path", ["/", "/login", "/signup"])
async def test_logged_in_users_are_sent_to_the_dashboard(client, user, path):
    await login(client, "test")
    response = await client.get(path)
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"


@pytest.mark.parametrize(("path", "posts_to"), [("/login", "/auth/login"), ("/signup", "/auth/signup")])
async def test_the_forms_post_json_to_the_api_with_alpine_from_our_own_static_files(client, path, posts_to):
    response = await client.get(path)
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    assert f"authForm('{posts_to}'" in html
    assert re.search(r'src="/static/vendor/alpine\.min\.js\?v=\w+"', html) and "cdn" not in html.lower()
    assert re.search(r'href="/static/css/app\.css\?v=\w+"', html)


async def test_the_dashboard_shows_the_user_and_a_logout_button(client, user):
    await login(client, "test")
    html = await (await client.get("/dashboard")).get_data(as_text=True)
    assert "test@test.com" in html and "Log out" in html


@pytest.mark.parametrize("asset", ["vendor/alpine.min.js", "js/auth.js", "css/app.css"])
async def test_static_assets_are_served(client, asset):
    assert (ROOT / "static" / asset).is_file()
    assert (await client.get(f"/static/{asset}")).status_code == 200


def test_the_form_script_posts_json_and_shows_envelope_fields():
    script = (ROOT / "static/js/auth.js").read_text()
    assert '"Content-Type": "application/json"' in script
    assert "error.fields" in script and "error.message" in script


async def test_static_assets_are_fingerprinted_cached_and_gzipped(client):
    html = await (await client.get("/login")).get_data(as_text=True)
    url = re.search(r'src="(/static/js/auth\.js\?v=\w+)"', html).group(1)
    plain = (ROOT / "static/js/auth.js").read_bytes()

    versioned = await client.get(url, headers={"Accept-Encoding": "gzip, br"})
    assert versioned.status_code == 200
    assert versioned.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in versioned.headers["Vary"]
    assert (
        "immutable" in versioned.headers["Cache-Control"] and "max-age=31536000" in versioned.headers["Cache-Control"]
    )
    assert gzip.decompress(await versioned.get_data()) == plain

    unversioned = await client.get("/static/js/auth.js")
    assert unversioned.headers["Cache-Control"] == "no-cache" and "Content-Encoding" not in unversioned.headers
    assert await unversioned.get_data() == plain


async def test_the_pages_have_a_favicon(client):
    html = await (await client.get("/login")).get_data(as_text=True)
    assert re.search(r'<link rel="icon" type="image/svg\+xml" href="/static/favicon\.svg\?v=\w+">', html)
    response = await client.get("/favicon.ico")
    assert response.status_code == 301 and response.headers["Location"].startswith("/static/favicon.svg")
    assert (await client.get("/static/favicon.svg")).status_code == 200

"""docs/api.md, the API reference that ships with the code, names every route the app serves."""

from __future__ import annotations

import re
from pathlib import Path

from app import create_app
from models.vocabulary import EVENT_TYPES

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

#: Paths that are not part of the JSON/WebSocket contract.
NOT_API = {"/static/{}", "/openapi.json", "/docs", "/favicon.ico"}


def normalized(path: str) -> str:
    """`/sessions/<int:session_id>` and `/sessions/{id}` both become `/sessions/{}`."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def documented_paths() -> set[str]:
    text = DOC.read_text()
    return {normalized(m) for m in re.findall(r"`(?:GET|POST|PATCH|PUT|DELETE|WS) (/[^`?\s\[]*)", text)} | {
        normalized(m) for m in re.findall(r"^\| `(/[^`]*)`", text, flags=re.M)
    }


def test_every_route_the_app_serves_is_in_the_api_reference(settings):
    app = create_app(settings)
    served = {normalized(rule.rule) for rule in app.url_map.iter_rules()} - NOT_API
    documented = documented_paths()
    pages = {p for p in served if p == "/" or p.startswith(("/login", "/signup", "/dashboard", "/logout"))}
    missing = {p for p in served - pages if p not in documented}
    assert not missing, f"routes missing from docs/api.md: {sorted(missing)}"


def test_the_api_reference_documents_every_websocket_close_code_the_server_uses():
    from app import live

    codes = {value for name, value in vars(live).items() if name.startswith("CLOSE_") and isinstance(value, int)}
    text = DOC.read_text()
    assert codes and all(f"| {code} |" in text for code in codes), codes


async def test_the_docs_page_renders_the_openapi_document_from_our_own_static_files(client):
    page = await client.get("/docs")
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    assert "/openapi.json" in html and "<script>" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "the docs page must not load from another host"
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert (await client.get(asset)).status_code == 200, asset
    spec = await (await client.get("/openapi.json")).get_json()
    assert "/sessions" in spec["paths"] and "/redocs" not in {r for r in spec["paths"]}
    assert (await client.get("/redocs")).status_code == 404


def json_routes(app) -> set[tuple[str, str]]:
    """(method, rule) of every JSON route: not a page, a static file, the socket or the docs."""
    hidden = (
        "/static",
        "/dashboard",
        "/login",
        "/signup",
        "/ws/",
        "/openapi.json",
        "/docs",
        "/metrics",
        "/health",
        "/favicon",
    )
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if rule.rule != "/" and not rule.rule.startswith(hidden) and not rule.websocket
    }


def test_every_json_route_has_its_answer_and_the_error_envelope_in_the_openapi_document(settings):
    from app.schemas import RESPONSES

    app = create_app(settings)
    missing = json_routes(app) - set(RESPONSES)
    assert not missing, f"describe these routes in app/schemas.py RESPONSES: {sorted(missing)}"


async def test_the_openapi_document_describes_bodies_and_errors(client):
    spec = await (await client.get("/openapi.json")).get_json()
    teams = spec["paths"]["/teams"]["get"]["responses"]
    assert "200" in teams and "404" in teams
    error = teams["404"]["content"]["application/json"]["schema"]
    assert error["title"] == "ErrorEnvelope" and error["required"] == ["error"]
    assert spec["paths"]["/sessions"]["post"]["responses"]["202"]


async def test_the_openapi_document_gives_the_export_its_media_types_and_a_204_no_body(client):
    spec = await (await client.get("/openapi.json")).get_json()
    export = spec["paths"]["/sessions/{session_id}/export"]["get"]["responses"]["200"]
    assert set(export["content"]) == {"text/markdown", "application/json"}
    logout = spec["paths"]["/auth/logout"]["post"]["responses"]["204"]
    assert "content" not in logout
    events = spec["components"]["schemas"]["Event"]["properties"]["type"]
    assert events["enum"] == list(EVENT_TYPES)


async def test_a_204_answer_carries_no_content_type():
    # On the wire (the fuzz run checks it there too); Quart's test client would add its default back.
    from quart import Response

    from app.security import add_headers

    answer = await add_headers(Response(status=204))
    assert "Content-Type" not in answer.headers
    assert (await add_headers(Response("{}", status=200, mimetype="application/json"))).mimetype == "application/json"

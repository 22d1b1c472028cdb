"""Cross-site request forgery protection: one `before_request` hook for every route.

A state-changing request (POST, PUT, PATCH, DELETE) is refused when

- its `Origin` is foreign (neither the request's own host nor one of `Settings.allowed_origins`;
  `Origin: null` counts as foreign) or it says `Sec-Fetch-Site: cross-site`: 403 `forbidden`;
- it has a body that is not JSON (`Content-Type` other than `application/json`): 415, because
  a cross-site HTML form can only send form or text bodies, and a cross-site `fetch` with a JSON
  body needs a CORS preflight this app never grants;
- its JSON body is not UTF-8, does not parse, nests deeper than 32 levels or holds a NUL
  character: 400 `validation_error` with `fields` naming where.

Requests without `Origin` or `Sec-Fetch-Site` (scripts, old browsers) pass the origin check;
the SameSite=Lax cookie and the JSON-only rule still hold for them. The body is parsed here,
once, so the size limit (413) and malformed JSON give the envelope before any view runs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import Quart, current_app, request
from werkzeug.exceptions import BadRequest

from app.errors import ApiError
from app.validation import check_query, parse_json_body
from models.settings import Settings

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_allowed(origin: str | None, host: str, settings: Settings) -> bool:
    """Whether a request carrying `origin` may act on this app served as `host`.

    No `Origin` header is allowed; a same-host origin (any scheme: TLS may end at a proxy) or one
    listed in `Settings.allowed_origins` is allowed. The WebSocket handshake uses this too.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/")
    if origin in settings.allowed_origins:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return False  # "null" and anything else odd
    return parts.netloc.lower() == host.lower()


async def protect() -> None:
    """Refuse cross-site or non-JSON state changes (see the module docstring)."""
    if request.method not in UNSAFE_METHODS:
        return
    settings: Settings = current_app.extensions["sage_settings"]
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site" or not origin_allowed(
        request.headers.get("Origin"), request.host, settings
    ):
        raise ApiError(403, "cross-site requests are not allowed")
    # Read (and cache) the body whatever the headers claim; this enforces MAX_CONTENT_LENGTH (413)
    # and BODY_TIMEOUT (408).
    raw = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    if not raw:
        return
    if not request.is_json:
        raise ApiError(415, "request body must be JSON (Content-Type: application/json)", fields={"body": "not JSON"})
    # Not UTF-8, nested too deep or holding a NUL: 400 here, before Quart's own parser or a
    # validator meets it (app.validation).
    parse_json_body(raw)
    try:
        await request.get_json()
    except BadRequest:
        raise ApiError(400, "request body must be valid JSON", fields={"body": "malformed JSON"}) from None


def register(app: Quart) -> None:
    """Install the hook on `app`."""
    app.before_request(protect)
    app.before_request(check_query)

"""Response headers that keep browsers strict, and the Host check of production.

Every response carries (issue 14, finding 14):

- `Content-Security-Policy`: scripts, styles, images and connections only from this origin,
  no inline script and no `eval` (the pages load Alpine's CSP build, `static/vendor/alpine.min.js`,
  and bundled islands; JSON for a page travels in `<script type="application/json">`, which is
  data, not script); `frame-ancestors 'none'` so no site can frame the pages;
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` and `X-Frame-Options: DENY`
  (the older browsers' word for `frame-ancestors`).

In production (`SAGE_ENV=production`) a request whose `Host` is not in `Settings.allowed_hosts`
(`ALLOWED_HOSTS`, without the port) is refused with 400 before anything else runs, so links and
origins can never be built from a host an attacker chose.
"""

from __future__ import annotations

from quart import Quart, Response, current_app, request, websocket

from app.errors import ApiError
from models.settings import Settings

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def host_allowed(host: str, settings: Settings) -> bool:
    """Whether `host` (a Host header, maybe with a port) names this app in production."""
    if not settings.production:
        return True
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8000
        name = name[1 : name.find("]")] if "]" in name else name
    else:
        name = name.rsplit(":", 1)[0]
    return name in settings.allowed_hosts


def _refuse_foreign_host(host: str) -> None:
    if not host_allowed(host or "", current_app.extensions["sage_settings"]):
        raise ApiError(400, "this host name is not served here", fields={"host": "not allowed"})


async def check_host() -> None:
    """Refuse a request whose Host is not in ALLOWED_HOSTS (production only)."""
    _refuse_foreign_host(request.host)


async def check_websocket_host() -> None:
    """Refuse a WebSocket handshake whose Host is not in ALLOWED_HOSTS (production only)."""
    _refuse_foreign_host(websocket.host)


async def add_headers(response: Response) -> Response:
    """Set the strict headers on every response (a route may set its own first)."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.status_code == 204:
        # No body, so no Content-Type (Quart's default would claim text/html).
        response.headers.pop("Content-Type", None)
    return response


def register(app: Quart) -> None:
    """Install both hooks on `app`; the Host check runs before every other hook."""
    app.before_request_funcs.setdefault(None, []).insert(0, check_host)
    app.before_websocket_funcs.setdefault(None, []).insert(0, check_websocket_host)
    app.after_request(add_headers)

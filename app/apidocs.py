"""`GET /docs`: the OpenAPI document (`/openapi.json`) rendered by Swagger UI, served from static/.

quart-schema's own UI pages load their scripts from a CDN and start them with an inline script;
this page uses the copy vendored by `npm run build` and a script file, so it works offline and
under a Content-Security-Policy without inline scripts. docs/api.md covers what OpenAPI cannot.
"""

from __future__ import annotations

from quart import Blueprint, render_template
from quart_schema import hide

blueprint = Blueprint("apidocs", __name__)


@blueprint.get("/docs")
@hide
async def api_docs() -> str:
    """The interactive API reference."""
    return await render_template("api_docs.html")

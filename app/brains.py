"""`GET /brains`: which brains this server can run sessions on (never a key)."""

from __future__ import annotations

from quart import Blueprint, jsonify

from app.login_sessions import login_required
from models.brains import catalogue, default_brain

blueprint = Blueprint("brains", __name__)


def brains_body() -> dict:
    """The answer of `GET /brains`; the start form reads it too."""
    return {"brains": [info.public() for info in catalogue()], "default": default_brain()}


@blueprint.get("/brains")
@login_required
async def list_brains():
    """Every brain, its provider and model, and whether it is configured; and the default."""
    return jsonify(brains_body())

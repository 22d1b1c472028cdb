"""`GET /health`: is the database reachable, is Redis reachable."""

from __future__ import annotations

from quart import Blueprint, current_app, jsonify
from quart_schema import hide

from app.db_thread import run_db
from models.db import db

blueprint = Blueprint("health", __name__)


def _select_one() -> None:
    db.execute_sql("SELECT 1")


@blueprint.get("/health")
@hide
async def health():
    """200 when PostgreSQL and Redis both answer, 503 naming the failing part otherwise."""
    body = {"status": "ok", "database": "ok", "redis": "ok"}
    try:
        await run_db(_select_one)
    except Exception:  # noqa: BLE001 - any failure means "down"
        body["database"] = "unavailable"
    try:
        await current_app.extensions["sage_redis"].ping()
    except Exception:  # noqa: BLE001
        body["redis"] = "unavailable"
    ok = body["database"] == "ok" and body["redis"] == "ok"
    if not ok:
        body["status"] = "unavailable"
    return jsonify(body), 200 if ok else 503

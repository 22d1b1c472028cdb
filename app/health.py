"""`GET /health`: are the database, Redis and the workers' broker reachable."""

from __future__ import annotations

import redis.asyncio as aioredis
from quart import Blueprint, current_app, jsonify
from quart.utils import run_sync
from quart_schema import hide

from app.db_thread import run_db
from models.db import db
from models.preflight import check_rabbitmq
from models.settings import Settings

blueprint = Blueprint("health", __name__)


def _select_one() -> None:
    db.execute_sql("SELECT 1")


@blueprint.get("/health")
@hide
async def health():
    """200 when PostgreSQL, Redis and the broker all answer, 503 naming the failing part otherwise.

    The broker is REDIS_URL's Redis unless BROKER_URL names another; a broker that refuses
    connections shows here, because sessions could not be started.
    """
    body = {"status": "ok", "database": "ok", "redis": "ok", "broker": "ok"}
    try:
        await run_db(_select_one)
    except Exception:  # noqa: BLE001 - any failure means "down"
        body["database"] = "unavailable"
    try:
        await current_app.extensions["sage_redis"].ping()
    except Exception:  # noqa: BLE001
        body["redis"] = "unavailable"
    settings: Settings = current_app.extensions["sage_settings"]
    if settings.broker == "rabbitmq":
        try:
            await run_sync(check_rabbitmq)(settings.broker_url)
        except Exception:  # noqa: BLE001
            body["broker"] = "unavailable"
    elif settings.redis_broker_url != settings.redis_url:
        client = aioredis.Redis.from_url(settings.redis_broker_url, socket_connect_timeout=3, socket_timeout=3)
        try:
            await client.ping()
        except Exception:  # noqa: BLE001
            body["broker"] = "unavailable"
        finally:
            await client.aclose()
    else:
        body["broker"] = body["redis"]
    ok = all(body[part] == "ok" for part in ("database", "redis", "broker"))
    if not ok:
        body["status"] = "unavailable"
    return jsonify(body), 200 if ok else 503

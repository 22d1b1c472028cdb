"""`GET /health` and the error envelope for requests no route answers."""

from __future__ import annotations

import pytest

from app import create_app


async def test_health_is_ok_when_database_and_redis_answer(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok", "database": "ok", "redis": "ok", "broker": "ok"}


async def test_health_checks_rabbitmq_when_it_is_the_broker(settings, database, rabbitmq_url):
    app = create_app(settings, broker_url=rabbitmq_url)
    async with app.test_app():
        response = await app.test_client().get("/health")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok", "database": "ok", "redis": "ok", "broker": "ok"}


@pytest.mark.parametrize(
    ("unreachable", "down"),
    [
        # The Redis broker is that Redis.
        ({"redis_url": "redis://127.0.0.1:6399/0"}, {"redis": "unavailable", "broker": "unavailable"}),
        ({"broker_url": "amqp://guest:guest@127.0.0.1:5699/"}, {"broker": "unavailable"}),
    ],
    ids=["redis", "rabbitmq"],
)
async def test_health_names_what_is_unreachable(settings, database, unreachable, down):
    broken = create_app(settings, **unreachable)
    async with broken.test_app():
        response = await broken.test_client().get("/health")
    assert response.status_code == 503
    assert await response.get_json() == {
        "status": "unavailable",
        "database": "ok",
        "redis": "ok",
        "broker": "ok",
        **down,
    }


async def test_health_names_the_database_when_it_is_unreachable(settings, redis_client):
    from models import db
    from models.db import make_database

    saved = db.obj
    try:
        db.initialize(make_database("postgresql://root@127.0.0.1:5999/nothing", 2))
        app = create_app(settings)
        async with app.test_app():
            response = await app.test_client().get("/health")
    finally:
        db.initialize(saved)
    assert response.status_code == 503
    body = await response.get_json()
    assert body["database"] == "unavailable" and body["redis"] == "ok"


async def test_unknown_paths_and_methods_answer_with_the_error_envelope(client):
    missing = await client.get("/no/such/thing")
    assert missing.status_code == 404
    assert await missing.get_json() == {"error": {"code": "not_found", "message": "not found"}}
    wrong_method = await client.delete("/health")
    assert wrong_method.status_code == 405
    assert (await wrong_method.get_json())["error"]["code"] == "method_not_allowed"


def test_the_start_up_check_leaves_the_bound_database_alone(settings, database):
    """`python -m app` binds its own pool only when nothing is bound; the check must not bind one."""
    from models.db import db
    from models.preflight import preflight

    bound = db.obj
    assert preflight(settings) is None
    assert db.obj is bound

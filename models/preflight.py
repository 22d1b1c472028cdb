"""The start-up checks shared by `python -m app` and `python -m actors worker`."""

from __future__ import annotations

import sys
from typing import Any

import redis

from models.db import DatabaseUnavailable, check_database, make_database
from models.settings import ConfigError, Settings


class BrokerUnavailable(Exception):
    """RabbitMQ did not accept a connection; the message says why."""


def rabbitmq_parameters(url: str, timeout: float = 3.0) -> Any:
    """pika's parameters for `url` with one connection attempt bounded by `timeout` seconds (for
    a check or a count that must answer soon, not for a worker's long-lived connection)."""
    import pika

    parameters = pika.URLParameters(url)
    parameters.socket_timeout = parameters.stack_timeout = timeout
    parameters.connection_attempts, parameters.retry_delay = 1, 0
    return parameters


def check_rabbitmq(url: str, timeout: float = 3.0) -> None:
    """Open and close an AMQP connection to `url` (login and vhost included), else raise BrokerUnavailable."""
    import pika
    import pika.exceptions

    try:
        pika.BlockingConnection(rabbitmq_parameters(url, timeout)).close()
    except (pika.exceptions.AMQPError, OSError, ValueError) as exc:
        # pika's connect errors wrap the socket's: "AMQPConnectorSocketConnectError: ConnectionRefusedError(...)".
        raise BrokerUnavailable(str(exc) or repr(exc) or type(exc).__name__) from None


def preflight(settings: Settings) -> str | None:
    """One readable line naming what is unreachable, or None when PostgreSQL, Redis and the
    broker (RabbitMQ when BROKER_URL is amqp://) answer.

    It checks with a database of its own and leaves the shared proxy unbound: `python -m app`
    binds its pool (DB_MAX_CONNECTIONS) at start-up only when nothing is bound yet.
    """
    database = make_database(settings.database_url, 1)
    try:
        check_database(database)
    except DatabaseUnavailable as exc:
        return f"cannot reach the database at DATABASE_URL: {exc}"
    finally:
        if hasattr(database, "close_all"):
            database.close_all()
        elif not database.is_closed():
            database.close()
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"cannot reach Redis at REDIS_URL: {exc}"
    if settings.broker == "rabbitmq":
        try:
            check_rabbitmq(settings.broker_url)
        except BrokerUnavailable as exc:
            return f"cannot reach RabbitMQ at BROKER_URL: {exc}"
    return None


def settings_or_exit() -> Settings:
    """Settings from the environment with both services reachable, or exit with one readable line.

    Exit code 2 for a configuration error, 1 for an unreachable service.
    """
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"sage-mode: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    problem = preflight(settings)
    if problem:
        print(f"sage-mode: {problem}", file=sys.stderr)
        raise SystemExit(1)
    return settings

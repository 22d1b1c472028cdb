"""Settings read from the environment, shared by the web app, the workers and the scripts.

This module sits at the bottom of the import graph (it imports nothing of ours) so that
`models`, `actors` and `app` all read one definition of every setting.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://root@127.0.0.1:5432/sage_mode"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one readable line."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower() or allowed[0]
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
    return value


def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, not {value}")
    return value


def _delays(name: str, raw: str) -> tuple[float, ...]:
    return tuple(_float(name, part) for part in raw.split(",") if part.strip())


def check_database_url(url: str) -> str:
    """Return `url` if it names a database we can open, else raise ConfigError."""
    parts = urlsplit(url)
    if parts.scheme in {"postgresql", "postgres"}:
        if not parts.path.strip("/"):
            raise ConfigError(f"DATABASE_URL names no database: {url!r}")
        return url
    if parts.scheme == "sqlite":
        return url
    raise ConfigError(f"DATABASE_URL must start with postgresql:// or sqlite://, not {parts.scheme or url!r}")


def check_redis_url(url: str) -> str:
    """Return `url` if it is a redis:// URL, else raise ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"REDIS_URL must start with redis://, not {parts.scheme or url!r}")
    return url


def check_broker_url(url: str) -> str:
    """Return `url` if it names a broker Dramatiq can use (Redis or RabbitMQ), else raise ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix", "amqp", "amqps"}:
        raise ConfigError(f"BROKER_URL must start with redis:// or amqp://, not {parts.scheme or url!r}")
    return url


def _secret_key(env: dict[str, str], production: bool, instance_dir: Path) -> str:
    """SECRET_KEY from the environment; in development, generated once into instance/."""
    key = env.get("SECRET_KEY", "")
    if key:
        if production and len(key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters in production")
        return key
    if production:
        raise ConfigError("SECRET_KEY must be set when SAGE_ENV=production")
    path = instance_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting together agree on the first key written.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key


@dataclass(frozen=True)
class Settings:
    """Every knob of the product, with safe local defaults."""

    env: str = "development"
    database_url: str = DEFAULT_DATABASE_URL
    db_max_connections: int = 20
    redis_url: str = DEFAULT_REDIS_URL
    #: The workers' broker; empty means Dramatiq's Redis broker on `redis_url` (decision 14).
    broker_url: str = ""
    secret_key: str = field(default="", repr=False)
    cookie_secure: bool = False
    max_body_bytes: int = 64 * 1024
    session_idle_seconds: int = 60 * 60 * 24
    session_absolute_seconds: int = 60 * 60 * 24 * 14
    login_max_failures: int = 5
    login_window_seconds: int = 300
    signup_max_attempts: int = 10
    login_rate_per_account: int = 10
    login_rate_per_address: int = 30
    login_rate_window_seconds: int = 60
    invite_max_attempts: int = 20
    invite_window_seconds: int = 600
    bcrypt_rounds: int = 12
    bcrypt_threads: int = 2
    max_logins_per_user: int = 20
    body_timeout_seconds: int = 30
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    worker_processes: int = 2
    worker_threads: int = 4
    worker_timeout_ms: int = 1000
    worker_grace_seconds: float = 30.0
    task_time_limit_seconds: float = 300.0
    retry_delays_seconds: tuple[float, ...] = (5.0, 10.0, 20.0)
    heartbeat_timeout_ms: int = 15000
    dead_message_ttl_ms: int = 86400000
    ws_queue_size: int = 256
    ws_poll_seconds: float = 10.0
    metrics_token: str = field(default="", repr=False)
    log_format: str = "text"
    web_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    web_stall_seconds: float = 30.0
    worker_metrics_port: int | None = None
    ws_max_sockets_per_user: int = 50
    ws_max_message_bytes: int = 4096
    ws_max_messages: int = 20
    ws_message_window_seconds: float = 10.0

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def broker(self) -> str:
        """Which broker the workers use: "rabbitmq" for an amqp:// BROKER_URL, else "redis"."""
        return "rabbitmq" if self.broker_url.startswith(("amqp://", "amqps://")) else "redis"

    @property
    def redis_broker_url(self) -> str:
        """The Redis URL of the Redis broker: BROKER_URL when it names Redis, else REDIS_URL."""
        return self.broker_url if self.broker == "redis" and self.broker_url else self.redis_url

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, instance_dir: Path | None = None) -> Settings:
        """Read settings from `env` (default: os.environ); raise ConfigError on bad values."""
        env = dict(os.environ if env is None else env)
        sage_env = env.get("SAGE_ENV", "development").strip() or "development"
        if sage_env not in {"development", "test", "production"}:
            raise ConfigError(f"SAGE_ENV must be development, test or production, not {sage_env!r}")
        production = sage_env == "production"
        instance = instance_dir or Path(env.get("SAGE_INSTANCE_DIR", ROOT / "instance"))
        values: dict[str, Any] = {
            "env": sage_env,
            "database_url": check_database_url(env.get("DATABASE_URL") or DEFAULT_DATABASE_URL),
            "redis_url": check_redis_url(env.get("REDIS_URL") or DEFAULT_REDIS_URL),
            "broker_url": check_broker_url(env["BROKER_URL"].strip()) if env.get("BROKER_URL", "").strip() else "",
            "secret_key": _secret_key(env, production, instance),
            "cookie_secure": _bool("COOKIE_SECURE", env.get("COOKIE_SECURE", "true" if production else "false")),
            "allowed_origins": tuple(
                o.strip().rstrip("/") for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
            ),
            "allowed_hosts": tuple(h.strip().lower() for h in env.get("ALLOWED_HOSTS", "").split(",") if h.strip()),
            "host": env.get("HOST", "127.0.0.1"),
            "metrics_token": env.get("METRICS_TOKEN", "").strip(),
            "log_format": _choice("LOG_FORMAT", env.get("LOG_FORMAT", "text"), ("text", "json")),
        }
        ints = {
            "DB_MAX_CONNECTIONS": ("db_max_connections", 1),
            "MAX_BODY_BYTES": ("max_body_bytes", 1),
            "SESSION_IDLE_SECONDS": ("session_idle_seconds", 1),
            "SESSION_ABSOLUTE_SECONDS": ("session_absolute_seconds", 1),
            "LOGIN_MAX_FAILURES": ("login_max_failures", 1),
            "LOGIN_WINDOW_SECONDS": ("login_window_seconds", 1),
            "SIGNUP_MAX_ATTEMPTS": ("signup_max_attempts", 1),
            "LOGIN_RATE_PER_ACCOUNT": ("login_rate_per_account", 1),
            "LOGIN_RATE_PER_ADDRESS": ("login_rate_per_address", 1),
            "LOGIN_RATE_WINDOW_SECONDS": ("login_rate_window_seconds", 1),
            "INVITE_MAX_ATTEMPTS": ("invite_max_attempts", 1),
            "INVITE_WINDOW_SECONDS": ("invite_window_seconds", 1),
            "BCRYPT_THREADS": ("bcrypt_threads", 1),
            "MAX_LOGINS_PER_USER": ("max_logins_per_user", 1),
            "BODY_TIMEOUT_SECONDS": ("body_timeout_seconds", 1),
            "WS_MAX_SOCKETS_PER_USER": ("ws_max_sockets_per_user", 1),
            "WS_MAX_MESSAGE_BYTES": ("ws_max_message_bytes", 1),
            "WS_MAX_MESSAGES": ("ws_max_messages", 1),
            # bcrypt's own minimum; the test suite uses 4 for speed, everything else 12.
            "BCRYPT_ROUNDS": ("bcrypt_rounds", 4),
            "PORT": ("port", 1),
            "WORKER_PROCESSES": ("worker_processes", 1),
            "WORKER_THREADS": ("worker_threads", 1),
            "WORKER_TIMEOUT_MS": ("worker_timeout_ms", 1),
            "HEARTBEAT_TIMEOUT_MS": ("heartbeat_timeout_ms", 1000),
            "DEAD_MESSAGE_TTL_MS": ("dead_message_ttl_ms", 1000),
            "WS_QUEUE_SIZE": ("ws_queue_size", 1),
            "WORKER_METRICS_PORT": ("worker_metrics_port", 1),
            "WEB_PROCESSES": ("web_processes", 1),
        }
        for name, (attr, minimum) in ints.items():
            if env.get(name):
                values[attr] = _int(name, env[name], minimum)
        if env.get("TASK_TIME_LIMIT_SECONDS"):
            values["task_time_limit_seconds"] = _float("TASK_TIME_LIMIT_SECONDS", env["TASK_TIME_LIMIT_SECONDS"])
        if env.get("WORKER_GRACE_SECONDS"):
            values["worker_grace_seconds"] = _float("WORKER_GRACE_SECONDS", env["WORKER_GRACE_SECONDS"])
        if env.get("WEB_STALL_SECONDS"):
            values["web_stall_seconds"] = _float("WEB_STALL_SECONDS", env["WEB_STALL_SECONDS"])
        if env.get("WS_POLL_SECONDS"):
            values["ws_poll_seconds"] = _float("WS_POLL_SECONDS", env["WS_POLL_SECONDS"])
        if env.get("WS_MESSAGE_WINDOW_SECONDS"):
            values["ws_message_window_seconds"] = _float("WS_MESSAGE_WINDOW_SECONDS", env["WS_MESSAGE_WINDOW_SECONDS"])
        if production and not values["allowed_hosts"]:
            # Refuse by default what nobody listed: only the machine itself until ALLOWED_HOSTS names the site.
            values["allowed_hosts"] = ("localhost", "127.0.0.1")
        if env.get("RETRY_DELAYS_SECONDS"):
            values["retry_delays_seconds"] = _delays("RETRY_DELAYS_SECONDS", env["RETRY_DELAYS_SECONDS"])
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with some fields replaced (tests use this)."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **overrides)

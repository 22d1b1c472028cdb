"""Configuration from the environment: safe defaults, readable errors, the secret key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.settings import ROOT, ConfigError, Settings


def test_defaults_point_at_the_local_services(tmp_path):
    settings = Settings.from_env({}, instance_dir=tmp_path)
    assert settings.database_url == "postgresql://root@127.0.0.1:5432/sage_mode"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.retry_delays_seconds == (5.0, 10.0, 20.0)
    assert settings.task_time_limit_seconds == 300.0
    assert settings.cookie_secure is False


def test_a_development_secret_key_is_generated_once_and_kept(tmp_path):
    first = Settings.from_env({}, instance_dir=tmp_path).secret_key
    second = Settings.from_env({}, instance_dir=tmp_path).secret_key
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_requires_a_secret_key_and_secures_cookies(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY must be set"):
        Settings.from_env({"SAGE_ENV": "production"}, instance_dir=tmp_path)
    settings = Settings.from_env({"SAGE_ENV": "production", "SECRET_KEY": "k" * 40}, instance_dir=tmp_path)
    assert settings.cookie_secure is True and settings.production


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL must start with postgresql://"),
        ({"DATABASE_URL": "postgresql://host"}, "DATABASE_URL names no database"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL must start with redis://"),
        ({"BROKER_URL": "kafka://localhost"}, "BROKER_URL must start with redis:// or amqp://"),
        ({"PORT": "eighty"}, "PORT must be a whole number"),
        ({"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE must be true or false"),
        ({"SAGE_ENV": "staging"}, "SAGE_ENV must be"),
        ({"RETRY_DELAYS_SECONDS": "5,x"}, "RETRY_DELAYS_SECONDS must be a number"),
    ],
)
def test_bad_values_are_refused_with_a_readable_message(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env, instance_dir=tmp_path)


def test_worker_settings_come_from_the_environment(tmp_path):
    settings = Settings.from_env(
        {"RETRY_DELAYS_SECONDS": "1, 2,4", "TASK_TIME_LIMIT_SECONDS": "2.5", "WORKER_THREADS": "3"},
        instance_dir=tmp_path,
    )
    assert settings.retry_delays_seconds == (1.0, 2.0, 4.0)
    assert settings.task_time_limit_seconds == 2.5
    assert settings.worker_threads == 3


def test_the_broker_is_redis_unless_broker_url_names_rabbitmq(tmp_path):
    default = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/3"}, instance_dir=tmp_path)
    assert (default.broker, default.redis_broker_url) == ("redis", "redis://127.0.0.1:6379/3")
    amqp = Settings.from_env({"BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/"}, instance_dir=tmp_path)
    assert (amqp.broker, amqp.broker_url) == ("rabbitmq", "amqp://guest:guest@127.0.0.1:5672/")
    assert amqp.redis_url == "redis://127.0.0.1:6379/0"  # still there for sessions, limits and events
    other = Settings.from_env({"BROKER_URL": "redis://10.0.0.5:6379/0"}, instance_dir=tmp_path)
    assert (other.broker, other.redis_broker_url) == ("redis", "redis://10.0.0.5:6379/0")


def test_the_workers_broker_follows_broker_url(settings, rabbitmq_url):
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.brokers.redis import RedisBroker

    from actors.broker import setup_broker

    previous = dramatiq.get_broker()
    try:
        rabbit = setup_broker(settings.with_overrides(broker_url=rabbitmq_url))
        assert isinstance(rabbit, RabbitmqBroker) and rabbit.confirm_delivery
        assert isinstance(setup_broker(settings), RedisBroker)
    finally:
        dramatiq.set_broker(previous)


def run_module(module: str, env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SAGE_INSTANCE_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("module", [("app",), ("actors", "worker"), ("models", "migrate")])
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "postgresql://root@127.0.0.1:5999/sage_mode"}, "cannot reach the database"),
        ({"DATABASE_URL": "oracle://x/y"}, "configuration error: DATABASE_URL must start"),
    ],
)
def test_start_up_fails_with_one_readable_line(tmp_path, module, env, expected):
    result = run_module(module[0], env, tmp_path, *module[1:])
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and "Traceback" not in result.stderr


def test_a_worker_refuses_an_unreachable_rabbitmq_at_start_up(tmp_path):
    result = run_module("actors", {"BROKER_URL": "amqp://guest:guest@127.0.0.1:5699/"}, tmp_path, "worker")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sage-mode: cannot reach RabbitMQ at BROKER_URL"), result.stderr


def test_the_web_app_refuses_an_unreachable_redis_at_start_up(tmp_path):
    result = run_module("app", {"REDIS_URL": "redis://127.0.0.1:6399/0"}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("sage-mode: cannot reach Redis at REDIS_URL")

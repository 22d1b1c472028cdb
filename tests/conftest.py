"""Shared fixtures: the test database and Redis db, clean state per test, and the design's data.

Tests run against the real services, in their own database (`sage_mode_test`, or
`SAGE_TEST_DATABASE`), Redis database number (15, or `SAGE_TEST_REDIS_DB`) and RabbitMQ
vhost (`sage_test_<database>`), so they never touch a developer's data or meet a developer's
worker. When a service is missing the tests skip, except with CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
import redis as redis_lib
from psycopg2 import sql

TEST_DB_NAME = os.environ.get("SAGE_TEST_DATABASE", "sage_mode_test")
TEST_REDIS_DB = int(os.environ.get("SAGE_TEST_REDIS_DB", "15"))
PG = {"host": "127.0.0.1", "port": 5432, "user": "root"}
TEST_DATABASE_URL = f"postgresql://root@127.0.0.1:5432/{TEST_DB_NAME}"
TEST_REDIS_URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
#: A vhost of its own per test database, so parallel runs (CI's, another checkout's) never share queues.
TEST_RABBITMQ_VHOST = f"sage_test_{TEST_DB_NAME}"
TEST_RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:5672/{TEST_RABBITMQ_VHOST}"

# Everything imported from here on (the actors' broker included) sees the test services.
os.environ["SAGE_ENV"] = "test"
os.environ["DATABASE_URL"] = TEST_DATABASE_URL
os.environ["REDIS_URL"] = TEST_REDIS_URL
# The broker is chosen per test (`broker_kind`); a developer's BROKER_URL must not leak in.
os.environ.pop("BROKER_URL", None)
os.environ.setdefault("RETRY_DELAYS_SECONDS", "0.05,0.1,0.2")
# bcrypt at its minimum cost: the default (12) is tested in test_settings, not paid per login.
os.environ.setdefault("BCRYPT_ROUNDS", "4")

from helpers import PASSWORD, logged_in_client, make_user  # noqa: E402

from models import ALL_MODELS, ExecutionSession, Team, TeamMembership, User, db  # noqa: E402
from models.db import close_database, init_database, reconnecting  # noqa: E402
from models.events import namespace, revocations_channel  # noqa: E402
from models.migrate import migrate  # noqa: E402
from models.settings import Settings  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error}); start it with scripts/services.sh"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def admin_connection():
    """An autocommit connection to the maintenance database, for CREATE/DROP DATABASE."""
    conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    conn.autocommit = True
    return conn


def recreate_database(name: str) -> None:
    """Drop (forcing other connections off) and create an empty database."""
    conn = admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings pointing at the test database and Redis db."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def database(settings: Settings):
    """A freshly migrated test database, bound to the models for the whole run."""
    try:
        recreate_database(TEST_DB_NAME)
    except psycopg2.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    migrate(settings.database_url)
    database = init_database(settings.database_url, settings.db_max_connections)
    yield database
    close_database()


@pytest.fixture(scope="session")
def redis_client(settings: Settings):
    """A synchronous client on the test Redis db."""
    client = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        _unavailable("Redis", exc)
    yield client
    client.close()


TABLES = ", ".join(f'"{m._meta.table_name}"' for m in ALL_MODELS)


@reconnecting
def _truncate() -> None:
    with db.connection_context():
        db.execute_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture(autouse=True)
def clean_state(database, redis_client):
    """Every test starts with empty tables and an empty Redis db, and a connection open."""
    _truncate()  # on a new connection if a test terminated the pooled ones (checked out unpinged)
    redis_client.flushdb()
    with db.connection_context():
        yield
    # A test that left a transaction open must not leak it into the next one.
    if not db.is_closed() and db.in_transaction():
        db.rollback()


# The fixture data of phase3-design.md ("Fixture Data").


@pytest.fixture
def user() -> User:
    """The design's `test` user; logs in with `helpers.PASSWORD`."""
    return make_user("test", email="test@test.com")


@pytest.fixture
def other_user() -> User:
    """A second account; logs in with `helpers.PASSWORD`."""
    return make_user("other", email="other@test.com")


@pytest.fixture
def personal_team(user: User) -> Team:
    return Team.create(name="Personal", owner=user, is_shared=False)


@pytest.fixture
def shared_team(user: User) -> Team:
    team = Team.create(name="Shared", owner=user, is_shared=True)
    TeamMembership.create(team=team, user=user, role="owner")
    return team


@pytest.fixture
def session(personal_team: Team, user: User) -> ExecutionSession:
    return ExecutionSession.create(team=personal_team, user=user, feature_name="Test Feature")


@pytest.fixture
async def app(settings: Settings, database, redis_client):
    """The web app, started (before_serving ran) against the test services."""
    from app import create_app

    application = create_app(settings)
    async with application.test_app():
        yield application


@pytest.fixture
def client(app):
    """A test client for `app`; it keeps cookies between requests."""
    return app.test_client()


@pytest.fixture
def login_as(app):
    """`await login_as(user_or_username)`: a new test client of `app` logged in as that user."""

    async def factory(who: User | str, password: str = PASSWORD):
        return await logged_in_client(app, who if isinstance(who, str) else who.username, password)

    return factory


@pytest.fixture
def revocations(redis_client):
    """A subscription to the `revocations` channel; `revocations.messages()` drains what arrived."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(revocations_channel(namespace(redis_client)))
    pubsub.get_message(timeout=1.0)  # the subscribe confirmation

    class Subscription:
        @staticmethod
        def messages(wait: float = 1.0) -> list[dict]:
            received = []
            message = pubsub.get_message(timeout=wait)
            while message is not None:
                received.append(json.loads(message["data"]))
                message = pubsub.get_message(timeout=0.1)
            return received

    yield Subscription()
    pubsub.close()


# Workers: the real actors on an in-memory broker with an in-process worker (issue 4).


@pytest.fixture
def stub_broker(settings: Settings, database):
    """A StubBroker carrying every actor, made global for the test; restores the previous broker."""
    import dramatiq
    from dramatiq.middleware import TimeLimit, default_middleware

    from actors.broker import stub_broker as make_stub_broker
    from actors.broker import use_broker
    from actors.config import set_settings

    # The time-limit monitor checks every 100 ms instead of every second, so limit tests are quick.
    middleware = [TimeLimit(interval=100) if m is TimeLimit else m() for m in default_middleware]
    broker = make_stub_broker(settings, middleware)
    broker.emit_after("process_boot")
    previous = use_broker(broker)
    yield broker
    broker.flush_all()
    broker.close()
    use_broker(previous)
    set_settings(None)
    assert dramatiq.get_broker() is previous


@pytest.fixture
def stub_worker(stub_broker):
    """An in-process Dramatiq worker with four threads on the stub broker (one that parks model calls)."""
    from actors.parking import ParkingWorker

    worker = ParkingWorker(stub_broker, worker_timeout=20, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.02):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s: {getattr(predicate, '__name__', predicate)}")


@pytest.fixture
def wait():
    """`wait(predicate, timeout=20)`: poll until truthy, else fail."""
    return wait_until


# Real worker processes on Redis (integration tests).

#: A short heartbeat keeps the test quick; bench/README.md records the figure for the default too.
HEARTBEAT_MS = int(os.environ.get("SAGE_FAILOVER_HEARTBEAT_MS", "3000"))


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The test vhost on the local RabbitMQ, created (with rabbitmqctl) the first time."""
    from models.preflight import BrokerUnavailable, check_rabbitmq

    try:
        check_rabbitmq(TEST_RABBITMQ_URL)
        return TEST_RABBITMQ_URL
    except BrokerUnavailable:
        pass
    try:
        check_rabbitmq("amqp://guest:guest@127.0.0.1:5672/")
    except BrokerUnavailable as exc:
        _unavailable("RabbitMQ", exc)
    vhost = TEST_RABBITMQ_VHOST
    try:
        # add_vhost fails when the vhost exists (then only its permissions were missing).
        subprocess.run(["rabbitmqctl", "add_vhost", vhost], capture_output=True, timeout=60)
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        check_rabbitmq(TEST_RABBITMQ_URL)
    except (OSError, subprocess.SubprocessError, BrokerUnavailable) as exc:
        _unavailable(f"RabbitMQ's vhost {vhost} (made with rabbitmqctl)", exc)
    return TEST_RABBITMQ_URL


@pytest.fixture
def broker_kind() -> str:
    """The workers' broker in a test: Redis, unless the test parametrizes it (`BOTH_BROKERS`)."""
    return "redis"


#: Runs a test once on each broker: `@BOTH_BROKERS` with the `actors_broker` fixture.
BOTH_BROKERS = pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"])


@pytest.fixture
def broker_env(broker_kind: str, request) -> dict[str, str]:
    """The environment that points a worker or a script at the test's broker."""
    if broker_kind == "rabbitmq":
        return {"BROKER_URL": request.getfixturevalue("rabbitmq_url")}
    return {}


@pytest.fixture
def actors_broker(settings, broker_env):
    """The actors bound to the test's broker (`broker_kind`), its queues empty, so sessions
    started in the test reach the real workers of `start_worker`."""
    from actors.broker import rabbitmq_broker, redis_broker, use_broker
    from actors.config import set_settings

    if "BROKER_URL" in broker_env:
        broker = rabbitmq_broker(settings.with_overrides(broker_url=broker_env["BROKER_URL"]))
    else:
        broker = redis_broker(settings.with_overrides(heartbeat_timeout_ms=HEARTBEAT_MS))
    previous = use_broker(broker)
    broker.flush_all()  # RabbitMQ keeps its queues between tests (Redis's db is flushed anyway)
    yield broker
    use_broker(previous)
    broker.close()
    set_settings(None)


@pytest.fixture
def redis_actors(settings):
    """The actors bound to a Redis broker on the test Redis db, so sessions reach real workers."""
    from actors.broker import redis_broker, use_broker
    from actors.config import set_settings

    broker = redis_broker(settings.with_overrides(heartbeat_timeout_ms=HEARTBEAT_MS))
    previous = use_broker(broker)
    yield broker
    use_broker(previous)
    broker.close()
    set_settings(None)


def _rabbitmq_consumers(url: str, queue: str = "default") -> int:
    """How many consumers `queue` has on RabbitMQ at `url` (0 while it does not exist)."""
    import pika
    import pika.exceptions

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def start_worker(tmp_path, redis_client, broker_env):
    """Start `python -m actors worker` processes (each its own process group) on the test's
    broker (`broker_kind`); stop them after."""
    started: list[subprocess.Popen] = []
    logs = []

    def start(threads: int = 2, processes: int = 1, **extra_env: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "SAGE_ENV": "test",
            "HEARTBEAT_TIMEOUT_MS": str(HEARTBEAT_MS),
            "WORKER_TIMEOUT_MS": "50",
            "SAGE_TEST_MARKER_DIR": str(tmp_path),
            "SAGE_STUB_BROKER": "0",  # a real broker, whatever an imported module set for itself
            **broker_env,
            **extra_env,
        }
        log = open(tmp_path / f"worker-{len(started)}.log", "w")
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "actors", "worker", "--processes", str(processes), "--threads", str(threads)],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    def ready(count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "BROKER_URL" in broker_env:
                up = _rabbitmq_consumers(broker_env["BROKER_URL"])  # one per worker process
            else:
                up = redis_client.zcard("dramatiq:__heartbeats__")
            if up >= count:
                return
            time.sleep(0.1)
        logs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("worker-*.log"))
        pytest.fail(f"{count} workers did not come up:\n{logs}")

    def children(proc: subprocess.Popen) -> list[int]:
        """The pids of the worker processes a supervisor is running now."""
        path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    start.ready = ready
    start.children = children
    start.markers = tmp_path
    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for log in logs:
        log.close()

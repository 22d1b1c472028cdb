"""The read views under load (issue 13): one read-only unit of work per request, the account and
the access checked in it on every request, and nothing else given up for the speed."""

from __future__ import annotations

import threading

import peewee
import psycopg2
import pytest
from conftest import PG, TEST_DB_NAME
from helpers import error_of, spy_statements, team_cast
from seeding import seed_session

from app.access import AccountGone, require_session, require_team
from models import Team, TeamMembership, User, db
from models.db import PostgresDatabase, unit_of_work

READS = ["", "/timeline", "/replay", "/decisions", "/events"]


@pytest.fixture
def cast(user, shared_team):
    """Owner (`user`), member, viewer and outsider around a shared team with one finished session."""
    return {"people": team_cast(shared_team, user), "team": shared_team, "session": seed_session(shared_team, user)}


def read_paths(cast) -> list[str]:
    return [*(f"/sessions/{cast['session'].id}{path}" for path in READS), f"/teams/{cast['team'].id}/sessions"]


def session_keys(redis_client) -> list[str]:
    return sorted(redis_client.scan_iter("auth:session:*"))


@pytest.fixture
def transactions(monkeypatch):
    """Every transaction begun from now on, as its `read_only` flag, and every txid read."""
    seen: dict[str, list] = {"begun": [], "txid_reads": []}
    begin, execute_sql = PostgresDatabase.begin, PostgresDatabase.execute_sql

    def spy_begin(self, *args, read_only=False, **kwargs):
        seen["begun"].append(read_only)
        return begin(self, *args, read_only=read_only, **kwargs)

    def spy_execute(self, sql, *args, **kwargs):
        if "txid_current_if_assigned" in sql:
            seen["txid_reads"].append(sql)
        return execute_sql(self, sql, *args, **kwargs)

    monkeypatch.setattr(PostgresDatabase, "begin", spy_begin)
    monkeypatch.setattr(PostgresDatabase, "execute_sql", spy_execute)
    return seen


async def test_every_read_is_one_read_only_transaction_with_no_txid_read(login_as, cast, transactions):
    viewer = await login_as(cast["people"]["viewer"])
    sessions, team_list = read_paths(cast)[:-1], read_paths(cast)[-1]
    for path in sessions:
        transactions["begun"].clear(), transactions["txid_reads"].clear()
        response = await viewer.get(path)
        assert response.status_code == 200, path
        # A body not kept yet: the login check and the access check share the view's one unit of work.
        assert transactions == {"begun": [True], "txid_reads": []}, path
    for path in [*sessions, team_list]:
        transactions["begun"].clear(), transactions["txid_reads"].clear()
        assert (await viewer.get(path)).status_code == 200, path
        # A kept body, and the team list: one statement in autocommit, no transaction at all.
        assert transactions == {"begun": [], "txid_reads": []}, path


async def test_a_write_still_reads_its_transaction_id_before_commit(login_as, cast, transactions):
    owner = await login_as(cast["people"]["owner"])
    transactions["begun"].clear(), transactions["txid_reads"].clear()
    response = await owner.post(f"/sessions/{cast['session'].id}/decisions", json={"decision_text": "Keep it"})
    assert response.status_code == 201
    assert False in transactions["begun"] and transactions["txid_reads"]


@pytest.mark.parametrize("index", range(len(READS) + 1))
async def test_a_deleted_members_cookie_gets_401_from_every_read_and_every_login_ends(
    app, login_as, cast, redis_client, index
):
    member = cast["people"]["member"]
    client, other_device = await login_as(member), await login_as(member)
    path = read_paths(cast)[index]
    assert (await client.get(path)).status_code == 200
    User.delete().where(User.id == member.id).execute()  # not through DELETE /auth/me
    response = await client.get(path)
    assert response.status_code == 401
    assert (await error_of(response))["code"] == "unauthenticated"
    assert not redis_client.smembers(f"auth:user:{member.id}")
    assert (await other_device.get("/teams")).status_code == 401
    assert all(redis_client.hget(key, "user_id") != str(member.id) for key in session_keys(redis_client))


@pytest.mark.parametrize("path", [*(f"/sessions/999999{p}" for p in READS), "/teams/999999/sessions"])
async def test_a_deleted_accounts_cookie_gets_401_not_404_for_what_does_not_exist(login_as, cast, path):
    viewer = cast["people"]["viewer"]
    client = await login_as(viewer)
    assert (await client.get(path)).status_code == 404
    User.delete().where(User.id == viewer.id).execute()
    assert (await client.get(path)).status_code == 401


@pytest.mark.parametrize("path", ["", *READS[1:], "list"])
async def test_a_removed_member_is_refused_at_the_very_next_read(login_as, cast, path):
    member = cast["people"]["member"]
    client = await login_as(member)
    url = f"/teams/{cast['team'].id}/sessions" if path == "list" else f"/sessions/{cast['session'].id}{path}"
    assert (await client.get(url)).status_code == 200
    TeamMembership.delete().where(TeamMembership.user == member.id).execute()
    response = await client.get(url)
    assert response.status_code == 404
    assert (await error_of(response))["code"] == "not_found"


async def test_a_team_made_personal_hides_its_sessions_from_members_at_once(login_as, cast):
    client = await login_as(cast["people"]["viewer"])
    url = f"/sessions/{cast['session'].id}"
    assert (await client.get(url)).status_code == 200
    Team.update(is_shared=False).where(Team.id == cast["team"].id).execute()
    assert (await client.get(url)).status_code == 404


def test_the_account_check_rides_on_the_access_query(cast, monkeypatch):
    calls = []
    original = db.obj.execute_sql
    monkeypatch.setattr(db.obj, "execute_sql", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    viewer = cast["people"]["viewer"]
    require_session(viewer.id, cast["session"].id, "read", check_account=True)
    require_team(viewer.id, cast["team"].id, "read", check_account=True)
    assert len(calls) == 2


@pytest.mark.parametrize("check", ["session", "team"])
def test_the_account_check_raises_account_gone_whether_or_not_the_object_exists(cast, check):
    viewer = cast["people"]["viewer"]
    User.delete().where(User.id == viewer.id).execute()
    require = require_session if check == "session" else require_team
    existing = cast["session"].id if check == "session" else cast["team"].id
    for ident in (existing, 999999):
        with pytest.raises(AccountGone):
            require(viewer.id, ident, "read", check_account=True)


def test_the_one_statement_access_check_decides_as_require_session(cast):
    """`session_access_with` (a kept body's read) and `require_session` agree for every caller."""
    from app.access import session_access_with
    from app.errors import ApiError

    def outcome(check, *args):
        try:
            return ("allowed", check(*args))
        except ApiError as error:
            return ("refused", error.status)
        except AccountGone:
            return ("gone", None)

    def both(user_id, session_id):
        old = outcome(lambda: require_session(user_id, session_id, "read", check_account=True)[1] and 7)
        new = outcome(lambda: session_access_with(user_id, session_id, "read", "%s + 0", [7]))
        return old, new

    session = cast["session"].id
    people = cast["people"]
    for name, person in people.items():
        for ident in (session, 999999):
            old, new = both(person.id, ident)
            assert old == new, (name, ident)
            assert (new == ("allowed", 7)) == (name != "outsider" and ident == session), (name, ident)
    Team.update(is_shared=False).where(Team.id == cast["team"].id).execute()
    for name in ("owner", "member", "viewer"):
        assert both(people[name].id, session)[0] == both(people[name].id, session)[1]
        assert both(people[name].id, session)[1][0] == ("allowed" if name == "owner" else "refused"), name
    User.delete().where(User.id == people["viewer"].id).execute()
    for ident in (session, 999999):
        assert both(people["viewer"].id, ident) == (("gone", None), ("gone", None))


async def test_a_kept_bodys_read_whose_connection_is_terminated_runs_once_more(login_as, cast, monkeypatch):
    from test_db_reconnect import sever_this_connection

    import app.sessions as sessions_routes

    viewer = await login_as(cast["people"]["viewer"])
    url = f"/sessions/{cast['session'].id}/replay"
    _, etag, body = await read(viewer, url)
    calls = []
    real = sessions_routes.session_access_with

    def severed_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            sever_this_connection()
        return real(*args, **kwargs)

    monkeypatch.setattr(sessions_routes, "session_access_with", severed_once)
    assert await read(viewer, url) == (200, etag, body)
    assert len(calls) == 2


def test_the_team_list_in_one_statement_is_the_peewee_list_and_decides_as_require_team(cast):
    """The web's list (`list_at_once`: access and page in one prepared statement, rows zipped with
    their keys) is `queries.team_sessions`'s page, for every filter and for awkward values; and it
    decides as `require_team`."""
    import datetime as dt

    from app.access import team_access_with_plain_rows
    from app.errors import ApiError
    from app.sessions import SessionList, list_at_once
    from models import ExecutionSession, queries

    team, owner = cast["team"], cast["people"]["owner"]
    for index, status in enumerate(["completed", "error", "completed", "completed"]):
        seed_session(team, owner, f"More {index}", status=status)
    ExecutionSession.update(usage={"calls": 2}).where(ExecutionSession.feature_name == "More 1").execute()
    ExecutionSession.update(status="active", ended_at=None, end_reason=None, duration_seconds=None).where(
        ExecutionSession.feature_name.in_(["More 0", "More 3"])
    ).execute()
    # Values of every kind a column holds: text JSON must escape, a float, usage with and without
    # each key, a time with a whole second and one a microsecond short of the next millisecond.
    ExecutionSession.update(
        feature_name='Quote " back \\ slash </script>',
        description="tab\tnew\nline\x01\x1f é ✓ 😀 \u2028",
        error_message="",
        duration_seconds=2.0,
        started_at=dt.datetime(2026, 1, 2, 3, 4, 5),
        ended_at=dt.datetime(2026, 1, 2, 3, 4, 5, 999999),
        usage={"calls": 3, "prompt_tokens": 1200, "completion_tokens": 7, "cost_usd": 0.1 + 0.2, "latency_ms": 5},
    ).where(ExecutionSession.feature_name == "More 2").execute()
    ExecutionSession.update(duration_seconds=1e-05, usage={"cost_usd": 0.000123, "calls": 1}).where(
        ExecutionSession.feature_name == "More 3"
    ).execute()
    ids = [s.id for s in ExecutionSession.select().where(ExecutionSession.team == team.id)]
    for status in (None, "active", "completed", "error"):
        for before in (None, max(ids), sorted(ids)[2], min(ids)):
            for limit in (1, 2, 50):
                query = SessionList(status=status, limit=limit, before=before)
                expected = queries.team_sessions(team.id, status, limit, before)
                assert list_at_once(owner.id, team.id, query) == expected, (status, before, limit)

    def outcome(check):
        try:
            return ("allowed", check())
        except ApiError as error:
            return ("refused", error.status)
        except AccountGone:
            return ("gone", None)

    def both(user_id, team_id):
        sql, params = queries.team_sessions_items_sql(team_id)
        return (
            outcome(lambda: require_team(user_id, team_id, "read", check_account=True)[1] and "ok"),
            outcome(lambda: team_access_with_plain_rows(user_id, team_id, "read", sql, params) and "ok"),
        )

    people = cast["people"]
    for name, person in people.items():
        for ident in (team.id, 999999):
            old, new = both(person.id, ident)
            assert old == new, (name, ident)
            assert (new == ("allowed", "ok")) == (name != "outsider" and ident == team.id), (name, ident)
    Team.update(is_shared=False).where(Team.id == team.id).execute()
    for name in ("owner", "member", "viewer"):
        old, new = both(people[name].id, team.id)
        assert old == new and new[0] == ("allowed" if name == "owner" else "refused"), name
    User.delete().where(User.id == people["viewer"].id).execute()
    for ident in (team.id, 999999):
        assert both(people["viewer"].id, ident) == (("gone", None), ("gone", None))


async def test_a_kept_bodys_read_checks_its_connection_out_without_a_round_trip(login_as, cast, monkeypatch):
    """The pool's SELECT 1 on check-out is skipped (`models.db.PostgresDatabase`): a dead pooled
    connection fails the unit's first statement and `reconnecting` runs it again."""
    viewer = await login_as(cast["people"]["viewer"])
    url = f"/sessions/{cast['session'].id}"
    assert (await viewer.get(url)).status_code == 200
    adapter = type(db.obj._adapter)
    pings = []
    real = adapter.is_connection_closed
    monkeypatch.setattr(adapter, "is_connection_closed", lambda self, conn: pings.append(1) or real(self, conn))
    assert (await viewer.get(url)).status_code == 200
    assert pings == []

    def elsewhere() -> None:  # nor does any other check-out (a thread with no connection open yet)
        with db.connection_context():
            db.execute_sql("SELECT 1")

    thread = threading.Thread(target=elsewhere)
    thread.start(), thread.join()
    assert pings == []


async def test_a_kept_bodys_read_after_every_pooled_connection_died_still_answers(login_as, cast):
    """A restarted server leaves the pool full of dead connections: the first fails, the retry
    drops the pool's idle ones and gets a new one, so the read still answers (and so does the next)."""
    from test_db_reconnect import terminate_backends

    viewer = await login_as(cast["people"]["viewer"])
    url = f"/sessions/{cast['session'].id}/timeline"
    _, etag, body = await read(viewer, url)
    together = threading.Barrier(4)

    def hold_one() -> None:  # four connections at once, so the pool keeps four
        with db.connection_context():
            db.execute_sql("SELECT 1")
            together.wait(timeout=10)

    threads = [threading.Thread(target=hold_one) for _ in range(4)]
    [t.start() for t in threads], [t.join() for t in threads]
    assert terminate_backends() >= 4
    assert await read(viewer, url) == (200, etag, body)
    assert await read(viewer, url) == (200, etag, body)
    assert terminate_backends() >= 1
    assert (await viewer.get(f"/teams/{cast['team'].id}/sessions")).status_code == 200


def test_a_read_only_unit_of_work_refuses_writes(user):
    def write() -> None:
        Team.create(name="Not written", owner=user.id, is_shared=False)

    with pytest.raises(peewee.DatabaseError, match="read-only transaction"):
        unit_of_work(write, read_only=True)()
    assert Team.select().where(Team.name == "Not written").count() == 0


def test_a_read_only_unit_of_work_sees_one_snapshot(user):
    """A view's queries agree with each other: a commit between two of them is not seen."""

    def count_twice() -> tuple[int, int]:
        first = Team.select().count()
        conn = psycopg2.connect(dbname=TEST_DB_NAME, **PG)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO teams (name, owner_id, is_shared, created_at) VALUES ('Later', %s, false, now())",
                    (user.id,),
                )
        finally:
            conn.close()
        return first, Team.select().count()

    first, second = unit_of_work(count_twice, read_only=True)()
    assert first == second
    assert Team.select().count() == first + 1


def test_a_read_only_unit_whose_connection_died_at_commit_is_run_again(monkeypatch):
    """It wrote nothing, so running it again is safe without asking the server anything."""
    from playhouse.pool import PooledPostgresqlDatabase
    from test_db_reconnect import sever_this_connection

    attempts = []

    def die_then_commit(self):
        if len(attempts) == 1:
            sever_this_connection()
        peewee.Database.commit(self)

    def read() -> int:
        attempts.append(1)
        return Team.select().count()

    monkeypatch.setattr(PooledPostgresqlDatabase, "commit", die_then_commit, raising=False)
    assert unit_of_work(read, read_only=True)() == 0
    monkeypatch.undo()
    assert len(attempts) == 2


def test_json_responses_are_encoded_by_orjson_with_the_same_json_as_before(app):
    import dataclasses
    import datetime as dt
    import json
    import uuid
    from decimal import Decimal

    import orjson

    @dataclasses.dataclass
    class Point:
        x: int

    before = type(app.json).__mro__[1](app)  # the provider orjson's extends (quart-schema's)
    value = {
        "z": [1.5, None, True, "é \u2028 </script>"],
        "a": {"when": dt.datetime(2026, 1, 2, 3, 4, 5), "day": dt.date(2026, 1, 2)},
        "point": Point(1),
        "id": uuid.UUID(int=7),
        "price": Decimal("1.50"),
        "big": 2**70,  # beyond orjson's 64 bits: the standard encoder takes over
    }
    encoded = app.json.dumps(value, separators=(",", ":"))
    assert json.loads(encoded) == json.loads(before.dumps(value, separators=(",", ":")))
    assert list(json.loads(encoded)) == sorted(value)  # keys stay sorted, as the default provider sorts them
    assert orjson.loads(app.json.dumps({"k": 1})) == {"k": 1}
    assert type(app.json).__name__ == "OrjsonProvider"


# The cache of encoded session views (app/read_cache.py).

VIEWS = {"": "detail", "/timeline": "timeline", "/replay": "replay", "/decisions": "decisions", "/events": "events"}


@pytest.fixture
def builds(monkeypatch):
    """How many times each session view was built (not served from the cache)."""
    from app.read_cache import BodyCache

    counts = dict.fromkeys(VIEWS.values(), 0)
    real_build = BodyCache.get_or_build

    def counting(self, key, version, build):
        def counted():
            counts[key[0]] += 1
            return build()

        return real_build(self, key, version, counted)

    monkeypatch.setattr(BodyCache, "get_or_build", counting)
    return counts


async def read(client, url, etag=None):
    response = await client.get(url, headers={"If-None-Match": etag} if etag else None)
    return response.status_code, response.headers.get("ETag"), await response.get_data()


@pytest.mark.parametrize("path", list(VIEWS))
async def test_a_second_read_is_served_from_the_cache_and_answers_304_to_its_etag(login_as, cast, builds, path):
    viewer = await login_as(cast["people"]["viewer"])
    url = f"/sessions/{cast['session'].id}{path}"
    status, etag, body = await read(viewer, url)
    assert status == 200 and etag and builds[VIEWS[path]] == 1
    assert await read(viewer, url) == (200, etag, body)
    status, again, empty = await read(viewer, url, etag=etag)
    assert (status, again, empty) == (304, etag, b"")
    assert builds[VIEWS[path]] == 1
    response = await viewer.get(url)
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert response.headers["Content-Type"] == "application/json"


def _write_decision(cast):
    from models import SessionDecision

    SessionDecision.create(session=cast["session"], user=cast["people"]["owner"], decision_text="Later thought")


def _write_task_status(cast):
    """A state change with no event at all: the cache must not rely on events."""
    from models import AgentTask

    AgentTask.update(error_message="looked at again").where(AgentTask.session == cast["session"].id).execute()


def _write_task_decision(cast):
    from models import TaskDecision

    task = cast["session"].tasks.first()
    TaskDecision.create(agent_task=task, user=None, source="agent", decision_text="Another", based_on=[])


def _write_snapshot(cast):
    from models import AgentSnapshot

    task = cast["session"].tasks.first()
    AgentSnapshot.create(
        agent_task=task, agent_role=task.agent_role, context_state={"again": True}, capabilities=[], decisions=[]
    )


def _write_event(cast):
    from models.events import record_event

    with db.atomic():
        record_event(cast["session"].id, "decision_created", {"decision": {"id": 0, "scope": "session"}})


def _write_rerun(cast):
    from models import ExecutionSession

    ExecutionSession.create(
        team=cast["team"], user=cast["people"]["owner"], feature_name="Again", rerun_of=cast["session"]
    )


def _member_decides(cast):
    from models import SessionDecision

    SessionDecision.create(session=cast["session"], user=cast["people"]["member"], decision_text="Member's")


def _delete_a_decision_author(cast):
    """ON DELETE SET NULL rewrites the decision row (its `user_id`), with no event and no app code."""
    User.delete().where(User.id == cast["people"]["member"].id).execute()


# (what exists before the views are cached, the write, the views it must change; the rest may
# keep their cached body).
WRITES = [
    (None, _write_decision, ["", "/replay", "/decisions"]),
    (None, _write_task_status, ["", "/timeline", "/replay"]),
    (None, _write_task_decision, ["", "/timeline", "/replay", "/decisions"]),
    (None, _write_snapshot, ["/timeline", "/replay"]),
    (None, _write_event, ["/replay", "/events"]),
    (None, _write_rerun, [""]),
    (_member_decides, _delete_a_decision_author, ["", "/replay", "/decisions"]),
]


@pytest.mark.parametrize(("prepare", "write", "changed"), WRITES, ids=[w.__name__ for _, w, _ in WRITES])
async def test_any_write_to_what_a_view_shows_is_seen_by_the_very_next_read(login_as, cast, prepare, write, changed):
    owner = await login_as(cast["people"]["owner"])
    if prepare:
        prepare(cast)
    then = {}
    for path in VIEWS:  # each view read twice: built, then cached
        await read(owner, f"/sessions/{cast['session'].id}{path}")
        then[path] = await read(owner, f"/sessions/{cast['session'].id}{path}")
    write(cast)
    for path, (_, etag, body) in then.items():
        url = f"/sessions/{cast['session'].id}{path}"
        status, fresh_etag, fresh_body = await read(owner, url, etag=etag)
        if path in changed:
            assert status == 200 and fresh_etag != etag and fresh_body != body, path
        # Whatever the cache held, the answer is what the database says now.
        assert (await read(owner, url))[2] == await _uncached(owner, url), path


async def _uncached(client, url):
    """The body built from the database now, bypassing every cache."""
    from app.read_cache import BodyCache

    real, peek = BodyCache.get_or_build, BodyCache.peek
    BodyCache.get_or_build = lambda self, key, version, build: real(self, key, None, build)  # type: ignore[method-assign]
    BodyCache.peek = lambda self, key, version: None  # type: ignore[method-assign]
    try:
        return (await read(client, url))[2]
    finally:
        BodyCache.get_or_build, BodyCache.peek = real, peek  # type: ignore[method-assign]


async def test_events_after_different_seqs_are_kept_apart(login_as, cast):
    viewer = await login_as(cast["people"]["viewer"])
    url = f"/sessions/{cast['session'].id}/events"
    everything = (await (await viewer.get(url)).get_json())["events"]
    last = everything[-1]["seq"]
    assert (await (await viewer.get(f"{url}?after={last - 1}")).get_json())["events"] == everything[-1:]
    assert (await (await viewer.get(f"{url}?after={last}")).get_json())["events"] == []
    assert (await (await viewer.get(url)).get_json())["events"] == everything


async def test_a_removed_member_with_a_cached_body_and_its_etag_gets_404_not_304(login_as, cast):
    member = cast["people"]["member"]
    client = await login_as(member)
    url = f"/sessions/{cast['session'].id}/replay"
    _, etag, _ = await read(client, url)
    assert (await read(client, url, etag=etag))[0] == 304
    TeamMembership.delete().where(TeamMembership.user == member.id).execute()
    assert (await read(client, url, etag=etag))[0] == 404


def test_the_body_cache_keeps_only_the_version_it_was_built_from_and_stays_bounded():
    from app.read_cache import BodyCache

    cache = BodyCache(max_entries=2, max_body_bytes=10)
    assert cache.get_or_build("a", "v1", lambda: b"one") == cache.get_or_build("a", "v1", lambda: b"never")
    assert cache.get_or_build("a", "v2", lambda: b"two")[0] == b"two"
    assert cache.get_or_build("a", None, lambda: b"three")[0] == b"three"  # not cacheable: built, and forgotten
    assert cache.get_or_build("a", "v2", lambda: b"four")[0] == b"four"
    cache.get_or_build("b", "v1", lambda: b"b")
    cache.get_or_build("c", "v1", lambda: b"c")  # "a" was the least recently used
    assert cache.get_or_build("a", "v2", lambda: b"rebuilt")[0] == b"rebuilt"
    cache.get_or_build("big", "v1", lambda: b"x" * 11)  # over max_body_bytes: not kept
    assert cache.get_or_build("big", "v1", lambda: b"y" * 11)[0] == b"y" * 11


async def test_a_read_resolves_its_login_in_one_redis_round_trip(app, login_as, cast, monkeypatch):
    from redis.asyncio.client import Pipeline, Redis

    viewer = await login_as(cast["people"]["viewer"])
    trips = []
    command, execute = Redis.execute_command, Pipeline.execute

    async def one_command(self, *args, **kwargs):
        trips.append(args[0])
        return await command(self, *args, **kwargs)

    async def one_pipeline(self, *args, **kwargs):
        trips.append([c[0][0] for c in self.command_stack])
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(Redis, "execute_command", one_command)
    monkeypatch.setattr(Pipeline, "execute", one_pipeline)
    assert (await viewer.get(f"/sessions/{cast['session'].id}")).status_code == 200
    assert trips == [["HGETALL", "EXPIRE"]]


@pytest.mark.parametrize("path", list(VIEWS))
async def test_a_cached_read_is_one_statement_that_checks_access_account_and_version(login_as, cast, monkeypatch, path):
    viewer = await login_as(cast["people"]["viewer"])
    url = f"/sessions/{cast['session'].id}{path}"
    await viewer.get(url)
    statements = spy_statements(monkeypatch)
    for _ in range(3):
        statements.clear()
        assert (await viewer.get(url)).status_code == 200
        # One prepared statement.
        [sql] = statements
        assert sql.startswith("PREPARED ") and "view_version" in sql and "account_exists" in sql


def test_a_prepared_statement_is_prepared_once_per_connection():
    from models.db import _prepared

    statements = []
    real = PostgresDatabase.execute_sql
    sql = "SELECT %s::int + %s::int, 'a' IS NOT NULL"

    def run(a, b):
        with db.connection_context():
            return db.obj.execute_prepared(sql, (a, b)).fetchone()

    def spy(self, text, *args, **kwargs):
        statements.append(text.split()[0])
        return real(self, text, *args, **kwargs)

    PostgresDatabase.execute_sql = spy  # type: ignore[method-assign]
    try:
        assert run(1, 2) == (3, True)
        assert run(5, 6) == (11, True)
        assert statements == ["SELECT", "PREPARE", "EXECUTE", "EXECUTE"]  # asked once, then prepared
        _prepared.clear()  # forgotten here, still prepared there: it is used all the same
        del statements[:]
        with db.connection_context(), db.atomic():  # and inside a transaction, which it must not abort
            assert db.obj.execute_prepared(sql, (1, 1)).fetchone() == (2, True)
            assert db.execute_sql("SELECT 7").fetchone() == (7,)
        assert statements[:3] == ["SELECT", "EXECUTE", "SELECT"] and "PREPARE" not in statements
    finally:
        PostgresDatabase.execute_sql = real  # type: ignore[method-assign]


async def test_the_cookie_session_is_quarts_with_or_without_its_cookie(app):
    """`app.CookieSessions` skips building a signer only when there is no session cookie."""
    from quart.sessions import SecureCookieSessionInterface

    from app import CookieSessions

    ours, theirs = CookieSessions(), SecureCookieSessionInterface()
    signed = theirs.get_signing_serializer(app).dumps({"seen": 1})
    name = app.config["SESSION_COOKIE_NAME"]
    for headers in ({}, {"Cookie": f"{name}={signed}"}, {"Cookie": f"{name}=forged"}, {"Cookie": "other=1"}):
        async with app.test_request_context("/", headers=headers) as ctx:
            mine, quarts = await ours.open_session(app, ctx.request), await theirs.open_session(app, ctx.request)
            assert (type(mine), dict(mine)) == (type(quarts), dict(quarts)), headers
    assert isinstance(app.session_interface, CookieSessions)
    app.secret_key = None
    async with app.test_request_context("/") as ctx:
        assert await ours.open_session(app, ctx.request) is None  # no key: Quart's null session, as before


def test_redis_replies_are_parsed_by_hiredis():
    """requirements.txt installs hiredis; redis-py picks its parser up by itself (issue 13)."""
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE


def test_postgresql_writes_the_lists_times_as_iso_does(database):
    """The list's times come from PostgreSQL (`queries._ISO`) in `serialize.iso`'s form:
    milliseconds cut, not rounded, and a Z."""
    import datetime as dt

    from models import db, queries
    from models.serialize import iso

    times = [dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(2026, 12, 31, 23, 59, 59, 999999)]
    times += [dt.datetime(2026, 5, 6, 7, 8, 9, 1500), dt.datetime(2026, 5, 6, 7, 8, 9, 120000)]
    for value in times:
        assert db.execute_sql(f"SELECT to_char(%s::timestamp, {queries._ISO})", (value,)).fetchone()[0] == iso(value)

"""The read views under load (issue 13): one read-only unit of work per request, the account and
the access checked in it on every request, and nothing else given up for the speed."""

from __future__ import annotations

import peewee
import psycopg2
import pytest
from conftest import PG, TEST_DB_NAME
from helpers import error_of, team_cast
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
    for path in read_paths(cast):
        transactions["begun"].clear(), transactions["txid_reads"].clear()
        response = await viewer.get(path)
        assert response.status_code == 200, path
        # The login check and the access check share the view's one unit of work.
        assert transactions == {"begun": [True], "txid_reads": []}, path


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
                cur.execute("INSERT INTO teams (name, owner_id, is_shared, created_at) VALUES ('Later', %s, false, now())", (user.id,))
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

"""Accounts and login sessions: signup, login, logout, me, the cookie and its Redis session."""

from __future__ import annotations

import asyncio
import time

import bcrypt
import pytest
from helpers import PASSWORD, error_of, login, make_user

from app import create_app
from models import User

SIGNUP = {"username": "ada", "email": "Ada@Example.com", "password": "analytical engine"}


def session_keys(redis_client) -> list[str]:
    return sorted(redis_client.scan_iter("auth:session:*"))


def auth_ids(redis_client) -> list[str]:
    return [key.removeprefix("auth:session:") for key in session_keys(redis_client)]


def cookie_header(response) -> str:
    headers = response.headers.getlist("Set-Cookie")
    assert len(headers) == 1, headers
    return headers[0]


async def test_signup_creates_the_user_and_logs_them_in(client, redis_client):
    response = await client.post("/auth/signup", json=SIGNUP)
    assert response.status_code == 201
    user = (await response.get_json())["user"]
    assert set(user) == {"id", "username", "email", "created_at"}
    assert user["username"] == "ada" and user["email"] == "ada@example.com"
    stored = User.get_by_id(user["id"])
    assert bcrypt.checkpw(SIGNUP["password"].encode(), stored.password_hash.encode())
    assert stored.password_hash.startswith("$2b$04$")  # BCRYPT_ROUNDS=4 in tests
    assert len(session_keys(redis_client)) == 1
    me = await client.get("/auth/me")
    assert me.status_code == 200 and (await me.get_json())["user"] == user


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "ADA"}, "username"),
        ({"email": "ADA@example.COM", "username": "other"}, "email"),
    ],
)
async def test_signup_refuses_a_taken_username_or_email_whatever_its_case(client, change, field):
    assert (await client.post("/auth/signup", json=SIGNUP)).status_code == 201
    response = await client.post("/auth/signup", json={**SIGNUP, **change})
    assert response.status_code == 409
    error = await error_of(response)
    assert error["code"] == "conflict" and error["fields"] == {field: "already taken"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "ab"}, "username"),
        ({"username": "a" * 65}, "username"),
        ({"username": "has space"}, "username"),
        ({"username": "at@sign"}, "username"),
        ({"username": 123}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "p" * 129}, "password"),
        ({"password": None}, "password"),
    ],
)
async def test_signup_validates_every_field(client, change, field):
    response = await client.post("/auth/signup", json={**SIGNUP, **change})
    assert response.status_code == 400
    error = await error_of(response)
    assert error["code"] == "validation_error" and field in error["fields"]


@pytest.mark.parametrize("missing", ["username", "email", "password"])
async def test_signup_names_a_missing_field_as_required(client, missing):
    body = {k: v for k, v in SIGNUP.items() if k != missing}
    error = await error_of(await client.post("/auth/signup", json=body))
    assert error["fields"] == {missing: "required"}
    assert error["message"] == f"{missing} is required"


@pytest.mark.parametrize(("username", "accepted"), [("a.b-c_9", True), ("abc", True), ("a" * 64, True)])
async def test_usernames_may_use_letters_digits_dot_dash_underscore(client, username, accepted):
    response = await client.post("/auth/signup", json={**SIGNUP, "username": username})
    assert (response.status_code == 201) is accepted


# The 72-byte rule: bcrypt ignores everything after byte 72.

LONG_A = "x" * 72 + "A"
LONG_B = "x" * 72 + "B"


@pytest.mark.parametrize("password", [LONG_A, "é" * 37, "🙂" * 19])
async def test_a_password_over_72_utf8_bytes_is_refused_at_signup(client, password):
    assert len(password) <= 128 and len(password.encode()) > 72
    response = await client.post("/auth/signup", json={**SIGNUP, "password": password})
    assert response.status_code == 400
    assert "72 bytes" in (await error_of(response))["fields"]["password"]
    assert User.select().count() == 0


async def test_a_password_of_exactly_72_bytes_works(client):
    password = "é" * 36  # 72 bytes
    assert (await client.post("/auth/signup", json={**SIGNUP, "password": password})).status_code == 201
    await login(client.app.test_client(), "ada", password)


async def test_two_passwords_sharing_their_first_72_bytes_never_both_log_in(client, app):
    # Even an account whose hash was made from the first 72 bytes (what bcrypt actually reads)
    # cannot be opened with longer passwords that share them: those are refused before bcrypt.
    make_user("ada", password="x" * 72)
    for password in (LONG_A, LONG_B):
        response = await app.test_client().post("/auth/login", json={"username": "ada", "password": password})
        assert response.status_code == 400
        assert "password" in (await error_of(response))["fields"]
    await login(app.test_client(), "ada", "x" * 72)


def test_bcrypt_cost_defaults_to_twelve(tmp_path):
    from models.settings import Settings

    assert Settings().bcrypt_rounds == 12
    assert Settings.from_env({}, instance_dir=tmp_path).bcrypt_rounds == 12
    assert Settings.from_env({"BCRYPT_ROUNDS": "13"}, instance_dir=tmp_path).bcrypt_rounds == 13


# Login.


@pytest.mark.parametrize("name", ["test", "TEST", "test@test.com", "Test@Test.COM"])
async def test_login_accepts_username_or_email_in_any_case(client, user, name):
    body = await login(client, name)
    assert body["id"] == user.id
    assert (await client.get("/auth/me")).status_code == 200


@pytest.mark.parametrize(("name", "password"), [("test", "wrong password"), ("nobody", PASSWORD)])
async def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(client, user, name, password):
    response = await client.post("/auth/login", json={"username": name, "password": password})
    assert response.status_code == 401
    assert await error_of(response) == {"code": "unauthenticated", "message": "wrong username or password"}
    assert response.headers.getlist("Set-Cookie") == []


async def test_the_cookie_is_httponly_lax_and_holds_a_random_id_not_the_user_id(client, user, redis_client):
    response = await client.post("/auth/login", json={"username": "test", "password": PASSWORD})
    header = cookie_header(response)
    assert header.startswith("sage_auth=")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    [auth_id] = auth_ids(redis_client)
    assert len(auth_id) >= 40
    assert redis_client.hgetall(f"auth:session:{auth_id}")["user_id"] == str(user.id)
    assert redis_client.smembers(f"auth:user:{user.id}") == {auth_id}


async def test_the_cookie_is_secure_when_configured_for_https(settings, user):
    app = create_app(settings, cookie_secure=True)
    async with app.test_app():
        response = await app.test_client().post(
            "/auth/login", json={"username": "test", "password": PASSWORD}, scheme="https"
        )
        assert response.status_code == 200
        assert "Secure" in cookie_header(response)


async def test_each_login_issues_a_fresh_auth_id_and_drops_the_one_it_replaced(client, user, redis_client, app):
    await login(client, "test")
    [first] = auth_ids(redis_client)
    await login(client, "test")
    [second] = auth_ids(redis_client)
    assert second != first
    # Another client replaying the first id is refused.
    stale = app.test_client()
    from quart_auth import generate_auth_token

    stale.set_cookie("localhost", "sage_auth", generate_auth_token(stale, first))
    assert (await stale.get("/auth/me")).status_code == 401
    assert (await client.get("/auth/me")).status_code == 200


async def test_logins_on_two_devices_are_two_sessions(app, user, redis_client):
    laptop, phone = app.test_client(), app.test_client()
    await login(laptop, "test")
    await login(phone, "test")
    assert len(auth_ids(redis_client)) == 2
    assert (await laptop.post("/auth/logout")).status_code == 204
    assert (await laptop.get("/auth/me")).status_code == 401
    assert (await phone.get("/auth/me")).status_code == 200


async def test_logout_deletes_the_session_so_the_old_cookie_gets_401_everywhere(client, user, redis_client, app):
    await login(client, "test")
    [auth_id] = auth_ids(redis_client)
    response = await client.post("/auth/logout")
    assert response.status_code == 204
    assert "sage_auth=;" in cookie_header(response)  # the browser is told to drop it
    assert auth_ids(redis_client) == []
    from quart_auth import generate_auth_token

    replay = app.test_client()
    replay.set_cookie("localhost", "sage_auth", generate_auth_token(replay, auth_id))
    for method, path in [("GET", "/auth/me"), ("GET", "/teams"), ("POST", "/auth/logout"), ("POST", "/teams")]:
        response = await replay.open(path, method=method, json={"name": "x"} if path == "/teams" else None)
        assert response.status_code == 401, path
        assert (await error_of(response))["code"] == "unauthenticated"


async def test_logout_announces_the_revocation_for_all_of_the_users_teams(client, user, revocations):
    await login(client, "test")
    await client.post("/auth/logout")
    assert revocations.messages() == [{"user_id": user.id, "team_id": None, "reason": "logout"}]


async def test_a_session_is_gone_after_its_idle_timeout(settings, user):
    app = create_app(settings, session_idle_seconds=1)
    async with app.test_app():
        client = app.test_client()
        await login(client, "test")
        assert (await client.get("/auth/me")).status_code == 200
        await asyncio.sleep(1.3)
        assert (await client.get("/auth/me")).status_code == 401


async def test_each_use_refreshes_the_idle_timeout(client, user, redis_client, settings):
    await login(client, "test")
    [key] = session_keys(redis_client)
    assert settings.session_idle_seconds - 5 <= redis_client.ttl(key) <= settings.session_idle_seconds
    redis_client.expire(key, 30)
    assert (await client.get("/teams")).status_code == 200
    assert redis_client.ttl(key) > settings.session_idle_seconds - 5


async def test_a_session_ends_at_its_absolute_lifetime_however_active(client, user, redis_client, settings):
    await login(client, "test")
    [key] = session_keys(redis_client)
    redis_client.hset(key, "created_at", int(time.time()) - settings.session_absolute_seconds - 1)
    assert (await client.get("/auth/me")).status_code == 401
    assert session_keys(redis_client) == []


async def test_idle_refresh_never_extends_past_the_absolute_lifetime(client, user, redis_client, settings):
    await login(client, "test")
    [key] = session_keys(redis_client)
    redis_client.hset(key, "created_at", int(time.time()) - settings.session_absolute_seconds + 10)
    assert (await client.get("/auth/me")).status_code == 200
    assert 0 < redis_client.ttl(key) <= 10


async def test_a_tampered_cookie_is_not_a_session(client, user):
    await login(client, "test")
    client.set_cookie("localhost", "sage_auth", "forged.value.here")
    assert (await client.get("/auth/me")).status_code == 401


async def test_me_without_a_cookie_is_unauthenticated(client):
    response = await client.get("/auth/me")
    assert response.status_code == 401
    assert (await error_of(response))["code"] == "unauthenticated"


async def test_password_hashing_runs_off_the_event_loop(client, monkeypatch):
    import threading

    import app.passwords as passwords

    threads = []
    original = passwords.hash_password_sync

    def spy(password, rounds):
        threads.append(threading.current_thread())
        return original(password, rounds)

    monkeypatch.setattr(passwords, "hash_password_sync", spy)
    assert (await client.post("/auth/signup", json=SIGNUP)).status_code == 201
    assert threads and threads[0] is not threading.main_thread()


# Issue 14: hashing on its own pool, the dummy hash's cost, deleted users, account deletion.


async def test_password_checks_run_on_the_hash_pool_not_the_database_threads(client, user, monkeypatch):
    import threading

    import app.passwords as passwords

    threads = []
    original = passwords.check_password_sync

    def spy(*args):
        threads.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(passwords, "check_password_sync", spy)
    await login(client, "test")
    assert len(threads) == 1 and threads[0].startswith(passwords.THREAD_PREFIX)


async def test_an_unknown_user_is_checked_against_a_hash_of_the_configured_cost(settings, monkeypatch):
    """Otherwise the answer comes faster for names that have no account (finding 4)."""
    costs = []
    original = bcrypt.checkpw

    def spy(password, hashed):
        costs.append(int(hashed.split(b"$")[2]))
        return original(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    app = create_app(settings, bcrypt_rounds=6)
    async with app.test_app():
        response = await app.test_client().post("/auth/login", json={"username": "ghost", "password": "whatever"})
    assert response.status_code == 401
    assert costs == [6]


async def test_a_deleted_users_cookie_is_refused_everywhere(client, user, redis_client):
    await login(client, "test")
    User.delete().where(User.id == user.id).execute()
    for method, path in (("GET", "/teams"), ("POST", "/teams"), ("GET", "/auth/me")):
        response = await client.open(path, method=method, json={"name": "x"} if method == "POST" else None)
        assert response.status_code == 401, path
        assert (await error_of(response))["code"] == "unauthenticated"
    assert session_keys(redis_client) == []


async def test_deleting_the_account_needs_its_password(client, user):
    await login(client, "test")
    response = await client.delete("/auth/me", json={"password": "not the password"})
    assert response.status_code == 403
    assert (await error_of(response))["fields"] == {"password": "wrong password"}
    assert User.get_or_none(User.id == user.id) is not None
    assert (await client.delete("/auth/me", json={})).status_code == 400
    assert (await client.get("/auth/me")).status_code == 200


async def test_deleting_the_account_cascades_and_ends_every_login_and_socket(
    app, client, user, redis_client, revocations
):
    from helpers import add_member

    from models import ExecutionSession, Team, TeamMembership

    own = Team.create(name="Mine", owner=user, is_shared=True)
    ExecutionSession.create(team=own, user=user, feature_name="Gone with the team")
    boss = make_user("boss")
    theirs = Team.create(name="Theirs", owner=boss, is_shared=True)
    add_member(theirs, user, "member")
    kept = ExecutionSession.create(team=theirs, user=user, feature_name="Stays with the team")
    await login(client, "test")
    other_device = app.test_client()
    await login(other_device, "test")
    revocations.messages(wait=0.2)  # the logins' own announcements, if any

    response = await client.delete("/auth/me", json={"password": PASSWORD})
    assert response.status_code == 204
    assert User.get_or_none(User.id == user.id) is None
    assert Team.get_or_none(Team.id == own.id) is None
    assert not TeamMembership.select().where(TeamMembership.user == user.id).exists()
    kept = ExecutionSession.get_by_id(kept.id)
    assert kept.user_id is None and kept.team_id == theirs.id
    assert session_keys(redis_client) == [] and not redis_client.exists(f"auth:user:{user.id}")
    assert (await other_device.get("/auth/me")).status_code == 401
    assert (await client.get("/teams")).status_code == 401
    assert revocations.messages() == [{"user_id": user.id, "team_id": None, "reason": "deleted"}]


async def test_a_user_keeps_at_most_the_configured_logins_and_the_oldest_is_dropped(settings, user, redis_client):
    app = create_app(settings, max_logins_per_user=3)
    async with app.test_app():
        devices = [app.test_client() for _ in range(4)]
        seen: set[str] = set()
        for age, device in zip((30, 20, 10, 0), devices, strict=True):
            await login(device, "test")
            [new] = set(auth_ids(redis_client)) - seen
            seen.add(new)
            # Logins a few seconds apart, without waiting for them (created_at is in whole seconds).
            redis_client.hset(f"auth:session:{new}", "created_at", int(time.time()) - age)
        assert (await devices[0].get("/auth/me")).status_code == 401
        for device in devices[1:]:
            assert (await device.get("/auth/me")).status_code == 200
        assert len(redis_client.smembers(f"auth:user:{user.id}")) == 3


async def test_a_remembered_cookie_signature_is_still_refused_as_quart_auth_refuses_it(app, monkeypatch):
    """`app.CheckedCookieAuth` remembers checked signatures, and answers as quart-auth would."""
    import time

    from quart_auth import QuartAuth

    from app import CheckedCookieAuth

    (ours,) = app.extensions["QUART_AUTH"]
    assert isinstance(ours, CheckedCookieAuth)
    plain = QuartAuth.load_token
    async with app.app_context():
        good = ours.dump_token("auth-id-1")
        tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
        for token in (good, tampered, "junk", ""):
            assert ours.load_token(token) == plain(ours, token), token
            assert ours.load_token(token) == plain(ours, token), token  # remembered now, same answer
        assert ours.load_token(good) == "auth-id-1"
        real = time.time
        for shift in (ours.duration - 5, ours.duration + 5, -3600):  # still valid, expired, signed "later"
            monkeypatch.setattr(time, "time", lambda shift=shift: real() + shift)
            assert ours.load_token(good) == plain(ours, good), shift
        monkeypatch.setattr(time, "time", real)
        assert ours.load_token(good) == "auth-id-1"
        old_key = app.secret_key
        app.secret_key = "another key entirely"
        assert ours.load_token(good) is None and plain(ours, good) is None  # a rotated key refuses it
        app.config["SECRET_KEY_FALLBACKS"] = [old_key]
        assert ours.load_token(good) == plain(ours, good) == "auth-id-1"  # unless kept as a fallback

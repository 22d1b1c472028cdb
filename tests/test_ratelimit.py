"""Failed-login and signup throttling (app/ratelimit.py)."""

from __future__ import annotations

import asyncio

import pytest
from helpers import PASSWORD, error_of, login, make_user


async def fail(client, username: str = "test", address: str | None = None):
    kwargs = {"scope_base": {"client": (address, 1234)}} if address else {}
    return await client.post("/auth/login", json={"username": username, "password": "wrong password"}, **kwargs)


async def attempt(client, username: str, password: str, address: str):
    return await client.post(
        "/auth/login", json={"username": username, "password": password}, scope_base={"client": (address, 1234)}
    )


async def test_too_many_failures_for_an_account_answer_429_with_retry_after(client, user, settings):
    for _ in range(settings.login_max_failures):
        assert (await fail(client)).status_code == 401
    response = await fail(client)
    assert response.status_code == 429
    assert (await error_of(response))["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= settings.login_window_seconds


async def test_a_locked_account_refuses_even_the_right_password_from_a_new_address(client, user, settings):
    for _ in range(settings.login_max_failures):
        await fail(client, address="203.0.113.9")
    response = await attempt(client, "test", PASSWORD, "198.51.100.7")
    assert response.status_code == 429


async def test_username_and_email_share_one_account_counter(client, user, settings):
    for i in range(settings.login_max_failures):
        await fail(client, "test" if i % 2 else "test@test.com", address=f"203.0.113.{i}")
    assert (await fail(client, "TEST", address="203.0.113.200")).status_code == 429


async def test_an_address_known_to_the_account_is_not_locked_out_by_someone_else(client, user, settings):
    home = "192.0.2.10"
    assert (await attempt(client, "test", PASSWORD, home)).status_code == 200
    for _ in range(settings.login_max_failures + 2):
        await fail(client, address="203.0.113.66")  # the attacker
    assert (await fail(client, address="203.0.113.66")).status_code == 429
    assert (await attempt(client, "test", PASSWORD, home)).status_code == 200


async def test_too_many_failures_from_one_address_lock_that_address_for_every_account(
    client, user, other_user, settings
):
    for i in range(settings.login_max_failures):
        await fail(client, f"guess{i}", address="203.0.113.5")
    assert (await attempt(client, "other", PASSWORD, "203.0.113.5")).status_code == 429
    assert (await attempt(client, "other", PASSWORD, "198.51.100.1")).status_code == 200


async def test_the_lock_ends_with_its_window(client, user, settings, redis_client):
    for _ in range(settings.login_max_failures):
        await fail(client)
    assert (await fail(client)).status_code == 429
    for key in redis_client.scan_iter("rl:login:*"):
        assert 0 < redis_client.ttl(key) <= settings.login_window_seconds  # nothing is counted forever
        redis_client.delete(key)  # the window passes
    await login(client, "test")


async def test_attempts_while_locked_do_not_extend_the_lock(client, user, settings, redis_client):
    for _ in range(settings.login_max_failures):
        await fail(client)
    [key] = [k for k in redis_client.scan_iter("rl:login:acct:*")]
    redis_client.expire(key, 7)
    for _ in range(5):
        assert (await fail(client)).status_code == 429
    assert redis_client.ttl(key) <= 7
    assert redis_client.get(key) == str(settings.login_max_failures)


async def test_a_successful_login_clears_the_accounts_failures(client, user, settings):
    for _ in range(settings.login_max_failures - 1):
        await fail(client)
    await login(client, "test")
    for _ in range(settings.login_max_failures - 1):
        assert (await fail(client, address="198.51.100.2")).status_code == 401


@pytest.mark.parametrize("count_valid", [True, False])
async def test_signups_from_one_address_are_limited(client, settings, count_valid):
    for i in range(settings.signup_max_attempts):
        body = {"username": f"user{i}", "email": f"user{i}@example.com", "password": "long enough"}
        if not count_valid:
            body["username"] = "same"  # 409s count too: they probe which names exist
        await client.post("/auth/signup", json=body)
    response = await client.post(
        "/auth/signup", json={"username": "late", "email": "late@example.com", "password": "long enough"}
    )
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


async def test_signup_limits_are_per_address(client, settings):
    for i in range(settings.signup_max_attempts):
        await client.post("/auth/signup", json={"username": f"u{i}", "email": f"u{i}@example.com", "password": "x" * 8})
    response = await client.post(
        "/auth/signup",
        json={"username": "fresh", "email": "fresh@example.com", "password": "long enough"},
        scope_base={"client": ("198.51.100.77", 1)},
    )
    assert response.status_code == 201


# Issue 14: the limits hold under parallel bursts, and even successful logins are limited.


@pytest.fixture
def password_checks(monkeypatch):
    """Counts every bcrypt check the login makes (they run on the hash pool's threads)."""
    import threading

    import app.passwords as passwords

    calls = []
    lock = threading.Lock()
    original = passwords.check_password_sync

    def spy(*args):
        with lock:
            calls.append(args[0])
        return original(*args)

    monkeypatch.setattr(passwords, "check_password_sync", spy)
    return calls


async def test_a_burst_of_100_parallel_guesses_gets_no_more_password_checks_than_the_limit(
    client, user, settings, password_checks
):
    responses = await asyncio.gather(*(fail(client, address="203.0.113.50") for _ in range(100)))
    statuses = sorted(r.status_code for r in responses)
    assert len(password_checks) <= settings.login_max_failures
    assert statuses.count(401) == len(password_checks)
    assert statuses.count(429) == 100 - len(password_checks)
    # The right password from that address is refused too: the guesses used up the window.
    assert (await attempt(client, "test", PASSWORD, "203.0.113.50")).status_code == 429


async def test_parallel_signups_from_one_address_get_no_more_than_the_limit(client, settings):
    bodies = [{"username": f"racer{i}", "email": f"racer{i}@example.com", "password": "long enough"} for i in range(30)]
    responses = await asyncio.gather(*(client.post("/auth/signup", json=body) for body in bodies))
    assert sorted({r.status_code for r in responses}) == [201, 429]
    assert sum(r.status_code == 201 for r in responses) == settings.signup_max_attempts


@pytest.mark.parametrize("known", [False, True])
async def test_even_successful_logins_of_one_account_are_rate_limited(client, user, settings, known):
    if known:  # an address known to the account has its own allowance, limited alike
        assert (await attempt(client, "test", PASSWORD, "192.0.2.44")).status_code == 200

    def address(i: int) -> str:
        return "192.0.2.44" if known else f"198.51.100.{i}"

    statuses = [(await attempt(client, "test", PASSWORD, address(i))).status_code for i in range(30)]
    assert statuses[: settings.login_rate_per_account] == [200] * settings.login_rate_per_account
    assert set(statuses[settings.login_rate_per_account :]) == {429}


async def test_logins_from_one_address_are_rate_limited_across_accounts(client, settings):
    for i in range(settings.login_rate_per_address):
        make_user(f"person{i}")
    statuses = [
        (await attempt(client, f"person{i}", PASSWORD, "192.0.2.45")).status_code
        for i in range(settings.login_rate_per_address)
    ]
    assert statuses == [200] * settings.login_rate_per_address
    make_user("one_more")
    assert (await attempt(client, "one_more", PASSWORD, "192.0.2.45")).status_code == 429
    assert (await attempt(client, "one_more", PASSWORD, "192.0.2.46")).status_code == 200


async def test_someone_elses_guesses_do_not_use_up_a_known_address_allowance(client, user, settings):
    home = "192.0.2.10"
    assert (await attempt(client, "test", PASSWORD, home)).status_code == 200
    for i in range(settings.login_rate_per_account + 2):
        await fail(client, address=f"203.0.113.{100 + i}")  # many addresses, one account
    assert (await attempt(client, "test", PASSWORD, home)).status_code == 200


async def test_signing_up_trusts_the_address_like_a_login_does(client, settings):
    home = "192.0.2.77"
    body = {"username": "newbie", "email": "newbie@example.com", "password": PASSWORD}
    response = await client.post("/auth/signup", json=body, scope_base={"client": (home, 1)})
    assert response.status_code == 201
    for _ in range(settings.login_max_failures):
        await fail(client, "newbie", address="203.0.113.66")
    assert (await fail(client, "newbie", address="203.0.113.66")).status_code == 429
    assert (await attempt(client, "newbie", PASSWORD, home)).status_code == 200

"""The hot reads' short path (`app.fast_reads`): the same answers as Quart's, and Quart for the rest."""

from __future__ import annotations

import pytest
from helpers import error_of, team_cast
from seeding import seed_session
from werkzeug.datastructures import Headers

from app.fast_reads import FastReads
from models import TeamMembership, User

VIEWS = ["", "/timeline", "/replay", "/decisions", "/events"]


@pytest.fixture
def cast(user, shared_team):
    return {"people": team_cast(shared_team, user), "team": shared_team, "session": seed_session(shared_team, user)}


@pytest.fixture
def quart_calls(app, monkeypatch):
    """The paths of the requests `FastReads` handed to Quart, in order."""
    fast = app.asgi_app
    assert isinstance(fast, FastReads), "installed in front of every app"
    calls: list[str] = []
    inner = fast.inner

    async def spy(scope, receive, send):
        calls.append(scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else ""))
        await inner(scope, receive, send)

    monkeypatch.setattr(fast, "inner", spy)
    return calls


async def answer(client, url, headers=None):
    response = await client.get(url, headers=headers)
    return response.status_code, list(response.headers.items()), await response.get_data()


async def quarts_answer(app, client, url, headers=None):
    """The answer of Quart's own path, with `FastReads` out of the way."""
    fast = app.asgi_app
    app.asgi_app = fast.inner
    try:
        return await answer(client, url, headers)
    finally:
        app.asgi_app = fast


def all_reads(cast) -> list[str]:
    return [*(f"/sessions/{cast['session'].id}{view}" for view in VIEWS), f"/teams/{cast['team'].id}/sessions"]


async def test_a_plain_read_skips_quart_and_answers_byte_for_byte_as_quart(app, login_as, cast, quart_calls):
    viewer = await login_as(cast["people"]["viewer"])
    for url in all_reads(cast):
        if url.startswith("/sessions/"):
            await viewer.get(url)  # the first read builds the body, through Quart
        quart_calls.clear()
        fast = await answer(viewer, url)
        assert quart_calls == [], url
        assert fast[0] == 200
        assert fast == await quarts_answer(app, viewer, url), url


@pytest.mark.parametrize("view", VIEWS)
async def test_a_matching_etag_gets_the_same_304_as_from_quart(app, login_as, cast, quart_calls, view):
    viewer = await login_as(cast["people"]["viewer"])
    url = f"/sessions/{cast['session'].id}{view}"
    etag = (await viewer.get(url)).headers["ETag"]
    for sent in (etag, f'W/"nope", {etag}', "*"):
        quart_calls.clear()
        fast = await answer(viewer, url, {"If-None-Match": sent})
        assert quart_calls == []
        assert fast[0] == 304 and fast[2] == b""
        assert fast == await quarts_answer(app, viewer, url, {"If-None-Match": sent})
    assert (await answer(viewer, url, {"If-None-Match": '"other"'}))[0] == 200


async def test_a_change_is_seen_by_the_very_next_read(login_as, cast, quart_calls):
    from models import SessionDecision

    owner = await login_as(cast["people"]["owner"])
    url = f"/sessions/{cast['session'].id}"
    before = await owner.get(url)
    SessionDecision.create(session=cast["session"], user=cast["people"]["owner"], decision_text="Later thought")
    quart_calls.clear()
    after = await owner.get(url)
    assert quart_calls == [url], "a kept body of another version is not answered here"
    assert after.headers["ETag"] != before.headers["ETag"]
    assert "Later thought" in (await after.get_data()).decode()


async def test_refusals_are_quarts_with_its_envelope(app, login_as, cast, quart_calls, redis_client):
    session_url = f"/sessions/{cast['session'].id}"
    outsider = await login_as(cast["people"]["outsider"])
    viewer = await login_as(cast["people"]["viewer"])
    await viewer.get(session_url)  # kept from now on

    for url in all_reads(cast):
        quart_calls.clear()
        response = await outsider.get(url)
        assert response.status_code == 404 and (await error_of(response))["code"] == "not_found"
        assert quart_calls == [url]

        response = await app.test_client().get(url)  # no login cookie
        assert response.status_code == 401 and (await error_of(response))["code"] == "unauthenticated"

    # A member removed: refused at once, the kept body and its ETag notwithstanding.
    TeamMembership.delete().where(TeamMembership.user == cast["people"]["viewer"].id).execute()
    quart_calls.clear()
    response = await viewer.get(session_url)
    assert response.status_code == 404 and quart_calls == [session_url]

    # A login revoked in Redis: 401.
    member = await login_as(cast["people"]["member"])
    await member.get(session_url)
    for key in redis_client.scan_iter("auth:session:*"):
        redis_client.delete(key)
    response = await member.get(session_url)
    assert response.status_code == 401


async def test_a_deleted_account_gets_401_and_loses_its_logins(login_as, cast, quart_calls, redis_client):
    member = await login_as(cast["people"]["member"])
    url = f"/sessions/{cast['session'].id}"
    await member.get(url)
    User.delete().where(User.id == cast["people"]["member"].id).execute()
    quart_calls.clear()
    response = await member.get(url)
    assert response.status_code == 401 and quart_calls == [url]
    assert not redis_client.exists(f"auth:user:{cast['people']['member'].id}")


async def test_anything_not_plain_goes_to_quart(app, login_as, cast, quart_calls):
    viewer = await login_as(cast["people"]["viewer"])
    sid, tid = cast["session"].id, cast["team"].id
    await viewer.get(f"/sessions/{sid}")
    for url in (
        f"/sessions/{sid}?x=1",  # a query string where the view takes none
        f"/sessions/{sid}/events?after=-1",  # queries the view refuses (400)
        f"/sessions/{sid}/events?after=1&after=2",
        f"/teams/{tid}/sessions?limit=0",
        f"/teams/{tid}/sessions?status=paused",
        f"/teams/{tid}/sessions?limit=5%00",
        f"/sessions/0{sid}",  # not the converter's plain form
        f"/sessions/{sid}/",
        f"/sessions/{sid}/export",  # not a kept view
        f"/teams/{tid}",
    ):
        quart_calls.clear()
        await viewer.get(url)
        assert quart_calls == [url], url

    # A Quart session cookie beside the login, or a cookie header sent twice: Quart reads those.
    url = f"/sessions/{sid}"
    login_cookie = "; ".join(f"{c.name}={c.value}" for c in viewer.cookie_jar)
    bare = app.test_client(use_cookies=False)
    quart_calls.clear()
    assert (await bare.get(url, headers={"Cookie": login_cookie})).status_code == 200
    assert quart_calls == []  # the login alone, in one header: answered here
    await bare.get(url, headers={"Cookie": f"{login_cookie}; session=abc"})
    assert quart_calls == [url]
    quart_calls.clear()
    await bare.get(url, headers=Headers([("Cookie", login_cookie), ("Cookie", "other=1")]))
    assert quart_calls == [url]
    # A HEAD or a POST is never answered here.
    quart_calls.clear()
    await viewer.head(url)
    assert quart_calls == [url]


async def test_in_production_a_foreign_host_is_refused_by_quart_and_an_allowed_one_served_here(
    settings, database, redis_client, user, personal_team
):
    from helpers import login

    from app import create_app

    session = seed_session(personal_team, user)
    app = create_app(settings, env="production", allowed_hosts=("sage.example", "localhost"), cookie_secure=False)
    async with app.test_app():
        client = app.test_client()
        await login(client, user.username)
        url = f"/sessions/{session.id}"
        assert (await client.get(url, headers={"Host": "sage.example"})).status_code == 200  # built
        fast = app.asgi_app
        calls: list[str] = []
        inner = fast.inner

        async def spy(scope, receive, send):
            calls.append(dict(scope["headers"]).get(b"host", b"").decode())
            await inner(scope, receive, send)

        fast.inner = spy
        assert (await client.get(url, headers={"Host": "sage.example:443"})).status_code == 200
        assert calls == []
        response = await client.get(url, headers={"Host": "evil.example"})
        assert response.status_code == 400 and (await error_of(response))["fields"] == {"host": "not allowed"}
        assert calls == ["evil.example"]


async def test_the_list_and_event_queries_are_answered_here_as_quart_answers_them(app, login_as, cast, quart_calls):
    from models import ExecutionSession

    owner = await login_as(cast["people"]["owner"])
    team = cast["team"]
    for i in range(4):
        ExecutionSession.create(team=team, user=cast["people"]["owner"], feature_name=f"More {i}", status="error")
    newest = ExecutionSession.select().where(ExecutionSession.team == team).order_by(ExecutionSession.id.desc())
    sid = cast["session"].id
    await owner.get(f"/sessions/{sid}/events?after=2")
    for url in (
        f"/teams/{team.id}/sessions?limit=2",
        f"/teams/{team.id}/sessions?status=error&limit=3",
        f"/teams/{team.id}/sessions?status=completed",
        f"/teams/{team.id}/sessions?before={newest[1].id}&limit=2",
        f"/teams/{team.id}/sessions?limit=2&unknown=x",
        f"/sessions/{sid}/events?after=2",
    ):
        quart_calls.clear()
        fast = await answer(owner, url)
        assert quart_calls == [], url
        assert fast[0] == 200
        assert fast == await quarts_answer(app, owner, url), url
    page = await (await owner.get(f"/teams/{team.id}/sessions?status=error&limit=3")).get_json()
    assert [s["status"] for s in page["sessions"]] == ["error"] * 3 and page["next_before"] is not None

"""The session read views, the decision journal and the event feed, against API.md."""

from __future__ import annotations

import threading

import pytest
from helpers import error_of, spy_statements, team_cast
from seeding import seed_session

from models import ExecutionSession, SessionEvent, Team, User, db
from models.lifecycle import task_descriptions
from models.schema import STAGE_OF_ROLE

READS = ["", "/timeline", "/replay", "/decisions", "/events"]


@pytest.fixture
def cast(user, shared_team):
    """Owner (`user`), member, viewer and outsider around a shared team with one finished session."""
    return {"people": team_cast(shared_team, user), "team": shared_team, "session": seed_session(shared_team, user)}


@pytest.mark.parametrize("who", ["owner", "member", "viewer", "outsider", "anonymous"])
@pytest.mark.parametrize("path", READS)
async def test_every_role_reads_the_session_and_nobody_else_learns_it_exists(app, login_as, cast, who, path):
    client = app.test_client() if who == "anonymous" else await login_as(cast["people"][who])
    response = await client.get(f"/sessions/{cast['session'].id}{path}")
    expected = {"owner": 200, "member": 200, "viewer": 200, "outsider": 404, "anonymous": 401}[who]
    assert response.status_code == expected
    if expected != 200:
        await error_of(response)
    missing = await client.get(f"/sessions/999999{path}")
    assert missing.status_code == (401 if who == "anonymous" else 404)


@pytest.mark.parametrize(
    ("who", "expected"), [("owner", 201), ("member", 201), ("viewer", 403), ("outsider", 404), ("anonymous", 401)]
)
async def test_only_owners_and_members_add_decisions(app, login_as, cast, who, expected):
    client = app.test_client() if who == "anonymous" else await login_as(cast["people"][who])
    session = cast["session"]
    task = session.tasks.first()
    first = await client.post(f"/sessions/{session.id}/decisions", json={"decision_text": "Use Postgres"})
    second = await client.post(f"/tasks/{task.id}/decisions", json={"decision_text": "Cache reads"})
    assert (first.status_code, second.status_code) == (expected, expected)


async def test_a_session_decision_is_stored_journaled_and_announced(login_as, cast):
    owner = await login_as(cast["people"]["owner"])
    session = cast["session"]
    before = (await (await owner.get(f"/sessions/{session.id}/events")).get_json())["events"][-1]["seq"]
    response = await owner.post(
        f"/sessions/{session.id}/decisions",
        json={"decision_text": " Use SQLite ", "category": "technology", "confidence": "medium"},
    )
    assert response.status_code == 201
    decision = (await response.get_json())["decision"]
    assert decision["decision_text"] == "Use SQLite"
    assert (decision["category"], decision["confidence"]) == ("technology", "medium")
    tree = await (await owner.get(f"/sessions/{session.id}/decisions")).get_json()
    assert decision["id"] in [d["id"] for d in tree["session_decisions"]]
    events = (await (await owner.get(f"/sessions/{session.id}/events?after={before}")).get_json())["events"]
    assert [(e["type"], e["seq"]) for e in events] == [("decision_created", before + 1)]
    assert events[0]["decision"]["id"] == decision["id"]


async def test_a_task_decision_records_its_author_and_rationale(login_as, cast):
    member = await login_as(cast["people"]["member"])
    task = cast["session"].tasks.first()
    response = await member.post(
        f"/tasks/{task.id}/decisions",
        json={"decision_text": "Add an index", "rationale": "slow list", "category": "data"},
    )
    assert response.status_code == 201
    decision = (await response.get_json())["decision"]
    assert decision["source"] == "user" and decision["user_id"] == cast["people"]["member"].id
    assert decision["rationale"] == "slow list" and decision["task_id"] == task.id
    detail = await (await member.get(f"/sessions/{cast['session'].id}")).get_json()
    task_json = next(t for t in detail["tasks"] if t["id"] == task.id)
    assert "Add an index" in [d["decision_text"] for d in task_json["decisions"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "decision_text"),
        ({"decision_text": "   "}, "decision_text"),
        ({"decision_text": 5}, "decision_text"),
        ({"decision_text": "x", "category": "vibes"}, "category"),
        ({"decision_text": "x", "confidence": "certain"}, "confidence"),
    ],
)
async def test_bad_decisions_are_refused_and_change_nothing(login_as, cast, body, field):
    owner = await login_as(cast["people"]["owner"])
    session = cast["session"]
    events_before = SessionEvent.select().count()
    response = await owner.post(f"/sessions/{session.id}/decisions", json=body)
    assert response.status_code == 400
    error = await error_of(response)
    assert error["code"] == "validation_error" and field in error["fields"]
    assert SessionEvent.select().count() == events_before
    assert session.decisions.count() == 1


async def test_the_detail_view_has_the_api_shapes(login_as, cast):
    owner = await login_as(cast["people"]["owner"])
    body = await (await owner.get(f"/sessions/{cast['session'].id}")).get_json()
    assert set(body) == {"session", "decisions", "tasks", "reruns"}
    assert body["reruns"] == []
    assert {"id", "team_id", "user_id", "feature_name", "status", "started_at", "ended_at", "duration_seconds"} <= set(
        body["session"]
    )
    assert [t["agent_role"] for t in body["tasks"]] == [
        "architect",
        "backend_dev",
        "dba",
        "frontend_dev",
        "ui_ux",
        "security",
        "it_admin",
    ]
    task = body["tasks"][0]
    assert {
        "id",
        "session_id",
        "agent_role",
        "task_description",
        "status",
        "input_data",
        "output_data",
        "started_at",
        "completed_at",
        "duration_seconds",
        "error_message",
        "retry_count",
        "decisions",
    } <= set(task)
    assert task["started_at"].endswith("Z")


async def test_the_timeline_orders_by_start_then_pipeline_and_carries_snapshots(login_as, cast):
    owner = await login_as(cast["people"]["owner"])
    timeline = (await (await owner.get(f"/sessions/{cast['session'].id}/timeline")).get_json())["timeline"]
    starts = [t["started_at"] for t in timeline]
    assert starts == sorted(starts)
    assert all(t["snapshot"]["agent_role"] == t["agent_role"] for t in timeline)


async def test_the_decision_tree_shows_the_upstream_decisions_each_agent_used(login_as, cast):
    owner = await login_as(cast["people"]["owner"])
    tree = await (await owner.get(f"/sessions/{cast['session'].id}/decisions")).get_json()
    architect, backend = tree["tasks"][0], tree["tasks"][1]
    assert architect["upstream"] == []
    used = {u["decision"]["id"] for u in backend["upstream"]}
    assert used == {d["id"] for d in architect["decisions"]}


async def test_the_replay_holds_the_whole_log_and_final_state(login_as, cast):
    owner = await login_as(cast["people"]["owner"])
    replay = await (await owner.get(f"/sessions/{cast['session'].id}/replay")).get_json()
    assert set(replay) == {"session", "events", "tasks", "decisions"}
    seqs = [e["seq"] for e in replay["events"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert replay["events"][-1]["type"] == "session_completed"
    assert len(replay["tasks"]) == 7 and all(t["snapshot"] for t in replay["tasks"])


async def test_the_event_feed_resumes_after_a_seq(login_as, cast):
    owner = await login_as(cast["people"]["owner"])
    sid = cast["session"].id
    every = (await (await owner.get(f"/sessions/{sid}/events")).get_json())["events"]
    rest = (await (await owner.get(f"/sessions/{sid}/events?after=5")).get_json())["events"]
    assert rest == every[5:]
    bad = await owner.get(f"/sessions/{sid}/events?after=-1")
    assert bad.status_code == 400 and "after" in (await error_of(bad))["fields"]


async def test_team_sessions_are_listed_newest_first_with_a_keyset_cursor(login_as, cast):
    team, owner_user = cast["team"], cast["people"]["owner"]
    for n in range(4):
        seed_session(team, owner_user, roles=["architect"], feature=f"F{n}")
    ExecutionSession.create(team=team, user=owner_user, feature_name="running")
    owner = await login_as(owner_user)
    first = await (await owner.get(f"/teams/{team.id}/sessions?limit=2")).get_json()
    ids = [s["id"] for s in first["sessions"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2 and first["next_before"] == ids[-1]
    # How far each got: the running one has no agent done, a seeded one its architect.
    assert [s["agents_done"] for s in first["sessions"]] == [0, 1]
    seen = list(ids)
    cursor = first["next_before"]
    while cursor is not None:
        page = await (await owner.get(f"/teams/{team.id}/sessions?limit=2&before={cursor}")).get_json()
        seen += [s["id"] for s in page["sessions"]]
        cursor = page["next_before"]
    assert seen == sorted((s.id for s in ExecutionSession.select()), reverse=True)
    active = await (await owner.get(f"/teams/{team.id}/sessions?status=active")).get_json()
    assert [s["feature_name"] for s in active["sessions"]] == ["running"]


@pytest.mark.parametrize("query", ["status=running", "limit=0", "limit=201", "before=abc", "limit=x"])
async def test_bad_list_queries_are_refused(login_as, cast, query):
    owner = await login_as(cast["people"]["owner"])
    response = await owner.get(f"/teams/{cast['team'].id}/sessions?{query}")
    assert response.status_code == 400
    assert (await error_of(response))["code"] == "validation_error"


async def test_a_personal_team_sessions_are_hidden_from_everyone_else(login_as, user, other_user):
    team = Team.create(name="Mine", owner=user)
    session = seed_session(team, user, roles=["architect"])
    other = await login_as(other_user)
    assert (await other.get(f"/teams/{team.id}/sessions")).status_code == 404
    assert (await other.get(f"/sessions/{session.id}")).status_code == 404


class QueryCounter:
    """Counts SQL statements run by any thread while active."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        self.lock = threading.Lock()
        database_class = type(db.obj)
        original = database_class.execute_sql

        def counting(database, sql, params=None, *args, **kwargs):
            with self.lock:
                self.count += 1
            return original(database, sql, params, *args, **kwargs)

        monkeypatch.setattr(database_class, "execute_sql", counting)

    def reset(self) -> None:
        with self.lock:
            self.count = 0


@pytest.mark.parametrize("path", READS)
async def test_reads_run_the_same_number_of_queries_whatever_the_session_size(login_as, cast, monkeypatch, path):
    team, owner_user = cast["team"], cast["people"]["owner"]
    small = seed_session(team, owner_user, roles=["architect"])
    big = seed_session(team, owner_user, extra_events=70 - 16)
    assert big.events.count() >= 70 and big.tasks.count() == 7
    owner = await login_as(owner_user)
    counter = QueryCounter(monkeypatch)
    counts = []
    for session in (small, big):
        counter.reset()
        response = await owner.get(f"/sessions/{session.id}{path}")
        assert response.status_code == 200
        counts.append(counter.count)
    assert counts[0] == counts[1]
    assert counts[0] <= 10


@pytest.mark.parametrize(
    ("who", "expected"), [("viewer", 403), ("outsider", 404), ("anonymous", 401), ("member", 202), ("owner", 202)]
)
async def test_only_owners_and_members_start_sessions(app, login_as, cast, who, expected):
    client = app.test_client() if who == "anonymous" else await login_as(cast["people"][who])
    before = ExecutionSession.select().count()
    response = await client.post("/sessions", json={"team_id": cast["team"].id, "feature_name": "Chat"})
    assert response.status_code == expected
    if expected == 202:
        body = await response.get_json()
        session = ExecutionSession.get_by_id(body["session_id"])
        assert body == {"session_id": session.id, "status": "active"}
        assert session.tasks.count() == 7 and session.celery_chain_id
        assert [e.type for e in session.events] == ["session_started"]
    else:
        await error_of(response)
        assert ExecutionSession.select().count() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"feature_name": "x"}, "team_id"),
        ({"team_id": "1", "feature_name": "x"}, "team_id"),
        ({"team_id": 1}, "feature_name"),
        ({"team_id": 1, "feature_name": "  "}, "feature_name"),
        ({"team_id": 1, "feature_name": "x" * 256}, "feature_name"),
        ({"team_id": 1, "feature_name": "x", "description": 7}, "description"),
    ],
)
async def test_bad_session_starts_are_refused_and_create_nothing(login_as, cast, body, field):
    owner = await login_as(cast["people"]["owner"])
    before = ExecutionSession.select().count()
    response = await owner.post("/sessions", json=body)
    assert response.status_code == 400
    assert field in (await error_of(response))["fields"]
    assert ExecutionSession.select().count() == before


async def test_a_session_whose_pipeline_cannot_be_queued_fails_at_once_instead_of_hanging(login_as, cast, settings):
    from actors.broker import redis_broker, use_broker
    from actors.config import set_settings

    owner = await login_as(cast["people"]["owner"])
    dead = redis_broker(settings.with_overrides(redis_url="redis://127.0.0.1:6399/0"))
    previous = use_broker(dead)
    try:
        response = await owner.post("/sessions", json={"team_id": cast["team"].id, "feature_name": "Chat"})
    finally:
        use_broker(previous)
        dead.close()
        set_settings(None)
    assert response.status_code == 503
    assert (await error_of(response))["code"] == "unavailable"
    session = ExecutionSession.select().order_by(ExecutionSession.id.desc()).first()
    assert session.feature_name == "Chat" and session.status == "error"
    assert "queue" in session.error_message
    assert [e.type for e in session.events.order_by(SessionEvent.seq)] == ["session_started", "session_error"]


async def test_starting_a_session_is_one_access_query_and_one_write_statement(login_as, cast, monkeypatch):
    """POST /sessions (issue 13): the access query also checks the account; the session, its seven
    tasks and `session_started` are one statement that also returns the transaction id (so the
    COMMIT asks for nothing), and the chain is sent under the id stored with the row."""
    from actors.celery_compat import canvas

    owner = await login_as(cast["people"]["owner"])
    await owner.post("/sessions", json={"team_id": cast["team"].id, "feature_name": "Warm"})
    sent: list[str] = []
    apply_async = canvas.chain.apply_async

    def sending(self, *args, **kwargs):
        result = apply_async(self, *args, **kwargs)
        sent.append(result.id)
        return result

    statements = spy_statements(monkeypatch)
    monkeypatch.setattr(canvas.chain, "apply_async", sending)
    response = await owner.post(
        "/sessions", json={"team_id": cast["team"].id, "feature_name": "Chat", "description": "d"}
    )
    monkeypatch.undo()
    assert response.status_code == 202
    writes = [s for s in statements if s.strip().upper() not in {"SELECT 1", "COMMIT"}]
    assert len(writes) == 2, statements
    assert writes[0].startswith("PREPARED ") and "account_exists" in writes[0] and "txid_current()" in writes[1]
    assert not any("txid_current_if_assigned" in s for s in statements)
    session = ExecutionSession.get_by_id((await response.get_json())["session_id"])
    assert sent == [session.celery_chain_id]
    assert (session.last_seq, session.status, session.current_stage, session.description) == (1, "active", 0, "d")
    tasks = {t.agent_role: t for t in session.tasks}
    assert {r: (t.stage, t.status, t.task_description) for r, t in tasks.items()} == {
        role: (STAGE_OF_ROLE[role], "pending", text) for role, text in task_descriptions("Chat").items()
    }
    [event] = session.events
    assert (event.seq, event.type) == (1, "session_started")
    detail = await (await owner.get(f"/sessions/{session.id}")).get_json()
    stored = {k: v for k, v in detail["session"].items() if k in event.payload["session"]}
    assert event.payload["session"] == stored and event.payload["session"]["id"] == session.id
    feed = await (await owner.get(f"/sessions/{session.id}/events")).get_json()
    assert feed["events"][0]["session"]["id"] == session.id


async def test_a_deleted_accounts_cookie_starts_nothing(login_as, cast):
    member = cast["people"]["member"]
    client = await login_as(member)
    before = ExecutionSession.select().count()
    User.delete().where(User.id == member.id).execute()  # not through DELETE /auth/me
    response = await client.post("/sessions", json={"team_id": cast["team"].id, "feature_name": "Chat"})
    assert response.status_code == 401
    assert (await error_of(response))["code"] == "unauthenticated"
    assert ExecutionSession.select().count() == before

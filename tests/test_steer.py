"""Steer and compare: rerun from any agent with changed decisions, compare two runs, search."""

from __future__ import annotations

import pytest
from helpers import error_of, team_cast
from seeding import seed_session

from actors import pipeline
from models import AgentTask, ExecutionSession, SessionDecision, Team
from models.compare import diff_values
from models.search import snippet_for

SQLITE = "Use SQLite: this runs on one laptop"


def finished(session_id: int):
    def check():
        session = ExecutionSession.get_by_id(session_id)
        return session if session.status != "active" else None

    return check


def run(team, user, wait, decisions=(), feature="Team chat"):
    session = pipeline.create_session(team.id, user.id, feature, "real-time messaging")
    for text in decisions:
        SessionDecision.create(session=session, user=user, decision_text=text, category="technology")
    pipeline.start_session(session.id)
    return wait(finished(session.id))


@pytest.fixture
def cast(user, shared_team):
    return team_cast(shared_team, user)


# --- rerun ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "expected"), [("owner", 202), ("member", 202), ("viewer", 403), ("outsider", 404), ("anonymous", 401)]
)
async def test_owners_and_members_rerun_viewers_may_not_and_outsiders_never_see_it(
    app, login_as, cast, shared_team, user, stub_worker, wait, who, expected
):
    original = run(shared_team, user, wait)
    client = app.test_client() if who == "anonymous" else await login_as(cast[who])
    response = await client.post(f"/sessions/{original.id}/rerun", json={})
    assert response.status_code == expected
    if expected != 202:
        await error_of(response)
        assert ExecutionSession.select().count() == 1
        return
    body = await response.get_json()
    assert body["status"] == "active" and body["warnings"] == []
    rerun = wait(finished(body["session_id"]))
    assert rerun.rerun_of_id == original.id and rerun.status == "completed"
    # The original's detail lists its reruns (the session page's lineage).
    reruns = (await (await client.get(f"/sessions/{original.id}")).get_json())["reruns"]
    assert reruns == [
        {"id": rerun.id, "feature_name": "Team chat", "status": "completed", "started_at": reruns[0]["started_at"]}
    ]
    assert reruns[0]["started_at"]


async def test_a_rerun_from_dba_with_sqlite_copies_earlier_stages_warns_and_compares_by_cause(
    app, login_as, personal_team, user, stub_worker, wait
):
    original = run(personal_team, user, wait, decisions=["Keep it simple"])
    client = await login_as(user)
    response = await client.post(
        f"/sessions/{original.id}/rerun",
        json={"from_role": "dba", "decisions": [{"decision_text": SQLITE, "category": "technology"}]},
    )
    assert response.status_code == 202
    body = await response.get_json()
    assert len(body["warnings"]) == 1 and body["warnings"][0].startswith("architect is copied")
    rerun = wait(finished(body["session_id"]))
    assert rerun.status == "completed"
    assert [d.decision_text for d in SessionDecision.select().where(SessionDecision.session == rerun.id)] == [SQLITE]
    old, new = (
        {t.agent_role: t for t in AgentTask.select().where(AgentTask.session == s.id)} for s in (original, rerun)
    )
    assert new["architect"].rerun_of_id == old["architect"].id and new["architect"].output_data["summary"]
    assert new["dba"].output_data["artifacts"]["engine"] == "sqlite"

    compared = await (await client.get(f"/sessions/{original.id}/compare/{rerun.id}")).get_json()
    assert compared["a"]["id"] == original.id and compared["b"]["id"] == rerun.id
    changes = compared["session_decisions"]
    assert [c["after"]["decision_text"] for c in changes["changed"]] == [SQLITE]
    agents = {a["agent_role"]: a for a in compared["agents"]}
    assert agents["architect"]["decisions"] == {"added": [], "removed": [], "changed": []}
    assert agents["architect"]["artifacts"] == [] and agents["architect"]["caused_by"] == []
    assert {"path": "/engine", "change": "changed", "before": "postgresql", "after": "sqlite"} in agents["dba"][
        "artifacts"
    ]
    dba_changed = {c["key"] for c in agents["dba"]["decisions"]["changed"]} | {
        d["key"] for d in agents["dba"]["decisions"]["added"]
    }
    dba_causes = {c["key"]: c["via"] for c in agents["dba"]["caused_by"]}
    assert dba_changed and set(dba_causes) <= dba_changed
    assert any(via[-1].startswith("session_decision:") for via in dba_causes.values())
    # Downstream agents' decisions that cite a changed dba decision are effects through it.
    downstream = [
        c
        for role in ("frontend_dev", "ui_ux", "security", "it_admin")
        for c in agents[role]["caused_by"]
        if len(c["via"]) > 1
    ]
    assert any(c["via"][0] in dba_causes for c in downstream)
    assert agents["dba"]["status"] == ["completed", "completed"]


async def test_a_rerun_with_empty_decisions_runs_with_none_and_bad_input_changes_nothing(
    app, login_as, personal_team, user, stub_worker, wait
):
    original = run(personal_team, user, wait, decisions=[SQLITE])
    client = await login_as(user)
    for body, field in (
        ({"from_role": "ceo"}, "from_role"),
        ({"decisions": [{"decision_text": "  "}]}, "decisions"),
        ({"decisions": [{"decision_text": "x", "confidence": "sure"}]}, "decisions"),
        ({"brain": "no-such-brain"}, "brain"),
    ):
        response = await client.post(f"/sessions/{original.id}/rerun", json=body)
        assert response.status_code == 400, body
        assert any(key.startswith(field) for key in (await error_of(response))["fields"]), body
    assert ExecutionSession.select().count() == 1
    response = await client.post(f"/sessions/{original.id}/rerun", json={"decisions": []})
    rerun = wait(finished((await response.get_json())["session_id"]))
    assert SessionDecision.select().where(SessionDecision.session == rerun.id).count() == 0
    assert (
        AgentTask.get((AgentTask.session == rerun.id) & (AgentTask.agent_role == "dba")).output_data["artifacts"][
            "engine"
        ]
        == "postgresql"
    )


async def test_compare_needs_both_sessions_readable(app, login_as, cast, shared_team, user, other_user):
    mine = seed_session(shared_team, user, "Mine")
    theirs = seed_session(Team.create(name="Theirs", owner=other_user), other_user, "Theirs")
    client = await login_as(cast["viewer"])
    assert (await client.get(f"/sessions/{mine.id}/compare/{mine.id}")).status_code == 200
    for path in (f"/sessions/{mine.id}/compare/{theirs.id}", f"/sessions/{theirs.id}/compare/{mine.id}"):
        response = await client.get(path)
        assert response.status_code == 404
        await error_of(response)


def test_artifacts_are_compared_by_pointer_path_with_named_items_matched_by_name():
    before = {"tables": [{"name": "users", "cols": 3}, {"name": "orders", "cols": 5}], "engine": "postgresql"}
    after = {"tables": [{"name": "orders", "cols": 6}, {"name": "cards", "cols": 2}], "engine": "postgresql"}
    assert diff_values(before, after) == [
        {"path": "/tables/0", "change": "removed", "before": {"name": "users", "cols": 3}, "after": None},
        {"path": "/tables/0/cols", "change": "changed", "before": 5, "after": 6},
        {"path": "/tables/1", "change": "added", "before": None, "after": {"name": "cards", "cols": 2}},
    ]
    assert diff_values({"a/b": 1}, {"a/b": 2}) == [{"path": "/a~1b", "change": "changed", "before": 1, "after": 2}]


# --- search ---------------------------------------------------------------------------------


async def test_search_tolerates_typos_and_ranks_highlighted_plain_text_results(
    app, login_as, personal_team, user, stub_worker, wait
):
    run(personal_team, user, wait, decisions=[SQLITE], feature="Offline notes")
    run(personal_team, user, wait, feature="Invoice export")
    client = await login_as(user)

    sqlite = (await (await client.get("/search?q=sqlte")).get_json())["results"]
    assert sqlite and sqlite[0]["kind"] in {"session_decision", "agent_decision"}
    assert [r["rank"] for r in sqlite] == sorted((r["rank"] for r in sqlite), reverse=True)
    for result in sqlite:
        assert all(result["snippet"][a:b].lower().startswith("sql") for a, b in result["highlights"])
    assert {"session_decision", "agent_decision"} <= {r["kind"] for r in sqlite}
    assert any(r["agent_role"] == "dba" and r["decision_id"] for r in sqlite)

    postgres = (await (await client.get("/search?q=postgress&role=dba")).get_json())["results"]
    assert postgres and all(r["kind"] == "agent_decision" and r["agent_role"] == "dba" for r in postgres)
    assert any("postgres" in r["snippet"].lower() for r in postgres)

    features = (await (await client.get("/search?q=invoce")).get_json())["results"]
    assert features[0]["kind"] == "feature" and features[0]["snippet"].startswith("Invoice export")

    technology = (await (await client.get("/search?q=sqlte&category=technology")).get_json())["results"]
    assert technology and all(r["kind"] != "feature" for r in technology)
    future = (await (await client.get("/search?q=sqlte&since=2999-01-01")).get_json())["results"]
    assert future == []
    limited = (await (await client.get("/search?q=sqlte&limit=1")).get_json())["results"]
    assert len(limited) == 1


async def test_snippets_are_plain_text_as_stored_never_html(app, login_as, personal_team, user):
    session = seed_session(personal_team, user, "Markup")
    SessionDecision.create(session=session, user=user, decision_text='Escape alert text: 5 < 6 & "quotes"')
    client = await login_as(user)
    uncategorized = (await (await client.get("/search?q=alert&category=design")).get_json())["results"]
    results = (await (await client.get("/search?q=escape%20alert")).get_json())["results"]
    assert results[0]["snippet"] == 'Escape alert text: 5 < 6 & "quotes"'
    assert [results[0]["snippet"][a:b] for a, b in results[0]["highlights"]] == ["Escape", "alert"]
    assert uncategorized == []  # the decision has no category, so a category filter leaves it out


async def test_search_never_shows_a_team_the_caller_cannot_read(app, login_as, personal_team, user, other_user):
    seed_session(personal_team, user, "Quantum payroll")
    theirs = Team.create(name="Theirs", owner=other_user)
    seed_session(theirs, other_user, "Quantum payroll for them")
    client = await login_as(other_user)
    results = (await (await client.get("/search?q=quantum")).get_json())["results"]
    assert results and {r["team_id"] for r in results} == {theirs.id}
    response = await client.get(f"/search?q=quantum&team_id={personal_team.id}")
    assert response.status_code == 404
    await error_of(response)


@pytest.mark.parametrize(
    ("query", "field"),
    [("", "q"), ("q=", "q"), ("q=%20%20", "q"), ("q=a&limit=0", "limit"), ("q=a&limit=101", "limit"),
     ("q=a&since=yesterday", "since"), ("q=a&role=ceo", "role"), ("q=a&team_id=x", "team_id")],
)  # fmt: skip
async def test_bad_searches_are_400_with_the_field(app, login_as, user, query, field):
    client = await login_as(user)
    response = await client.get(f"/search?{query}")
    assert response.status_code == 400
    assert field in (await error_of(response))["fields"]


def test_snippets_are_windows_with_offsets_of_the_words_that_matched():
    text = "x " * 200 + "We chose SQLite because it runs on one laptop."
    snippet, highlights = snippet_for(text, "sqlte laptops")
    assert snippet.startswith("…") and len(snippet) <= 182
    assert [snippet[a:b] for a, b in highlights] == ["SQLite", "laptop"]


def test_triggers_keep_a_document_per_searchable_row_and_its_words(personal_team, user):
    from models.schema import SearchDocument, SearchWord

    session = seed_session(personal_team, user, "Ledger export")
    decision = SessionDecision.create(session=session, user=user, decision_text="Use Parquet files", category="data")
    docs = {(d.kind, d.decision_id): d for d in SearchDocument.select().where(SearchDocument.session == session.id)}
    assert docs[("feature", None)].title == "Ledger export"
    assert docs[("session_decision", decision.id)].category == "data"
    # Scope lexemes put the team and the filters into the GIN lookup itself.
    assert {f"'t:{personal_team.id}'", "'k:session_decision'", "'c:data'"} <= set(
        docs[("session_decision", decision.id)].tsv.split()
    )
    assert sum(1 for kind, _ in docs if kind == "agent_decision") == 14  # seed_session's two per role
    assert {"parquet", "ledger"} <= {w.word for w in SearchWord.select()}

    SessionDecision.update(decision_text="Use Avro files").where(SessionDecision.id == decision.id).execute()
    [doc] = SearchDocument.select().where(
        (SearchDocument.kind == "session_decision") & (SearchDocument.decision_id == decision.id)
    )
    assert doc.title == "Use Avro files" and "avro" in {w.word for w in SearchWord.select()}
    ExecutionSession.update(current_stage=2).where(ExecutionSession.id == session.id).execute()  # no text change
    assert SearchDocument.select().where(SearchDocument.session == session.id).count() == len(docs)
    ExecutionSession.delete().where(ExecutionSession.id == session.id).execute()
    assert SearchDocument.select().count() == 0


def test_search_finds_old_matches_beyond_the_newest_documents_and_ranks_them(personal_team, user, monkeypatch):
    from models import search as search_module

    old = seed_session(personal_team, user, "Quarterly ledger")
    for i in range(5):
        seed_session(personal_team, user, f"Other feature {i}")
    monkeypatch.setattr(search_module, "RECENT_DOCUMENTS", 10)  # the ledger is now among the older ones
    results = search_module.search("ledgr", search_module.Filters((personal_team.id,)))
    assert ("feature", old.id) in [(r["kind"], r["session_id"]) for r in results]
    assert {r["session_id"] for r in results} == {old.id}
    monkeypatch.setattr(search_module, "CANDIDATES", 3)
    capped = search_module.search("feature", search_module.Filters((personal_team.id,)))
    assert 0 < len(capped) <= 3

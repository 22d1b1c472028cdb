"""The design pack download and the honest end of a session (`ended_by`, `end_reason`)."""

from __future__ import annotations

import json

import pytest
from helpers import error_of, team_cast
from seeding import seed_session

from actors import pipeline
from models import ExecutionSession, User
from models.design_pack import ddl, filename

ROLE_HEADINGS = [
    "### Architect",
    "### Backend developer",
    "### DBA",
    "### Frontend developer",
    "### UI/UX designer",
    "### Security engineer",
    "### IT admin",
]


@pytest.fixture
def cast(user, shared_team):
    people = team_cast(shared_team, user)
    return {"people": people, "session": seed_session(shared_team, user, "Team chat: files & search", with_work=True)}


@pytest.mark.parametrize(
    ("who", "expected"), [("owner", 200), ("member", 200), ("viewer", 200), ("outsider", 404), ("anonymous", 401)]
)
async def test_anyone_who_may_read_the_session_may_export_it(app, login_as, cast, who, expected):
    client = app.test_client() if who == "anonymous" else await login_as(cast["people"][who])
    response = await client.get(f"/sessions/{cast['session'].id}/export")
    assert response.status_code == expected
    if expected != 200:
        await error_of(response)


async def test_the_markdown_pack_is_an_attachment_named_from_the_feature_with_every_deliverable(login_as, cast):
    viewer = await login_as(cast["people"]["viewer"])
    response = await viewer.get(f"/sessions/{cast['session'].id}/export?format=markdown")
    assert response.status_code == 200
    assert response.mimetype == "text/markdown"
    assert response.headers["Content-Disposition"] == 'attachment; filename="team-chat-files-search-design-pack.md"'
    text = await response.get_data(as_text=True)
    assert text.startswith("# Team chat: files & search\n")
    positions = [text.index(heading) for heading in ROLE_HEADINGS]
    assert positions == sorted(positions)
    assert "| Method | Path | Purpose | Who may call it |" in text
    assert "```sql\nCREATE TABLE users (" in text
    assert "| Threat | Asset | Severity | Mitigation | Decision |" in text
    assert "- [ ] every form input has a programmatic label" in text
    assert "## Session decisions" in text and "Keep it simple" in text
    # Every decision is anchored, with its rationale, and links to what it was built on.
    assert '<a id="decision-' in text and "Why: because" in text
    assert "Built on: [Architect: architect decides on" in text


async def test_the_json_pack_adds_tasks_snapshots_and_events(login_as, cast):
    owner = await login_as(cast["people"]["owner"])
    response = await owner.get(f"/sessions/{cast['session'].id}/export?format=json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].endswith('filename="team-chat-files-search-design-pack.json"')
    pack = json.loads(await response.get_data(as_text=True))
    assert pack["session"]["id"] == cast["session"].id
    assert len(pack["tasks"]) == 7 and all(t["snapshot"] for t in pack["tasks"])
    assert [e["seq"] for e in pack["events"]] == list(range(1, len(pack["events"]) + 1))
    assert pack["deliverables"]["backend_dev"]["artifacts"]["endpoints"]
    assert len(pack["decisions"]) == 14 and pack["decisions"][2]["built_on"][0]["agent_role"] == "architect"
    assert pack["session_decisions"][0]["decision_text"] == "Keep it simple"


@pytest.mark.parametrize("query", ["format=pdf", "format=", "format=JSON"])
async def test_an_unknown_export_format_is_refused(login_as, cast, query):
    owner = await login_as(cast["people"]["owner"])
    response = await owner.get(f"/sessions/{cast['session'].id}/export?{query}")
    assert response.status_code == 400
    error = await error_of(response)
    assert error["code"] == "validation_error" and "format" in error["fields"]


def test_a_feature_without_ascii_letters_still_names_its_file():
    assert filename("日本語", "md") == "session-design-pack.md"
    assert filename("Crème brûlée / v2", "json") == "creme-brulee-v2-design-pack.json"


def test_the_ddl_has_keys_references_and_indexes():
    sql = ddl(
        {
            "tables": [
                {
                    "name": "notes",
                    "columns": [
                        {"name": "id", "type": "BIGINT", "key": "primary"},
                        {"name": "owner_id", "type": "BIGINT", "key": "foreign -> users.id", "null": False},
                    ],
                }
            ],
            "indexes": [{"table": "notes", "columns": ["owner_id"], "unique": True, "why": "one each"}],
        }
    )
    assert "id BIGINT PRIMARY KEY" in sql
    assert "owner_id BIGINT REFERENCES users (id) NOT NULL" in sql
    assert "CREATE UNIQUE INDEX idx_notes_owner_id ON notes (owner_id);  -- one each" in sql


async def test_ending_a_session_records_who_ended_it_and_why(login_as, cast, personal_team, stub_broker):
    member = cast["people"]["member"]
    session = pipeline.create_session(cast["session"].team_id, member.id, "Audit log")
    client = await login_as(member)
    active = (await (await client.get(f"/sessions/{session.id}")).get_json())["session"]
    assert (active["ended_by"], active["end_reason"]) == (None, None)

    response = await client.post(f"/sessions/{session.id}/end")
    assert response.status_code == 200
    ended = (await response.get_json())["session"]
    assert (ended["status"], ended["end_reason"], ended["ended_by"]) == ("completed", "user", member.id)
    listed = (await (await client.get(f"/teams/{session.team_id}/sessions")).get_json())["sessions"]
    assert next(s for s in listed if s["id"] == session.id)["end_reason"] == "user"
    text = await (await client.get(f"/sessions/{session.id}/export")).get_data(as_text=True)
    assert "Status: ended early by member at" in text and "(0 of 7 agents done)" in text

    # Deleting the account that ended it keeps the session, now ended by "a former member".
    User.delete_by_id(member.id)
    kept = ExecutionSession.get_by_id(session.id)
    assert (kept.end_reason, kept.ended_by_id) == ("user", None)


async def test_a_session_that_ran_to_the_end_or_failed_says_so(login_as, cast, stub_broker):
    owner = await login_as(cast["people"]["owner"])
    finished = (await (await owner.get(f"/sessions/{cast['session'].id}")).get_json())["session"]
    assert (finished["end_reason"], finished["ended_by"]) == ("completed", None)
    failing = pipeline.create_session(cast["session"].team_id, cast["people"]["owner"].id, "Payments")
    assert pipeline.fail_session(failing.id, "queue down")
    failed = (await (await owner.get(f"/sessions/{failing.id}")).get_json())["session"]
    assert (failed["status"], failed["end_reason"], failed["ended_by"]) == ("error", "error", None)

"""The search results page and the compare page: server-rendered, escaped, access-checked."""

from __future__ import annotations

from helpers import team_cast
from seeding import seed_session

from actors import pipeline
from app.steer_pages import segments
from models import ExecutionSession, SessionDecision, Team


async def test_the_search_page_marks_the_matched_words_escapes_text_and_links_to_the_decision(
    app, login_as, personal_team, user
):
    session = seed_session(personal_team, user, "Offline notes")
    decision = SessionDecision.create(
        session=session, user=user, decision_text="Use SQLite <b>offline</b>", category="technology"
    )
    client = await login_as(user)
    page = await client.get("/dashboard/search?q=sqlte")
    html = await page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<mark>SQLite</mark>" in html and "&lt;b&gt;offline&lt;/b&gt;" in html and "<b>offline" not in html
    # Session decisions have their own anchors on the session page (task decision ids may collide).
    assert f'/dashboard/sessions/{session.id}#session-decision-{decision.id}"' in html
    assert "1 result for" in html or "results for" in html


async def test_the_search_page_says_which_filter_is_wrong_in_words(app, login_as, user, other_user):
    theirs = Team.create(name="Theirs", owner=other_user)
    client = await login_as(user)
    html = await (await client.get(f"/dashboard/search?q=x&team_id={theirs.id}&since=soon&role=ceo")).get_data(
        as_text=True
    )
    assert "Choose one of your teams." in html and "Give a date as YYYY-MM-DD." in html
    assert "Choose one of the seven agents." in html and "result" not in html.split("Search decisions", 2)[-1]


async def test_the_compare_page_shows_causes_and_marks_downstream_effects(
    app, login_as, personal_team, user, stub_worker, wait
):
    original = pipeline.create_session(personal_team.id, user.id, "Team chat", "real-time messaging")
    SessionDecision.create(session=original, user=user, decision_text="Keep it simple", category="technology")
    pipeline.start_session(original.id)
    wait(lambda: ExecutionSession.get_by_id(original.id).status == "completed")
    client = await login_as(user)
    response = await client.post(
        f"/sessions/{original.id}/rerun",
        json={"from_role": "dba", "decisions": [{"decision_text": "Use SQLite for storage", "category": "technology"}]},
    )
    rerun_id = (await response.get_json())["session_id"]
    wait(lambda: ExecutionSession.get_by_id(rerun_id).status == "completed")

    html = await (await client.get(f"/dashboard/compare?a={original.id}&b={rerun_id}")).get_data(as_text=True)
    assert "<del>Keep it simple</del> → <ins>Use SQLite for storage</ins>" in html
    assert "change--effect" in html and "Effect of: " in html and "Use SQLite for storage" in html
    assert f"(a rerun of {original.id})" in html
    architect = html.split('id="agent-architect"', 1)[1].split("</section>", 1)[0]
    assert "no decision changes" in architect


async def test_the_compare_page_is_a_404_for_a_session_the_caller_cannot_read(
    app, login_as, shared_team, user, other_user
):
    cast = team_cast(shared_team, user)
    mine = seed_session(shared_team, user, "Mine")
    theirs = seed_session(Team.create(name="Theirs", owner=other_user), other_user, "Theirs")
    client = await login_as(cast["viewer"])
    assert (await client.get(f"/dashboard/compare?a={mine.id}&b={mine.id}")).status_code == 200
    assert (await client.get(f"/dashboard/compare?a={mine.id}&b={theirs.id}")).status_code == 404
    assert (await client.get(f"/dashboard/compare?a={mine.id}&b=x")).status_code == 404
    logged_out = await app.test_client().get(f"/dashboard/compare?a={mine.id}&b={mine.id}")
    assert logged_out.status_code == 302 and logged_out.headers["Location"].startswith("/login")


def test_segments_cut_a_snippet_into_marked_and_plain_pieces():
    assert segments("Use SQLite now", [[4, 10]]) == [("Use ", False), ("SQLite", True), (" now", False)]
    assert segments("ab", []) == [("ab", False)]


async def test_the_session_page_shows_its_lineage_and_offers_the_rerun_dialog_to_members_only(
    app, login_as, shared_team, user
):
    cast = team_cast(shared_team, user)
    original = seed_session(shared_team, user, "Team chat")
    rerun = seed_session(shared_team, user, "Team chat")
    ExecutionSession.update(rerun_of=original.id).where(ExecutionSession.id == rerun.id).execute()

    member = await login_as(cast["member"])
    html = await (await member.get(f"/dashboard/sessions/{rerun.id}")).get_data(as_text=True)
    assert f'href="/dashboard/sessions/{original.id}" id="rerun-of">session {original.id}</a>' in html
    assert f'href="/dashboard/compare?a={original.id}&amp;b={rerun.id}">Compare with the original</a>' in html
    assert 'data-island="rerun"' in html and "Reruns of this session" not in html
    html = await (await member.get(f"/dashboard/sessions/{original.id}")).get_data(as_text=True)
    assert f'data-rerun="{rerun.id}"' in html and f"Compare with session {rerun.id}" in html
    assert 'id="rerun-of"' not in html

    viewer = await login_as(cast["viewer"])
    html = await (await viewer.get(f"/dashboard/sessions/{original.id}")).get_data(as_text=True)
    assert 'data-island="rerun"' not in html and f'data-rerun="{rerun.id}"' in html

"""The dashboard in a real browser: headless Chromium against a live server (and a real worker).

One server, one worker and one browser for the module; each test gets fresh browser contexts
(separate cookie jars, so two users can be logged in side by side). The autouse `clean_state`
empties the database and Redis before each test, so every test builds its own data.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_problem,
    live_server,
    screenshot,
    serious_accessibility_problems,
)
from browser_support import worker as start_worker
from helpers import PASSWORD, add_member, make_user
from seeding import seed_session

from models import SessionDecision, Team, TeamMembership

pytestmark = pytest.mark.browser

IN_CI = os.environ.get("CI", "").lower() == "true"
LIVE_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def logs() -> Path:
    return Path(tempfile.mkdtemp(prefix="sage-browser-"))


@pytest.fixture(scope="module")
def browser():
    problem = chromium_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"browser tests cannot run: {problem}", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def base_url(browser, database, redis_client, logs):
    with live_server(logs) as url, start_worker(logs):
        yield url


@pytest.fixture
def new_page(browser, base_url):
    """`new_page(width=1280)`: a page in a fresh context (its own cookies) on the live server."""
    contexts = []
    # Every page runs under the Content-Security-Policy (no inline script, no eval): a violation,
    # an expression Alpine's CSP build cannot run, or an uncaught script error fails the test.
    problems: list[str] = []

    def factory(width: int = 1280, height: int = 900):
        context = browser.new_context(base_url=base_url, viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}")
                if "Content Security Policy" in message.text or "Alpine Expression Error" in message.text
                else None
            ),
        )
        return page

    yield factory
    for context in contexts:
        context.close()
    assert problems == []


def log_in(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard")


def expect_all_agents(page, status: str, timeout: int = 15_000) -> None:
    from playwright.sync_api import expect

    cards = page.locator(".agent-card[data-status]")
    expect(cards).to_have_count(7, timeout=timeout)
    expect(page.locator(f'.agent-card[data-status="{status}"]')).to_have_count(7, timeout=timeout)


def inspect_and_replay(page) -> None:
    """Open a snapshot from a card, then scrub the replay to the start and back to the end."""
    from playwright.sync_api import expect

    page.locator('.agent-card[data-role="backend_dev"]').click()
    viewer = page.locator(".state-viewer")
    expect(viewer).to_contain_text("Backend developer")
    for section in ("Context", "Capabilities", "Decisions", "Metadata"):
        expect(viewer.get_by_role("heading", name=section, exact=True)).to_be_visible()
    expect(viewer.locator(".changes")).to_contain_text("Against Architect")

    scrubber = page.get_by_label("Replay position")
    scrubber.fill("0")
    expect(page.locator("[data-replay-session-status]")).to_have_attribute("data-replay-session-status", "active")
    expect(page.locator('.gantt__label[data-replay-status="completed"]')).to_have_count(0)
    expect(page.locator("[data-replay-known-decisions]")).to_have_attribute("data-replay-known-decisions", "0")
    scrubber.fill(scrubber.get_attribute("max"))
    expect(page.locator("[data-replay-session-status]")).to_have_attribute("data-replay-session-status", "completed")
    expect(page.locator('.gantt__label[data-replay-status="completed"]')).to_have_count(7)
    # Stepping back one event at a time rebuilds the moment before the session completed.
    page.get_by_role("button", name="Previous event").click()
    expect(page.locator("[data-replay-session-status]")).to_have_attribute("data-replay-session-status", "active")
    page.locator(".gantt__label").first.click()
    expect(viewer).to_contain_text("Architect")


def add_session_decision(page, text: str) -> None:
    from playwright.sync_api import expect

    form = page.get_by_role("form", name="Add session decision")
    form.get_by_label("Decision", exact=True).fill(text)
    form.get_by_label("Category").select_option("architecture")
    form.get_by_role("button", name="Add session decision").click()
    expect(page.locator(".decision--session", has_text=text)).to_have_count(1)


def test_a_newcomer_signs_up_creates_a_team_and_watches_seven_agents_finish_live(new_page):
    from playwright.sync_api import expect

    page = new_page()
    page.goto("/signup")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/dashboard")

    page.get_by_label("Team name").fill("Payments")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_url(re.compile(r".*/dashboard/teams/\d+$"))
    page.get_by_label("Feature name").fill("Refund workflow")
    page.get_by_label("Description").fill("Let support staff refund an order in two clicks.")
    page.get_by_role("button", name="Start session").click()
    page.wait_for_url(re.compile(r".*/dashboard/sessions/\d+$"))

    expect(page.locator("[data-connection]")).to_have_attribute("data-connection", "live")
    expect_all_agents(page, "completed", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("[data-session-status]")).to_have_attribute("data-session-status", "completed")
    inspect_and_replay(page)
    add_session_decision(page, "Refunds above 500 EUR need a second approver")
    expect(page.get_by_role("button", name="End session")).to_have_count(0)
    page.locator('.agent-card[data-role="dba"]').click()
    page.evaluate("window.scrollTo(0, 0)")
    page.set_viewport_size({"width": 1280, "height": 1300})
    screenshot(page, "session", full_page=False)

    page.goto("/dashboard")
    expect(page.locator(".team-list__item")).to_have_count(1)
    screenshot(page, "dashboard")


def test_a_recorded_session_can_be_inspected_replayed_and_annotated(new_page):
    from playwright.sync_api import expect

    owner = make_user("grace")
    team = Team.create(name="Platform", owner=owner, is_shared=False)
    session = seed_session(team, owner, "Audit log")
    page = new_page(width=390, height=844)  # a phone
    log_in(page, "grace")
    page.goto(f"/dashboard/teams/{team.id}")
    expect(page.locator(".session-row")).to_have_count(1)
    page.get_by_label("Status").select_option("error")
    expect(page.locator(".session-row")).to_have_count(0)
    page.get_by_label("Status").select_option("completed")
    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url(f"**/dashboard/sessions/{session.id}")
    expect_all_agents(page, "completed")
    inspect_and_replay(page)
    add_session_decision(page, "Keep audit entries for seven years")
    # A task decision goes to that agent's entry of the journal.
    entry = page.locator(".decision-task").filter(
        has=page.locator("summary > strong").get_by_text("Security engineer", exact=True)
    )
    if entry.get_attribute("open") is None:
        entry.locator("summary").first.click()
    entry.get_by_text("Add a decision to this task").click()
    entry.get_by_label("Decision", exact=True).fill("Sign every audit entry")
    entry.get_by_role("button", name="Add decision to Security engineer").click()
    expect(entry).to_contain_text("Sign every audit entry")
    screenshot(page, "session-phone")


def test_a_viewer_follows_live_without_controls_and_is_ejected_when_removed(new_page):
    from playwright.sync_api import expect

    owner, viewer = make_user("lin"), make_user("sam")
    team = Team.create(name="Growth", owner=owner, is_shared=True)
    TeamMembership.create(team=team, user=owner, role="owner")
    add_member(team, viewer, "viewer")
    session = seed_session(team, owner, "Referral codes")

    watcher = new_page()
    log_in(watcher, "sam")
    watcher.goto(f"/dashboard/teams/{team.id}")
    expect(watcher.locator(".member-list__item")).to_have_count(2)
    expect(watcher.get_by_role("button", name="Start session")).to_have_count(0)
    expect(watcher.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)
    watcher.goto(f"/dashboard/sessions/{session.id}")
    expect_all_agents(watcher, "completed")
    expect(watcher.locator("[data-connection]")).to_have_attribute("data-connection", "live")
    expect(watcher.get_by_role("form", name="Add session decision")).to_have_count(0)

    boss = new_page()
    log_in(boss, "lin")
    boss.goto(f"/dashboard/sessions/{session.id}")
    add_session_decision(boss, "Codes expire after 30 days")
    # The viewer's open page hears it over the WebSocket, without reloading.
    expect(watcher.locator(".decision--session", has_text="Codes expire after 30 days")).to_have_count(1)

    boss.goto(f"/dashboard/teams/{team.id}")
    # The owner can promote and demote from the member list.
    for role in ("member", "viewer"):
        with boss.expect_response(lambda r: r.request.method == "PATCH" and "/members/" in r.url) as answer:
            boss.get_by_label("Role of sam").select_option(role)
        assert answer.value.status == 200
        assert TeamMembership.get(team=team, user=viewer).role == role
        expect(boss.get_by_label("Role of sam")).to_have_value(role)
    boss.once("dialog", lambda dialog: dialog.accept())
    boss.get_by_role("button", name="Remove sam").click()
    expect(boss.locator(".member-list__item")).to_have_count(1)

    expect(watcher.locator("#access-revoked")).to_be_visible(timeout=5_000)
    watcher.wait_for_url("**/dashboard?notice=revoked", timeout=10_000)
    expect(watcher.get_by_role("status").filter(has_text="access")).to_be_visible()
    assert watcher.request.get(f"/dashboard/sessions/{session.id}").status == 404


def test_a_viewer_watches_a_session_run_live_but_cannot_start_one(new_page):
    from playwright.sync_api import expect

    owner, viewer = make_user("noor"), make_user("kai")
    team = Team.create(name="Search", owner=owner, is_shared=True)
    TeamMembership.create(team=team, user=owner, role="owner")
    add_member(team, viewer, "viewer")

    boss = new_page()
    log_in(boss, "noor")
    boss.goto(f"/dashboard/teams/{team.id}")
    boss.get_by_label("Feature name").fill("Typo-tolerant search")
    boss.get_by_role("button", name="Start session").click()
    boss.wait_for_url(re.compile(r".*/dashboard/sessions/\d+$"))
    session_path = boss.url.split("127.0.0.1", 1)[1].split("/", 1)[1]

    watcher = new_page()
    log_in(watcher, "kai")
    watcher.goto(f"/dashboard/teams/{team.id}")
    expect(watcher.get_by_role("button", name="Start session")).to_have_count(0)
    watcher.goto("/" + session_path)
    expect_all_agents(watcher, "completed", timeout=LIVE_TIMEOUT_MS)
    expect(watcher.get_by_role("form", name="Add session decision")).to_have_count(0)
    expect(watcher.get_by_role("button", name="End session")).to_have_count(0)


def assert_accessible(page) -> None:
    """axe-core finds no serious or critical violation on the page as it is now."""
    problems = serious_accessibility_problems(page)
    assert problems == [], "\n".join(problems)


def assert_no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_an_ended_early_session_says_so_and_a_deep_link_survives_login_and_reload(new_page):
    from playwright.sync_api import expect

    owner = make_user("mia")
    team = Team.create(name="Compliance", owner=owner, is_shared=False)
    session = seed_session(
        team, owner, "Audit trail", roles=["architect", "backend_dev", "dba"], with_work=True, ended_by=owner
    )
    link = f"/dashboard/sessions/{session.id}?agent=dba&t=6"  # t=6: the backend developer has just finished
    page = new_page(width=390, height=844)  # a phone
    page.goto(link)
    page.wait_for_url("**/login?next=*")
    assert_accessible(page)
    page.get_by_label("Username or email").fill("mia")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{link}")  # back to the page asked for, query and all

    for attempt in ("first load", "reload"):
        expect(page.locator("[data-session-state]")).to_have_text("session ended early")
        expect(page.locator("[data-ended-early]")).to_contain_text("Ended early by you")
        expect(page.locator("[data-ended-early]")).to_contain_text("3 of 7 agents had finished")
        expect(page.get_by_role("tab", name="DBA")).to_have_attribute("aria-selected", "true")
        expect(page.locator('.doc[data-deliverable="dba"]')).to_contain_text("CREATE TABLE")
        expect(page.locator('.state-viewer[data-role="dba"]')).to_be_visible()
        expect(page.locator("[data-replay-known-decisions]")).to_have_attribute("data-replay-known-decisions", "4")
        expect(page.locator('.gantt__label[data-replay-status="completed"]')).to_have_count(2)
        if attempt == "first load":
            page.reload()
    # Agents that never ran say why; the end of the replay says "ended early" too.
    expect(page.locator('.agent-card[data-role="security"]')).to_contain_text("Not run: the session ended first")
    expect(page.get_by_role("form", name="Add session decision")).to_contain_text("Nothing is left to steer")
    scrubber = page.get_by_label("Replay position")
    scrubber.fill(scrubber.get_attribute("max"))
    expect(page.locator("[data-replay-state]")).to_have_attribute("data-replay-state", "ended early")
    assert "t=8" in page.url  # the chosen moment is in the address
    assert_no_sideways_scroll(page)
    assert_accessible(page)
    screenshot(page, "session-ended-early-phone")

    page.goto(f"/dashboard/teams/{team.id}")
    expect(page.locator('.session-row [data-state="ended early"]')).to_have_count(1)
    expect(page.locator(".session-row")).to_contain_text("by mia")
    expect(page.locator(".session-row")).to_contain_text("3 of 7 agents had finished")
    assert_no_sideways_scroll(page)
    assert_accessible(page)
    page.goto("/dashboard")
    expect(page.locator(".recent-row")).to_contain_text("ended early")
    assert_no_sideways_scroll(page)
    assert_accessible(page)


def test_a_late_decision_stays_off_the_timeline_and_the_design_pack_downloads(new_page):
    from playwright.sync_api import expect

    owner = make_user("ravi")
    team = Team.create(name="Messaging", owner=owner, is_shared=True)
    TeamMembership.create(team=team, user=owner, role="owner")
    session = seed_session(team, owner, "Team chat", with_work=True)
    page = new_page(width=1440, height=900)
    log_in(page, "ravi")
    page.goto(f"/dashboard/sessions/{session.id}")
    expect_all_agents(page, "completed")
    expect(page.locator("[data-session-state]")).to_have_text("session completed")

    # The seeded run took 8 s; a decision added now comes after it and is listed after the run.
    add_session_decision(page, "Retain chat history for 90 days")
    expect(page.locator(".replay__late")).to_contain_text("Retain chat history for 90 days")
    assert SessionDecision.select().where(SessionDecision.session == session.id).count() == 2
    widths = [float(w) for w in page.locator(".gantt__bar").evaluate_all("bars => bars.map(b => b.dataset.width)")]
    assert len(widths) == 7 and min(widths) > 0.1, widths  # bars keep their width: 1.5 s of an 8 s run
    expect(page.locator(".gantt__tick")).not_to_have_count(0)

    # Deliverables are documents, with the raw JSON one toggle away.
    page.get_by_role("tab", name="Backend developer").click()
    backend = page.locator('.doc[data-deliverable="backend_dev"]')
    expect(backend.get_by_role("columnheader", name="Who may call it")).to_be_visible()
    backend.get_by_role("button", name="Show raw JSON").click()
    expect(backend).to_contain_text('"endpoints"')
    assert "?agent=backend_dev" in page.url
    # "Based on" names the upstream agent and its decision, as a link to it.
    based = page.locator('.decision__based a[href^="#decision-"]').first
    expect(based).to_contain_text("Architect:")
    based.click()
    assert "#decision-" in page.url
    assert_accessible(page)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download design pack").click()
    assert download.value.suggested_filename == "team-chat-design-pack.md"
    text = Path(download.value.path()).read_text()
    for heading in ("### Architect", "### Backend developer", "### DBA", "### Frontend developer"):
        assert heading in text
    for heading in ("### UI/UX designer", "### Security engineer", "### IT admin", "Retain chat history"):
        assert heading in text

    # The team page at desktop width keeps the invite form inside the Members card.
    page.goto(f"/dashboard/teams/{team.id}")
    expect(page.locator(".member-list__item")).to_have_count(1)
    card = page.locator("section[aria-labelledby=members-title]").bounding_box()
    form = page.locator("#invite-member").bounding_box()
    assert form["x"] >= card["x"] and form["x"] + form["width"] <= card["x"] + card["width"]
    assert_accessible(page)


def test_an_invitation_waits_for_the_invitee_who_accepts_it_from_the_dashboard(new_page):
    from playwright.sync_api import expect

    owner, invitee = make_user("mei"), make_user("omar")
    team = Team.create(name="Billing", owner=owner, is_shared=True)
    TeamMembership.create(team=team, user=owner, role="owner")

    boss = new_page()
    log_in(boss, "mei")
    response = boss.goto(f"/dashboard/teams/{team.id}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    pending = boss.locator("#pending-invitations .invitation")
    for who in ("omar", "nobody@example.com"):
        boss.get_by_label("Username or email").fill(who)
        boss.get_by_role("button", name="Invite", exact=True).click()
        expect(boss.get_by_role("status").filter(has_text=f"Invitation for {who}")).to_be_visible()
    expect(pending).to_have_count(2)
    boss.get_by_role("button", name="Cancel the invitation for nobody@example.com").click()
    expect(pending).to_have_count(1)
    expect(boss.locator(".member-list__item:not(.invitation)")).to_have_count(1)  # omar is invited, not a member
    assert not TeamMembership.select().where(TeamMembership.user == invitee.id).exists()

    guest = new_page()
    log_in(guest, "omar")
    expect(guest.locator("#my-invitations")).to_contain_text("mei invites you to Billing as member")
    guest.get_by_role("button", name="Accept the invitation to Billing").click()
    guest.wait_for_url(f"**/dashboard/teams/{team.id}")
    expect(guest.locator(".member-list__item")).to_have_count(2)
    assert TeamMembership.get(team=team, user=invitee).role == "member"
    boss.reload()
    expect(pending).to_have_count(0)


SQLITE = "Use SQLite: this runs on one laptop"


def test_a_member_reruns_from_dba_with_sqlite_and_compares_with_the_original(new_page, stub_worker, wait):
    from playwright.sync_api import expect

    from actors import pipeline
    from models import ExecutionSession

    owner, member = make_user("lin"), make_user("sam")
    team = Team.create(name="Chat", owner=owner, is_shared=True)
    TeamMembership.create(team=team, user=owner, role="owner")
    add_member(team, member, "member")
    # The original runs in this process (the stub worker); the rerun on the live server's worker.
    original = pipeline.create_session(team.id, owner.id, "Team chat", "real-time messaging")
    SessionDecision.create(session=original, user=owner, decision_text="Keep it simple", category="process")
    pipeline.start_session(original.id)
    wait(lambda: ExecutionSession.get_by_id(original.id).status == "completed")
    page = new_page()
    log_in(page, "sam")
    page.goto(f"/dashboard/sessions/{original.id}")
    expect_all_agents(page, "completed")

    page.get_by_role("button", name="Rerun").click()
    dialog = page.get_by_role("dialog", name="Rerun this session")
    expect(dialog).to_be_visible()
    text = dialog.get_by_role("textbox", name="Decision 1")
    expect(text).to_have_value("Keep it simple")  # prefilled with the session's decisions
    start_from = dialog.get_by_label("Start from")
    expect(start_from).to_be_focused()  # the modal dialog took focus
    start_from.select_option("dba")
    expect(dialog.locator(".rerun__warnings")).to_have_count(0)  # nothing changed yet: nothing to warn about
    text.fill("")
    dialog.get_by_role("button", name="Start rerun").click()
    expect(dialog.locator(".field-error")).to_have_text("Decision must not be empty.")  # the API's field error
    text.fill(SQLITE)
    expect(dialog.locator(".field-error, .alert")).to_have_count(0)  # the error went with the edit
    dialog.get_by_role("group", name="Decision 1").get_by_label("Category").select_option("technology")
    expect(dialog.locator(".rerun__warnings")).to_contain_text(f"architect is copied from session {original.id}")
    assert ExecutionSession.select().count() == 1
    assert_accessible(page)
    screenshot(page, "rerun-dialog", full_page=False)
    dialog.get_by_role("button", name="Start rerun").click()

    rerun = wait(lambda: ExecutionSession.get_or_none(ExecutionSession.rerun_of == original.id))
    page.wait_for_url(f"**/dashboard/sessions/{rerun.id}")
    expect(page.locator(".rerun__warnings")).to_contain_text("architect is copied")  # the server's warnings
    expect(page.locator("#rerun-of")).to_have_text(f"session {original.id}")
    expect_all_agents(page, "completed", timeout=LIVE_TIMEOUT_MS)
    assert_accessible(page)

    page.get_by_role("link", name="Compare with the original").click()
    page.wait_for_url(f"**/dashboard/compare?a={original.id}&b={rerun.id}")
    causes = page.locator("section[aria-labelledby=causes-title]")
    expect(causes.locator("ins")).to_have_text(SQLITE)
    expect(causes.locator("del")).to_have_text("Keep it simple")
    engine = page.locator('#dba [data-key="dba.engine"]')
    expect(engine).to_contain_text("SQLite")
    expect(engine).to_have_class(re.compile(r"\bchange--effect\b"))
    # Later agents' decisions that cite dba's are marked as effects, with the chain back to it.
    downstream = page.locator(
        ":is(#frontend_dev, #ui_ux, #security, #it_admin) .change--effect", has_text="Effect of: DBA:"
    )
    expect(downstream).not_to_have_count(0)
    assert_accessible(page)

    page.goto(f"/dashboard/sessions/{original.id}")
    listed = page.locator(f'[data-rerun="{rerun.id}"]')
    expect(listed).to_contain_text("completed")
    expect(listed.get_by_role("link", name=f"Compare with session {rerun.id}")).to_have_attribute(
        "href", f"/dashboard/compare?a={original.id}&b={rerun.id}"
    )


def test_a_search_with_a_typo_from_the_top_bar_opens_the_decision_it_found(new_page):
    from playwright.sync_api import expect

    from models import AgentTask, TaskDecision

    owner = make_user("ines")
    team = Team.create(name="Notes", owner=owner, is_shared=False)
    session = seed_session(team, owner, "Offline notes")
    dba = AgentTask.get((AgentTask.session == session) & (AgentTask.agent_role == "dba"))
    decision = TaskDecision.create(
        agent_task=dba,
        decision_text="Store notes in SQLite on the device",
        rationale="works offline",
        category="technology",
    )
    page = new_page()
    log_in(page, "ines")
    search = page.get_by_role("searchbox", name="Search decisions")
    search.fill("sqlte")
    search.press("Enter")
    page.wait_for_url("**/dashboard/search?q=sqlte")
    hit = page.locator(".results__link", has_text="SQLite").first
    expect(hit.locator("mark")).to_have_text("SQLite")
    assert_accessible(page)
    hit.click()
    page.wait_for_url(f"**/dashboard/sessions/{session.id}#decision-{decision.id}")
    target = page.locator(f"#decision-{decision.id}")
    expect(target).to_have_class(re.compile(r"\bdecision--target\b"))
    expect(target).to_be_in_viewport()

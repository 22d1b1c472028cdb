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
from browser_support import CHROMIUM, CHROMIUM_ARGS, chromium_problem, live_server, screenshot
from browser_support import worker as start_worker
from helpers import PASSWORD, add_member, make_user
from seeding import seed_session

from models import Team, TeamMembership

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

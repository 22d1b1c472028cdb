"""The dashboard pages (docs/api.md "Pages"): who sees which page, and which controls.

What a role may not do is not offered at all: the controls are left out of the HTML, not hidden.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from helpers import add_member, make_user
from seeding import seed_session

from models import Team
from models.settings import ROOT

START_FORM = 'id="start-session"'
INVITE_FORM = 'id="invite-member"'
PENDING_INVITATIONS = 'id="pending-invitations"'
SHARE_BUTTON = 'id="share-team"'
REMOVE_BUTTON = '@click="remove(member)"'
ROLE_SELECT = '@change="setRole(member, $event.target.value)"'


async def html_of(client, path: str) -> tuple[int, str]:
    response = await client.get(path)
    return response.status_code, await response.get_data(as_text=True)


def session_config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="session-config">(.*?)</script>', html, re.S)
    assert found, "the session page carries its island configuration"
    return json.loads(found.group(1))


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/dashboard", "/login"),
        ("/dashboard/teams/1", "/login?next=%2Fdashboard%2Fteams%2F1"),
        ("/dashboard/sessions/1?agent=dba&t=4", "/login?next=%2Fdashboard%2Fsessions%2F1%3Fagent%3Ddba%26t%3D4"),
    ],
)
async def test_logged_out_visitors_are_redirected_to_login_and_back(client, path, target):
    response = await client.get(path)
    assert response.status_code == 302 and response.headers["Location"] == target


async def test_the_dashboard_lists_teams_from_the_api_with_a_selector_and_a_create_form(login_as, user):
    status, html = await html_of(await login_as(user), "/dashboard")
    assert status == 200
    assert 'x-data="teamsDashboard()"' in html and 'src="/static/js/dashboard.js?v=' in html
    assert "filter = 'personal'" in html and "filter = 'shared'" in html
    assert "Create a team" in html and 'name="name"' in html
    # Invitations waiting for the user, to accept or decline (they load from GET /invitations).
    assert 'x-data="myInvitations()"' in html and "accept(invitation)" in html and "decline(invitation)" in html


async def test_the_owner_of_a_personal_team_can_start_sessions_and_share_it(login_as, user, personal_team):
    status, html = await html_of(await login_as(user), f"/dashboard/teams/{personal_team.id}")
    assert status == 200
    assert START_FORM in html and SHARE_BUTTON in html and INVITE_FORM in html and ROLE_SELECT in html
    assert PENDING_INVITATIONS in html
    assert f"teamPage({personal_team.id}, {user.id}, true)" in html
    assert 'data-role="owner"' in html


async def test_a_member_can_start_sessions_but_not_manage_members(login_as, shared_team, other_user):
    add_member(shared_team, other_user, "member")
    status, html = await html_of(await login_as(other_user), f"/dashboard/teams/{shared_team.id}")
    assert status == 200 and 'data-role="member"' in html
    assert START_FORM in html
    assert INVITE_FORM not in html and SHARE_BUTTON not in html and REMOVE_BUTTON not in html
    assert ROLE_SELECT not in html and PENDING_INVITATIONS not in html


async def test_a_viewer_is_offered_no_start_button_and_no_member_management(login_as, shared_team, other_user):
    add_member(shared_team, other_user, "viewer")
    status, html = await html_of(await login_as(other_user), f"/dashboard/teams/{shared_team.id}")
    assert status == 200 and 'data-role="viewer"' in html
    assert START_FORM not in html and "Start session" not in html
    assert INVITE_FORM not in html and REMOVE_BUTTON not in html and ROLE_SELECT not in html
    assert PENDING_INVITATIONS not in html
    assert "You are a viewer" in html


async def test_the_session_page_mounts_the_islands_with_the_callers_rights(login_as, user, shared_team, other_user):
    session = seed_session(shared_team, user, "Checkout")
    status, html = await html_of(await login_as(user), f"/dashboard/sessions/{session.id}")
    assert status == 200 and "Checkout" in html
    for island in ("execution-monitor", "agent-state-viewer", "session-replay", "decision-tree", "revoked-notice"):
        assert f'data-island="{island}"' in html
    assert 'src="/static/build/session.js?v=' in html
    config = session_config(html)
    assert config["sessionId"] == session.id and config["canWrite"] is True and config["role"] == "owner"
    assert config["pipeline"][0] == ["architect"] and sum(len(stage) for stage in config["pipeline"]) == 7


async def test_a_viewer_gets_the_session_page_without_write_controls(login_as, user, shared_team, other_user):
    session = seed_session(shared_team, user, "Checkout")
    add_member(shared_team, other_user, "viewer")
    status, html = await html_of(await login_as(other_user), f"/dashboard/sessions/{session.id}")
    assert status == 200
    assert session_config(html)["canWrite"] is False
    assert 'data-can-write="true"' not in html and 'data-can-write="false"' in html


@pytest.mark.parametrize("kind", ["teams", "sessions"])
async def test_outsiders_get_a_404_page_as_if_nothing_were_there(login_as, user, shared_team, other_user, kind):
    session = seed_session(shared_team, user)
    target = shared_team.id if kind == "teams" else session.id
    client = await login_as(other_user)
    status, html = await html_of(client, f"/dashboard/{kind}/{target}")
    missing_status, missing_html = await html_of(client, f"/dashboard/{kind}/999999")
    assert status == missing_status == 404
    assert "<html" in html and "Not found" in html
    assert html == missing_html and "Shared" not in html


async def test_a_personal_team_stays_private_even_with_a_stray_membership_row(login_as, user, other_user):
    team = Team.create(name="Diary", owner=user, is_shared=False)
    add_member(team, other_user, "member")
    status, html = await html_of(await login_as(other_user), f"/dashboard/teams/{team.id}")
    assert status == 404 and "Diary" not in html


async def test_a_removed_member_loses_the_pages_at_once(login_as, app, user, shared_team):
    guest = make_user("guest")
    add_member(shared_team, guest, "member")
    session = seed_session(shared_team, user)
    client = await login_as(guest)
    assert (await client.get(f"/dashboard/sessions/{session.id}")).status_code == 200
    owner = await login_as(user)
    assert (await owner.delete(f"/teams/{shared_team.id}/members/{guest.id}")).status_code == 204
    assert (await client.get(f"/dashboard/sessions/{session.id}")).status_code == 404
    assert (await client.get(f"/dashboard/teams/{shared_team.id}")).status_code == 404


def test_the_island_bundle_is_built_from_our_sources_with_react_and_no_cdn():
    bundle = (ROOT / "static/build/session.js").read_text()
    assert "useSyncExternalStore" in bundle or "react" in bundle.lower()
    assert "access_revoked" in bundle and "?after=" in bundle
    assert "cdn." not in bundle and "unpkg" not in bundle
    sources = ROOT / "static/src/islands"
    for name in ("TeamExecutionMonitor", "AgentStateViewer", "SessionReplay", "DecisionTree"):
        assert (sources / f"{name}.jsx").is_file()
    manifest = json.loads((ROOT / "static/build/manifest.json").read_text())
    digest = hashlib.sha256()
    for name in sorted(p.name for p in sources.iterdir()):
        digest.update(f"{name}\n".encode())
        digest.update((sources / name).read_bytes())
    assert manifest["sources_sha256"] == digest.hexdigest(), "the committed bundle is stale: run `npm run build`"


async def test_the_dashboard_lists_recent_sessions_of_the_users_teams_only(login_as, user, other_user, personal_team):
    shared = Team.create(name="Shared squad", owner=other_user, is_shared=True)
    add_member(shared, other_user, "owner")
    add_member(shared, user, "viewer")
    secret = Team.create(name="Not yours", owner=other_user, is_shared=False)
    seed_session(personal_team, user, "Mine")
    seed_session(shared, other_user, "Theirs, shared", ended_by=other_user)
    seed_session(secret, other_user, "Private plans")

    status, html = await html_of(await login_as(user), "/dashboard")
    assert status == 200
    rows = re.findall(r'<tr class="recent-row">(.*?)</tr>', html, re.S)
    assert len(rows) == 2
    assert "Theirs, shared" in rows[0] and "Shared squad" in rows[0] and 'data-state="ended early"' in rows[0]
    assert other_user.username in rows[0]
    assert "Mine" in rows[1] and 'data-state="completed"' in rows[1]
    assert "Private plans" not in html and "Not yours" not in html

"""The demo-data command (scripts/seed_test_data.py): a full dashboard from real agent runs."""

from __future__ import annotations

import importlib.util

from models import AgentSnapshot, AgentTask, ExecutionSession, SessionEvent, Team, TeamMembership, User
from models.settings import ROOT


def load_seed():
    spec = importlib.util.spec_from_file_location("seed_test_data", ROOT / "scripts/seed_test_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_seed_gives_two_users_a_shared_team_and_finished_sessions_they_can_open(settings, login_as):
    seed = load_seed()
    result = seed.seed(settings, timeout=60)

    assert sorted(u.username for u in User.select()) == ["ada", "grace"]
    team = Team.get_by_id(result["team_id"])
    assert team.is_shared
    roles = {m.user.username: m.role for m in TeamMembership.select().where(TeamMembership.team == team)}
    assert roles == {"ada": "owner", "grace": "member"}
    sessions = list(ExecutionSession.select().where(ExecutionSession.team == team))
    assert len(sessions) == len(seed.FEATURES) == len({s.feature_name for s in sessions})
    for session in sessions:
        assert session.status == "completed"
        tasks = list(AgentTask.select().where(AgentTask.session == session))
        assert len(tasks) == 7 and all(t.status == "completed" and t.output_data for t in tasks)
        # Produced by the agents: every task has a snapshot and the event log is complete.
        assert AgentSnapshot.select().join(AgentTask).where(AgentTask.session == session).count() == 7
        assert SessionEvent.select().where(SessionEvent.session == session).count() == 1 + 7 * 2 + 1

    grace = await login_as("grace", seed.PASSWORD)
    assert (await grace.get(f"/dashboard/sessions/{sessions[0].id}")).status_code == 200
    teams = (await (await grace.get("/teams")).get_json())["teams"]
    assert {(t["name"], t["is_shared"]) for t in teams} == {("Demo squad", True), ("Grace's sandbox", False)}

    again = seed.seed(settings, timeout=60)
    assert again["new_sessions"] == [] and ExecutionSession.select().count() == len(seed.FEATURES)

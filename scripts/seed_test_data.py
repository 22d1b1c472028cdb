"""Demo data, so a newcomer sees a full dashboard at once (the design's `seed_test_data.py`).

    .venv/bin/python scripts/seed_test_data.py        # or: make seed

Creates two users, `ada` (owner) and `grace` (member) with the password `sage-mode-demo`, a
shared team "Demo squad", a personal team for grace, and a few finished sessions of different
features. The sessions are produced by really running the seven agents, in this process, on an
in-memory Dramatiq broker with an in-process worker: no results are written by hand, and no
separate worker needs to be running. Running it again adds nothing that is already there.
"""

from __future__ import annotations

import sys
import time

from models.settings import Settings

PASSWORD = "sage-mode-demo"
USERS = (("ada", "ada@demo.sage-mode.local"), ("grace", "grace@demo.sage-mode.local"))
FEATURES = (
    ("Password reset by email", "Users who forget their password get a one-time link by email.", "security"),
    ("Team activity feed", "A timeline of what changed in a team, newest first, with filters.", "user_experience"),
    ("CSV export of invoices", "Finance downloads a month of invoices as CSV from the billing page.", "data"),
)


def _user(username: str, email: str, rounds: int):
    from app.passwords import hash_password_sync
    from models.users import create_user, find_user_by_login

    return find_user_by_login(username) or create_user(username, email, hash_password_sync(PASSWORD, rounds))


def _teams(ada, grace):
    from models.schema import Team, TeamMembership
    from models.teams import add_member, create_team, share_team

    squad = Team.get_or_none((Team.owner == ada.id) & (Team.name == "Demo squad"))
    if squad is None:
        squad = create_team(ada.id, "Demo squad", "A shared team: ada owns it, grace is a member.")
    share_team(squad)
    if (
        not TeamMembership.select()
        .where((TeamMembership.team == squad.id) & (TeamMembership.user == grace.id))
        .exists()
    ):
        add_member(squad, grace, "member")
    notes = Team.get_or_none((Team.owner == grace.id) & (Team.name == "Grace's sandbox"))
    if notes is None:
        create_team(grace.id, "Grace's sandbox", "A personal team: only grace sees it.")
    return squad


def _run_sessions(team, starter_ids, timeout: float) -> list:
    """Run each missing feature through the real pipeline in this process; return the sessions."""
    import dramatiq

    from actors.broker import stub_broker, use_broker
    from actors.config import get_settings
    from actors.pipeline import create_session, start_session
    from models.schema import ExecutionSession, SessionDecision

    done = {s.feature_name for s in ExecutionSession.select().where(ExecutionSession.team == team.id)}
    todo = [f for f in FEATURES if f[0] not in done]
    if not todo:
        return []
    broker = stub_broker(get_settings())
    broker.emit_after("process_boot")
    previous = use_broker(broker)
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=4)
    worker.start()
    sessions = []
    try:
        for index, (feature, description, category) in enumerate(todo):
            starter = starter_ids[index % len(starter_ids)]
            session = create_session(team.id, starter, feature, description)
            # A strategic decision before the agents start: they read it from their context.
            SessionDecision.create(
                session=session.id,
                user=starter,
                decision_text=f"Keep {feature.lower()} behind a feature flag for the first release",
                category=category,
                confidence="medium",
            )
            start_session(session.id)
            deadline = time.monotonic() + timeout
            while ExecutionSession.get_by_id(session.id).status == "active":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"session {session.id} ({feature}) did not finish in {timeout} s")
                time.sleep(0.1)
            sessions.append(ExecutionSession.get_by_id(session.id))
    finally:
        worker.stop()
        broker.close()
        use_broker(previous)
    return sessions


def seed(settings: Settings | None = None, timeout: float = 120.0) -> dict:
    """Create the demo users, teams and sessions (idempotent); return what exists afterwards."""
    from models.db import db

    settings = settings or Settings.from_env()
    if db.obj is None:
        from models.db import init_database

        init_database(settings.database_url, 8)
    with db.connection_context():
        ada, grace = (_user(name, email, settings.bcrypt_rounds) for name, email in USERS)
        team = _teams(ada, grace)
    # The pipeline commits its own transactions and needs connections on the worker's threads.
    new = _run_sessions(team, [ada.id, grace.id], timeout)
    return {"users": [ada.username, grace.username], "team_id": team.id, "new_sessions": [s.id for s in new]}


def main() -> int:
    from models.preflight import preflight

    settings = Settings.from_env()
    problem = preflight(settings)
    if problem:
        print(f"sage-mode: {problem}", file=sys.stderr)
        return 1
    result = seed(settings)
    print(f"users {', '.join(result['users'])} (password {PASSWORD!r}); shared team {result['team_id']}")
    print(f"{len(result['new_sessions'])} new finished session(s): {result['new_sessions']}")
    print("log in at /login and open the dashboard")
    return 0


if __name__ == "__main__":
    sys.exit(main())

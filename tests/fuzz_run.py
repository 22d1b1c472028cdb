"""Schemathesis against the live app, from its own OpenAPI document (issue 15).

A real server (`python -m app`, as in the browser tests) on the test services; a logged-in user
who owns a personal and a shared team with a finished session in each, so that small generated
ids often name real rows; then for every JSON operation of `/openapi.json` a bounded number of
generated requests, valid and invalid, each checked for no server error (5xx), for an answer
that matches the schema documented for its status (app/schemas.py), and for a documented status
and media type. Generation is derandomized,
so a run is reproducible; `SAGE_FUZZ_EXAMPLES` raises the bound for a longer hunt.

Logging out (`POST /auth/logout`) and deleting the account (`DELETE /auth/me`) would end the
fuzzing user's login half-way, so they are fuzzed by a second user who logs in afresh each time;
logging in and signing up replace the login they are sent with, so they are sent without one.

Run it alone with `pytest tests/fuzz_run.py`; `tests/test_fuzz.py` runs it in a process of its own.
"""

from __future__ import annotations

import os

import hypothesis
import pytest
import requests
import schemathesis
from browser_support import live_server
from helpers import PASSWORD, add_member, make_user
from hypothesis import HealthCheck, strategies
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from seeding import seed_session

from models import Team, TeamMembership, User, db

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

EXAMPLES = int(os.environ.get("SAGE_FUZZ_EXAMPLES", "15"))
#: No 5xx; the body matches the schema documented for its status; the status and the media type
#: are documented ones.
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
#: They end the login they are sent with (see the module docstring).
LOGIN_ENDING = {("POST", "/auth/logout"), ("DELETE", "/auth/me")}
#: A login or signup replaces the login the browser came with, so they are sent without one.
ANONYMOUS = {("POST", "/auth/signup"), ("POST", "/auth/login")}


#: The login and signup limits are tested on their own (tests/test_ratelimit.py); here they would
#: soon answer 429 to every login, the throwaway user's included.
UNLIMITED = {
    name: "1000000"
    for name in (
        "LOGIN_MAX_FAILURES",
        "SIGNUP_MAX_ATTEMPTS",
        "LOGIN_RATE_PER_ACCOUNT",
        "LOGIN_RATE_PER_ADDRESS",
        "MAX_LOGINS_PER_USER",
    )
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, database):
    with live_server(tmp_path_factory.mktemp("fuzz"), env=UNLIMITED) as base:
        yield base


@pytest.fixture
def people():
    """The fuzzing user with two teams and a session in each, and a team mate."""
    owner = make_user("fuzzer")
    mate = make_user("mate")
    personal = Team.create(name="Personal", owner=owner, is_shared=False)
    shared = Team.create(name="Shared", owner=owner, is_shared=True)
    TeamMembership.create(team=shared, user=owner, role="owner")
    add_member(shared, mate, "member")
    seed_session(personal, owner, "Search")
    seed_session(shared, owner, "Export", with_work=True)
    return {"owner": owner, "mate": mate}


def logged_in(base: str, username: str) -> requests.Session:
    """A requests session holding `username`'s login cookie."""
    http = requests.Session()
    answer = http.post(f"{base}/auth/login", json={"username": username, "password": PASSWORD}, timeout=10)
    assert answer.status_code == 200, answer.text
    return http


def throwaway_login(base: str) -> requests.Session:
    """A fresh login of the throwaway user, who is made again after a fuzzed `DELETE /auth/me`."""
    with db.connection_context():
        if User.get_or_none(User.username == "throwaway") is None:
            make_user("throwaway")
    return logged_in(base, "throwaway")


def anonymous(base: str) -> requests.Session:
    """No login at all."""
    return requests.Session()


def fuzz(operation, base: str, http_for) -> None:
    """Run the generated requests of one operation; raise on the first failing check."""
    strategy = strategies.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )
    @hypothesis.given(case=strategy)
    def run(case) -> None:
        http = http_for(base)
        try:
            response = case.call(base_url=base, session=http, timeout=15)
            case.validate_response(response, checks=CHECKS)
        finally:
            http.close()

    run()


def test_every_operation_answers_generated_requests_without_a_server_error_and_as_documented(server, people):
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    owner = logged_in(server, "fuzzer")
    failures, fuzzed = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in LOGIN_ENDING:
            http_for = throwaway_login
        elif key in ANONYMOUS:
            http_for = anonymous
        else:

            def http_for(base: str) -> requests.Session:
                shared = requests.Session()
                shared.cookies.update(owner.cookies)
                return shared

        try:
            fuzz(operation, server, http_for)
        # Every operation's failure is reported together (schemathesis raises a BaseExceptionGroup).
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
        fuzzed.append(key)
        # The owner is still logged in (nothing above may end that login).
        assert owner.get(f"{server}/auth/me", timeout=10).status_code == 200, f"logged out by {key}"
    assert len(fuzzed) >= 30, fuzzed
    assert LOGIN_ENDING <= set(fuzzed)
    assert not failures, "\n\n".join(failures)

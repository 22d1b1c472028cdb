"""The session page on a model brain, in a real browser: the start form's brain choice, the answer
growing on a running agent's card with its tokens, and the usage totals once it is done."""

from __future__ import annotations

import json
import os
import re

import pytest
from browser_support import live_server, screenshot
from browser_support import worker as start_worker
from fake_llm import FakeModelServer
from helpers import make_user
from test_browser import browser, log_in, new_page  # noqa: F401 - the module's browser fixtures

from models import Team

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def fake_model():
    with FakeModelServer(slow_delay=0.1) as server:
        yield server


@pytest.fixture(scope="module")
def base_url(browser, database, redis_client, fake_model, tmp_path_factory):  # noqa: F811
    """A live server and a worker that both see the fake endpoint as the `openai` brain."""
    env = {
        "OPENAI_BASE_URL": fake_model.openai_url,
        "OPENAI_API_KEY": "sk-test-browser",
        "SAGE_OPENAI_MODEL": "fake-gpt",
        "SAGE_LLM_PRICES": json.dumps({"fake-gpt": [1.0, 2.0]}),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    logs = tmp_path_factory.mktemp("brains-browser")
    try:
        with live_server(logs) as url, start_worker(logs):
            yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_a_session_on_a_model_shows_the_answer_growing_on_the_card_and_the_usage_at_the_end(
    new_page,  # noqa: F811
    fake_model,
):
    from playwright.sync_api import expect

    owner = make_user("lin")
    team = Team.create(name="Shop", owner=owner, is_shared=False)
    fake_model.plan = ["slow"]  # the architect streams for a few seconds
    page = new_page()
    log_in(page, "lin")
    page.goto(f"/dashboard/teams/{team.id}")
    brain = page.get_by_label("Brain")
    expect(brain.locator("option")).to_have_count(2)
    expect(brain).to_have_value("knowledge-base")
    brain.select_option("openai")
    page.get_by_label("Feature name").fill("Saved payment methods")
    page.get_by_role("button", name="Start session").click()
    page.wait_for_url(re.compile(r".*/dashboard/sessions/\d+$"))

    architect = page.locator('.agent-card[data-role="architect"]')
    progress = architect.locator("[data-progress-tokens]")
    expect(progress).to_be_visible(timeout=20_000)
    expect(progress).to_contain_text("tokens so far")
    expect(progress).to_have_attribute("data-progress-tokens", re.compile(r"^[1-9]\d*$"))
    expect(architect.locator(".agent-card__stream")).to_contain_text(re.compile(r"\S"))
    screenshot(page, "session-model-streaming", full_page=False)

    expect(page.locator('.agent-card[data-status="completed"]')).to_have_count(7, timeout=60_000)
    usage = page.locator("[data-usage=model]")
    expect(usage).to_contain_text("Brain: openai")
    expect(usage.locator("[data-usage-calls]")).to_have_text("7")
    expect(usage.locator("tbody tr")).to_have_count(7)
    expect(usage.locator("[data-usage-cost]")).to_have_text(re.compile(r"^\$\d+\.\d{2,4}$"))
    expect(architect.locator("[data-progress-tokens]")).to_have_count(0)  # the summary replaces it
    page.locator("#usage-title").scroll_into_view_if_needed()
    screenshot(page, "session-model-usage", full_page=False)

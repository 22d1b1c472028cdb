"""Refused fields come back as short human reasons, and the message names every one of them."""

from __future__ import annotations

import pytest
from helpers import error_of


async def test_every_failed_field_gets_a_human_reason_and_the_message_names_them_all(client):
    response = await client.post("/auth/signup", json={"username": "ab", "email": "ab@example.com", "password": "x"})
    assert response.status_code == 400
    error = await error_of(response)
    assert error["fields"] == {
        "username": "must be at least 3 characters",
        "password": "must be at least 8 characters",
    }
    assert sorted(error["message"].split("; ")) == [
        "password must be at least 8 characters",
        "username must be at least 3 characters",
    ]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"feature_name": ""}, "feature_name", "must not be empty"),
        ({"feature_name": "x" * 256}, "feature_name", "must be at most 255 characters"),
        ({"feature_name": "   "}, "feature_name", "must not be blank"),
        ({"feature_name": "ok", "team_id": "one"}, "team_id", "must be a whole number"),
        ({"feature_name": "ok", "team_id": 0}, "team_id", "must be greater than 0"),
    ],
)
async def test_session_start_reasons_read_as_sentences(login_as, user, personal_team, body, field, reason):
    client = await login_as(user)
    response = await client.post("/sessions", json={"team_id": personal_team.id, **body})
    assert response.status_code == 400
    assert (await error_of(response))["fields"][field] == reason


async def test_an_unknown_choice_lists_the_allowed_values(login_as, user, session):
    client = await login_as(user)
    response = await client.post(f"/sessions/{session.id}/decisions", json={"decision_text": "x", "confidence": "sure"})
    assert (await error_of(response))["fields"]["confidence"] == "must be one of high, medium or low"

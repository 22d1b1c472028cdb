"""The session event log: contiguous per-session `seq`, written only inside a transaction."""

from __future__ import annotations

import json
import threading

import pytest

from models import ExecutionSession, SessionEvent, db
from models.events import channel, events_after, namespace, publish, record_event


def test_events_get_contiguous_seq_per_session(session, personal_team):
    other = ExecutionSession.create(team=personal_team, feature_name="other")
    with db.atomic():
        first = record_event(session.id, "session_started", {"session": {"id": session.id}})
        record_event(other.id, "session_started", {})
        second = record_event(session.id, "decision_created", {"decision": {"id": 1}})
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["type"] == "session_started" and first["at"].endswith("Z")
    assert first["session"] == {"id": session.id} and first["session_id"] == session.id
    assert [e["seq"] for e in events_after(other.id)] == [1]
    assert [e["seq"] for e in events_after(session.id, after=1)] == [2]


def test_an_event_rolled_back_with_its_change_leaves_no_gap(session):
    with pytest.raises(RuntimeError), db.atomic():
        record_event(session.id, "session_started", {})
        raise RuntimeError("the state change failed")
    with db.atomic():
        event = record_event(session.id, "session_started", {})
    assert event["seq"] == 1


def test_recording_outside_a_transaction_is_refused(session):
    with pytest.raises(RuntimeError):
        record_event(session.id, "session_started", {})
    with pytest.raises(ValueError), db.atomic():
        record_event(session.id, "not_a_type", {})


def test_concurrent_writers_never_share_or_skip_a_seq(session):
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with db.connection_context():
                for _ in range(n):
                    with db.atomic():
                        record_event(session.id, "decision_created", {})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = [e.seq for e in SessionEvent.select().order_by(SessionEvent.seq)]
    assert seqs == list(range(1, 101))
    assert ExecutionSession.get_by_id(session.id).last_seq == 100


def test_publish_sends_each_event_on_its_session_channel(session, redis_client):
    pubsub = redis_client.pubsub()
    pubsub.subscribe(channel(session.id, namespace(redis_client)))
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    with db.atomic():
        message = record_event(session.id, "session_started", {})
    publish(redis_client, [message])
    received = pubsub.get_message(timeout=2)
    pubsub.close()
    assert json.loads(received["data"]) == message


def test_channels_carry_the_redis_database_number(redis_client):
    assert namespace(redis_client) == f"sage:{redis_client.connection_pool.connection_kwargs['db']}:"
    assert channel(7, namespace(3)) == "sage:3:session:7"


def test_saving_a_stale_session_never_rewinds_the_event_counter(session):
    with db.atomic():
        record_event(session.id, "session_started", {})
    session.status = "completed"  # `session` was loaded before the event: its last_seq is 0
    session.save()
    with db.atomic():
        assert record_event(session.id, "session_completed", {})["seq"] == 2

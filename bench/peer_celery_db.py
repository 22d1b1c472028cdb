"""Celery peer with the product's persistence: "Celery plus our own tables", written by hand.

    celery -A peer_celery_db worker --pool threads --concurrency T     (cwd bench/, see pipeline.py)

The same canvas as peer_celery.py (`chain` of `group`s, 1 + 2 + 2 + 2, Redis broker and result
backend), but each run is a session in the product's tables (the bench database, DATABASE_URL)
and each task does what a product task does to them, in plain SQL with psycopg2:

- `submit` inserts the session, its seven pending tasks and `session_started` (seq 1), then
  applies the canvas;
- a task claims its row (a conditional UPDATE under the session row's lock) and records
  `agent_task_started`; commits; publishes;
- it builds an output of the product's size (a summary, artifacts and three decisions);
- it locks the session, inserts its decisions, completes its row with the output, inserts the
  snapshot and `agent_task_completed`, and passes the stage gate: a compare-and-set on
  `current_stage` once every task of the stage is completed, or, for the last task, the
  session's completion and `session_completed`; commits; publishes the events to Redis.

Each event takes the session's next seq (`last_seq + 1` under the lock), as the product's do.
Members of the last stage stamp DONE_KEY after their commit, as in peer_celery.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from typing import Any

import psycopg2
import redis
from celery import Celery, chain, group
from peer_shape import DONE_KEY, LAST, PEER_REDIS_URL, SHAPE

ROLES = (("architect",), ("backend_dev", "dba"), ("frontend_dev", "ui_ux"), ("security", "it_admin"))
app = Celery("peer_celery_db", broker=PEER_REDIS_URL, backend=PEER_REDIS_URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False, result_expires=600)
client = redis.Redis.from_url(PEER_REDIS_URL)
_local = threading.local()


def connection() -> Any:
    """This thread's connection to the bench database."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg2.connect(os.environ["DATABASE_URL"])
    return conn


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def record(cur: Any, session_id: int, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Append an event with the session's next seq (the session row is locked by the caller)."""
    cur.execute("UPDATE execution_sessions SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq", (session_id,))
    seq = cur.fetchone()[0]
    at = now()
    cur.execute(
        "INSERT INTO session_events (session_id, seq, type, payload, created_at) VALUES (%s, %s, %s, %s, %s)",
        (session_id, seq, type_, json.dumps(payload), at),
    )
    return {**payload, "type": type_, "seq": seq, "at": at.isoformat() + "Z", "session_id": session_id}


def publish(events: list[dict[str, Any]]) -> None:
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.publish(f"peer:session:{event['session_id']}", json.dumps(event))
    pipe.execute()


def output_of(role: str, upstream: dict[str, Any]) -> dict[str, Any]:
    """An output of the product's size for one role: summary, artifacts, three decisions."""
    keys = [d["key"] for out in upstream.values() for d in out.get("decisions", [])][:2]
    return {
        "role": role,
        "summary": f"{role}: the plan for this feature, with three decisions.",
        "artifacts": {
            "items": [{"name": f"{role}-{i}", "kind": "component", "notes": "x" * 60} for i in range(8)],
        },
        "decisions": [
            {
                "key": f"{role}.d{i}",
                "text": f"{role} decides point {i} of the feature",
                "rationale": "the reason, in a sentence of ordinary length for a decision",
                "category": "architecture",
                "confidence": "high",
                "based_on_keys": keys,
            }
            for i in range(3)
        ],
    }


@app.task(name="peer_db_task")
def work(run_id: str, session_id: int, role: str, stage: int) -> None:
    conn = connection()
    with conn, conn.cursor() as cur:  # claim
        cur.execute(
            "SELECT status, current_stage FROM execution_sessions WHERE id = %s FOR NO KEY UPDATE", (session_id,)
        )
        status, current = cur.fetchone()
        if status != "active" or current != stage:
            return
        cur.execute(
            "UPDATE agent_tasks SET status = 'running', started_at = %s, celery_task_id = %s "
            "WHERE session_id = %s AND agent_role = %s AND status = 'pending' RETURNING id, task_description",
            (now(), work.request.id, session_id, role),
        )
        row = cur.fetchone()
        if row is None:
            return
        task_id, description = row
        cur.execute(
            "SELECT agent_role, output_data FROM agent_tasks WHERE session_id = %s AND stage < %s AND status = 'completed'",
            (session_id, stage),
        )
        upstream = {r: o for r, o in cur.fetchall()}
        started = [record(cur, session_id, "agent_task_started", {"task": {"id": task_id, "agent_role": role}})]
    publish(started)

    output = output_of(role, upstream)
    done_at = now()
    with conn, conn.cursor() as cur:  # complete, and the stage gate
        cur.execute("SELECT status FROM execution_sessions WHERE id = %s FOR NO KEY UPDATE", (session_id,))
        ids = []
        for decision in output["decisions"]:
            cur.execute(
                "INSERT INTO task_decisions (agent_task_id, source, decision_text, rationale, category, confidence, "
                "based_on, created_at) VALUES (%s, 'agent', %s, %s, %s, %s, '[]', %s) RETURNING id",
                (
                    task_id,
                    decision["text"],
                    decision["rationale"],
                    decision["category"],
                    decision["confidence"],
                    done_at,
                ),
            )
            decision["id"] = cur.fetchone()[0]
            ids.append(decision["id"])
        cur.execute(
            "UPDATE agent_tasks SET status = 'completed', completed_at = %s, output_data = %s "
            "WHERE id = %s AND status = 'running' AND celery_task_id = %s",
            (done_at, json.dumps(output), task_id, work.request.id),
        )
        if cur.rowcount == 0:
            conn.rollback()
            return
        context = {"task_description": description, "upstream": {r: o.get("summary") for r, o in upstream.items()}}
        cur.execute(
            "INSERT INTO agent_snapshots (agent_task_id, agent_role, context_state, capabilities, decisions, "
            "execution_metadata, created_at) VALUES (%s, %s, %s, '[]', %s, %s, %s) RETURNING id",
            (task_id, role, json.dumps(context), json.dumps(output["decisions"]), json.dumps({"peer": True}), done_at),
        )
        snapshot_id = cur.fetchone()[0]
        events = [
            record(
                cur,
                session_id,
                "agent_task_completed",
                {"task": {"id": task_id, "agent_role": role, "output_data": output}, "snapshot": {"id": snapshot_id}},
            )
        ]
        cur.execute(
            "SELECT count(*) FROM agent_tasks WHERE session_id = %s AND stage = %s AND status <> 'completed'",
            (session_id, stage),
        )
        if cur.fetchone()[0] == 0:
            if stage < LAST:
                cur.execute(
                    "UPDATE execution_sessions SET current_stage = %s WHERE id = %s AND current_stage = %s",
                    (stage + 1, session_id, stage),
                )
            else:
                cur.execute(
                    "UPDATE execution_sessions SET status = 'completed', end_reason = 'completed', ended_at = %s "
                    "WHERE id = %s AND status = 'active'",
                    (done_at, session_id),
                )
                events.append(record(cur, session_id, "session_completed", {"session": {"id": session_id}}))
    publish(events)
    if stage == LAST:
        client.rpush(DONE_KEY, f"{run_id} {time.time()}")


def canvas(run_id: str, session_id: int) -> chain:
    steps = []
    for stage, size in enumerate(SHAPE):
        members = [work.si(run_id, session_id, role, stage) for role in ROLES[stage][:size]]
        steps.append(members[0] if size == 1 else group(members))
    return chain(*steps)


def submit(run_id: str) -> None:
    """Insert the session, its tasks and `session_started`, then apply its canvas."""
    conn = connection()
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO execution_sessions (team_id, feature_name) VALUES (%s, %s) RETURNING id",
            (int(os.environ["PEER_TEAM_ID"]), f"Peer {run_id}"),
        )
        session_id = cur.fetchone()[0]
        for stage, roles in enumerate(ROLES):
            for role in roles:
                cur.execute(
                    "INSERT INTO agent_tasks (session_id, agent_role, stage, task_description) VALUES (%s, %s, %s, %s)",
                    (session_id, role, stage, f"{role} of {run_id}"),
                )
        cur.execute("SELECT id FROM execution_sessions WHERE id = %s FOR NO KEY UPDATE", (session_id,))
        started = [record(cur, session_id, "session_started", {"session": {"id": session_id}})]
    publish(started)
    canvas(run_id, session_id).apply_async()

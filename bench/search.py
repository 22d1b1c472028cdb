"""Search over 100,000 sessions and their decisions, and compare on two model-sized sessions.

    .venv/bin/python bench/search.py [--sessions 100000] [--decisions-per-task 2] [--requests 200]

Bulk-inserts `--sessions` finished sessions (7 tasks each, as `bench/api.py` does), each with one
session decision and `--decisions-per-task` agent decisions per task, whose texts and rationales
are drawn from a vocabulary of technologies and verbs so that every search term has thousands of
candidates, then ANALYZE. A real web process answers `GET /search` at one connection, for a mix
of exact words, typos and phrases, with and without filters; the script prints p50 and p99 per
query and overall. Then it builds two sessions with as many decisions and artifacts as a model
brain writes (7 agents x 12 decisions, 40 endpoints, 15 tables, 30 threats), differing in one
session decision, and times `GET /sessions/{a}/compare/{b}`.
"""

from __future__ import annotations

import argparse
import time

import common
import httpx

TECH = [
    "SQLite", "PostgreSQL", "Redis", "Kafka", "RabbitMQ", "Elasticsearch", "MongoDB", "GraphQL", "gRPC",
    "WebSocket", "OAuth", "JWT", "S3", "CloudFront", "Kubernetes", "Terraform", "Celery", "Dramatiq",
]  # fmt: skip
VERBS = ["Use", "Store sessions in", "Cache reads with", "Queue jobs on", "Index text with", "Expose the API over"]
REASONS = [
    "because it runs on one laptop", "since the team already operates it", "to keep p99 latency low",
    "so that backups are a file copy", "for typo-tolerant product search", "to stream progress to browsers",
]  # fmt: skip
QUERIES = [
    ("sqlte", ""), ("postgress", ""), ("redis", ""), ("kafka queue", ""), ("typo tolerant search", ""),
    ("websockt", ""), ("backups", "&role=dba"), ("latency", "&category=performance"), ("oauth jwt", ""),
    ("terraform", "&since=2020-01-01"),
]  # fmt: skip


def bulk_insert(team_id: int, user_id: int, sessions: int, per_task: int) -> None:
    """Sessions, tasks, session decisions and agent decisions with INSERT ... SELECT statements."""
    from models import db

    def pick(array: list[str], expr: str) -> str:
        quoted = ", ".join("'" + a.replace("'", "''") + "'" for a in array)
        return f"(ARRAY[{quoted}])[1 + ({expr}) %% {len(array)}]"

    roles = "('architect',0),('backend_dev',1),('dba',1),('frontend_dev',2),('ui_ux',2),('security',3),('it_admin',3)"
    categories = ["technology", "data", "performance", "security", "architecture", "infrastructure"]
    with db.atomic():
        db.execute_sql(
            f"""
            INSERT INTO execution_sessions (team_id, user_id, feature_name, description, status, current_stage,
                                            last_seq, started_at, ended_at, duration_seconds, created_at)
            SELECT %s, %s, 'Feature ' || g || ' ' || {pick(TECH, "g * 7")},
                   {pick(REASONS, "g")}, 'completed', 3, 0,
                   now() - make_interval(secs => g), now() - make_interval(secs => g) + interval '60 s', 60, now()
            FROM generate_series(1, %s) g
            """,
            (team_id, user_id, sessions),
        )
        db.execute_sql(
            f"""
            INSERT INTO session_decisions (session_id, user_id, decision_text, category, confidence, created_at)
            SELECT s.id, %s, {pick(VERBS, "s.id")} || ' ' || {pick(TECH, "s.id * 3")}, 'technology', 'high',
                   s.started_at
            FROM execution_sessions s WHERE s.team_id = %s
            """,
            (user_id, team_id),
        )
        db.execute_sql(
            f"""
            INSERT INTO agent_tasks (session_id, agent_role, stage, task_description, status, started_at,
                                     completed_at, duration_seconds, retry_count, created_at)
            SELECT s.id, r.role, r.stage, 'Bulk task', 'completed', s.started_at, s.ended_at, 8.5, 0, now()
            FROM execution_sessions s CROSS JOIN (VALUES {roles}) AS r(role, stage)
            WHERE s.team_id = %s
            """,
            (team_id,),
        )
        db.execute_sql(
            f"""
            INSERT INTO task_decisions (agent_task_id, source, decision_text, rationale, category, confidence,
                                        based_on, created_at)
            SELECT t.id, 'agent', {pick(VERBS, "t.id + n")} || ' ' || {pick(TECH, "t.id * 5 + n")},
                   'We chose it ' || {pick(REASONS, "t.id + n * 3")}, {pick(categories, "t.id + n")}, 'high',
                   '[]'::jsonb, t.started_at
            FROM agent_tasks t CROSS JOIN generate_series(1, %s) n
            JOIN execution_sessions s ON s.id = t.session_id WHERE s.team_id = %s
            """,
            (per_task, team_id),
        )
    db.execute_sql("ANALYZE")


def model_sized_pair(team_id: int, user_id: int) -> tuple[int, int]:
    """Two sessions shaped like model-brain output, differing in one session decision."""
    from models import AgentTask, ExecutionSession, SessionDecision
    from models.schema import AGENT_ROLES, STAGE_OF_ROLE

    ids = []
    for variant, engine in enumerate(("PostgreSQL", "SQLite")):
        session = ExecutionSession.create(
            team=team_id, user=user_id, feature_name=f"Compare {engine}", status="completed"
        )
        decision = SessionDecision.create(
            session=session, user=user_id, decision_text=f"Use {engine}", category="technology"
        )
        for role in AGENT_ROLES:
            decisions = [
                {
                    "key": f"{role}.d{i}",
                    "text": f"{role} decision {i} on {engine if i % 3 == 0 else 'the API'}",
                    "rationale": f"because of {engine if i % 4 == 0 else 'scale'}",
                    "category": "technology",
                    "confidence": "high",
                    "based_on_keys": [f"architect.d{i}"] if role != "architect" else [],
                    "based_on_session_decisions": [decision.id] if i % 3 == 0 else [],
                }
                for i in range(12)
            ]
            artifacts = {
                "endpoints": [{"method": "GET", "path": f"/things/{i}", "purpose": f"read {i} {variant}"} for i in range(40)],
                "tables": [{"name": f"t{i}", "columns": [{"name": "id", "type": engine}] * 6} for i in range(15)],
                "threats": [{"threat": f"threat {i}", "severity": "high" if (i + variant) % 5 else "low"} for i in range(30)],
            }  # fmt: skip
            AgentTask.create(
                session=session, agent_role=role, stage=STAGE_OF_ROLE[role], task_description="x", status="completed",
                output_data={"summary": "s", "decisions": decisions, "artifacts": artifacts, "concerns": []},
                duration_seconds=30.0,
            )  # fmt: skip
        ids.append(session.id)
    return ids[0], ids[1]


def timed(client: httpx.Client, url: str, n: int) -> list[float]:
    took = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url)
        took.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--decisions-per-task", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200, help="requests per query")
    args = parser.parse_args()

    common.prepare()
    from models import ExecutionSession, SessionDecision, TaskDecision, Team

    user_id = common.make_account("search")
    team_id = Team.create(name="Bench", owner=user_id).id
    started = time.monotonic()
    bulk_insert(team_id, user_id, args.sessions, args.decisions_per_task)
    print(
        f"inserted in {time.monotonic() - started:.1f} s: {ExecutionSession.select().count()} sessions, "
        f"{SessionDecision.select().count()} session decisions, {TaskDecision.select().count()} agent decisions"
    )
    a, b = model_sized_pair(team_id, user_id)

    with common.web_server() as base:
        cookie = common.login_cookie(base, "search")
        with httpx.Client(base_url=base, headers={"Cookie": cookie}, timeout=30) as client:
            everything: list[float] = []
            print(f"GET /search at one connection, {args.requests} requests per query")
            print(f"{'query':<40}{'hits':>6}{'p50 ms':>10}{'p99 ms':>10}")
            for q, extra in QUERIES:
                url = f"/search?q={q}{extra}"
                hits = len(client.get(url).json()["results"])
                took = timed(client, url, args.requests)
                everything += took
                print(
                    f"{q + extra:<40}{hits:>6}{common.percentile(took, 50):>10.1f}{common.percentile(took, 99):>10.1f}"
                )
            print(
                f"{'all queries':<40}{'':>6}{common.percentile(everything, 50):>10.1f}{common.percentile(everything, 99):>10.1f}"
            )

            took = timed(client, f"/sessions/{a}/compare/{b}", 50)
            size = len(client.get(f"/sessions/{a}/compare/{b}").content)
            print(f"\nGET /sessions/{{a}}/compare/{{b}}, 7 agents x 12 decisions, 85 artifact items each: "
                  f"p50 {common.percentile(took, 50):.1f} ms, p99 {common.percentile(took, 99):.1f} ms, {size} bytes")  # fmt: skip


if __name__ == "__main__":
    main()

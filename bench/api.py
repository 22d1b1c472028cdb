"""The read endpoints under concurrent load, then the session list against 100,000 sessions.

    .venv/bin/python bench/api.py [--connections 64] [--seconds 10] [--client wrk|httpx] [--quick]

Starts a real web process and worker, runs a few real sessions (so the reads return real
tasks, decisions, snapshots and events), stops the worker, then drives each endpoint with
`--connections` concurrent keep-alive connections for `--seconds`: `wrk` (Debian package `wrk`,
the cookie passed with -H) when it is installed, else an asyncio httpx client in this process
(which competes with the server for the same two cores, so its figures are pessimistic).

Then it bulk-inserts 100,000 sessions and 700,000 tasks into the same team with
INSERT ... SELECT generate_series, runs ANALYZE, and measures the list endpoint again: the
first page, a status-filtered page and a page behind a deep `before` cursor.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import time

import common
import httpx
from pipeline import product_session, product_worker_env


def wrk(url: str, cookie: str, connections: int, seconds: int) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, non-2xx) from wrk --latency."""
    out = subprocess.run(
        ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-H", f"Cookie: {cookie}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return per_second, ms("50%"), ms("99%"), int(errors.group(1)) if errors else 0


async def httpx_load(url: str, cookie: str, connections: int, seconds: int) -> tuple[float, float, float, int]:
    """The same figures from `connections` asyncio workers on one httpx client."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(headers={"Cookie": cookie}, limits=limits, timeout=30) as client:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                started = time.monotonic()
                response = await client.get(url)
                latencies.append((time.monotonic() - started) * 1000)
                errors += response.status_code >= 300

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    return len(latencies) / elapsed, common.percentile(latencies, 50), common.percentile(latencies, 99), errors


def bulk_insert(team_id: int, user_id: int, sessions: int) -> None:
    """`sessions` finished sessions of 7 completed tasks each, in two INSERT ... SELECT statements."""
    from models import db

    roles = "('architect',0),('backend_dev',1),('dba',1),('frontend_dev',2),('ui_ux',2),('security',3),('it_admin',3)"
    with db.atomic():
        db.execute_sql(
            """
            INSERT INTO execution_sessions (team_id, user_id, feature_name, status, current_stage, last_seq,
                                            started_at, ended_at, duration_seconds, created_at)
            SELECT %s, %s, 'Bulk ' || g, CASE WHEN g %% 10 = 0 THEN 'error' ELSE 'completed' END, 3, 0,
                   now() - make_interval(secs => g), now() - make_interval(secs => g) + interval '0.2 s', 0.2, now()
            FROM generate_series(1, %s) g
            """,
            (team_id, user_id, sessions),
        )
        db.execute_sql(
            f"""
            INSERT INTO agent_tasks (session_id, agent_role, stage, task_description, status, started_at,
                                     completed_at, duration_seconds, retry_count, created_at)
            SELECT s.id, r.role, r.stage, 'Bulk task', 'completed', s.started_at, s.ended_at, 0.02, 0, now()
            FROM execution_sessions s CROSS JOIN (VALUES {roles}) AS r(role, stage)
            WHERE s.team_id = %s AND s.feature_name LIKE 'Bulk %%'
            """,
            (team_id,),
        )
    db.execute_sql("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions to bulk-insert (7 tasks each)")
    parser.add_argument("--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx")
    parser.add_argument("--quick", action="store_true", help="stop after the small team (skip the bulk insert)")
    args = parser.parse_args()

    common.prepare()
    from models import AgentTask, ExecutionSession, Team

    user_id = common.make_account("api")
    team_id = Team.create(name="Bench", owner=user_id).id

    def load(url: str, connections: int = args.connections) -> tuple[float, float, float, int]:
        time.sleep(2)  # let the server finish what the previous run left queued
        if args.client == "wrk":
            return wrk(url, cookie, connections, args.seconds)
        return asyncio.run(httpx_load(url, cookie, connections, args.seconds))

    def line(label: str, figures: tuple[float, float, float, int]) -> None:
        per_second, p50, p99, errors = figures
        bad = f"  ({errors} errors!)" if errors else ""
        print(f"{label:<44}{per_second:>9.0f}{p50:>10.1f}{p99:>10.1f}{bad}")

    with common.web_server() as base:
        cookie = common.login_cookie(base, "api")
        with common.process("actors", "worker", env=product_worker_env(2, 4, 100), log="/tmp/sage-bench-worker.log"):

            async def run_sessions() -> None:
                async with common.product_client(base, cookie) as client:
                    await asyncio.gather(*(product_session(client, team_id, f"Read {i}") for i in range(5)))

            asyncio.run(run_sessions())
        session_id = ExecutionSession.select().where(ExecutionSession.team == team_id).first().id
        print(f"{args.client}, {args.connections} connections, {args.seconds} s per endpoint")
        print(f"{'endpoint':<44}{'req/s':>9}{'p50 ms':>10}{'p99 ms':>10}")
        for path in ("", "/timeline", "/events", "/replay"):
            line(f"GET /sessions/{{id}}{path}", load(f"{base}/sessions/{session_id}{path}"))
        # One connection: the service time of one request, without queueing behind the others.
        line("GET /sessions/{id} (1 connection)", load(f"{base}/sessions/{session_id}", 1))
        list_url = f"{base}/teams/{team_id}/sessions"
        small = ExecutionSession.select().where(ExecutionSession.team == team_id).count()
        line(f"GET /teams/{{id}}/sessions ({small} sessions)", load(list_url))
        line(f"  ?status=completed ({small} sessions)", load(f"{list_url}?status=completed"))
        if args.quick:
            return

        started = time.monotonic()
        bulk_insert(team_id, user_id, args.sessions)
        total = ExecutionSession.select().where(ExecutionSession.team == team_id).count()
        tasks = AgentTask.select().count()
        print(
            f"\ninserted {args.sessions} sessions in {time.monotonic() - started:.1f} s: {total} sessions, {tasks} tasks"
        )
        deep = (
            ExecutionSession.select(ExecutionSession.id)
            .where(ExecutionSession.team == team_id)
            .order_by(ExecutionSession.id)
            .offset(total // 10)
            .first()
            .id
        )
        line(f"GET /teams/{{id}}/sessions ({total} sessions)", load(list_url))
        line(f"  ?status=completed ({total} sessions)", load(f"{list_url}?status=completed"))
        line(f"  ?status=error ({total} sessions)", load(f"{list_url}?status=error"))
        line(f"  ?before={deep} (90% deep)", load(f"{list_url}?before={deep}"))
        # The same page size as the small team's whole list: what is left is the index's cost.
        line(f"  ?limit={small} ({total} sessions)", load(f"{list_url}?limit={small}"))
        line(f"  ?limit={small}&before={deep} (90% deep)", load(f"{list_url}?limit={small}&before={deep}"))
        line(f"GET /sessions/{{id}} ({total} sessions)", load(f"{base}/sessions/{session_id}"))


if __name__ == "__main__":
    main()

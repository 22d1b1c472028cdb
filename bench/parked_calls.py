"""Model calls parked off the worker threads: N sessions on the `openai` brain at once, against
the tests' fake endpoint answering each call after a set latency, on a small worker.

    .venv/bin/python bench/parked_calls.py [--sessions 200] [--latency 1.0] [--processes 1]
        [--threads 4] [--cap 200]

Prints the wall time from the first start to the last session's end against the ideal (each
session's four stages wait one latency each; no more than `cap` calls at once: 7 x N / cap
latencies), the fake endpoint's peak of calls at once, and each worker process's peak RSS.
`bench/llm_scale.py` is the issue's full bench (1,000 sessions, with the Celery peer); this one
is the quick check of the parking worker itself.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import common  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--cap", type=int, default=200)
    args = parser.parse_args()

    common.prepare()  # before anything imports `actors`, whose broker is set up from the environment
    import redis
    from fake_llm import FakeModelServer

    from actors import pipeline
    from models import ExecutionSession, Team

    owner = common.make_account("parked")
    team_id = Team.create(name="Bench", owner=owner).id
    with FakeModelServer() as fake:
        fake.latency = args.latency
        env = common.bench_env(
            OPENAI_BASE_URL=fake.openai_url,
            OPENAI_API_KEY="not-needed",
            SAGE_OPENAI_MODEL="fake-gpt",
            SAGE_LLM_MAX_CONCURRENCY=str(args.cap),
            WORKER_PROCESSES=str(args.processes),
            WORKER_THREADS=str(args.threads),
        )
        argv = ("actors", "worker", "--processes", str(args.processes), "--threads", str(args.threads))
        with common.process(*argv, env=env, log="/tmp/sage-bench-parked-worker.log") as supervisor:
            client = redis.Redis.from_url(common.REDIS_URL)
            while client.zcard("dramatiq:__heartbeats__") < args.processes:
                time.sleep(0.1)
            ids = []
            started = time.monotonic()
            for n in range(args.sessions):
                session = pipeline.create_session(team_id, owner, f"Feature {n}", "parked calls", brain="openai")
                pipeline.start_session(session.id)
                ids.append(session.id)
            queued = time.monotonic() - started
            rss: dict[int, float] = {}
            while True:
                for pid in children(supervisor.pid):
                    rss[pid] = max(rss.get(pid, 0.0), peak_rss_mb(pid))
                active = ExecutionSession.select().where(
                    ExecutionSession.id.in_(ids) & (ExecutionSession.status == "active")
                )
                if not active.exists():
                    break
                time.sleep(0.2)
            wall = time.monotonic() - started
        statuses = {s.status for s in ExecutionSession.select().where(ExecutionSession.id.in_(ids))}
    ideal = max(4, math.ceil(7 * args.sessions / args.cap)) * args.latency
    print(
        f"{args.sessions} sessions, {args.processes} worker process(es) x {args.threads} threads, "
        f"latency {args.latency:g} s, cap {args.cap}"
    )
    print(f"  wall {wall:.1f} s (enqueueing took {queued:.1f} s); ideal {ideal:.1f} s; ratio {wall / ideal:.2f}x")
    print(f"  fake endpoint: {len(fake.requests)} calls, peak {fake.peak} at once; sessions {sorted(statuses)}")
    print("  worker peak RSS: " + ", ".join(f"{mb:.0f} MB" for mb in rss.values()))


if __name__ == "__main__":
    main()

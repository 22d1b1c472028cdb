"""What one session costs the database: statements and transactions per session, and a profile.

    .venv/bin/python bench/lifecycle_cost.py [--sessions 50] [--threads 4] [--profile out.txt]

Runs whole sessions (knowledge-base agents) through the real actors on Dramatiq's in-memory
broker, in this process, against the bench database (BENCH_DATABASE_URL; no web, no Redis
broker), and counts what the pipeline sends to PostgreSQL: every statement Peewee executes,
every BEGIN and every COMMIT, each a round trip. With --profile, writes a cProfile of the worker
threads (sorted by cumulative time) to the given file. Events are published to BENCH_REDIS_URL.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--profile", help="write a cProfile of the worker threads here")
    args = parser.parse_args()

    os.environ["SAGE_STUB_BROKER"] = "1"
    common.prepare()
    import dramatiq
    import peewee

    from actors import broker, pipeline
    from models import ExecutionSession, Team
    from models.db import db

    # Count at Peewee's own methods, the ones that talk to the server (a BEGIN sent in front of
    # a statement is part of that statement's round trip).
    PostgresDatabase = peewee.PostgresqlDatabase

    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    execute_sql, begin, commit = peewee.Database.execute_sql, PostgresDatabase.begin, peewee.Database.commit

    polling = threading.local()  # the bench's own wait loop is not the pipeline's cost

    def count(kind: str) -> None:
        if getattr(polling, "on", False):
            return
        with lock:
            counts[kind] += 1

    def counted_execute(self, sql, params=None, *rest, **kw):
        words = sql.split(None, 2)
        count(words[1].upper().rstrip(";") if words[0].upper() == "BEGIN;" else words[0].upper())
        return execute_sql(self, sql, params, *rest, **kw)

    def counted_begin(self, *rest, **kw):
        count("BEGIN")
        return begin(self, *rest, **kw)

    def counted_commit(self, *rest, **kw):
        count("COMMIT")
        return commit(self, *rest, **kw)

    team = Team.create(name="Cost", owner=common.make_account("cost"))
    profiles: list[cProfile.Profile] = []
    if args.profile:

        class Profiled(dramatiq.Middleware):
            def before_process_message(self, broker, message):
                profile = cProfile.Profile()
                threading.current_thread()._sage_profile = profile  # type: ignore[attr-defined]
                profile.enable()

            def after_process_message(self, broker, message, *, result=None, exception=None):
                profile = getattr(threading.current_thread(), "_sage_profile", None)
                if profile is not None:
                    profile.disable()
                    with lock:
                        profiles.append(profile)

            after_skip_message = after_process_message

        broker.add_middleware(Profiled())

    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=args.threads)
    worker.start()
    try:
        warm = pipeline.create_session(team.id, None, "Warm-up")
        pipeline.start_session(warm.id)
        while ExecutionSession.get_by_id(warm.id).status == "active":
            time.sleep(0.02)
        profiles.clear()
        peewee.Database.execute_sql = counted_execute  # type: ignore[method-assign]
        PostgresDatabase.begin = counted_begin  # type: ignore[method-assign]
        peewee.Database.commit = counted_commit  # type: ignore[method-assign]
        started = time.monotonic()
        ids = []
        for index in range(args.sessions):
            session = pipeline.create_session(team.id, None, f"Cost {index}")
            pipeline.start_session(session.id)
            ids.append(session.id)
        polling.on = True
        with db.connection_context():
            while (
                ExecutionSession.select()
                .where(ExecutionSession.id.in_(ids), ExecutionSession.status == "active")
                .count()
            ):
                time.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        peewee.Database.execute_sql, peewee.Database.commit = execute_sql, commit  # type: ignore[method-assign]
        PostgresDatabase.begin = begin  # type: ignore[method-assign]
        worker.stop()
    statuses = collections.Counter(s.status for s in ExecutionSession.select().where(ExecutionSession.id.in_(ids)))
    total = sum(counts.values())
    print(f"{args.sessions} sessions ({dict(statuses)}), {args.threads} threads, {elapsed:.2f} s")
    print(f"round trips per session (statements + BEGIN + COMMIT): {total / args.sessions:.1f}")
    for kind, value in counts.most_common():
        print(f"  {kind:<10}{value / args.sessions:>8.1f}")
    if args.profile:
        out = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=out)
        for profile in profiles[1:]:
            stats.add(profile)
        stats.sort_stats("cumulative").print_stats(60)
        Path(args.profile).write_text(out.getvalue())
        print(f"profile of {len(profiles)} messages written to {args.profile}")


if __name__ == "__main__":
    main()

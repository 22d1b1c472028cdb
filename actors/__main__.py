"""`python -m actors`: run the worker, run a feature end to end, rerun sessions and tasks, sweep,
and list or check the brains."""

from __future__ import annotations

import argparse
import sys

from models.preflight import settings_or_exit
from models.schema import AGENT_ROLES
from models.settings import ConfigError, Settings


def worker(args: argparse.Namespace) -> int:
    """Run the supervised pool of worker processes after a readable pre-flight check."""
    from actors.supervisor import supervise

    settings = settings_or_exit()
    return supervise(
        args.processes or settings.worker_processes,
        args.threads or settings.worker_threads,
        settings.worker_grace_seconds,
    )


def worker_process(args: argparse.Namespace) -> int:
    """One worker process of the pool (the supervisor starts these; see actors/supervisor.py)."""
    from actors.supervisor import serve_one

    return serve_one(args.threads, args.grace)


def _connect() -> Settings:
    """Bind the models to DATABASE_URL unless a database is already bound (scripts run in tests)."""
    from models.db import db, init_database

    settings = Settings.from_env()
    if db.obj is None:
        init_database(settings.database_url, 2)
    return settings


def _outcome(session_id: int, wait: bool, timeout: float) -> int:
    """Print the session (after waiting for it to finish when asked); exit 0 completed, 1 error, 3 timeout."""
    from actors.progress import watch
    from models.schema import AgentTask, ExecutionSession

    session = watch(session_id, timeout) if wait else ExecutionSession.get_by_id(session_id)
    rerun = f" (rerun of {session.rerun_of_id})" if session.rerun_of_id else ""
    print(f"session {session.id}{rerun}: {session.feature_name!r} is {session.status}", end="")
    print(f" after {session.duration_seconds:.1f} s" if session.duration_seconds is not None else "")
    if session.error_message:
        print(f"  error: {session.error_message}")
    tasks = AgentTask.select().where(AgentTask.session == session.id).order_by(AgentTask.stage, AgentTask.id)
    for task in tasks:
        summary = (task.output_data or {}).get("summary", task.error_message or "")
        took = f"{task.duration_seconds:6.2f} s" if task.duration_seconds is not None else "       -"
        print(f"  [{task.stage}] {task.agent_role:<12} {task.status:<9} {took}  retries {task.retry_count}  {summary}")
    if session.status == "active":
        return 3 if wait else 0
    return 0 if session.status == "completed" else 1


def run(args: argparse.Namespace) -> int:
    """Create a session for a feature, start it and wait for the outcome."""
    _connect()
    from actors.pipeline import create_session, start_session
    from models.schema import Team

    team = Team.get_or_none(Team.id == args.team)
    if team is None:
        print(f"sage-mode: no team {args.team}", file=sys.stderr)
        return 2
    from models.brains import BrainConfigError, usable_brain

    try:
        brain = usable_brain(args.brain)
    except BrainConfigError as exc:
        print(f"sage-mode: {exc}", file=sys.stderr)
        return 2
    session = create_session(team.id, args.user or team.owner_id, args.feature, args.description, brain=brain)
    start_session(session.id)
    print(f"session {session.id} started")
    return _outcome(session.id, not args.no_wait, args.timeout)


def _rerun(start, what: str, args: argparse.Namespace) -> int:
    """Start a rerun with `start()`, report it, then wait for its outcome unless --no-wait."""
    _connect()
    from actors.pipeline import SessionNotFound
    from actors.reruns import NotRerunnable

    try:
        session = start()
    except (SessionNotFound, NotRerunnable) as exc:
        print(f"sage-mode: cannot rerun: {exc}", file=sys.stderr)
        return 2
    print(f"session {session.id} started {what}")
    return _outcome(session.id, not args.no_wait, args.timeout)


def rerun_session_cmd(args: argparse.Namespace) -> int:
    """Rerun a session (whole, or from one role's stage) as a new linked session."""
    from actors.reruns import rerun_session
    from models.brains import BrainConfigError, usable_brain

    if args.brain:
        try:
            usable_brain(args.brain)
        except BrainConfigError as exc:
            print(f"sage-mode: {exc}", file=sys.stderr)
            return 2

    return _rerun(
        lambda: rerun_session(args.session_id, from_role=args.from_role, brain=args.brain),
        f"as a rerun of {args.session_id}",
        args,
    )


def rerun_task_cmd(args: argparse.Namespace) -> int:
    """Rerun one task (with its stage and later ones) in a new linked session."""
    from actors.reruns import rerun_task

    return _rerun(lambda: rerun_task(args.task_id), f"to rerun task {args.task_id}", args)


def brains_cmd(args: argparse.Namespace) -> int:
    """List the brains, or check one with a small real request (exit 1 with the reason if it fails)."""
    from models.brains import BrainConfigError, brain_info, catalogue, default_brain, price_problem

    if args.action is None:
        default = default_brain()
        for info in catalogue():
            state = "configured" if info.configured else f"not configured: {info.reason}"
            mark = " (default)" if info.name == default else ""
            print(f"{info.name:<15} {info.provider or '-':<10} {info.model or '-':<24} {state}{mark}")
        problem = price_problem()
        if problem:
            print(f"sage-mode: {problem}; the built-in prices are used", file=sys.stderr)
        return 0
    if args.action != "check" or not args.name:
        print("sage-mode: usage: python -m actors brains [check NAME]", file=sys.stderr)
        return 2
    try:
        info = brain_info(args.name)
    except BrainConfigError as exc:
        print(f"sage-mode: {exc}", file=sys.stderr)
        return 2
    if info.provider is None:
        print(f"{info.name}: offline, nothing to check")
        return 0
    from actors.agents import BrainError, get_brain
    from actors.agents.llm import ModelBrain

    brain = get_brain(info.name)
    assert isinstance(brain, ModelBrain)  # a brain with a provider is a model brain
    try:
        call = brain.ping()
    except BrainError as exc:
        print(f"{info.name} check failed: {exc}", file=sys.stderr)
        return 1
    cost = "unknown (no price for this model)" if call["cost_usd"] is None else f"${call['cost_usd']:.6f}"
    print(
        f"{info.name} ok: model {call['model']}, {call['latency_ms']} ms "
        f"(first token after {call['time_to_first_token_ms']} ms), "
        f"{call['prompt_tokens']} prompt + {call['completion_tokens']} completion tokens, cost {cost}"
    )
    return 0


def sweep_cmd(args: argparse.Namespace) -> int:
    """Mark stalled active sessions as error once (the workers also do this every 30 s)."""
    settings = _connect()
    from actors.sweeper import stall_seconds, sweep

    swept = sweep(settings, stall=args.stall)
    limit = args.stall if args.stall is not None else stall_seconds(settings)
    print(f"stalled sessions (no progress for {limit:.0f} s) marked error: {', '.join(map(str, swept)) or 'none'}")
    return 0


def _waiting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", action="store_true", help="queue it and return at once")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the outcome (default 900)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors", description="Sage Mode worker tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    run_worker = sub.add_parser("worker", help="run the Dramatiq worker on the Redis broker")
    run_worker.add_argument("--processes", type=int, help="worker processes (default WORKER_PROCESSES)")
    run_worker.add_argument("--threads", type=int, help="threads per process (default WORKER_THREADS)")
    run_worker.set_defaults(func=worker)

    one = sub.add_parser("worker-process")  # started by `worker`; not listed in --help
    one.add_argument("--threads", type=int, required=True)
    one.add_argument("--grace", type=float, required=True)
    one.set_defaults(func=worker_process)

    run_feature = sub.add_parser("run", help="run a feature through the agent team, wait and print the outcome")
    run_feature.add_argument("feature", help="the feature name, e.g. 'Team chat'")
    run_feature.add_argument("--team", type=int, required=True, help="the team id the session belongs to")
    run_feature.add_argument("--description", help="what the feature should do")
    run_feature.add_argument("--user", type=int, help="the user id starting it (default: the team's owner)")
    run_feature.add_argument("--brain", help="the brain to think with (default SAGE_BRAIN, else knowledge-base)")
    _waiting(run_feature)
    run_feature.set_defaults(func=run)

    rerun_s = sub.add_parser("rerun-session", help="rerun a session as a new session linked to it")
    rerun_s.add_argument("session_id", type=int)
    rerun_s.add_argument(
        "--from", dest="from_role", choices=AGENT_ROLES, help="copy the stages before this role's, rerun the rest"
    )
    rerun_s.add_argument("--brain", help="think with another brain than the original's")
    _waiting(rerun_s)
    rerun_s.set_defaults(func=rerun_session_cmd)

    rerun_t = sub.add_parser("rerun-task", help="rerun a task (its stage and later ones) in a new linked session")
    rerun_t.add_argument("task_id", type=int)
    _waiting(rerun_t)
    rerun_t.set_defaults(func=rerun_task_cmd)

    brains_p = sub.add_parser("brains", help="list the brains; 'brains check NAME' sends one small request")
    brains_p.add_argument("action", nargs="?", choices=["check"], help="check one brain")
    brains_p.add_argument("name", nargs="?", help="the brain to check (openai, anthropic)")
    brains_p.set_defaults(func=brains_cmd)

    sweep_p = sub.add_parser("sweep", help="mark stalled active sessions as error")
    sweep_p.add_argument(
        "--stall", type=float, help="seconds without progress (default from the time limit and retries)"
    )
    sweep_p.set_defaults(func=sweep_cmd)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"sage-mode: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

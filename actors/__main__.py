"""`python -m actors worker`: check configuration and services, then run the Dramatiq worker."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from models.preflight import preflight
from models.settings import ConfigError, Settings


def worker(args: argparse.Namespace) -> int:
    """Replace this process with `dramatiq actors` after a readable pre-flight check."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"sage-mode: configuration error: {exc}", file=sys.stderr)
        return 2
    problem = preflight(settings)
    if problem:
        print(f"sage-mode: {problem}", file=sys.stderr)
        return 1
    dramatiq_bin = shutil.which("dramatiq", path=os.path.dirname(sys.executable)) or "dramatiq"
    argv = [
        dramatiq_bin,
        "actors",
        "--processes",
        str(args.processes or settings.worker_processes),
        "--threads",
        str(args.threads or settings.worker_threads),
        "--worker-shutdown-timeout",
        "10000",
    ]
    os.execv(dramatiq_bin, argv)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors", description="Sage Mode worker tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_worker = sub.add_parser("worker", help="run the Dramatiq worker on the Redis broker")
    run_worker.add_argument("--processes", type=int, help="worker processes (default WORKER_PROCESSES)")
    run_worker.add_argument("--threads", type=int, help="threads per process (default WORKER_THREADS)")
    run_worker.set_defaults(func=worker)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

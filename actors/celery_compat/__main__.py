"""`python -m actors.celery_compat worker -A MODULE`: a worker for a user's own task module.

The way `celery -A proj worker` does: MODULE (or `MODULE:attribute`) is imported, its Celery app
found (`app`, `celery`, or the app its tasks made current), and Dramatiq's worker runs that
app's broker with `--processes` and `--threads` (Celery's `--concurrency` is threads here,
`-Q` the queues to consume).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.celery_compat")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker for a task module")
    worker.add_argument("-A", "--app", required=True, help="the module holding the app (MODULE or MODULE:app)")
    worker.add_argument("-p", "--processes", type=int, default=1, help="worker processes (default 1)")
    worker.add_argument("-c", "--concurrency", "--threads", dest="threads", type=int, default=8, help="threads each")
    worker.add_argument("-Q", "--queues", default="", help="comma-separated queues to consume (default: all)")
    worker.add_argument("--path", default=".", help="directory to import MODULE from (default: .)")
    args = parser.parse_args(argv)

    # Checked here, so that a wrong -A is one readable line, not a traceback from every process.
    sys.path.insert(0, os.path.abspath(args.path))
    from actors.celery_compat.boot import load_app

    try:
        load_app(args.app)
    except (ImportError, LookupError) as exc:
        print(f"celery_compat: cannot load app {args.app!r}: {exc}", file=sys.stderr)
        return 2
    os.environ["SAGE_CELERY_APP"] = args.app
    os.environ["SAGE_CELERY_QUEUES"] = args.queues
    os.environ.setdefault("dramatiq_worker_timeout", "100")  # poll interval of an idle consumer, ms
    dramatiq_bin = shutil.which("dramatiq", path=os.path.dirname(sys.executable)) or "dramatiq"
    argv = [
        dramatiq_bin,
        "actors.celery_compat.boot:broker",
        "--path",
        os.path.abspath(args.path),
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
        "--worker-shutdown-timeout",
        "10000",
    ]
    queues = [q for q in args.queues.split(",") if q]
    if queues:
        argv += ["--queues", *queues]
    os.execv(dramatiq_bin, argv)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

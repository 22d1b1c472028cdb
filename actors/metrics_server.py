"""`python -m actors.metrics_server`: serve the worker processes' Dramatiq metrics on WORKER_METRICS_PORT.

Dramatiq's Prometheus middleware writes each worker process's figures to a shared directory;
this process aggregates and serves them (what the Dramatiq CLI does in a forked process). The
worker supervisor (`actors/supervisor.py`) runs it beside the workers and restarts it if it dies.
"""

from __future__ import annotations

import sys

from actors.broker import prometheus_middleware
from models.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    if not settings.worker_metrics_port:
        print("sage-mode: WORKER_METRICS_PORT is not set; nothing to serve", file=sys.stderr)
        return 2
    prometheus_middleware(settings)  # points the environment at the port and the shared directory
    from dramatiq.middleware.prometheus import _run_exposition_server

    return _run_exposition_server()


if __name__ == "__main__":
    sys.exit(main())

"""`python -m app`: check configuration and services, then serve with hypercorn on every core.

See `app/server.py` for how the web processes share one port and are kept alive.
"""

from __future__ import annotations

import argparse
import sys

from app.server import hypercorn_config, serve, setup_logging, supervise
from models.preflight import settings_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve Sage Mode's web app.")
    parser.add_argument("--host", help="address to bind (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default: PORT or 8000)")
    parser.add_argument("--processes", type=int, help="web processes (default: WEB_PROCESSES, one per core)")
    args = parser.parse_args(argv)
    settings = settings_or_exit()
    setup_logging(settings)
    config = hypercorn_config(settings, args.host, args.port)
    processes = args.processes or settings.web_processes
    if processes <= 1:
        serve(settings, config)
        return 0
    return supervise(settings, config, processes)


if __name__ == "__main__":
    sys.exit(main())

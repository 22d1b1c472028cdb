"""`python -m app`: check configuration and services, then serve with hypercorn."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

from models.preflight import settings_or_exit


def _not_a_probe(record: logging.LogRecord) -> bool:
    """Leave the session page's once-a-second connection probe (HEAD /favicon.ico) out of the access log."""
    return '"HEAD /favicon.ico ' not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve Sage Mode's web app.")
    parser.add_argument("--host", help="address to bind (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default: PORT or 8000)")
    args = parser.parse_args(argv)
    settings = settings_or_exit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from app import create_app

    config = Config()
    config.bind = [f"{args.host or settings.host}:{args.port or settings.port}"]
    config.accesslog = "-"
    logging.getLogger("hypercorn.access").addFilter(_not_a_probe)
    config.graceful_timeout = 5
    shutdown = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shutdown.set)
        await serve(create_app(settings), config, shutdown_trigger=shutdown.wait)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m app`: check configuration and services, then serve with hypercorn."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from hypercorn.asyncio import serve

from models.preflight import settings_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve Sage Mode's web app.")
    parser.add_argument("--host", help="address to bind (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default: PORT or 8000)")
    args = parser.parse_args(argv)
    settings = settings_or_exit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from app import create_app
    from app.serving import hypercorn_config

    config = hypercorn_config(settings, f"{args.host or settings.host}:{args.port or settings.port}")
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

"""Sage Mode's workers: the broker, the agents and the pipeline.

`dramatiq actors` imports this package: the broker is set up first, from the environment,
so that every actor declared below binds to it. Set `SAGE_STUB_BROKER=1` to use an in-memory
broker. The web app imports `actors.pipeline` only to enqueue (`start_session`); the session
lifecycle itself is `models.lifecycle`.
"""

from __future__ import annotations

import os

from actors.broker import setup_broker
from models.settings import ConfigError

try:
    broker = setup_broker(stub=os.environ.get("SAGE_STUB_BROKER") == "1")
except ConfigError as exc:
    raise SystemExit(f"sage-mode: configuration error: {exc}") from None

from actors import pipeline  # declares the actors on the broker above

__all__ = ["broker", "pipeline"]

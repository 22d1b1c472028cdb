"""What `dramatiq` imports in a worker started by `python -m actors.celery_compat worker -A MODULE`.

It imports the user's module (named in SAGE_CELERY_APP), finds its app, imports the app's
`include` modules, declares the queues asked for, and exposes the app's broker as `broker`.
"""

from __future__ import annotations

import importlib
import os

from actors.celery_compat.app import Celery, current_app


def load_app(spec: str) -> Celery:
    """The app of `MODULE` or `MODULE:attribute`: `app`, `celery`, any Celery in it, or the current one."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, Celery):
            raise LookupError(f"{spec} is not a Celery app")
    else:
        candidates = [getattr(module, n, None) for n in ("app", "celery")] + list(vars(module).values())
        app = next((c for c in candidates if isinstance(c, Celery)), None) or current_app()
    for name in app.conf.get("include") or ():
        importlib.import_module(name)
    return app


if os.environ.get("SAGE_CELERY_APP"):
    app = load_app(os.environ["SAGE_CELERY_APP"])
    broker = app.broker
    for queue in filter(None, os.environ.get("SAGE_CELERY_QUEUES", "").split(",")):
        broker.declare_queue(queue)

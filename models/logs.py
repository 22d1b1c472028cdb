"""Log lines for people and for log shippers: who did what, in which session, task and role.

`LOG_FORMAT=text` (the default) keeps Dramatiq's familiar line and adds the context;
`LOG_FORMAT=json` writes one JSON object per line (`ts`, `level`, `logger`, `pid`, `thread`,
`message`, `session_id`, `task_id`, `agent_role`, and `exc_info` when there is one) for Loki,
Elasticsearch, CloudWatch and the like. The context lives in context variables that the worker
binds around each message (`actors/middleware.py`), so every line an agent's code logs carries
it, whatever logger it uses.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

CONTEXT_FIELDS = ("session_id", "task_id", "agent_role")
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("sage_log_context", default={})  # noqa: B039

TEXT_FORMAT = (
    "[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s]"
    " [session=%(session_id)s task=%(task_id)s role=%(agent_role)s] %(message)s"
)
LOG_FORMATS = ("text", "json")


def bind(**fields: Any) -> contextvars.Token:
    """Add `fields` to the context of this thread (or task); returns a token for `unbind`."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(token: contextvars.Token) -> None:
    """Restore the context as it was before the matching `bind`."""
    _context.reset(token)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """`with bound(session_id=1): ...` — the fields are on every line logged inside."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current() -> dict[str, Any]:
    """The fields bound now."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Puts the bound fields on every record ("-" when unbound), so formats can name them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name, "-"))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; context fields are null when unbound."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, "-")
            line[name] = None if value == "-" else value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(log_format: str, root: logging.Logger | None = None) -> None:
    """Give every handler of `root` (default: the root logger) the context filter and the format."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    root = root or logging.getLogger()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        handler.setFormatter(formatter)

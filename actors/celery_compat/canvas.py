"""Signatures and the canvas: `.s()`, `.si()`, `signature`, `chain`, `group`, `chord`, `|`.

A canvas is frozen before anything is sent: every task gets its id (and every group its own)
up front, so the handle `apply_async()` returns is final at once, as in Celery. Then only its
first tasks are sent; each message carries, in its options, what to do after it succeeds
(`after`: apply a signature with my result, or record my result as member i of a barrier).
The middleware in `composition.py` does it; task bodies never do.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

from actors.celery_compat.app import UNSUPPORTED, Celery, check_serializer, current_app, get_task, new_id
from actors.celery_compat.result import AsyncResult, GroupResult, Unsupported

#: Calling options honoured by `apply_async` / `.set()`; the ones in app.UNSUPPORTED raise.
CALL_OPTIONS = {
    "countdown", "eta", "expires", "queue", "task_id", "link", "link_error", "time_limit",
    "soft_time_limit", "max_retries", "ignore_result", "serializer", "retry",
}  # fmt: skip

NOTHING = object()  # "no previous result": the first step of a canvas


def seconds_until(when: dt.datetime | float) -> float:
    """Seconds from now until `when` (a datetime, naive meaning UTC, or an epoch timestamp)."""
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, when.timestamp() - time.time())
    return max(0.0, float(when) - time.time())


def _check_options(options: dict[str, Any]) -> None:
    for key in options:
        if key in UNSUPPORTED:
            raise Unsupported(f"calling option {key}=: {UNSUPPORTED[key]}")
        if key not in CALL_OPTIONS:
            raise TypeError(f"unknown calling option {key}=")
    check_serializer(options.get("serializer"))
    if options.get("retry"):
        raise Unsupported("retry=True: publishing is not retried; a failed send raises (retry=False)")


def _normalize(options: dict[str, Any]) -> dict[str, Any]:
    """Options as they travel in a message: signatures as dicts, datetimes as epoch seconds."""
    _check_options(options)
    out = dict(options)
    for key in ("link", "link_error"):
        if key in out:
            value = out[key]
            items = value if isinstance(value, list | tuple) else [value]
            out[key] = [maybe_signature(v).to_dict() for v in items]
    if isinstance(out.get("eta"), dt.datetime):
        out["eta"] = time.time() + seconds_until(out["eta"])
    if isinstance(out.get("expires"), dt.datetime):
        out["expires_at"] = time.time() + seconds_until(out.pop("expires"))
    return out


class Signature:
    """A task call not yet sent: name, partial arguments and options (Celery's `signature`)."""

    subtask_type: str | None = None

    def __init__(
        self,
        task: str | Any,
        args: Iterable[Any] = (),
        kwargs: dict | None = None,
        options: dict | None = None,
        immutable: bool = False,
        app: Celery | None = None,
    ) -> None:
        self.task = task if isinstance(task, str) else task.name
        self.args = tuple(args or ())
        self.kwargs = dict(kwargs or {})
        self.options = _normalize(options or {})
        self.immutable = immutable
        self.app = app

    # --- building ---

    @property
    def type(self):
        """The registered Task this signature calls."""
        return get_task(self.task)

    name = property(lambda self: self.task)
    id = property(lambda self: self.options.get("task_id"))

    def clone(self, args: Iterable[Any] = (), kwargs: dict | None = None, **options: Any) -> Signature:
        """A copy with `args` put before its own (unless immutable), `kwargs` and options merged."""
        new = copy.deepcopy(self)
        if not self.immutable:
            new.args = (*tuple(args or ()), *self.args)
            new.kwargs = {**self.kwargs, **(kwargs or {})}
        new.options.update(_normalize(options))
        return new

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set calling options in place (`queue=`, `countdown=`, ...); returns the signature."""
        if immutable is not None:
            self.immutable = immutable
        self.options.update(_normalize(options))
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = immutable

    def link(self, callback: Signature) -> Signature:
        self.options.setdefault("link", []).append(maybe_signature(callback).to_dict())
        return callback

    def link_error(self, errback: Signature) -> Signature:
        self.options.setdefault("link_error", []).append(maybe_signature(errback).to_dict())
        return errback

    def on_error(self, errback: Signature) -> Signature:
        """`link_error`, returning this signature (for `add.s(2, 2).on_error(log.s()).delay()`)."""
        self.link_error(errback)
        return self

    def __or__(self, other: Any) -> Any:
        if isinstance(other, chain):
            return chain(self, *other.tasks)
        if isinstance(other, Signature):
            return chain(self, other)
        return NotImplemented

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "options": self.options,
            "immutable": self.immutable,
            "subtask_type": None,
        }

    def __deepcopy__(self, memo: dict) -> Signature:
        new = signature(copy.deepcopy(self.to_dict(), memo))
        new.app = self.app
        return new

    # --- freezing and sending ---

    def freeze(self, _id: str | None = None) -> AsyncResult:
        """Give the task its id now (if it has none) and return its result handle."""
        if _id is not None:
            self.options["task_id"] = _id
        self.options.setdefault("task_id", new_id())
        return AsyncResult(self.options["task_id"], app=self._app())

    def _app(self) -> Celery:
        if self.app is not None:
            return self.app
        try:
            return self.type.app
        except KeyError:
            return current_app()

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict | None = None, **options: Any):
        """Send it: `args` go before its partial arguments, options override its own."""
        from actors.celery_compat.composition import apply, batched

        sig = self.clone(args or (), kwargs, **options)
        result = sig.freeze()
        with batched(sig._app().broker):  # the message and its wake-up token in one round trip
            apply(sig, NOTHING, [], None)
        ignored = sig.options.get("ignore_result")
        result.ignored = ignored if ignored is not None else getattr(_task_or_none(sig.task), "ignore_result", False)
        return result

    def delay(self, *args: Any, **kwargs: Any):
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task in this process, now, with the partial arguments (as Celery does)."""
        sig = self.clone(args, kwargs)
        return self.type(*sig.args, **sig.kwargs)

    def __invert__(self) -> Any:
        """`~sig`: apply and wait for the result (Celery's shortcut, for the shell)."""
        return self.apply_async().get()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and other.to_dict() == self.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable, like Celery's (a dict)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task}{'.si' if self.immutable else '.s'}({', '.join(parts)})"


class _Composite(Signature):
    """What chains, groups and chords share: children, options, and applying all of it at once."""

    def __init__(self, tasks: Iterable[Any], options: dict | None = None) -> None:
        self.tasks = [maybe_signature(t) for t in tasks]
        self.task = f"celery.{self.subtask_type}"
        self.args, self.kwargs, self.immutable, self.app = (), {}, False, None
        self.options = _normalize(options or {})

    def to_dict(self) -> dict[str, Any]:
        return {"subtask_type": self.subtask_type, "tasks": [t.to_dict() for t in self.tasks], "options": self.options}

    def _app(self) -> Celery:
        return self.tasks[0]._app() if self.tasks else current_app()

    def clone(self, args: Iterable[Any] = (), kwargs: dict | None = None, **options: Any):
        new = copy.deepcopy(self)
        new.options.update(_normalize(options))
        return new

    def link(self, callback: Signature) -> Signature:
        """Celery's rule: a chain's callback follows its last task, a group's each member."""
        for target in self._link_targets():
            target.link(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """An errback is passed down to every task (so a group calls it once per failed member)."""
        for target in self.tasks:
            target.link_error(errback)
        return errback

    def _link_targets(self) -> list[Signature]:
        return list(self.tasks)

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict | None = None, **options: Any):
        from actors.celery_compat.composition import _needs_backend, apply, batched

        sig = self.clone()
        for key, method in (("link", sig.link), ("link_error", sig.link_error)):
            value = options.pop(key, None)
            for item in value if isinstance(value, list | tuple) else [value] if value is not None else []:
                method(item)
        sig._distribute(tuple(args or ()), kwargs or {}, options)
        if sig._needs_results():
            _needs_backend(sig)  # now, before anything is sent, not on a worker halfway through
        result = sig.freeze()
        with batched(sig._app().broker):  # a group's first messages in one round trip
            apply(sig, NOTHING, [], result.id)
        return result

    def _needs_results(self) -> bool:
        """A chord, or a group that something waits for (inside a chain or another group), needs
        the result backend for its barrier; a plain group or chain of tasks does not."""
        if isinstance(self, chord):
            return True
        nested = [t for t in self.tasks if isinstance(t, _Composite)]
        if isinstance(self, chain) and any(isinstance(t, group | chord) for t in self.tasks[:-1]):
            return True
        return any(isinstance(t, group | chord) and not isinstance(self, chain) for t in nested) or any(
            t._needs_results() for t in nested
        )

    def delay(self, *args: Any, **kwargs: Any):
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any):
        return self.apply_async(args, kwargs)

    def _first_tasks(self) -> list[Signature]:
        return [self]

    def _distribute(self, args: tuple, kwargs: dict, options: dict) -> None:
        """Celery's rule: arguments and options given when applying go to the tasks that start first."""
        _check_options(options)
        for first in self._first_tasks():
            if isinstance(first, _Composite):
                first._distribute(args, kwargs, options)
            else:
                if not first.immutable:
                    first.args = (*args, *first.args)
                    first.kwargs = {**first.kwargs, **kwargs}
                first.options.update(_normalize({k: v for k, v in options.items() if k != "task_id"}))
        if "task_id" in options:
            self.options["task_id"] = options["task_id"]

    def __repr__(self) -> str:
        return f"{self.subtask_type}({', '.join(map(repr, self.tasks))})"


class chain(_Composite):
    """Tasks run one after the other, each getting the previous one's result first (unless `.si`)."""

    subtask_type = "chain"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Signature | dict):
            tasks = tuple(tasks[0])
        flat: list[Any] = []
        for t in tasks:
            t = maybe_signature(t)
            if isinstance(t, group) and len(t.tasks) == 1:
                t = t.tasks[0]  # Celery 5 unrolls a group of one in a chain into its task
            flat.extend(t.tasks if isinstance(t, chain) else [t])
        super().__init__(flat, options)

    def _first_tasks(self) -> list[Signature]:
        return [self.tasks[0]] if self.tasks else []

    def _link_targets(self) -> list[Signature]:
        return self.tasks[-1:]

    def freeze(self, _id: str | None = None) -> AsyncResult:
        """Freeze every step; the chain's handle is its last step's, with `.parent` links back."""
        previous = None
        result = None
        for step in self.tasks:
            result = step.freeze()
            result.parent = previous
            previous = result
        if result is None:
            raise ValueError("an empty chain cannot be applied")
        self.options["task_id"] = result.id
        return result

    def __or__(self, other: Any) -> Any:
        if isinstance(other, chain):
            return chain(*self.tasks, *other.tasks)
        if isinstance(other, Signature):
            return chain(*self.tasks, other)
        return NotImplemented


class group(_Composite):
    """Tasks run in parallel; the group's result is the list of theirs, in order."""

    subtask_type = "group"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Signature | dict):
            tasks = tuple(tasks[0])
        super().__init__(tasks, options)

    def _first_tasks(self) -> list[Signature]:
        return list(self.tasks)

    def freeze(self, _id: str | None = None) -> GroupResult:
        if _id is not None:
            self.options["task_id"] = _id
        self.options.setdefault("task_id", new_id())
        children = [t.freeze() for t in self.tasks]
        return GroupResult(self.options["task_id"], children, backend=self._app().backend)

    def __or__(self, other: Any) -> Any:
        """`group | task` is a chord; `group | chain` a chord into the chain's first task."""
        if isinstance(other, chain):
            return chain(chord(self, other.tasks[0]), *other.tasks[1:])
        if isinstance(other, group):
            return chain(self, other)
        if isinstance(other, Signature):
            return chord(self, other)
        return NotImplemented


class chord(_Composite):
    """A group (the header) whose list of results is given to one more task (the body)."""

    subtask_type = "chord"

    def __init__(self, header: Any, body: Any = None, **options: Any) -> None:
        header = maybe_signature(header) if isinstance(header, Signature | dict) else group(header)
        self.header = header if isinstance(header, group) else group(header)
        self.body = maybe_signature(body) if body is not None else None
        super().__init__([self.header] + ([self.body] if self.body is not None else []), options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subtask_type": "chord",
            "header": self.header.to_dict(),
            "body": self.body.to_dict() if self.body is not None else None,
            "options": self.options,
        }

    def _first_tasks(self) -> list[Signature]:
        return [self.header]

    def _link_targets(self) -> list[Signature]:
        return [self.body] if self.body is not None else []

    def link_error(self, errback: Signature) -> Signature:
        if self.body is not None:
            self.body.link_error(errback)
        return errback

    def freeze(self, _id: str | None = None) -> AsyncResult:
        if self.body is None:
            raise ValueError("a chord needs a body: chord(header)(body) or chord(header, body)")
        header = self.header.freeze()
        result = self.body.freeze(_id)
        result.parent = header
        self.options["task_id"] = result.id
        return result

    def __call__(self, body: Any = None, *args: Any, **kwargs: Any):
        """`chord(header)(body)` applies with that body; `chord(header, body)()` applies as it is."""
        if body is not None and isinstance(body, Signature | dict):
            return chord(self.header, body, **self.options).apply_async(args, kwargs)
        return self.apply_async(((body,) if body is not None else ()) + args, kwargs)

    def __deepcopy__(self, memo: dict) -> Signature:
        return signature(copy.deepcopy(self.to_dict(), memo))


def _task_or_none(name: str):
    try:
        return get_task(name)
    except KeyError:
        return None


def signature(varies: Any, args: Iterable[Any] = (), kwargs: dict | None = None, **options: Any) -> Signature:
    """`signature("proj.add", args=(2, 2), countdown=10)`, or rebuild one from its dict."""
    if isinstance(varies, Signature):
        return varies
    if isinstance(varies, dict):
        d = varies
        kind = d.get("subtask_type")
        sig: Signature
        if kind == "chain":
            sig = chain(*d["tasks"])
        elif kind == "group":
            sig = group(*d["tasks"])
        elif kind == "chord":
            sig = chord(d["header"], d.get("body"))
        else:
            sig = Signature(d["task"], d.get("args", ()), d.get("kwargs"), immutable=d.get("immutable", False))
        sig.options = dict(d.get("options", {}))  # normalized when it was made
        return sig
    options = dict(options.pop("options", None) or {}, **options)
    return Signature(varies, args, kwargs, options=options)


subtask = signature


def maybe_signature(value: Any) -> Signature:
    return signature(value) if isinstance(value, Signature | dict) else value


# map, starmap and chunks: Celery runs each as one task looping over the items; here each item
# is its own message in a group, so they run in parallel. The results come back the same way.


def xmap(sig: Signature, it: Iterable[Any]) -> group:
    return group(sig.clone((item,)) for item in it)


def xstarmap(sig: Signature, it: Iterable[Iterable[Any]]) -> group:
    return group(sig.clone(tuple(args)) for args in it)


def chunks(sig: Signature, it: Iterable[Iterable[Any]], n: int) -> group:
    items = [tuple(args) for args in it]
    return group(xstarmap(sig, items[i : i + n]) for i in range(0, len(items), n))

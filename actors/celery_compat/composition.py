"""How a canvas moves: sending a frozen canvas, and the middleware that advances it.

Every message carries `options["cc"]["after"]`, a list of actions for when it succeeds:

- `{"apply": <signature dict>, "after": [...]}`: send that signature with my result as its
  first argument (a chain's next step, a `link=` callback, a chord's body after its header);
- `{"member": {"barrier": id, "index": i, "size": n, "after": [...]}}`: record my result as
  member i of a group's barrier; the member that completes the barrier runs its `after`
  with the list of results, in order.

A barrier is a Redis hash written with HSETNX per member index, so a member delivered twice
(or re-run after its worker was killed) is counted once, and the barrier releases only when
every index is present, i.e. every member succeeded. The delivery that fills it takes a fire
token and fires once; a later copy of a member does not fire again, unless it is the firer's
own redelivery finishing a firing its killed worker left half-done. A member that fails for good fails the barrier instead: the group's id, the
chord's body and everything after it get FAILURE with a ChordError naming the member.

A task may have a `gate(results, send)`: the middleware then calls the gate instead of sending
what follows the step itself, and the gate calls `send()` (which returns whether there was
anything to send) when, and inside whatever transaction, it decides. Sage Mode's pipeline
gates its stages with the session's compare-and-set stage advance.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback as traceback_module
from collections.abc import Callable
from typing import Any, cast

import dramatiq
from dramatiq.middleware import CurrentMessage, Middleware, SkipMessage

from actors.celery_compat.app import Request, Task, _tasks, get_task, limit_ms
from actors.celery_compat.canvas import NOTHING, Signature, chain, chord, group, seconds_until, signature
from actors.celery_compat.result import (
    FAILURE,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    ChordError,
    ResultBackend,
    TaskRevokedError,
    Unsupported,
)

logger = logging.getLogger(__name__)


class _Ignored:
    """What a task that raised `Ignore` returns to the middleware: store nothing, advance nothing."""

    def __repr__(self) -> str:
        return "IGNORED"


IGNORED = _Ignored()

Actions = list[dict[str, Any]]

#: Seconds after which a barrier left "firing" by a message is taken to be abandoned by a killed
#: worker, so the redelivered message may fire it again (well under any heartbeat timeout).
FIRING_LEASE = 2.0


# --- sending ------------------------------------------------------------------------------


def _needs_backend(sig: Signature) -> ResultBackend:
    backend = sig._app().backend
    if not isinstance(backend, ResultBackend):
        raise Unsupported("groups inside chains, and chords, need a result backend: Celery(backend=...)")
    return backend


def apply(sig: Signature, prev: Any, after: Actions, chain_id: str | None) -> None:
    """Send a frozen signature: its first tasks now, the rest as `after` actions in their messages."""
    kind = sig.subtask_type
    if kind is None:
        _send(sig, prev, after, chain_id)
    elif isinstance(sig, chain):  # the types behind `kind`: chain, group and chord
        first, rest = sig.tasks[0], sig.tasks[1:]
        if rest:
            nxt = rest[0] if len(rest) == 1 else type(sig)(*rest)
            after = [{"apply": nxt.to_dict(), "after": after}]
        apply(first, prev, after, chain_id)
    elif isinstance(sig, group):
        gid = sig.options["task_id"]
        if not sig.tasks:
            _run_actions(None, gid, after, [], chain_id, [])
            return
        if isinstance(sig._app().backend, ResultBackend):
            size = len(sig.tasks)
            for index, member in enumerate(sig.tasks):
                barrier = {"barrier": gid, "index": index, "size": size, "after": after}
                apply(member, prev, [{"member": barrier}], chain_id)
        elif after:
            _needs_backend(sig)
        else:  # a plain group on an app without results: just send the members
            for member in sig.tasks:
                apply(member, prev, [], chain_id)
    elif isinstance(sig, chord):
        _needs_backend(sig)
        assert sig.body is not None  # freeze() refused a chord without a body
        apply(sig.header, prev, [{"apply": sig.body.to_dict(), "after": after}], chain_id)
    else:
        raise ValueError(f"unknown signature type {kind!r}")


def batched(broker: dramatiq.Broker) -> contextlib.AbstractContextManager:
    """The broker's `batch()` (several messages in one round trip) where it has one."""
    batch = getattr(broker, "batch", None)
    return batch() if batch is not None else contextlib.nullcontext()


def _send(sig: Signature, prev: Any, after: Actions, chain_id: str | None) -> None:
    args = tuple(sig.args) if sig.immutable or prev is NOTHING else (prev, *sig.args)
    kwargs = dict(sig.kwargs)
    task: Task | None
    try:
        task = get_task(sig.task)
    except KeyError:
        task = None  # only the workers know it (`send_task`): the app's broker and routes
    else:
        task.check_arguments(args, kwargs)
    o = sig.options
    now = time.time()
    delay_s = None
    if o.get("countdown") is not None:
        delay_s = max(0.0, float(o["countdown"]))
    elif o.get("eta") is not None:
        delay_s = seconds_until(o["eta"])
    links = [signature(link) for link in o.get("link", [])]
    for link in links:
        link.freeze()  # ids now, so the result can name its children
    cc: dict[str, Any] = {
        "after": list(after) + [{"apply": link.to_dict(), "after": []} for link in links],
        "links": [link.to_dict() for link in links],
        "errbacks": list(o.get("link_error", [])),
        "chain_id": chain_id,
    }
    for action in after:
        if "member" in action:
            cc["group"], cc["group_index"] = action["member"]["barrier"], action["member"]["index"]
    if o.get("expires") is not None:
        cc["expires"] = now + float(o["expires"])
    elif o.get("expires_at") is not None:
        cc["expires"] = o["expires_at"]
    if o.get("max_retries") is not None:
        cc["max_retries"] = o["max_retries"]
    if o.get("ignore_result") is not None:
        cc["ignore_result"] = o["ignore_result"]
    options: dict[str, Any] = {"cc": cc}
    if o.get("time_limit") is not None or o.get("soft_time_limit") is not None:
        options["time_limit"] = limit_ms(o.get("time_limit"), o.get("soft_time_limit"))
    app = sig._app()
    queue = o.get("queue") or (task.queue if task else app.route(sig.task) or app.conf.task_default_queue)
    broker = task.actor.broker if task else app.broker
    if queue not in broker.get_declared_queues():
        broker.declare_queue(queue)
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue,
        actor_name=sig.task,
        args=args,
        kwargs=kwargs,
        options=options,
        message_id=o.get("task_id") or sig.freeze().id,
        message_timestamp=int(now * 1000),
    )
    broker.enqueue(message, delay=int(delay_s * 1000) if delay_s else None)


# --- advancing ----------------------------------------------------------------------------


def _backend_of(task: Task | None) -> ResultBackend | None:
    backend = task.app.backend if task is not None else None
    return backend if isinstance(backend, ResultBackend) else None


def _run_actions(
    task: Task | None,
    firer_id: str,
    actions: Actions,
    value: Any,
    chain_id: str | None,
    gate_input: list,
    pipe: Any = None,
) -> None:
    """Run a step's `after` actions with its result; through the task's gate when it has one.

    `gate_input` is what the gate sees: `[result]` after a task, the list of results after a group.
    `pipe` holds writes queued by the caller (the step's own result) for the first barrier's
    round trip; the caller passes it only when every action is a barrier member.
    """
    applies = [a for a in actions if "apply" in a]
    members = [a["member"] for a in actions if "member" in a]

    def send() -> bool:
        with batched(task.actor.broker if task is not None else dramatiq.get_broker()):
            for action in applies:
                apply(signature(action["apply"]), value, action["after"], chain_id)
        return bool(applies)

    if task is not None and task.gate is not None and (applies or not members):
        task.gate(gate_input, send)
    elif applies:
        send()
    for member in members:
        _record_member(task, firer_id, member, value, chain_id, pipe)
        pipe = None


def _record_member(
    task: Task | None, firer_id: str, member: dict[str, Any], value: Any, chain_id: str | None, pipe: Any = None
) -> None:
    backend = _backend_of(task)
    if backend is None:  # (the caller queues writes on `pipe` only when there is a backend)
        return
    client = backend.client
    key = f"celery-barrier-{member['barrier']}"
    ttl = max(60, int(backend.expires))
    # One round trip (with whatever the caller queued on `pipe`): record this member, read the
    # barrier whole (its values are needed only when it is complete, and then they are all here),
    # and whether another member failed it.
    if pipe is None:
        pipe = client.pipeline()
    pipe.hsetnx(key, str(member["index"]), json.dumps(value, default=str))
    pipe.hgetall(key)
    pipe.expire(key, ttl)
    pipe.exists(f"{key}:failed")
    fresh, held, _, failed = pipe.execute()[-4:]
    if len(held) < member["size"] or failed:
        return
    token = f"{key}:fired"
    if fresh:
        claimed = client.set(token, f"firing {firer_id} {time.time()}", nx=True, ex=ttl)
    else:
        # Only the delivery that completed the barrier fires it. Another delivery of a member
        # (a duplicate) fires only to finish what a killed firer left: the token was never
        # taken, or is still "firing" under this very message for longer than a firing takes
        # (a redelivery comes only after the broker's heartbeat timeout).
        holder = (cast("bytes | None", client.get(token)) or b"").decode()  # the client does not decode
        if not holder:
            claimed = client.set(token, f"firing {firer_id} {time.time()}", nx=True, ex=ttl)
        else:
            state, _, rest = holder.partition(" ")
            holder_id, _, since = rest.partition(" ")
            stale = state == "firing" and holder_id == firer_id and time.time() - float(since or 0) > FIRING_LEASE
            claimed = stale and client.set(token, f"firing {firer_id} {time.time()}", xx=True, ex=ttl)
    if not claimed:
        return
    # Every member stored its value before the barrier could complete, and HGETALL read them.
    values = [json.loads(held[str(i).encode()]) for i in range(member["size"])]
    backend.store(member["barrier"], SUCCESS, values)
    _run_actions(task, firer_id, member["after"], values, chain_id, values)
    client.set(token, "fired", ex=ttl)


def _members_only(actions: Actions) -> bool:
    return all("member" in action for action in actions)


def _all_ids(d: dict[str, Any]) -> list[str]:
    kind = d.get("subtask_type")
    if kind == "chord":
        return _all_ids(d["header"]) + (_all_ids(d["body"]) if d.get("body") else [])
    ids = [d["options"]["task_id"]] if d.get("options", {}).get("task_id") and kind != "chain" else []
    for child in d.get("tasks", []):
        ids += _all_ids(child)
    return ids


def _propagate_failure(backend: ResultBackend, failed_id: str, actions: Actions, exc: BaseException) -> None:
    """Mark everything that would have come after a failed step FAILURE, as Celery does."""
    for action in actions:
        if "apply" in action:
            for task_id in _all_ids(action["apply"]):
                backend.store(task_id, FAILURE, exc)
            _propagate_failure(backend, failed_id, action["after"], exc)
        elif "member" in action:
            member = action["member"]
            key = f"celery-barrier-{member['barrier']}"
            if not backend.client.set(f"{key}:failed", failed_id, nx=True, ex=max(60, int(backend.expires))):
                continue  # another member already failed it
            error = ChordError(f"Dependency {failed_id} raised {exc!r}")
            backend.store(member["barrier"], FAILURE, error)
            _propagate_failure(backend, failed_id, member["after"], error)


def _call_errbacks(task: Task, message: Any, exc: BaseException, tb: str) -> None:
    """`link_error`: a task taking (request, exc, traceback) is called here; others get the task id."""
    import inspect

    for errback in (message.options.get("cc") or {}).get("errbacks", []):
        sig = signature(errback)
        target = get_task(sig.task)
        params = list(inspect.signature(target.fn).parameters)
        if target.bind:
            params = params[1:]
        if params[:3] == ["request", "exc", "traceback"]:
            target.fn(
                *(() if not target.bind else (None,)), Request.of(message, task, message.args, message.kwargs), exc, tb
            )
        else:
            apply(sig.clone(), message.message_id, [], None)


def _not_discarded(record: logging.LogRecord) -> bool:
    """Drop Dramatiq's warning that a value returned without its Results middleware is discarded:
    a task of this interface has its value stored by `Composition` (the check is by exact type)."""
    message = record.getMessage()
    if "haven't added the Results middleware" in message:
        name = message.removeprefix("Actor '").partition("'")[0]
        return name not in _tasks
    return True


class Composition(Middleware):
    """Stores results and states, and advances chains, groups and chords after each message."""

    def __init__(self) -> None:
        worker_logger = logging.getLogger("dramatiq.worker.WorkerThread")
        if _not_discarded not in worker_logger.filters:
            worker_logger.addFilter(_not_discarded)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        task = _tasks.get(message.actor_name)
        backend = _backend_of(task)
        if task is None or backend is None:  # no task, no backend
            return
        cc = message.options.get("cc") or {}
        if backend.is_revoked(message.message_id):
            raise SkipMessage(f"revoked: {message.message_id}")
        if cc.get("expires") is not None and time.time() > cc["expires"]:
            backend.store(message.message_id, REVOKED, TaskRevokedError(f"expired: {message.message_id}"))
            raise SkipMessage(f"expired: {message.message_id}")
        if task.track_started:
            backend.store(message.message_id, STARTED, {"pid": None})

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        task = _tasks.get(message.actor_name)
        if task is None or (message.options.get("cc") is None and task.gate is None and _backend_of(task) is None):
            return
        cc = message.options.get("cc") or {}
        backend = _backend_of(task)
        try:
            if exception is None:
                if result is IGNORED:
                    return
                ignore = cc.get("ignore_result", task.ignore_result)
                after = cc.get("after") or []
                # A group member's result travels in its barrier's round trip; a step that sends
                # what follows it stores its result first, so the next step never sees it missing.
                pipe = backend.client.pipeline() if backend is not None and after and _members_only(after) else None
                if backend is not None and not ignore:
                    children = [i for link in cc.get("links", []) for i in _all_ids(link)]
                    backend.store(message.message_id, SUCCESS, result, children=children, pipe=pipe)
                _run_actions(task, message.message_id, after, result, cc.get("chain_id"), [result], pipe)
            elif isinstance(exception, dramatiq.Retry):
                if backend is not None:
                    backend.store(message.message_id, RETRY, getattr(exception, "exc", None) or exception)
            else:
                tb = "".join(traceback_module.format_exception(exception))
                if backend is not None:
                    backend.store(message.message_id, FAILURE, exception, tb)
                    _propagate_failure(backend, message.message_id, cc.get("after") or [], exception)
                _call_errbacks(task, message, exception, tb)
        except Exception:
            # The task itself is done and must not be reported (or retried) as failed: raising
            # here would make Dramatiq run the after-hooks again with this error. What follows
            # it was not sent; for a session, `resend_stage` (the watchdog) sends it later.
            logger.exception("could not advance the canvas after %s[%s]", message.actor_name, message.message_id)


def broker_from_url(url: str, transport_options: dict[str, Any] | None = None) -> dramatiq.Broker:
    """A Dramatiq broker for `Celery(broker=url)`: Redis (`redis://`), RabbitMQ (`amqp://`), or
    in memory (`memory://`).

    `broker_transport_options={"visibility_timeout": s}` is how long a message taken by a worker
    that died waits before another worker gets it on Redis (Dramatiq's heartbeat timeout;
    default 60 s); RabbitMQ gives it back as soon as the worker's connection closes.
    """
    from actors.broker import MAINTENANCE_CHANCE, DrainableRabbitmqBroker, Draining, WakeableRedisBroker, WakeUp

    options = dict(transport_options or {})
    visibility = options.pop("visibility_timeout", 60)
    if options:
        raise Unsupported(f"broker_transport_options {sorted(options)}: only visibility_timeout is supported")
    broker: dramatiq.Broker
    if url.startswith(("redis://", "rediss://", "unix://")):
        broker = WakeableRedisBroker(
            url=url, heartbeat_timeout=int(visibility * 1000), maintenance_chance=MAINTENANCE_CHANCE
        )
        broker.add_middleware(CurrentMessage())
        broker.add_middleware(WakeUp())
    elif url.startswith(("amqp://", "amqps://")):
        broker = DrainableRabbitmqBroker(url=url, confirm_delivery=True)
        broker.add_middleware(CurrentMessage())
        broker.add_middleware(Draining())
    elif url.startswith("memory://"):
        from dramatiq.brokers.stub import StubBroker

        broker = StubBroker()
        broker.add_middleware(CurrentMessage())
    else:
        raise Unsupported(f"broker {url.split(':', 1)[0]}://: only redis://, amqp:// (and memory://) are supported")
    broker.add_middleware(Composition())
    return broker


GateFunction = Callable[[list[Any], Callable[[], bool]], None]

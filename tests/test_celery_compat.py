"""The Celery-compatible interface, one test per idiom of Celery's guides (first steps, next
steps, tasks, calling, canvas), run on a real worker (`python -m actors.celery_compat worker`)
over Redis; then the barrier under redelivery; then the interface on the in-process stub broker.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dramatiq
import pytest

from actors import celery_compat as celery
from actors import pipeline
from actors.celery_compat import chain, chord, group, signature

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration

import compat_tasks as proj  # noqa: E402 - conftest points REDIS_URL at the test db first
from compat_tasks import ExpectedError, FlakyError, add, mul, xsum  # noqa: E402


def start_compat_worker(log_path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "dramatiq_worker_timeout": "50"}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "actors.celery_compat", "worker", "-A", "compat_tasks", "--path", "tests", *extra],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def worker(tmp_path_factory, redis_client):
    """One worker process with 8 threads on the default, hipri and lopri queues, for the module."""
    log = tmp_path_factory.mktemp("compat") / "worker.log"
    proc = start_compat_worker(log, "--threads", "8", "-Q", "default,hipri,lopri")
    deadline = time.monotonic() + 30
    while redis_client.zcard("dramatiq:__heartbeats__") < 1:
        if time.monotonic() > deadline or proc.poll() is not None:
            stop(proc)
            pytest.fail(f"the compat worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    yield proc
    stop(proc)


def notes(redis_client, key: str) -> list:
    return [json.loads(v) for v in redis_client.lrange(key, 0, -1)]


# --- First steps with Celery ----------------------------------------------------------------


def test_first_steps_delay_then_get_the_result(worker):
    result = add.delay(4, 4)
    assert result.get(timeout=10) == 8
    assert result.ready() and result.successful() and result.state == result.status == "SUCCESS"


def test_first_steps_a_failure_is_raised_by_get_or_returned_with_propagate_false(worker):
    result = proj.fail.delay("boom")
    with pytest.raises(ExpectedError, match="boom"):
        result.get(timeout=10)
    assert result.failed() and result.state == "FAILURE"
    assert isinstance(result.get(propagate=False), ExpectedError)
    assert "ExpectedError: boom" in result.traceback


def test_first_steps_configuration_from_an_object():
    app = celery.Celery("configured", set_as_current=False)
    app.config_from_object({"result_expires": 3600, "task_default_queue": "work", "result_backend": proj.REDIS_URL})
    app.conf.update(task_track_started=True)
    assert app.conf.result_expires == 3600 and app.backend.expires == 3600 and app.conf.task_track_started


def test_first_steps_a_task_is_still_a_plain_function():
    assert add(2, 3) == 5 and add.name == "compat_tasks.add"


def test_first_steps_a_worker_for_a_module_that_does_not_load_says_so():
    out = subprocess.run(
        [sys.executable, "-m", "actors.celery_compat", "worker", "-A", "no_such_module"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "celery_compat: cannot load app 'no_such_module': No module named 'no_such_module'"
    ]


# --- Next steps -----------------------------------------------------------------------------


def test_next_steps_apply_async_with_queue_and_countdown(worker):
    result = proj.who_am_i.apply_async(queue="lopri", countdown=0.3)
    assert result.state == "PENDING"
    assert result.get(timeout=10) == {"id": result.id, "retries": 0, "queue": "lopri"}


def test_next_steps_task_routes_send_a_task_to_its_queue(worker, redis_client):
    assert proj.routed.queue == "hipri"
    assert proj.routed.delay().get(timeout=10) == "routed"


def test_next_steps_a_result_handle_by_id(worker):
    result = add.delay(1, 2)
    assert proj.app.AsyncResult(result.id).get(timeout=10) == 3
    assert celery.AsyncResult(result.id, app=proj.app).result == 3


def test_next_steps_send_task_by_name_to_a_task_only_the_worker_has(worker):
    with pytest.raises(KeyError):
        celery.get_task("worker.only")
    assert proj.app.send_task("worker.only", (7,)).get(timeout=10) == "worker got 7"


def test_next_steps_partial_signature_takes_the_rest_at_call_time(worker):
    s2 = add.s(2)
    assert s2.delay(8).get(timeout=10) == 10
    assert add.s(2, 2).delay().get(timeout=10) == 4


def test_next_steps_group_of_signatures(worker):
    assert group(add.s(i, i) for i in range(10))().get(timeout=10) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_next_steps_partial_group(worker):
    g = group(add.s(i) for i in range(10))
    assert g(10).get(timeout=10) == [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]


def test_next_steps_chain_passes_each_result_on(worker):
    assert chain(add.s(4, 4) | mul.s(8))().get(timeout=10) == 64


def test_next_steps_partial_chain(worker):
    g = chain(add.s(4) | mul.s(8))
    assert g(4).get(timeout=10) == 64


def test_next_steps_pipe_operator_makes_a_chain(worker):
    assert (add.s(4, 4) | mul.s(8))().get(timeout=10) == 64


def test_next_steps_chord_gives_the_body_every_result(worker):
    assert chord((add.s(i, i) for i in range(10)), xsum.s())().get(timeout=10) == 90


def test_next_steps_group_piped_into_a_task_is_a_chord(worker):
    assert (group(add.s(i, i) for i in range(10)) | xsum.s())().get(timeout=10) == 90


# --- Tasks ----------------------------------------------------------------------------------


def test_tasks_names_are_module_and_function_unless_named():
    assert proj.hello.name == "custom.hello" and proj.shared_add.name == "compat_tasks.shared_add"
    assert celery.get_task("custom.hello") is proj.hello


def test_tasks_shared_task_runs_on_the_app_worker(worker):
    assert proj.shared_add.delay(20, 22).get(timeout=10) == 42


def test_tasks_bound_task_knows_its_request(worker):
    result = proj.who_am_i.delay()
    assert result.get(timeout=10) == {"id": result.id, "retries": 0, "queue": "default"}


def test_tasks_retry_with_a_countdown_then_succeed(worker, redis_client):
    result = proj.retry_then_succeed.delay("compat:retry", 2, 0.2)
    assert result.get(timeout=20) == 3
    at = notes(redis_client, "compat:retry:at")
    assert len(at) == 3 and all(b - a >= 0.2 for a, b in itertools.pairwise(at))


def test_tasks_retries_used_up_fail_with_the_exception(worker, redis_client):
    result = proj.always_retry.delay("compat:always")  # max_retries=2, default_retry_delay=0.1
    with pytest.raises(FlakyError, match="still down"):
        result.get(timeout=20)
    assert redis_client.get("compat:always") == "3"


def test_tasks_no_automatic_retry_without_autoretry_for(worker, redis_client):
    with pytest.raises(FlakyError):
        proj.fails_once_no_retry.delay("compat:once").get(timeout=10)
    time.sleep(0.3)
    assert redis_client.get("compat:once") == "1"


def test_tasks_autoretry_for_with_exponential_backoff(worker, redis_client):
    with pytest.raises(FlakyError):
        proj.autoretried.delay("compat:auto").get(timeout=20)
    at = notes(redis_client, "compat:auto:at")
    assert len(at) == 2 and at[1] - at[0] >= 1.0  # retry_backoff=1, no jitter: 1 s before retry 1


def test_tasks_autoretry_retry_kwargs(worker):
    assert proj.autoretried_until_it_works.delay("compat:kwargs").get(timeout=10) == "worked"


def test_tasks_ignore_result_keeps_nothing(worker, redis_client, wait):
    result = proj.quiet.delay("compat:quiet")
    wait(lambda: redis_client.get("compat:quiet") == "ran")
    time.sleep(0.2)
    assert result.state == "PENDING" and not redis_client.exists(f"celery-task-meta-{result.id}")


def test_tasks_time_limit_is_in_seconds(worker):
    assert proj.sleepy.delay(0.1).get(timeout=10) == "woke"  # 0.1 s is well inside 1 s
    with pytest.raises(celery.SoftTimeLimitExceeded):
        proj.sleepy.delay(5).get(timeout=10)


def test_tasks_update_state_shows_progress(worker, redis_client, wait):
    result = proj.progress.delay("compat:progress-done")
    wait(lambda: result.state == "PROGRESS")
    assert result.info == {"current": 1, "total": 2}
    redis_client.set("compat:progress-done", "1")
    assert result.get(timeout=10) == "done"


def test_tasks_json_is_the_serializer(worker):
    assert proj.tagged.apply_async(("x",), serializer="json").get(timeout=10) == {"tag": "x"}
    with pytest.raises(NotImplementedError, match="JSON"):
        proj.tagged.apply_async(("x",), serializer="pickle")
    with pytest.raises(NotImplementedError, match="JSON"):
        proj.app.task(serializer="pickle")(lambda: None)


def test_tasks_results_expire_after_result_expires(worker, redis_client):
    result = add.delay(1, 1)
    result.get(timeout=10)
    assert 0 < redis_client.ttl(f"celery-task-meta-{result.id}") <= 86400


def test_tasks_unsupported_options_are_refused_when_declared():
    with pytest.raises(NotImplementedError, match="rate_limit"):
        proj.app.task(rate_limit="10/m")(lambda: None)
    with pytest.raises(TypeError, match="no_such_option"):
        proj.app.task(no_such_option=1)(lambda: None)


# --- Calling tasks --------------------------------------------------------------------------


def test_calling_link_sends_the_result_to_a_callback(worker):
    callback = add.s(16)
    result = add.apply_async((2, 2), link=callback.set(task_id="compat-link-callback"))
    assert result.get(timeout=10) == 4
    assert celery.AsyncResult("compat-link-callback", app=proj.app).get(timeout=10) == 20


def test_calling_link_error_calls_the_error_handler(worker, redis_client, wait):
    result = proj.fail.apply_async(("nope",), link_error=proj.on_error.s())
    [error] = wait(lambda: notes(redis_client, "compat:errors"))
    assert error["id"] == result.id and "nope" in error["exc"] and error["has_traceback"]


def test_calling_eta_is_a_datetime(worker):
    result = add.apply_async((1, 1), eta=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3))
    assert result.state == "PENDING"
    assert result.get(timeout=10) == 2


def test_calling_expires_revokes_a_task_not_started_in_time(worker):
    result = add.apply_async((1, 1), countdown=0.5, expires=0.1)
    with pytest.raises(celery.TaskRevokedError):
        result.get(timeout=10)
    assert result.state == "REVOKED"


def test_calling_ignore_result_gets_none(worker):
    assert add.apply_async((1, 2), ignore_result=True).get(timeout=10) is None
    assert add.apply_async((1, 2), ignore_result=False).get(timeout=10) == 3


def test_calling_task_id_is_the_result_id(worker):
    assert add.apply_async((3, 3), task_id="compat-own-id").id == "compat-own-id"
    assert celery.AsyncResult("compat-own-id", app=proj.app).get(timeout=10) == 6


def test_calling_options_that_cannot_be_honoured_raise_at_once():
    with pytest.raises(NotImplementedError, match="priority"):
        add.apply_async((1, 1), priority=9)
    with pytest.raises(TypeError, match="bogus"):
        add.apply_async((1, 1), bogus=True)
    with pytest.raises(TypeError, match=r"compat_tasks\.add"):
        add.delay(1, 2, 3)  # wrong arguments fail when sent, not later on a worker


def test_calling_revoke_before_it_runs(worker):
    result = add.apply_async((1, 1), countdown=0.5)
    result.revoke()
    time.sleep(0.8)
    assert result.state == "REVOKED"
    with pytest.raises(celery.TaskRevokedError):
        result.get(timeout=1)


def test_calling_forget_drops_the_result(worker):
    result = add.delay(2, 2)
    result.get(timeout=10)
    result.forget()
    assert result.state == "PENDING"


# --- Canvas ---------------------------------------------------------------------------------


def test_canvas_delay_of_a_partial_is_arguments_not_a_countdown(worker):
    assert add.s(2).delay(4).get(timeout=10) == 6


def test_canvas_signature_by_name_with_options(worker):
    sig = signature("compat_tasks.add", args=(2, 2), countdown=0.1)
    assert sig.options["countdown"] == 0.1 and sig.name == "compat_tasks.add"
    assert sig.apply_async().get(timeout=10) == 4
    assert add.signature((2, 2), countdown=0.1).delay().get(timeout=10) == 4


def test_canvas_clone_and_set(worker):
    partial = add.s(2)
    clone = partial.clone(args=(4,), kwargs={})
    assert clone.args == (4, 2) and partial.args == (2,)
    assert partial.set(countdown=0.1) is partial and partial.options["countdown"] == 0.1
    assert clone.delay().get(timeout=10) == 6


def test_canvas_immutable_signature_ignores_the_previous_result(worker):
    assert (add.s(2, 2) | add.si(4, 4) | mul.s(2))().get(timeout=10) == 16


def test_canvas_chain_results_link_to_their_parents(worker):
    result = chain(add.s(1, 1), add.s(1), add.s(1))()
    assert result.get(timeout=10) == 4
    assert result.parent.get(timeout=10) == 3 and result.parent.parent.get(timeout=10) == 2


def test_canvas_a_failing_step_fails_the_rest_of_the_chain(worker):
    result = (add.s(1, 1) | proj.fail.si("in a chain") | add.s(1))()
    with pytest.raises(ExpectedError, match="in a chain"):
        result.get(timeout=10)


def test_canvas_chain_holding_groups_passes_lists_on(worker):
    workflow = chain(add.s(1, 1), group(add.s(10), add.s(20)), xsum.s(), group(add.s(1), mul.s(2)))
    assert workflow.apply_async().get(timeout=10) == [35, 68]


def test_canvas_group_holding_chains(worker):
    result = group(add.s(2, 2) | mul.s(2), chain(mul.s(3, 3), add.s(1)), proj.identity.s(7))()
    assert result.get(timeout=10) == [8, 10, 7]


def test_canvas_nested_groups_and_chords(worker):
    inner = chord([add.s(1, 1), add.s(2, 2)], xsum.s())
    assert group(inner, group(add.s(3, 3), add.s(4, 4)))().get(timeout=10) == [6, [6, 8]]


def test_canvas_chord_with_a_failing_member_fails_with_its_error(worker):
    result = chord([add.s(1, 1), proj.fail.s("member"), add.s(2, 2)], xsum.s())()
    with pytest.raises(celery.ChordError, match="member"):
        result.get(timeout=10)


def test_canvas_a_chord_without_a_result_backend_is_refused_before_anything_is_sent():
    app = celery.Celery("no_results", broker="memory://", set_as_current=False)

    @app.task(name="no_results.add")
    def plus(x, y):
        return x + y

    with pytest.raises(NotImplementedError, match="result backend"):
        chord([plus.s(1, 1)], plus.s(1))()
    with pytest.raises(NotImplementedError, match="result backend"):
        chain(plus.s(1, 1), group(plus.s(1), plus.s(2)), plus.s(1)).apply_async()
    assert app.broker.queues["default"].qsize() == 0
    group(plus.s(1, 1), plus.s(2, 2)).apply_async()  # a plain group needs no results
    assert app.broker.queues["default"].qsize() == 2


def test_canvas_group_result_api(worker):
    result = group(add.s(i, i) for i in range(4)).apply_async()
    assert isinstance(result, celery.GroupResult) and len(result.results) == 4
    assert result.get(timeout=10) == [0, 2, 4, 6]
    assert result.ready() and result.successful() and result.completed_count() == 4 and not result.failed()


def test_canvas_map_starmap_and_chunks(worker):
    assert ~xsum.map([list(range(10)), list(range(100))]) == [45, 4950]  # JSON: lists, not ranges
    assert ~add.starmap(zip(range(10), range(10), strict=True)) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert add.chunks(zip(range(6), range(6), strict=True), 2)().get(timeout=10) == [[0, 2], [4, 6], [8, 10]]


def test_canvas_link_results_are_the_children(worker):
    result = add.apply_async((2, 2), link=mul.s(16))
    assert result.get(timeout=10) == 4
    assert [child.get(timeout=10) for child in result.children] == [64]
    assert [value for _, value in result.collect()] == [4, 64]


def test_canvas_on_error_links_an_errback(worker, redis_client, wait):
    result = proj.fail.s("on_error").on_error(proj.on_error.s()).delay()
    [error] = wait(lambda: notes(redis_client, "compat:errors"))
    assert error["id"] == result.id and "on_error" in error["exc"]


def test_canvas_group_errback_is_called_for_each_failing_member(worker, redis_client, wait):
    g = group(proj.fail.s("a"), proj.fail.s("b"), add.s(1, 1))
    g.link_error(proj.on_error.s())
    g()
    errors = wait(lambda: (found := notes(redis_client, "compat:errors")) and len(found) == 2 and found)
    assert sorted(e["exc"] for e in errors) == ["ExpectedError('a')", "ExpectedError('b')"]


def test_canvas_group_link_runs_after_each_member(worker):
    g = group(add.s(2, 2), add.s(4, 4))
    g.link(mul.s(10))
    result = g()
    assert result.get(timeout=10) == [4, 8]
    assert [r.children[0].get(timeout=10) for r in result.results] == [40, 80]


def test_canvas_a_group_of_one_in_a_chain_is_unrolled(worker):
    assert chain(group(add.s(1, 1)), add.s(2))().get(timeout=10) == 4
    assert chain(add.s(2, 2), group(add.s(1)), add.s(1))().get(timeout=10) == 6


def test_canvas_chain_into_a_group_of_immutable_signatures(worker):
    result = (add.s(4, 4) | group(add.si(i, i) for i in range(4)))()
    assert result.get(timeout=10) == [0, 2, 4, 6] and result.parent.get(timeout=10) == 8


# --- The barrier under redelivery -----------------------------------------------------------


def test_a_chord_member_delivered_twice_fires_the_body_once(worker, redis_client, wait):
    header = [proj.slow.s(1, 0.3, "compat:slow"), add.s(2, 2)]
    result = chord(header, proj.counted_sum.s("compat:fired"))()
    # A second copy of the first member's message (the same id, as a redelivery has).
    member_id = result.parent.results[0].id

    def queued_member():
        for data in redis_client.hvals("dramatiq:default.msgs"):
            message = dramatiq.Message.decode(data.encode())
            if message.message_id == member_id:
                return message

    message = wait(queued_member)
    proj.app.broker.enqueue(message.copy(options={k: v for k, v in message.options.items() if k != "redis_message_id"}))
    assert result.get(timeout=10) == 5
    wait(lambda: len(notes(redis_client, "compat:slow")) == 2)  # both copies ran
    time.sleep(0.5)
    assert redis_client.get("compat:fired") == "1"


def test_a_chord_member_whose_worker_is_killed_runs_again_and_the_body_fires_once(tmp_path, redis_client, wait):
    victims = [start_compat_worker(tmp_path / f"kill-{i}.log", "--threads", "2", "-Q", "kill") for i in range(2)]
    try:
        header = [proj.slow.s(1, 2, "compat:pids").set(queue="kill"), add.s(2, 2).set(queue="kill")]
        result = chord(header, proj.counted_sum.s("compat:fired").set(queue="kill"))()
        [victim] = wait(lambda: notes(redis_client, "compat:pids"), timeout=30)
        os.killpg(os.getpgid(victim), signal.SIGKILL)
        assert result.get(timeout=30) == 5
        pids = notes(redis_client, "compat:pids")
        assert len(pids) == 2 and pids[1] != victim  # run again, elsewhere
        assert redis_client.get("compat:fired") == "1"
    finally:
        for proc in victims:
            stop(proc)


# --- On the stub broker: direct calls, bound retries, and the pipeline's handle --------------

calls: list[tuple] = []
lock = threading.Lock()


def remember(*item):
    with lock:
        calls.append(item)


@pytest.fixture
def stub_tasks(stub_broker):
    calls.clear()

    @pipeline.app.task(name="compat_add")
    def add(x, y):
        remember("add", x, y)
        return x + y

    @pipeline.app.task(bind=True, max_retries=2, name="compat_flaky")
    def flaky(self, key):
        remember("flaky", key, self.request.retries)
        if self.request.retries < 2:
            self.retry(exc=RuntimeError("again"), countdown=0.01)
        return key

    yield add, flaky
    for declared in (add, flaky):
        stub_broker.actors.pop(declared.name)


def test_a_task_can_be_called_in_process_and_sent(stub_tasks, stub_worker, stub_broker):
    add, _ = stub_tasks
    assert add(2, 3) == 5
    result = add.delay(4, 5)
    assert result.id and isinstance(result, celery.AsyncResult)
    add.apply_async(args=(1, 1), countdown=0.01)
    stub_broker.join("default")
    stub_worker.join()
    assert sorted(c for c in calls if c[0] == "add") == [("add", 1, 1), ("add", 2, 3), ("add", 4, 5)]


def test_bound_retry_retries_with_the_countdown_then_stops(stub_tasks, stub_worker, stub_broker):
    _, flaky = stub_tasks
    flaky.delay("k")
    stub_broker.join("default")
    stub_worker.join()
    assert [c for c in calls if c[0] == "flaky"] == [("flaky", "k", 0), ("flaky", "k", 1), ("flaky", "k", 2)]


def test_retry_with_no_retries_left_reraises():
    bound = celery.BoundTask(pipeline.execute_dba_task, celery.Request(retries=3))
    with pytest.raises(ValueError, match="boom"):
        bound.retry(exc=ValueError("boom"), countdown=1, max_retries=3)
    with pytest.raises(dramatiq.Retry) as retry:
        celery.BoundTask(pipeline.execute_dba_task, celery.Request(retries=1)).retry(countdown=2.5, max_retries=3)
    assert retry.value.delay == 2500


def test_async_result_state_comes_from_the_result_backend(personal_team, user, stub_worker, wait):
    session = pipeline.create_session(personal_team.id, user.id, "Chat")
    result = pipeline.start_session(session.id)
    assert pipeline.start_session(session.id).id == result.id  # starting twice gives the same chain
    wait(lambda: result.ready())
    assert result.state == celery.SUCCESS and result.successful()
    # The group's own id is stored by the barrier just after its last member's result.
    wait(lambda: celery.AsyncResult(result.id, app=pipeline.app).state == celery.SUCCESS)
    task = pipeline.AgentTask.get(pipeline.AgentTask.session == session.id, pipeline.AgentTask.agent_role == "dba")
    assert celery.AsyncResult(task.celery_task_id, app=pipeline.app).state == celery.SUCCESS
    unknown = celery.AsyncResult("unknown", app=pipeline.app)
    assert unknown.state == celery.PENDING and not unknown.ready()

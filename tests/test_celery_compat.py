"""The Celery-compatible interface: signatures, groups, chains of groups, bound retries, AsyncResult."""

from __future__ import annotations

import threading

import dramatiq
import pytest

from actors import celery_compat as celery
from actors import pipeline

calls: list[tuple] = []
lock = threading.Lock()


def record(*item):
    with lock:
        calls.append(item)


@pytest.fixture
def compat_tasks(stub_broker):
    calls.clear()

    @celery.task(name="compat_add")
    def add(x, y):
        record("add", x, y)
        return x + y

    @celery.task(bind=True, max_retries=2, name="compat_flaky")
    def flaky(self, key):
        record("flaky", key, self.request.retries)
        if self.request.retries < 2:
            self.retry(exc=RuntimeError("again"), countdown=0.01)
        return key

    @celery.task(bind=True, name="compat_step")
    def step(self, label):
        record("step", label, self.request.chain_step)
        with lock:
            done = sum(1 for c in calls if c[0] == "step" and c[2] == self.request.chain_step)
        # The checked advance: the two-member step moves on when both are in, the others at once.
        if done == (2 if self.request.chain_step == 1 else 1):
            self.request.start_next_step()

    yield add, flaky, step
    for declared in (add, flaky, step):
        stub_broker.actors.pop(declared.name)


def test_a_task_can_be_called_in_process_and_sent(compat_tasks, stub_worker, stub_broker):
    add, _, _ = compat_tasks
    assert add(2, 3) == 5
    result = add.delay(4, 5)
    assert result.id and isinstance(result, celery.AsyncResult)
    add.apply_async(args=(1, 1), countdown=0.01)
    stub_broker.join("default")
    stub_worker.join()
    assert sorted(c for c in calls if c[0] == "add") == [("add", 1, 1), ("add", 2, 3), ("add", 4, 5)]


def test_bound_retry_retries_with_the_countdown_then_stops(compat_tasks, stub_worker, stub_broker):
    _, flaky, _ = compat_tasks
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


def test_a_chain_of_groups_runs_steps_in_order(compat_tasks, stub_worker, stub_broker, wait):
    _, _, step = compat_tasks
    result = celery.chain(step.si("a"), celery.group(step.si("b1"), step.si("b2")), step.s("c")).apply_async()
    assert result.id and len(result.children) == 1
    wait(lambda: any(c[1] == "c" for c in calls))
    stub_broker.join("default")
    stub_worker.join()
    labels = [c[1] for c in calls]
    assert labels[0] == "a" and sorted(labels[1:3]) == ["b1", "b2"] and labels[3] == "c" and len(labels) == 4


def test_async_result_state_comes_from_the_database(personal_team, user, stub_worker, wait):
    session = pipeline.create_session(personal_team.id, user.id, "Chat")
    result = pipeline.start_session(session.id)
    assert pipeline.start_session(session.id).id == result.id  # starting twice gives the same chain
    wait(lambda: result.ready())
    assert result.state == celery.SUCCESS and result.successful()
    task = pipeline.AgentTask.get(pipeline.AgentTask.session == session.id, pipeline.AgentTask.agent_role == "dba")
    assert celery.AsyncResult(task.celery_task_id).state == celery.SUCCESS
    assert celery.AsyncResult("unknown").state == celery.PENDING and not celery.AsyncResult("unknown").ready()

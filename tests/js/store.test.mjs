// store.js: the page's one store, and the monotonic merge of task and session updates.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createStore, mergeSession, mergeTask, taskProgress } from "../../static/src/islands/store.js";

const task = (fields) => ({ id: 7, agent_role: "dba", status: "pending", retry_count: 0, ...fields });

describe("mergeTask", () => {
  test("takes the incoming task when nothing is held", () => {
    const incoming = task({ status: "running" });
    assert.equal(mergeTask(undefined, incoming), incoming);
  });

  test("moves forward within an attempt: pending, running, completed", () => {
    const running = mergeTask(task({}), task({ status: "running" }));
    assert.equal(running.status, "running");
    assert.equal(mergeTask(running, task({ status: "completed" })).status, "completed");
  });

  test("ignores a stale update that would take a task back", () => {
    const held = task({ status: "completed", output_data: { summary: "done" } });
    assert.equal(mergeTask(held, task({ status: "running" })), held);
    assert.equal(mergeTask(held, task({ status: "pending" })), held);
  });

  test("lets a later attempt replace an earlier one, even from running to pending", () => {
    const held = task({ status: "running", retry_count: 0 });
    const retry = task({ status: "pending", retry_count: 1 });
    assert.equal(mergeTask(held, retry).status, "pending");
    // ...but not an event of the first attempt arriving after the retry.
    assert.equal(mergeTask(retry, held).retry_count, 1);
  });

  test("a finished task is never replaced by an unfinished retry count", () => {
    const failed = task({ status: "error", retry_count: 3 });
    assert.equal(mergeTask(failed, task({ status: "running", retry_count: 3 })), failed);
    assert.equal(mergeTask(failed, task({ status: "pending", retry_count: 4 })), failed);
  });

  test("keeps the decisions held when the update comes without them", () => {
    const held = task({ status: "completed", decisions: [{ id: 1 }] });
    assert.deepEqual(mergeTask(held, task({ status: "completed" })).decisions, [{ id: 1 }]);
    assert.deepEqual(mergeTask(held, task({ status: "completed", decisions: [] })).decisions, []);
  });

  test("ranks progress as (finished, attempt, status)", () => {
    assert.deepEqual(taskProgress(task({ status: "running", retry_count: 2 })), [0, 2, 1]);
    assert.deepEqual(taskProgress(task({ status: "completed" })), [1, 0, 2]);
    assert.deepEqual(taskProgress({ status: "unknown" }), [0, 0, 0]);
  });
});

describe("mergeSession", () => {
  test("an ended session never goes back to active", () => {
    const ended = { id: 1, status: "completed", ended_at: "2026-01-01T00:00:00Z" };
    assert.equal(mergeSession(ended, { id: 1, status: "active", ended_at: null }), ended);
  });

  test("fields of the incoming session win otherwise, and held ones it lacks stay", () => {
    const merged = mergeSession({ id: 1, status: "active", feature_name: "Search" }, { id: 1, status: "error" });
    assert.deepEqual(merged, { id: 1, status: "error", feature_name: "Search" });
    assert.deepEqual(mergeSession(null, { id: 2 }), { id: 2 });
  });
});

describe("createStore", () => {
  test("replaces state on set, notifies listeners, and ignores a null patch", () => {
    const store = createStore({ a: 1, b: 1 });
    const before = store.get();
    let calls = 0;
    const unsubscribe = store.subscribe(() => (calls += 1));
    store.set({ a: 2 });
    store.set((state) => ({ b: state.a + 1 }));
    store.set(() => null);
    assert.deepEqual(store.get(), { a: 2, b: 3 });
    assert.deepEqual(before, { a: 1, b: 1 }, "state is replaced, never mutated");
    assert.equal(calls, 2);
    unsubscribe();
    store.set({ a: 9 });
    assert.equal(calls, 2);
  });
});

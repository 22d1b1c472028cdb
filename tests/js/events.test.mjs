// events.js: what each message of the session's feed does to the page's state; and the
// reconnect policy of live.js.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  applyEvent,
  applyProgress,
  applyReconcile,
  applyReplay,
  completedParts,
  mergeTasks,
} from "../../static/src/islands/events.js";
import { reconnectDelay } from "../../static/src/islands/live.js";
import { CLOSE, TYPE } from "../../static/src/islands/vocabulary.js";

function initial(fields = {}) {
  return {
    session: null,
    tasks: {},
    snapshots: {},
    retries: {},
    events: [],
    lastSeq: 0,
    decisionsVersion: 0,
    progress: {},
    selectedTaskId: null,
    ...fields,
  };
}

// Applies each event in turn as the store would (a null patch changes nothing).
function fold(state, events) {
  return events.reduce((held, event) => {
    const patch = applyEvent(held, event);
    return patch ? { ...held, ...patch } : held;
  }, state);
}

const session = { id: 1, status: "active", ended_at: null };
const dba = (status, fields = {}) => ({ id: 3, agent_role: "dba", status, retry_count: 0, ...fields });

describe("applyEvent", () => {
  test("folds a session's events into its session, tasks, snapshots and retries", () => {
    const state = fold(initial(), [
      { type: TYPE.SESSION_STARTED, seq: 1, at: "t1", session },
      { type: TYPE.AGENT_TASK_STARTED, seq: 2, at: "t2", task: dba("running") },
      { type: TYPE.AGENT_TASK_RETRYING, seq: 3, at: "t3", task: dba("pending", { retry_count: 1 }), error: "boom", retry_in_seconds: 5 },
      { type: TYPE.AGENT_TASK_COMPLETED, seq: 4, at: "t4", task: dba("completed", { retry_count: 1 }), snapshot: { v: 1 } },
      { type: TYPE.DECISION_CREATED, seq: 5, at: "t5", decision: { id: 9 } },
      { type: TYPE.SESSION_COMPLETED, seq: 6, at: "t6", session: { ...session, status: "completed", ended_at: "t6" } },
    ]);
    assert.equal(state.lastSeq, 6);
    assert.equal(state.events.length, 6);
    assert.equal(state.session.status, "completed");
    assert.equal(state.tasks[3].status, "completed");
    assert.deepEqual(state.retries[3], { error: "boom", retry_in_seconds: 5, at: "t3" });
    assert.deepEqual(state.snapshots[3], { v: 1 });
    assert.equal(state.decisionsVersion, 2, "a completed task and a decision both refresh the decisions");
  });

  test("a completed task gets back the copies its event leaves out (docs/api.md)", () => {
    const whole = [
      { id: 7, key: "dba.engine", text: "Target postgresql", rationale: "why", category: "data", confidence: "high", based_on: [1], based_on_keys: ["architect.database"] },
    ];
    const task = dba("completed", {
      task_description: "Design the database of Chat",
      input_data: { task_description: "Design the database of Chat", feature_name: "Chat", description: null },
      output_data: { summary: "2 tables", artifacts: { engine: "postgresql" } },
      decisions: [{ id: 7, decision_text: "Target postgresql", rationale: "why", category: "data", confidence: "high", based_on: [1], source: "agent" }],
    });
    const snapshot = {
      id: 5,
      decisions: [{ id: 7, key: "dba.engine", based_on_keys: ["architect.database"] }],
      context_state: { upstream: {}, session_decisions: [] },
    };
    const state = fold(initial(), [{ type: TYPE.AGENT_TASK_COMPLETED, seq: 1, at: "t1", task, snapshot }]);
    assert.deepEqual(state.tasks[3].output_data, { ...task.output_data, decisions: whole });
    assert.deepEqual(state.snapshots[3].decisions, whole);
    assert.deepEqual(state.snapshots[3].context_state, {
      task_description: "Design the database of Chat",
      feature_name: "Chat",
      description: null,
      upstream: {},
      session_decisions: [],
    });
    // A whole row (the timeline's, or an older event that still has them) is left as it is.
    const stored = { ...task, output_data: { ...task.output_data, decisions: whole } };
    assert.equal(completedParts(stored, { ...snapshot, decisions: whole }).task, stored);
    assert.deepEqual(completedParts(stored, { ...snapshot, decisions: whole }).snapshot.decisions, whole);
  });

  test("applies each seq once: a repeated or older event changes nothing", () => {
    const state = fold(initial(), [{ type: TYPE.AGENT_TASK_STARTED, seq: 2, at: "t", task: dba("running") }]);
    assert.equal(applyEvent(state, { type: TYPE.AGENT_TASK_COMPLETED, seq: 2, task: dba("completed") }), null);
    assert.equal(applyEvent(state, { type: TYPE.AGENT_TASK_COMPLETED, seq: 1, task: dba("completed") }), null);
    assert.equal(applyEvent(state, { type: TYPE.AGENT_TASK_PROGRESS, seq: null }), null, "ephemeral: no seq");
  });

  test("records a session error with its message and keeps an earlier end time", () => {
    const state = fold(initial({ session }), [{ type: TYPE.SESSION_ERROR, seq: 1, at: "t9", error: "worker lost" }]);
    assert.deepEqual(state.session, { id: 1, status: "error", ended_at: "t9", error_message: "worker lost" });
    const ended = fold(initial({ session: { ...session, ended_at: "t1" } }), [{ type: TYPE.SESSION_ERROR, seq: 1, at: "t9", error: "x" }]);
    assert.equal(ended.session.ended_at, "t1");
  });

  test("keeps a stored event of an unknown type in the log without other changes", () => {
    const patch = applyEvent(initial(), { type: "something_new", seq: 1, at: "t" });
    assert.deepEqual(Object.keys(patch).sort(), ["events", "lastSeq"]);
  });

  test("never takes a task back when an older state arrives with a newer seq", () => {
    const state = fold(initial(), [
      { type: TYPE.AGENT_TASK_COMPLETED, seq: 5, task: dba("completed") },
      { type: TYPE.AGENT_TASK_STARTED, seq: 6, task: dba("running") },
    ]);
    assert.equal(state.tasks[3].status, "completed");
  });
});

describe("applyProgress", () => {
  test("shows the latest text and never lowers the token count", () => {
    let state = initial();
    state = { ...state, ...applyProgress(state, { task_id: 3, text: "Hel", completion_tokens: 4 }) };
    state = { ...state, ...applyProgress(state, { task_id: 3, text: "Hello", completion_tokens: 2 }) };
    assert.deepEqual(state.progress[3], { text: "Hello", completion_tokens: 4 });
    state = { ...state, ...applyProgress(state, { task_id: 4 }) };
    assert.deepEqual(state.progress[4], { text: "", completion_tokens: 0 });
  });
});

describe("applyReplay", () => {
  const body = {
    session,
    tasks: [dba("completed", { snapshot: { v: 1 } }), { id: 4, agent_role: "ui_ux", status: "pending", retry_count: 0 }],
    events: [{ seq: 1 }, { seq: 4 }, { seq: 2 }],
  };

  test("splits snapshots from tasks, finds the last seq and selects the deep-linked agent", () => {
    const patch = applyReplay(initial(), body, "ui_ux");
    assert.deepEqual(patch.snapshots, { 3: { v: 1 } });
    assert.equal("snapshot" in patch.tasks[3], false);
    assert.equal(patch.lastSeq, 4);
    assert.equal(patch.selectedTaskId, 4);
    assert.equal(patch.loaded, true);
  });

  test("keeps what the socket delivered first and a selection already made", () => {
    const state = initial({ tasks: { 3: dba("running") }, lastSeq: 9, selectedTaskId: 3 });
    const patch = applyReplay(state, body, "ui_ux");
    assert.equal(patch.tasks[3].status, "running");
    assert.equal(patch.lastSeq, 9);
    assert.equal(patch.selectedTaskId, 3);
    assert.equal(applyReplay(initial(), body, "nobody").selectedTaskId, null);
  });
});

describe("applyReconcile and mergeTasks", () => {
  test("merge the REST answer monotonically", () => {
    const state = initial({ session: { ...session, status: "completed" }, tasks: { 3: dba("completed") } });
    const patch = applyReconcile(state, { session, tasks: [dba("running"), { id: 5, status: "pending" }] });
    assert.equal(patch.session.status, "completed");
    assert.equal(patch.tasks[3].status, "completed");
    assert.equal(patch.tasks[5].status, "pending");
    const held = { 3: dba("pending") };
    assert.notEqual(mergeTasks(held, []), held, "a new object, so the store sees a change");
  });
});

describe("reconnectDelay", () => {
  test("resumes at once after a too-slow close and backs off up to 8 s otherwise", () => {
    assert.equal(reconnectDelay(CLOSE.TOO_SLOW, 3), 0);
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => reconnectDelay(CLOSE.NORMAL, n)),
      [500, 1000, 2000, 4000, 8000, 8000],
    );
  });
});

// replay.js: what the team knew at a moment of a recorded session, and the timeline's arithmetic.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { autoSpeed, describe as describeEvent, foldEvents, speedLabel, splitRun, taskBars, ticks } from "../../static/src/islands/replay.js";
import { TYPE } from "../../static/src/islands/vocabulary.js";

const task = (role, status, fields = {}) => ({ id: role === "architect" ? 1 : 2, agent_role: role, status, retry_count: 0, ...fields });

// A run: started at 0 ms; the architect works 0-100 with a decision; the DBA fails once, then
// completes at 300; a session decision at 150; the session completes at 310; a late decision at 900.
const events = [
  { seq: 1, _t: 0, type: TYPE.SESSION_STARTED, session: { status: "active" } },
  { seq: 2, _t: 0, type: TYPE.AGENT_TASK_STARTED, task: task("architect", "running") },
  { seq: 3, _t: 100, type: TYPE.AGENT_TASK_COMPLETED, task: task("architect", "completed", { decisions: [{ id: 11, decision_text: "REST" }] }) },
  { seq: 4, _t: 110, type: TYPE.AGENT_TASK_STARTED, task: task("dba", "running") },
  { seq: 5, _t: 120, type: TYPE.AGENT_TASK_RETRYING, task: task("dba", "pending", { retry_count: 1 }), retry_in_seconds: 5 },
  { seq: 6, _t: 150, type: TYPE.DECISION_CREATED, decision: { id: 21, scope: "session", decision_text: "Keep it small" } },
  { seq: 7, _t: 200, type: TYPE.AGENT_TASK_STARTED, task: task("dba", "running", { retry_count: 1 }) },
  { seq: 8, _t: 300, type: TYPE.AGENT_TASK_COMPLETED, task: task("dba", "completed", { retry_count: 1, decisions: [] }) },
  { seq: 9, _t: 310, type: TYPE.SESSION_COMPLETED, session: { status: "completed", end_reason: "completed" } },
  { seq: 10, _t: 900, type: TYPE.DECISION_CREATED, decision: { id: 22, scope: "session", decision_text: "Later" } },
];

describe("foldEvents", () => {
  test("knows nothing before the first event", () => {
    const known = foldEvents(events, -1);
    assert.deepEqual(known, { tasks: {}, decisions: [], status: "not started", last: null, count: 0 });
  });

  test("rebuilds what the team knew at a moment, and only that", () => {
    const known = foldEvents(events, 130);
    assert.equal(known.status, "active");
    assert.equal(known.count, 5);
    assert.equal(known.last.seq, 5);
    assert.equal(known.tasks.architect.status, "completed");
    assert.equal(known.tasks.dba.status, "pending");
    assert.equal(known.tasks.dba.retry_count, 1);
    assert.deepEqual(known.decisions, [{ id: 11, decision_text: "REST", scope: "task", agent_role: "architect" }]);
  });

  test("knows an event from the very moment it happened", () => {
    assert.equal(foldEvents(events, 100).count, 3);
    assert.equal(foldEvents(events, 99.9).count, 2);
  });

  test("counts a task's decision once, whether it came with the task or on its own", () => {
    const again = { seq: 11, _t: 160, type: TYPE.DECISION_CREATED, decision: { id: 11, scope: "task", decision_text: "REST (edited)" } };
    const known = foldEvents([...events.slice(0, 6), again], 1000);
    assert.deepEqual(
      known.decisions.map((d) => `${d.scope}:${d.id}:${d.decision_text}`),
      ["task:11:REST (edited)", "session:21:Keep it small"],
    );
  });

  test("ends completed, ended early or in error as the session did", () => {
    assert.equal(foldEvents(events, 1000).status, "completed");
    const early = [...events.slice(0, 8), { seq: 9, _t: 310, type: TYPE.SESSION_COMPLETED, session: { end_reason: "user" } }];
    assert.equal(foldEvents(early, 1000).status, "ended early");
    assert.equal(foldEvents([...events.slice(0, 5), { seq: 6, _t: 130, type: TYPE.SESSION_ERROR, error: "x" }], 1000).status, "error");
  });
});

describe("splitRun", () => {
  test("ends the run at its last non-decision event; later decisions come after it", () => {
    const { run, late, end } = splitRun(events, false);
    assert.equal(end, 310);
    assert.equal(run.length, 9);
    assert.deepEqual(late.map((e) => e.seq), [10]);
  });

  test("keeps everything in the run while the session is active", () => {
    assert.deepEqual(splitRun(events, true), { run: events, late: [], end: 900 });
    assert.deepEqual(splitRun([], false), { run: [], late: [], end: 0 });
  });
});

describe("taskBars", () => {
  test("draws each role from its first start to its completion, through retries", () => {
    const bars = taskBars(events, 0);
    assert.deepEqual(bars.architect, { from: 0, to: 100, status: "pending", id: 1 });
    assert.deepEqual(bars.dba, { from: 110, to: 300, status: "pending", id: 2 });
  });

  test("ends a failed task's bar at its failure and leaves a running one open", () => {
    const failed = [
      { _t: 1000, type: TYPE.AGENT_TASK_STARTED, task: task("dba", "running") },
      { _t: 1500, type: TYPE.SESSION_ERROR, task: task("dba", "error") },
      { _t: 1200, type: TYPE.AGENT_TASK_STARTED, task: task("architect", "running") },
    ];
    const bars = taskBars(failed, 1000);
    assert.deepEqual([bars.dba.from, bars.dba.to], [0, 500]);
    assert.deepEqual([bars.architect.from, bars.architect.to], [200, null]);
  });
});

describe("the timeline's arithmetic", () => {
  test("fits any run into about 12 s of playback, within bounds", () => {
    assert.equal(autoSpeed(12_000), 1);
    assert.equal(autoSpeed(600_000), 50);
    assert.equal(autoSpeed(1), 0.001);
    assert.equal(autoSpeed(1e9), 1000);
  });

  test("labels speeds with two significant figures below 1", () => {
    assert.deepEqual([0.01, 0.25, 1, 2.345, 64].map(speedLabel), ["0.01×", "0.25×", "1×", "2.3×", "64×"]);
  });

  test("puts round ticks from 0 over the whole span", () => {
    assert.deepEqual(ticks(1000), [0, 200, 400, 600, 800, 1000]);
    assert.deepEqual(ticks(310), [0, 100, 200, 300]);
    const small = ticks(1);
    assert.equal(small[0], 0);
    assert.ok(small.length >= 4 && small.at(-1) <= 1);
  });

  test("describes each event in a sentence", () => {
    assert.equal(describeEvent(null), "Before the session started.");
    assert.equal(describeEvent(events[4]), "DBA failed and will retry in 5 s.");
    assert.equal(describeEvent(events[5]), "A decision was recorded: Keep it small");
    assert.equal(describeEvent({ type: TYPE.SESSION_ERROR, error: "worker lost" }), "The session stopped: worker lost");
    assert.equal(describeEvent({ type: "something_new" }), "something_new");
  });
});

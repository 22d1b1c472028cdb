// The replay's arithmetic, apart from its React component (SessionReplay.jsx): the playback
// speed, the time axis, where the run ends, and the fold that rebuilds what the team knew at a
// moment from the stored events. Pure functions; tests/js/replay.test.mjs runs them.
import { roleLabel } from "./api.js";
import { TYPE } from "./vocabulary.js";

export const SPEEDS = [0.01, 0.1, 0.25, 0.5, 1, 2, 4, 16, 64];
const PLAYBACK_MS = 12_000;

export function autoSpeed(totalMs) {
  return Math.min(1000, Math.max(0.001, totalMs / PLAYBACK_MS));
}

export function speedLabel(speed) {
  return speed >= 1 ? `${Math.round(speed * 10) / 10}×` : `${Number(speed.toPrecision(2))}×`;
}

// About `count` round ticks over [0, total] ms: steps of 1, 2 or 5 times a power of ten.
export function ticks(total, count = 6) {
  const raw = total / count;
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-3)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = 0; t <= total + 1e-9; t += step) out.push(t);
  return out;
}

// Events of the run and those after it: the run ends with the last task event or the session's
// end, whichever is later; only decisions can come after it.
export function splitRun(events, active) {
  if (active || !events.length) return { run: events, late: [], end: events.length ? events[events.length - 1]._t : 0 };
  let end = events[0]._t;
  for (const e of events) if (e.type !== TYPE.DECISION_CREATED) end = Math.max(end, e._t);
  return { run: events.filter((e) => e._t <= end), late: events.filter((e) => e._t > end), end };
}

// The state of the session after every event with time <= t.
export function foldEvents(events, t) {
  const tasks = {};
  const decisions = new Map(); // a user's task decision may also come back in its task's payload
  let status = "not started";
  let last = null;
  let count = 0;
  for (const event of events) {
    if (event._t > t) break;
    count += 1;
    last = event;
    if (event.type === TYPE.SESSION_STARTED) status = "active";
    if (event.type === TYPE.SESSION_COMPLETED) {
      status = event.session && event.session.end_reason === "user" ? "ended early" : "completed";
    }
    if (event.type === TYPE.SESSION_ERROR) status = "error";
    if (event.task) tasks[event.task.agent_role] = event.task;
    if (event.type === TYPE.AGENT_TASK_COMPLETED) {
      for (const d of event.task.decisions || []) {
        decisions.set(`task:${d.id}`, { ...d, scope: "task", agent_role: event.task.agent_role });
      }
    }
    if (event.type === TYPE.DECISION_CREATED && event.decision) {
      decisions.set(`${event.decision.scope || "session"}:${event.decision.id}`, event.decision);
    }
  }
  return { tasks, decisions: [...decisions.values()], status, last, count };
}

// Each role's bar on the timeline, in ms from `start`: from its first start to its completion or
// failure. Bars come from the event times, so they show what was recorded, not what a task row
// says now.
export function taskBars(events, start) {
  const out = {};
  for (const e of events) {
    if (!e.task) continue;
    const bar = out[e.task.agent_role] || (out[e.task.agent_role] = { from: null, to: null, status: "pending", id: e.task.id });
    if (e.type === TYPE.AGENT_TASK_STARTED && bar.from == null) bar.from = e._t - start;
    if (e.type === TYPE.AGENT_TASK_COMPLETED || (e.task.status === "error" && e.type !== TYPE.AGENT_TASK_STARTED)) {
      bar.to = e._t - start;
    }
  }
  return out;
}

// One sentence for the screen reader and the "At this moment" panel.
export function describe(event) {
  if (!event) return "Before the session started.";
  const who = event.task ? roleLabel(event.task.agent_role) : "";
  switch (event.type) {
    case TYPE.SESSION_STARTED:
      return "The session started.";
    case TYPE.AGENT_TASK_STARTED:
      return `${who} started.`;
    case TYPE.AGENT_TASK_COMPLETED:
      return `${who} completed.`;
    case TYPE.AGENT_TASK_RETRYING:
      return `${who} failed and will retry in ${event.retry_in_seconds} s.`;
    case TYPE.DECISION_CREATED:
      return `A decision was recorded: ${event.decision?.decision_text ?? ""}`;
    case TYPE.SESSION_COMPLETED:
      return "The session completed.";
    case TYPE.SESSION_ERROR:
      return `The session stopped: ${event.error}`;
    default:
      return event.type;
  }
}

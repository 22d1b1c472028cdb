// A timeline (Gantt) of the tasks with a scrubber and play/pause/speed. It rebuilds what the
// team knew at any moment by folding the stored events (GET /sessions/{id}/replay, then the
// live ones) up to that moment; nothing runs again.
import { useEffect, useMemo, useRef, useState } from "react";
import { parseTime, roleLabel, seconds } from "./api.js";
import { useStore } from "./store.js";

const SPEEDS = [1, 2, 4, 8, 16];

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
    if (event.type === "session_started") status = "active";
    if (event.type === "session_completed") status = "completed";
    if (event.type === "session_error") status = "error";
    if (event.task) tasks[event.task.agent_role] = event.task;
    if (event.type === "agent_task_completed") {
      for (const d of event.task.decisions || []) {
        decisions.set(`task:${d.id}`, { ...d, scope: "task", agent_role: event.task.agent_role });
      }
    }
    if (event.type === "decision_created" && event.decision) {
      decisions.set(`${event.decision.scope || "session"}:${event.decision.id}`, event.decision);
    }
  }
  return { tasks, decisions: [...decisions.values()], status, last, count };
}

function describe(event) {
  if (!event) return "Before the session started.";
  const who = event.task ? roleLabel(event.task.agent_role) : "";
  switch (event.type) {
    case "session_started":
      return "The session started.";
    case "agent_task_started":
      return `${who} started.`;
    case "agent_task_completed":
      return `${who} completed.`;
    case "agent_task_retrying":
      return `${who} failed and will retry in ${event.retry_in_seconds} s.`;
    case "decision_created":
      return `A decision was recorded: ${event.decision?.decision_text ?? ""}`;
    case "session_completed":
      return "The session completed.";
    case "session_error":
      return `The session stopped: ${event.error}`;
    default:
      return event.type;
  }
}

export default function SessionReplay({ live }) {
  const rawEvents = useStore(live.store, (s) => s.events);
  const session = useStore(live.store, (s) => s.session);
  const loaded = useStore(live.store, (s) => s.loaded);
  const { pipeline } = useStore(live.store, (s) => s.config);
  const roles = pipeline.flat();

  const events = useMemo(
    () => [...rawEvents].sort((a, b) => a.seq - b.seq).map((e) => ({ ...e, _t: parseTime(e.at) })),
    [rawEvents],
  );
  const start = events.length ? events[0]._t : 0;
  const end = events.length ? Math.max(events[events.length - 1]._t, parseTime(session?.ended_at) || 0) : 0;
  const total = Math.max(end - start, 1);

  const [position, setPosition] = useState(null); // ms from start; null: follow the end
  const [playing, setPlaying] = useState(false);
  const [speed, setSpeed] = useState(4);
  const frame = useRef(null);
  const at = position == null ? total : Math.min(position, total);

  useEffect(() => {
    if (!playing) return undefined;
    let previous = performance.now();
    const step = (now) => {
      const elapsed = (now - previous) * speed;
      previous = now;
      setPosition((p) => {
        const next = (p == null || p >= total ? 0 : p) + elapsed;
        if (next >= total) {
          setPlaying(false);
          return total;
        }
        return next;
      });
      frame.current = window.requestAnimationFrame(step);
    };
    frame.current = window.requestAnimationFrame(step);
    return () => window.cancelAnimationFrame(frame.current);
  }, [playing, speed, total]);

  const known = useMemo(() => foldEvents(events, start + at), [events, start, at]);

  // Bars come from the event times, so they show what was recorded, not what a task row says now.
  const bars = useMemo(() => {
    const out = {};
    for (const e of events) {
      if (!e.task) continue;
      const bar = out[e.task.agent_role] || (out[e.task.agent_role] = { from: null, to: null, status: "pending", id: e.task.id });
      if (e.type === "agent_task_started" && bar.from == null) bar.from = e._t - start;
      if (e.type === "agent_task_completed" || (e.task.status === "error" && e.type !== "agent_task_started")) {
        bar.to = e._t - start;
      }
    }
    return out;
  }, [events, start]);

  if (!loaded) return <p className="muted">Loading the recorded events…</p>;
  if (!events.length) return <p className="muted">No events recorded yet.</p>;

  const stepTo = (direction) => {
    const times = events.map((e) => e._t - start);
    const target =
      direction > 0 ? times.find((time) => time > at + 0.5) : [...times].reverse().find((time) => time < at - 0.5);
    setPlaying(false);
    setPosition(target == null ? (direction > 0 ? total : 0) : target);
  };
  const pct = (ms) => `${Math.max(0, Math.min(100, (ms / total) * 100))}%`;

  return (
    <div className="replay">
      <div className="replay__controls">
        <button
          type="button"
          className="button button--small"
          onClick={() => {
            if (!playing && at >= total) setPosition(0);
            setPlaying(!playing);
          }}
          aria-pressed={playing}
        >
          {playing ? "Pause" : "Play"}
        </button>
        <button type="button" className="button button--quiet button--small" onClick={() => stepTo(-1)} aria-label="Previous event">
          ◀ Event
        </button>
        <button type="button" className="button button--quiet button--small" onClick={() => stepTo(1)} aria-label="Next event">
          Event ▶
        </button>
        <label className="inline-label">
          Speed
          <select value={speed} onChange={(e) => setSpeed(Number(e.target.value))}>
            {SPEEDS.map((s) => (
              <option key={s} value={s}>
                {s}×
              </option>
            ))}
          </select>
        </label>
        <span className="muted replay__clock" aria-live="off">
          {seconds(at / 1000)} of {seconds(total / 1000)} · event {known.count} of {events.length}
        </span>
      </div>
      <label className="replay__scrubber">
        <span className="visually-hidden">Replay position</span>
        <input
          type="range"
          min="0"
          max={Math.round(total)}
          step="1"
          value={Math.round(at)}
          aria-valuetext={`${seconds(at / 1000)}: ${describe(known.last)}`}
          onChange={(e) => {
            setPlaying(false);
            setPosition(Number(e.target.value));
          }}
        />
      </label>

      <div className="gantt" role="list" aria-label="Tasks over time">
        {roles.map((role) => {
          const bar = bars[role];
          const task = known.tasks[role];
          const status = task ? (task.status === "pending" && task.retry_count ? "retrying" : task.status) : "pending";
          const from = bar && bar.from != null && bar.from <= at ? bar.from : null;
          const to = from == null ? null : bar.to != null && bar.to <= at ? bar.to : at;
          return (
            <div key={role} className="gantt__row" role="listitem">
              <button
                type="button"
                className="gantt__label"
                onClick={() => bar && live.select(bar.id)}
                disabled={!bar}
                data-role={role}
                data-replay-status={status}
              >
                {roleLabel(role)} <span className={`status status--${status}`}>{status}</span>
              </button>
              <div className="gantt__track">
                {from != null ? (
                  <span className={`gantt__bar gantt__bar--${status}`} style={{ left: pct(from), width: `max(3px, ${pct(to - from)})` }} />
                ) : null}
                <span className="gantt__cursor" style={{ left: pct(at) }} aria-hidden="true" />
              </div>
            </div>
          );
        })}
      </div>

      <div className="replay__known" aria-live="polite">
        <h3>At this moment</h3>
        <p data-replay-session-status={known.status}>
          Session: <strong>{known.status}</strong>. {describe(known.last)}
        </p>
        <p className="muted" data-replay-known-decisions={known.decisions.length}>
          The team knew {known.decisions.length} decision{known.decisions.length === 1 ? "" : "s"}:
        </p>
        <ul className="replay__decisions">
          {known.decisions.slice(-8).map((d) => (
            <li key={`${d.scope || "task"}:${d.id}`}>
              {d.agent_role ? <span className="badge">{roleLabel(d.agent_role)}</span> : <span className="badge">session</span>}{" "}
              {d.decision_text}
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}

// One card per agent, grouped by pipeline stage, updated live from the WebSocket.
import { useEffect, useState } from "react";
import { parseTime, roleLabel, seconds } from "./api.js";
import AgentProgress from "./AgentProgress.jsx";
import { useStore } from "./store.js";

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Connection lost: reconnecting…",
  revoked: "Disconnected: access removed",
  offline: "Offline",
};

function useNow(active) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return undefined;
    const id = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(id);
  }, [active]);
  return now;
}

export function displayStatus(task) {
  // After a failed attempt the task waits as `pending` with its retry count raised.
  if (task.status === "pending" && task.retry_count > 0) return "retrying";
  return task.status;
}

function AgentCard({ live, task, retry, now, selected, onSelect }) {
  const status = displayStatus(task);
  let detail = "Waiting for its stage";
  if (status === "running") {
    const started = parseTime(task.started_at);
    detail = `Running for ${seconds(Math.max(0, (now - started) / 1000))}`;
  } else if (status === "completed") {
    detail = `Completed in ${seconds(task.duration_seconds)}`;
  } else if (status === "retrying") {
    const wait = retry ? ` in ${retry.retry_in_seconds} s` : "";
    detail = `Retry ${task.retry_count}${wait}: ${(retry && retry.error) || task.error_message || "failed"}`;
  } else if (status === "error") {
    detail = task.error_message || "Failed";
  }
  return (
    <li>
      <button
        type="button"
        className={`agent-card agent-card--${status}${selected ? " agent-card--selected" : ""}`}
        data-role={task.agent_role}
        data-status={status}
        aria-pressed={selected}
        onClick={() => onSelect(task.id)}
      >
        <span className="agent-card__role">{roleLabel(task.agent_role)}</span>
        <span className={`status status--${status}`}>{status}</span>
        <span className="agent-card__detail">{detail}</span>
        {task.status === "running" ? <AgentProgress live={live} taskId={task.id} /> : null}
        {task.status === "completed" && task.output_data && task.output_data.summary ? (
          <span className="agent-card__summary">{task.output_data.summary}</span>
        ) : null}
      </button>
    </li>
  );
}

export default function TeamExecutionMonitor({ live, canWrite }) {
  const session = useStore(live.store, (s) => s.session);
  const tasks = useStore(live.store, (s) => s.tasks);
  const retries = useStore(live.store, (s) => s.retries);
  const connection = useStore(live.store, (s) => s.connection);
  const lastSeq = useStore(live.store, (s) => s.lastSeq);
  const loadError = useStore(live.store, (s) => s.loadError);
  const selected = useStore(live.store, (s) => s.selectedTaskId);
  const { pipeline } = useStore(live.store, (s) => s.config);
  const [ending, setEnding] = useState(false);
  const [endError, setEndError] = useState("");
  const list = Object.values(tasks);
  const now = useNow(list.some((t) => t.status === "running"));

  const byRole = {};
  for (const task of list) byRole[task.agent_role] = task;
  const done = list.filter((t) => t.status === "completed").length;

  async function end() {
    setEnding(true);
    setEndError("");
    try {
      await live.endSession();
    } catch (error) {
      setEndError(error.message);
    } finally {
      setEnding(false);
    }
  }

  function select(taskId) {
    live.select(taskId);
    const viewer = document.getElementById("state-title");
    if (viewer && viewer.scrollIntoView) viewer.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  return (
    <div className="monitor">
      <div className="monitor__bar">
        <span className={`connection connection--${connection}`} role="status" aria-live="polite" data-connection={connection}>
          <span className="connection__dot" aria-hidden="true" /> {CONNECTION_TEXT[connection] || connection}
        </span>
        {session ? (
          <span className={`status status--${session.status}`} data-session-status={session.status}>
            session {session.status}
          </span>
        ) : null}
        <span className="muted" aria-live="polite">
          {done} of {list.length || 7} agents done
        </span>
        <span className="muted monitor__seq">event #{lastSeq}</span>
        {canWrite && session && session.status === "active" ? (
          <button type="button" className="button button--quiet button--small" onClick={end} disabled={ending}>
            End session
          </button>
        ) : null}
      </div>
      {loadError ? <p className="alert" role="alert">{loadError}</p> : null}
      {endError ? <p className="alert" role="alert">{endError}</p> : null}
      {session && session.status === "error" && session.error_message ? (
        <p className="alert" role="alert">The session stopped: {session.error_message}</p>
      ) : null}
      <ol className="stages">
        {pipeline.map((roles, index) => (
          <li key={index} className="stage">
            <h3 className="stage__title">Stage {index + 1}</h3>
            <ul className="stage__cards">
              {roles.map((role) =>
                byRole[role] ? (
                  <AgentCard
                    key={role}
                    live={live}
                    task={byRole[role]}
                    retry={retries[byRole[role].id]}
                    now={now}
                    selected={selected === byRole[role].id}
                    onSelect={select}
                  />
                ) : (
                  <li key={role} className="agent-card agent-card--pending">
                    <span className="agent-card__role">{roleLabel(role)}</span>
                  </li>
                ),
              )}
            </ul>
          </li>
        ))}
      </ol>
    </div>
  );
}

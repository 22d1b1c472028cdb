// One card per agent, grouped by pipeline stage, updated live from the WebSocket.
import { useEffect, useState } from "react";
import { clock, parseTime, personName, roleLabel, seconds, sessionState, usageText } from "./api.js";
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

function AgentCard({ live, task, retry, now, selected, onSelect, sessionOver }) {
  const status = displayStatus(task);
  let detail = sessionOver ? "Not run: the session ended first" : "Waiting for its stage";
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
        {usageText(task.usage) ? <span className="agent-card__detail agent-card__usage">{usageText(task.usage)}</span> : null}
      </button>
    </li>
  );
}

// The honest one-line story of the session: running, waiting for a worker, ended early (by
// whom, when, how far it got), stopped by an error, or completed.
function SessionStory({ session, done, total, waiting, config }) {
  if (!session) return null;
  const state = sessionState(session);
  if (waiting) {
    return (
      <p className="notice monitor__state" role="status" data-waiting-for-worker="true">
        Waiting for a worker: no agent has started {seconds(waiting)} after the session was queued. Is a worker
        running (<code>python -m actors worker</code>)?
      </p>
    );
  }
  if (state === "ended early") {
    return (
      <p className="notice monitor__state" data-ended-early="true">
        Ended early by {personName(config, session.ended_by)} at {clock(session.ended_at)}: {done} of {total} agents had
        finished.
      </p>
    );
  }
  if (state === "completed") {
    return (
      <p className="notice notice--ok monitor__state">
        Completed at {clock(session.ended_at)} in {seconds(session.duration_seconds)}: {done} of {total} agents finished.
      </p>
    );
  }
  return null;
}

export default function TeamExecutionMonitor({ live, canWrite }) {
  const session = useStore(live.store, (s) => s.session);
  const tasks = useStore(live.store, (s) => s.tasks);
  const retries = useStore(live.store, (s) => s.retries);
  const connection = useStore(live.store, (s) => s.connection);
  const lastSeq = useStore(live.store, (s) => s.lastSeq);
  const loadError = useStore(live.store, (s) => s.loadError);
  const selected = useStore(live.store, (s) => s.selectedTaskId);
  const config = useStore(live.store, (s) => s.config);
  const { pipeline } = config;
  const [ending, setEnding] = useState(false);
  const [endError, setEndError] = useState("");
  const list = Object.values(tasks);
  const active = !!session && session.status === "active";
  const nothingStarted = list.length > 0 && list.every((t) => t.status === "pending" && !t.retry_count);
  const now = useNow(list.some((t) => t.status === "running") || (active && nothingStarted));

  const byRole = {};
  for (const task of list) byRole[task.agent_role] = task;
  const done = list.filter((t) => t.status === "completed").length;
  const total = (config.roles && config.roles.length) || list.length || 7;
  const queuedFor = active && nothingStarted ? (now - parseTime(session.started_at)) / 1000 : 0;
  const waiting = queuedFor >= (config.waitingForWorkerSeconds ?? 5) ? queuedFor : 0;
  const state = sessionState(session);

  async function end() {
    const left = total - done;
    const question = `End this session now? ${left} of ${total} agents have not finished; agents that have not started will not run.`;
    if (!window.confirm(question)) return;
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

  const usage = session ? usageText(session.usage) : "";
  return (
    <div className="monitor">
      <div className="monitor__bar">
        <span className={`connection connection--${connection}`} role="status" aria-live="polite" data-connection={connection}>
          <span className="connection__dot" aria-hidden="true" /> {CONNECTION_TEXT[connection] || connection}
        </span>
        {session ? (
          <span
            className={`status status--${state.replace(" ", "-")}`}
            data-session-status={session.status}
            data-session-state={state}
          >
            session {waiting ? "waiting for a worker" : state}
          </span>
        ) : null}
        <span className="muted" aria-live="polite" data-agents-done={done}>
          {done} of {total} agents done
        </span>
        {usage ? <span className="muted" data-session-usage>{usage}</span> : null}
        <span className="muted monitor__seq">event #{lastSeq}</span>
        {canWrite && active ? (
          <button type="button" className="button button--quiet button--small" onClick={end} disabled={ending}>
            End session
          </button>
        ) : null}
      </div>
      <SessionStory session={session} done={done} total={total} waiting={waiting} config={config} />
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
                    sessionOver={!!session && !active}
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

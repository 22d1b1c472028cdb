// Inspect one agent's snapshot: context, capabilities, decisions and metadata as collapsible
// trees, and what changed against an agent of the previous stage.
import { useMemo, useState } from "react";
import { roleLabel } from "./api.js";
import { useStore } from "./store.js";
import { diff, JsonTree, short } from "./tree.jsx";

const SECTIONS = [
  ["context_state", "Context"],
  ["capabilities", "Capabilities"],
  ["decisions", "Decisions"],
  ["execution_metadata", "Metadata"],
];

function Changes({ snapshot, previous }) {
  const [showAll, setShowAll] = useState(false);
  const capabilities = useMemo(() => {
    const before = new Set(previous.capabilities || []);
    const after = new Set(snapshot.capabilities || []);
    return {
      gained: [...after].filter((c) => !before.has(c)),
      lost: [...before].filter((c) => !after.has(c)),
    };
  }, [snapshot, previous]);
  const changes = useMemo(
    () =>
      ["context_state", "decisions"].flatMap((section) =>
        diff(previous[section], snapshot[section]).map((c) => ({ ...c, path: `${section}.${c.path}` })),
      ),
    [snapshot, previous],
  );
  const shown = showAll ? changes : changes.slice(0, 12);
  return (
    <div className="changes" aria-label={`Changes against ${roleLabel(previous.agent_role)}`}>
      <p>
        Against <strong>{roleLabel(previous.agent_role)}</strong>: {capabilities.gained.length} capabilities gained,{" "}
        {capabilities.lost.length} not used, {changes.length} context and decision values changed.
      </p>
      {capabilities.gained.length ? (
        <p className="changes__caps">
          {capabilities.gained.map((c) => (
            <span key={c} className="chip chip--added">+ {c}</span>
          ))}
          {capabilities.lost.map((c) => (
            <span key={c} className="chip chip--removed">− {c}</span>
          ))}
        </p>
      ) : null}
      <ul className="changes__list">
        {shown.map((change) => (
          <li key={`${change.kind}:${change.path}`} className={`change change--${change.kind}`}>
            <code>{change.path}</code>{" "}
            {change.kind === "added" ? <span>added: {short(change.after)}</span> : null}
            {change.kind === "removed" ? <span>removed (was {short(change.before)})</span> : null}
            {change.kind === "changed" ? (
              <span>
                {short(change.before)} → {short(change.after)}
              </span>
            ) : null}
          </li>
        ))}
      </ul>
      {changes.length > shown.length ? (
        <button type="button" className="button button--quiet button--small" onClick={() => setShowAll(true)}>
          Show all {changes.length} changes
        </button>
      ) : null}
    </div>
  );
}

export default function AgentStateViewer({ live }) {
  const selectedId = useStore(live.store, (s) => s.selectedTaskId);
  const tasks = useStore(live.store, (s) => s.tasks);
  const snapshots = useStore(live.store, (s) => s.snapshots);
  const [compareWith, setCompareWith] = useState(null);

  const task = selectedId ? tasks[selectedId] : null;
  if (!task) {
    return <p className="muted">Pick an agent card or a timeline row to inspect what that agent knew.</p>;
  }
  const snapshot = snapshots[task.id];
  const earlier = Object.values(tasks)
    .filter((t) => t.stage === task.stage - 1 && snapshots[t.id])
    .map((t) => snapshots[t.id]);
  const previous = earlier.find((s) => s.task_id === compareWith) || earlier[0];

  return (
    <div className="state-viewer" aria-live="polite" data-task-id={task.id}>
      <div className="state-viewer__head">
        <h3>
          {roleLabel(task.agent_role)} <span className={`status status--${task.status}`}>{task.status}</span>
        </h3>
        <button type="button" className="button button--quiet button--small" onClick={() => live.select(null)}>
          Close
        </button>
      </div>
      <p className="muted">{task.task_description}</p>
      {!snapshot ? (
        <p className="notice">No snapshot yet: an agent's state is recorded when its task completes.</p>
      ) : (
        <>
          {SECTIONS.map(([key, title]) => (
            <section key={key} className="state-viewer__section">
              <h4>{title}</h4>
              <JsonTree value={snapshot[key] ?? null} openDepth={key === "capabilities" ? 1 : 1} />
            </section>
          ))}
          <section className="state-viewer__section">
            <h4>What changed against the previous stage</h4>
            {task.stage === 0 ? <p className="muted">The architect starts the pipeline: there is no earlier stage.</p> : null}
            {task.stage > 0 && !previous ? <p className="muted">No snapshot of the previous stage yet.</p> : null}
            {earlier.length > 1 ? (
              <label className="inline-label">
                Compare with
                <select value={previous.task_id} onChange={(e) => setCompareWith(Number(e.target.value))}>
                  {earlier.map((s) => (
                    <option key={s.task_id} value={s.task_id}>
                      {roleLabel(s.agent_role)}
                    </option>
                  ))}
                </select>
              </label>
            ) : null}
            {previous ? <Changes snapshot={snapshot} previous={previous} /> : null}
          </section>
        </>
      )}
    </div>
  );
}

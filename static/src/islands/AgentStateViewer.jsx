// Inspect one agent's snapshot as a person reads it: what it was given (the feature, the session
// decisions, the earlier agents' summaries), its capabilities, its decisions as rows that link
// to the decisions they were based on, and how the run went; the raw snapshot is one toggle
// away. "What changed" compares decisions by their key and other values by their path, never by
// list position.
import { useMemo, useState } from "react";
import { roleLabel, seconds, usageText } from "./api.js";
import { useStore } from "./store.js";
import { JsonTree, keyedDiff, short } from "./tree.jsx";

function decisionKey(decision, index) {
  return decision.key || decision.text || decision.decision_text || `#${index}`;
}

// Decisions added, dropped and reworded between two snapshots, matched by key.
export function decisionChanges(before, after) {
  const a = new Map((before || []).map((d, i) => [decisionKey(d, i), d]));
  const b = new Map((after || []).map((d, i) => [decisionKey(d, i), d]));
  const out = [];
  for (const [key, d] of b) {
    if (!a.has(key)) out.push({ kind: "added", key, after: d });
    else if ((a.get(key).text || "") !== (d.text || "")) out.push({ kind: "changed", key, before: a.get(key), after: d });
  }
  for (const [key, d] of a) if (!b.has(key)) out.push({ kind: "removed", key, before: d });
  return out;
}

function Changes({ snapshot, previous }) {
  const [showAll, setShowAll] = useState(false);
  const capabilities = useMemo(() => {
    const before = new Set(previous.capabilities || []);
    const after = new Set(snapshot.capabilities || []);
    return { gained: [...after].filter((c) => !before.has(c)), lost: [...before].filter((c) => !after.has(c)) };
  }, [snapshot, previous]);
  const decisions = useMemo(() => decisionChanges(previous.decisions, snapshot.decisions), [snapshot, previous]);
  const context = useMemo(() => keyedDiff(previous.context_state, snapshot.context_state), [snapshot, previous]);
  const added = decisions.filter((c) => c.kind === "added");
  const changes = [...decisions.filter((c) => c.kind !== "added"), ...context];
  const shown = showAll ? changes : changes.slice(0, 12);
  return (
    <div className="changes" aria-label={`Changes against ${roleLabel(previous.agent_role)}`}>
      <p>
        Against <strong>{roleLabel(previous.agent_role)}</strong>: {added.length} new decision{added.length === 1 ? "" : "s"},{" "}
        {decisions.length - added.length} of its decisions not carried over or reworded, {context.length} context value
        {context.length === 1 ? "" : "s"} changed; {capabilities.gained.length} capabilities gained,{" "}
        {capabilities.lost.length} not used.
      </p>
      {capabilities.gained.length || capabilities.lost.length ? (
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
        {added.map((c) => (
          <li key={`d+${c.key}`} className="change change--added">
            new decision <code>{c.key}</code>: {c.after.text}
          </li>
        ))}
        {shown.map((c) => (
          <li key={`${c.kind}:${c.key || c.path}`} className={`change change--${c.kind}`}>
            {c.path !== undefined ? <code>{c.path}</code> : <>decision <code>{c.key}</code></>}{" "}
            {c.kind === "added" ? <span>added: {short(c.after)}</span> : null}
            {c.kind === "removed" ? <span>not in this agent (was {short(c.before?.text ?? c.before)})</span> : null}
            {c.kind === "changed" ? (
              <span>
                {short(c.before?.text ?? c.before)} → {short(c.after?.text ?? c.after)}
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

function Context({ context }) {
  if (!context) return <p className="muted">Nothing recorded.</p>;
  const { feature_name: feature, description, session_decisions: decisions, upstream, task_description: task, ...rest } =
    context;
  return (
    <>
      <dl className="facts">
        {task ? (
          <>
            <dt>Task</dt>
            <dd>{task}</dd>
          </>
        ) : null}
        {feature ? (
          <>
            <dt>Feature</dt>
            <dd>{feature}</dd>
          </>
        ) : null}
        {description ? (
          <>
            <dt>Description</dt>
            <dd>{description}</dd>
          </>
        ) : null}
      </dl>
      {decisions && decisions.length ? (
        <>
          <p className="muted">Session decisions it was given:</p>
          <ul>
            {decisions.map((d) => (
              <li key={d.id}>
                <a href={`#session-decision-${d.id}`}>{d.text || d.decision_text}</a>
              </li>
            ))}
          </ul>
        </>
      ) : null}
      {upstream && Object.keys(upstream).length ? (
        <>
          <p className="muted">Earlier agents&apos; work it read:</p>
          <ul>
            {Object.entries(upstream).map(([role, u]) => (
              <li key={role}>
                <strong>{roleLabel(role)}</strong>: {u.summary || "no summary"}
              </li>
            ))}
          </ul>
        </>
      ) : null}
      {Object.keys(rest).length ? <JsonTree value={rest} openDepth={1} /> : null}
    </>
  );
}

function DecisionRows({ decisions, upstream }) {
  if (!decisions || !decisions.length) return <p className="muted">No decisions.</p>;
  return (
    <ul className="decision-list">
      {decisions.map((d, i) => (
        <li key={decisionKey(d, i)} className="decision-row" data-decision-key={d.key || ""}>
          {d.key ? <span className="decision-row__key">{d.key}</span> : null}
          <span className="decision__text">
            {d.id ? <a href={`#decision-${d.id}`}>{d.text || d.decision_text}</a> : d.text || d.decision_text}
          </span>
          {d.rationale ? <span className="decision__rationale">Why: {d.rationale}</span> : null}
          <span className="decision__meta">
            {d.category ? <span className="chip">{String(d.category).replace("_", " ")}</span> : null}
            {d.confidence ? <span className="chip">{d.confidence} confidence</span> : null}
          </span>
          {(d.based_on || []).length ? (
            <span className="decision__based">
              Based on:{" "}
              {(d.based_on || []).map((ref, n) => {
                const id = typeof ref === "number" ? ref : ref.id;
                const found = upstream[id];
                return (
                  <span key={id}>
                    {n ? "; " : ""}
                    <a href={`#decision-${id}`} data-based-on={id}>
                      {found ? `${roleLabel(found.role)}: ${found.text}` : `an earlier decision`}
                    </a>
                  </span>
                );
              })}
            </span>
          ) : null}
        </li>
      ))}
    </ul>
  );
}

function Metadata({ meta, task }) {
  if (!meta) return <p className="muted">Nothing recorded.</p>;
  const worker = meta.worker || {};
  const brain = meta.brain || {};
  const usage = usageText(task.usage);
  return (
    <dl className="facts">
      <dt>Ran for</dt>
      <dd>{seconds(meta.duration_seconds ?? task.duration_seconds)}</dd>
      <dt>Attempt</dt>
      <dd>
        {meta.attempt ?? 1}
        {meta.retries ? ` (after ${meta.retries} failed)` : ""}
      </dd>
      {brain.name ? (
        <>
          <dt>Brain</dt>
          <dd>
            {brain.name}
            {brain.version ? ` ${brain.version}` : ""}
          </dd>
        </>
      ) : null}
      {usage ? (
        <>
          <dt>Model usage</dt>
          <dd>{usage}</dd>
        </>
      ) : null}
      {worker.host ? (
        <>
          <dt>Worker</dt>
          <dd>
            {worker.host}, process {worker.pid}, {worker.thread}
          </dd>
        </>
      ) : null}
    </dl>
  );
}

export default function AgentStateViewer({ live }) {
  const selectedId = useStore(live.store, (s) => s.selectedTaskId);
  const tasks = useStore(live.store, (s) => s.tasks);
  const snapshots = useStore(live.store, (s) => s.snapshots);
  const [compareWith, setCompareWith] = useState(null);
  const [raw, setRaw] = useState(false);

  // Every recorded task decision by id, for "Based on" links.
  const upstream = useMemo(() => {
    const out = {};
    for (const t of Object.values(tasks)) {
      for (const d of t.decisions || []) out[d.id] = { role: t.agent_role, text: d.decision_text };
    }
    return out;
  }, [tasks]);

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
    <div className="state-viewer" aria-live="polite" data-task-id={task.id} data-role={task.agent_role}>
      <div className="state-viewer__head">
        <h3>
          {roleLabel(task.agent_role)} <span className={`status status--${task.status}`}>{task.status}</span>
        </h3>
        <span className="session-actions">
          {snapshot ? (
            <button type="button" className="button button--quiet button--small" aria-pressed={raw} onClick={() => setRaw(!raw)}>
              {raw ? "Readable view" : "Raw snapshot"}
            </button>
          ) : null}
          <button type="button" className="button button--quiet button--small" onClick={() => live.select(null)}>
            Close
          </button>
        </span>
      </div>
      <p className="muted">{task.task_description}</p>
      {!snapshot ? (
        <p className="notice">No snapshot yet: an agent&apos;s state is recorded when its task completes.</p>
      ) : raw ? (
        <section className="state-viewer__section">
          <h4>Raw snapshot</h4>
          <JsonTree value={snapshot} openDepth={1} />
        </section>
      ) : (
        <>
          <section className="state-viewer__section">
            <h4>Context</h4>
            <Context context={snapshot.context_state} />
          </section>
          <section className="state-viewer__section">
            <h4>Capabilities</h4>
            <p className="chips">
              {(snapshot.capabilities || []).map((c) => (
                <span key={c} className="chip">
                  {c}
                </span>
              ))}
            </p>
          </section>
          <section className="state-viewer__section">
            <h4>Decisions</h4>
            <DecisionRows decisions={snapshot.decisions} upstream={upstream} />
          </section>
          <section className="state-viewer__section">
            <h4>Metadata</h4>
            <Metadata meta={snapshot.execution_metadata} task={task} />
          </section>
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

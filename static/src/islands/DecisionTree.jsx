// The decision journal: the session's (strategic) decisions, then each agent task's (tactical)
// decisions with their rationale and the upstream decisions they were based on. Members and
// owners can add a session decision or a decision on one task.
import { useEffect, useState } from "react";
import { api, roleLabel } from "./api.js";
import { useStore } from "./store.js";

function useDecisions(live) {
  const version = useStore(live.store, (s) => s.decisionsVersion);
  const { sessionId } = useStore(live.store, (s) => s.config);
  const [tree, setTree] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    let cancelled = false;
    // Coalesce bursts of events (a stage finishing) into one request.
    const timer = window.setTimeout(async () => {
      try {
        const body = await api("GET", `/sessions/${sessionId}/decisions`);
        if (!cancelled) {
          setTree(body);
          setError("");
        }
      } catch (failure) {
        if (!cancelled) setError(failure.message);
      }
    }, tree ? 250 : 0);
    return () => {
      cancelled = true;
      window.clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [version, sessionId]);
  return { tree, error };
}

function Meta({ decision }) {
  return (
    <span className="decision__meta">
      {decision.category ? <span className="chip">{decision.category.replace("_", " ")}</span> : null}
      {decision.confidence ? <span className="chip">{decision.confidence} confidence</span> : null}
      {decision.source === "user" ? <span className="chip chip--user">added by a person</span> : null}
    </span>
  );
}

function DecisionForm({ label, withRationale, withConfidence, categories, confidenceLevels, onSubmit }) {
  const empty = { decision_text: "", rationale: "", category: "", confidence: "high" };
  const [values, setValues] = useState(empty);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [fields, setFields] = useState({});
  const set = (key) => (e) => setValues({ ...values, [key]: e.target.value });

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError("");
    setFields({});
    const body = { decision_text: values.decision_text };
    if (values.category) body.category = values.category;
    if (withConfidence) body.confidence = values.confidence;
    if (withRationale && values.rationale.trim()) body.rationale = values.rationale;
    try {
      await onSubmit(body);
      setValues(empty);
    } catch (failure) {
      setError(failure.message);
      setFields(failure.fields || {});
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="decision-form" onSubmit={submit} noValidate aria-label={label}>
      {error ? <p className="alert" role="alert">{error}</p> : null}
      <label>
        Decision
        <textarea
          name="decision_text"
          rows="2"
          required
          value={values.decision_text}
          onChange={set("decision_text")}
          aria-invalid={!!fields.decision_text}
        />
      </label>
      {fields.decision_text ? <p className="field-error">{fields.decision_text}</p> : null}
      {withRationale ? (
        <label>
          <span>
            Rationale <span className="optional">(optional)</span>
          </span>
          <textarea name="rationale" rows="2" value={values.rationale} onChange={set("rationale")} />
        </label>
      ) : null}
      <div className="decision-form__row">
        <label>
          Category
          <select name="category" value={values.category} onChange={set("category")}>
            <option value="">none</option>
            {categories.map((c) => (
              <option key={c} value={c}>
                {c.replace("_", " ")}
              </option>
            ))}
          </select>
        </label>
        {withConfidence ? (
          <label>
            Confidence
            <select name="confidence" value={values.confidence} onChange={set("confidence")}>
              {confidenceLevels.map((c) => (
                <option key={c} value={c}>
                  {c}
                </option>
              ))}
            </select>
          </label>
        ) : null}
      </div>
      <div>
        <button type="submit" className="button button--small" disabled={busy}>
          {label}
        </button>
      </div>
    </form>
  );
}

export default function DecisionTree({ live, canWrite }) {
  const { sessionId, categories, confidenceLevels } = useStore(live.store, (s) => s.config);
  const { tree, error } = useDecisions(live);

  if (error && !tree) return <p className="alert" role="alert">{error}</p>;
  if (!tree) return <p className="muted">Loading decisions…</p>;

  const owner = {};
  for (const task of tree.tasks) for (const d of task.decisions) owner[d.id] = task.agent_role;

  const addSessionDecision = async (body) => {
    await api("POST", `/sessions/${sessionId}/decisions`, body);
    live.bumpDecisions();
  };
  const addTaskDecision = (taskId) => async (body) => {
    await api("POST", `/tasks/${taskId}/decisions`, body);
    live.bumpDecisions();
  };

  return (
    <div className="decisions">
      <section aria-labelledby="session-decisions-title">
        <h3 id="session-decisions-title">Session decisions</h3>
        {tree.session_decisions.length === 0 ? (
          <p className="muted">No session decisions yet. They steer the agents that have not run yet.</p>
        ) : (
          <ul className="decision-list" data-count={tree.session_decisions.length}>
            {tree.session_decisions.map((d) => (
              <li key={d.id} className="decision decision--session">
                <p className="decision__text">{d.decision_text}</p>
                <Meta decision={d} />
              </li>
            ))}
          </ul>
        )}
        {canWrite ? (
          <DecisionForm
            label="Add session decision"
            withConfidence
            categories={categories}
            confidenceLevels={confidenceLevels}
            onSubmit={addSessionDecision}
          />
        ) : null}
      </section>

      <section aria-labelledby="task-decisions-title">
        <h3 id="task-decisions-title">Agent decisions</h3>
        {tree.tasks.map((task) => (
          <details key={task.task_id} className="decision-task" open={task.decisions.length > 0 && task.decisions.length < 6}>
            <summary>
              <strong>{roleLabel(task.agent_role)}</strong>{" "}
              <span className={`status status--${task.status}`}>{task.status}</span>{" "}
              <span className="muted">
                {task.decisions.length} decision{task.decisions.length === 1 ? "" : "s"}
              </span>
            </summary>
            {task.upstream.length ? (
              <div className="decision-task__upstream">
                <p className="muted">Built on:</p>
                <ul>
                  {task.upstream.map((u) => (
                    <li key={`${u.kind}:${u.decision.id}`}>
                      <span className="badge">{u.kind === "session" ? "session" : roleLabel(owner[u.decision.id])}</span>{" "}
                      {u.decision.decision_text}
                    </li>
                  ))}
                </ul>
              </div>
            ) : null}
            <ul className="decision-list">
              {task.decisions.map((d) => (
                <li key={d.id} className="decision">
                  <p className="decision__text">{d.decision_text}</p>
                  {d.rationale ? <p className="decision__rationale">Why: {d.rationale}</p> : null}
                  <Meta decision={d} />
                  {d.based_on && d.based_on.length ? (
                    <p className="decision__based muted">
                      Based on:{" "}
                      {d.based_on
                        .map((ref) => (typeof ref === "number" ? ref : ref.id))
                        .map((id) => `${roleLabel(owner[id] || "?")} #${id}`)
                        .join(", ")}
                    </p>
                  ) : null}
                </li>
              ))}
            </ul>
            {canWrite ? (
              <details className="decision-task__add">
                <summary>Add a decision to this task</summary>
                <DecisionForm
                  label={`Add decision to ${roleLabel(task.agent_role)}`}
                  withRationale
                  categories={categories}
                  confidenceLevels={confidenceLevels}
                  onSubmit={addTaskDecision(task.task_id)}
                />
              </details>
            ) : null}
          </details>
        ))}
      </section>
    </div>
  );
}

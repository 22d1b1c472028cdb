// The decision journal: the session's (strategic) decisions, then each agent task's (tactical)
// decisions with their rationale and the upstream decisions they were based on. Members and
// owners can add a session decision or a decision on one task.
import { useEffect, useState } from "react";
import { api, roleLabel, sessionState } from "./api.js";
import { useStore } from "./store.js";


// The category picker of every decision form (the journal's and the rerun dialog's).
export function CategorySelect({ value, onChange, categories }) {
  return (
    <label>
      Category
      <select name="category" value={value} onChange={onChange}>
        <option value="">none</option>
        {categories.map((c) => (
          <option key={c} value={c}>
            {c.replace("_", " ")}
          </option>
        ))}
      </select>
    </label>
  );
}
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

const FIELD_LABELS = {
  decision_text: "Decision",
  rationale: "Rationale",
  category: "Category",
  confidence: "Confidence",
  from_role: "Start from",
  brain: "Brain",
  decisions: "Session decisions",
};

// The API's reason for a field as a sentence beside it ("Decision must not be empty.").
export function fieldSentence(field, reason) {
  const label = FIELD_LABELS[field] || field;
  const text = String(reason || "is not valid");
  if (text === "required") return `${label} is required.`;
  return `${label} ${/^(must|is|has|are|can|may|should|needs)\b/.test(text) ? "" : "is "}${text}${/[.!?]$/.test(text) ? "" : "."}`;
}

function FieldError({ id, reason, field }) {
  if (!reason) return null;
  return (
    <p className="field-error" id={id}>
      {fieldSentence(field, reason)}
    </p>
  );
}

function DecisionForm({ label, withRationale, withConfidence, categories, confidenceLevels, onSubmit, note }) {
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
      const failed = Object.keys(failure.fields || {}).filter((f) => f !== "body");
      setError(failed.length ? `Check the field${failed.length === 1 ? "" : "s"} marked below.` : failure.message);
      setFields(failure.fields || {});
    } finally {
      setBusy(false);
    }
  }

  const uid = label.replace(/\W+/g, "-").toLowerCase();
  return (
    <form className="decision-form" onSubmit={submit} noValidate aria-label={label}>
      {note ? (
        <p className="notice" data-nothing-to-steer="true">
          {note}
        </p>
      ) : null}
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
          aria-describedby={fields.decision_text ? `${uid}-decision-error` : undefined}
        />
      </label>
      <FieldError id={`${uid}-decision-error`} field="decision_text" reason={fields.decision_text} />
      {withRationale ? (
        <label>
          <span>
            Rationale <span className="optional">(optional)</span>
          </span>
          <textarea name="rationale" rows="2" value={values.rationale} onChange={set("rationale")} aria-invalid={!!fields.rationale} />
        </label>
      ) : null}
      <FieldError field="rationale" reason={fields.rationale} />
      <div className="decision-form__row">
        <CategorySelect value={values.category} onChange={set("category")} categories={categories} />
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
      <FieldError field="category" reason={fields.category} />
      <FieldError field="confidence" reason={fields.confidence} />
      <div>
        <button type="submit" className="button button--small" disabled={busy}>
          {label}
        </button>
      </div>
    </form>
  );
}

// `#decision-<id>` in the address: the decision to open, scroll to and mark once it is shown.
function useLinkedDecision(tree) {
  const [target, setTarget] = useState(() => window.location.hash.replace(/^#/, ""));
  useEffect(() => {
    const onHash = () => setTarget(window.location.hash.replace(/^#/, ""));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  useEffect(() => {
    if (!tree || !/^(session-)?decision-/.test(target)) return;
    const element = document.getElementById(target);
    if (element && element.scrollIntoView) element.scrollIntoView({ block: "center" });
  }, [tree, target]);
  return target;
}

// Why nothing more can be steered, or "" while some agent has yet to start.
function steerNote(session, tasks) {
  if (!session) return "";
  if (session.status !== "active") {
    const how = sessionState(session) === "ended early" ? "was ended early" : "has ended";
    return `Nothing is left to steer: this session ${how}. A decision added now is kept in the journal, but no agent will read it.`;
  }
  const list = Object.values(tasks);
  if (list.length && list.every((t) => t.status !== "pending")) {
    return "Nothing is left to steer: every agent has started. A decision added now is kept in the journal, but no agent will read it.";
  }
  return "";
}

export default function DecisionTree({ live, canWrite }) {
  const { sessionId, categories, confidenceLevels } = useStore(live.store, (s) => s.config);
  const session = useStore(live.store, (s) => s.session);
  const tasks = useStore(live.store, (s) => s.tasks);
  const { tree, error } = useDecisions(live);
  const target = useLinkedDecision(tree);

  if (error && !tree) return <p className="alert" role="alert">{error}</p>;
  if (!tree) return <p className="muted">Loading decisions…</p>;

  const owner = {};
  const byId = {};
  for (const task of tree.tasks) {
    for (const d of task.decisions) {
      owner[d.id] = task.agent_role;
      byId[d.id] = d;
    }
  }
  const sessionById = Object.fromEntries(tree.session_decisions.map((d) => [d.id, d]));
  const note = steerNote(session, tasks);

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
              <li
                key={d.id}
                id={`session-decision-${d.id}`}
                className={`decision decision--session${target === `session-decision-${d.id}` ? " decision--target" : ""}`}
              >
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
            note={note}
          />
        ) : null}
      </section>

      <section aria-labelledby="task-decisions-title">
        <h3 id="task-decisions-title">Agent decisions</h3>
        {tree.tasks.map((task) => {
          const holdsTarget = task.decisions.some((d) => target === `decision-${d.id}`);
          return (
            <details
              key={task.task_id}
              className="decision-task"
              open={holdsTarget || (task.decisions.length > 0 && task.decisions.length < 6)}
            >
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
                        <a href={u.kind === "session" ? `#session-decision-${u.decision.id}` : `#decision-${u.decision.id}`}>
                          {u.decision.decision_text}
                        </a>
                      </li>
                    ))}
                  </ul>
                </div>
              ) : null}
              <ul className="decision-list">
                {task.decisions.map((d) => (
                  <li
                    key={d.id}
                    id={`decision-${d.id}`}
                    className={`decision${target === `decision-${d.id}` ? " decision--target" : ""}`}
                  >
                    <p className="decision__text">{d.decision_text}</p>
                    {d.rationale ? <p className="decision__rationale">Why: {d.rationale}</p> : null}
                    <Meta decision={d} />
                    {d.based_on && d.based_on.length ? (
                      <div className="decision__based muted">
                        Based on:{" "}
                        <ul>
                          {d.based_on.map((ref) => {
                            const session = !!ref && typeof ref === "object" && ref.kind === "session";
                            const id = typeof ref === "number" || !ref ? ref : ref.id;
                            const upstream = session ? sessionById[id] : byId[id];
                            return (
                              <li key={`${session ? "s" : "t"}${id}`}>
                                <a href={session ? `#session-decision-${id}` : `#decision-${id}`}>
                                  {session ? "Session" : roleLabel(owner[id] || "an earlier agent")}:{" "}
                                  {upstream ? upstream.decision_text : "a decision no longer recorded"}
                                </a>
                              </li>
                            );
                          })}
                        </ul>
                      </div>
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
          );
        })}
      </section>
    </div>
  );
}

// Steer: the "Rerun" dialog (members and owners) and, on the rerun's own page, the warnings the
// server gave when it was started. The dialog sends `POST /sessions/{id}/rerun` with only what
// the user changed (`from_role`, `decisions` when they differ, `brain` when another is chosen),
// so an untouched rerun keeps the original's decisions and brain exactly as the CLI would.
import { useEffect, useRef, useState } from "react";
import { api, roleLabel } from "./api.js";
import { CategorySelect, fieldSentence } from "./DecisionTree.jsx";
import { useStore } from "./store.js";

const WARNINGS_KEY = "sage:rerun-warnings:";

// The same comparison as actors/reruns.py `_decision_signature`: case and spacing of the text do
// not make a decision different; a missing confidence is "high".
function signature(decision) {
  const text = String(decision.decision_text || "")
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .join(" ");
  return JSON.stringify([text, decision.category || null, decision.confidence || "high"]);
}

export function decisionsChanged(original, edited) {
  const a = original.map(signature).sort();
  const b = edited.map(signature).sort();
  return a.length !== b.length || a.some((value, i) => value !== b[i]);
}

// actors/reruns.py `rerun_warnings`, word for word: every stage copied from the original (those
// before the start agent's stage) was built on the original decisions.
export function rerunWarnings(sessionId, pipeline, fromRole, original, edited) {
  if (!decisionsChanged(original, edited)) return [];
  const stageOf = {};
  pipeline.forEach((roles, index) => roles.forEach((role) => (stageOf[role] = index)));
  const fromStage = fromRole ? stageOf[fromRole] : 0;
  return pipeline
    .flat()
    .filter((role) => stageOf[role] < fromStage)
    .map(
      (role) =>
        `${role} is copied from session ${sessionId} and was built on the original session decisions, ` +
        `not the changed ones; rerun from ${role} to apply them to its work`,
    );
}

function brainLabel(brain) {
  return brain.model ? `${brain.name} (${brain.model})` : `${brain.name} (offline)`;
}

let nextRow = 0;
function row(decision) {
  nextRow += 1;
  return {
    row: nextRow,
    decision_text: decision.decision_text || "",
    category: decision.category || "",
    confidence: decision.confidence || "high",
  };
}

function asBody(rows) {
  return rows.map((r) => {
    const body = { decision_text: r.decision_text, confidence: r.confidence };
    if (r.category) body.category = r.category;
    return body;
  });
}

function Warnings({ warnings, title }) {
  if (!warnings.length) return null;
  return (
    <div className="notice rerun__warnings" data-rerun-warnings={warnings.length}>
      <p>
        <strong>{title}</strong>
      </p>
      <ul>
        {warnings.map((w) => (
          <li key={w}>{w}</li>
        ))}
      </ul>
    </div>
  );
}

function RerunForm({ config, onClose }) {
  const { sessionId, pipeline, categories, confidenceLevels } = config;
  const [loaded, setLoaded] = useState(null); // {decisions, brain, brains}
  const [loadError, setLoadError] = useState("");
  const [fromRole, setFromRole] = useState("architect");
  const [rows, setRows] = useState([]);
  const [brain, setBrain] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [fields, setFields] = useState({});

  useEffect(() => {
    let cancelled = false;
    Promise.all([api("GET", `/sessions/${sessionId}`), api("GET", "/brains").catch(() => null)])
      .then(([detail, brains]) => {
        if (cancelled) return;
        const own = detail.session.brain || (brains && brains.default) || "";
        const usable = brains ? brains.brains.filter((b) => b.configured || b.name === own) : [];
        setLoaded({ decisions: detail.decisions, brain: own, brains: usable });
        setRows(detail.decisions.map(row));
        setBrain(own);
      })
      .catch((failure) => !cancelled && setLoadError(failure.message || "The session could not be loaded."));
    return () => {
      cancelled = true;
    };
  }, [sessionId]);

  if (loadError) return <p className="alert" role="alert">{loadError}</p>;
  if (!loaded) return <p className="muted">Loading the session&rsquo;s decisions…</p>;

  const edited = asBody(rows);
  const warnings = rerunWarnings(sessionId, pipeline, fromRole, loaded.decisions, edited);
  const stageOf = {};
  pipeline.forEach((roles, index) => roles.forEach((role) => (stageOf[role] = index)));
  const copied = pipeline.flat().filter((role) => stageOf[role] < stageOf[fromRole]);
  const again = pipeline.flat().filter((role) => stageOf[role] >= stageOf[fromRole]);
  // An edited field's error goes with the edit; adding or removing a row renumbers them all.
  const forget = (names) => {
    const rest = { ...fields };
    names.forEach((name) => delete rest[name]);
    setFields(rest);
    if (!Object.keys(rest).some((f) => f !== "body")) setError("");
  };
  const setRow = (index, key) => (event) => {
    setRows(rows.map((r, i) => (i === index ? { ...r, [key]: event.target.value } : r)));
    forget([`decisions.${index}.${key}`]);
  };
  const renumber = (next) => {
    setRows(next);
    forget(Object.keys(fields).filter((f) => f.startsWith("decisions")));
  };
  const fieldOf = (index, key) => fields[`decisions.${index}.${key}`];

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError("");
    setFields({});
    const body = {};
    if (fromRole !== "architect") body.from_role = fromRole;
    if (decisionsChanged(loaded.decisions, edited)) body.decisions = edited;
    if (brain && brain !== loaded.brain) body.brain = brain;
    try {
      const answer = await api("POST", `/sessions/${sessionId}/rerun`, body);
      // The new page shows what the server warned about (it may know more than we computed).
      if (answer.warnings && answer.warnings.length) {
        try {
          window.sessionStorage.setItem(WARNINGS_KEY + answer.session_id, JSON.stringify(answer.warnings));
        } catch (_) {
          // Private mode without storage: the new page simply has no warnings to repeat.
        }
      }
      window.location.assign(`/dashboard/sessions/${answer.session_id}`);
    } catch (failure) {
      const failed = Object.keys(failure.fields || {}).filter((f) => f !== "body");
      setError(failed.length ? `Check the field${failed.length === 1 ? "" : "s"} marked below.` : failure.message);
      setFields(failure.fields || {});
      setBusy(false);
    }
  }

  return (
    <form className="rerun" onSubmit={submit} noValidate aria-label="Rerun settings">
      {error ? (
        <p className="alert" role="alert">
          {error}
        </p>
      ) : null}
      <label>
        Start from
        <select
          autoFocus
          name="from_role"
          value={fromRole}
          onChange={(e) => {
            setFromRole(e.target.value);
            forget(["from_role"]);
          }}
          aria-invalid={!!fields.from_role}
          aria-describedby="rerun-from-help"
        >
          {pipeline.flat().map((role) => (
            <option key={role} value={role}>
              {roleLabel(role)} (stage {stageOf[role] + 1}
              {role === "architect" ? ": the whole session" : ""})
            </option>
          ))}
        </select>
      </label>
      <p className="muted rerun__help" id="rerun-from-help">
        {copied.length ? `Copied as they are: ${copied.map(roleLabel).join(", ")}. ` : ""}
        Run again: {again.map(roleLabel).join(", ")}.
      </p>
      {fields.from_role ? <p className="field-error">{fieldSentence("from_role", fields.from_role)}</p> : null}

      <fieldset className="rerun__decisions">
        <legend>Session decisions</legend>
        {rows.length === 0 ? <p className="muted">None: the agents will run without session decisions.</p> : null}
        {rows.map((r, index) => (
          <fieldset key={r.row} className="rerun__decision" aria-label={`Decision ${index + 1}`}>
            <label>
              Decision {index + 1}
              <textarea
                name="decision_text"
                rows="2"
                value={r.decision_text}
                onChange={setRow(index, "decision_text")}
                aria-invalid={!!fieldOf(index, "decision_text")}
              />
            </label>
            {fieldOf(index, "decision_text") ? (
              <p className="field-error">{fieldSentence("decision_text", fieldOf(index, "decision_text"))}</p>
            ) : null}
            <div className="decision-form__row">
              <CategorySelect value={r.category} onChange={setRow(index, "category")} categories={categories} />
              <label>
                Confidence
                <select name="confidence" value={r.confidence} onChange={setRow(index, "confidence")}>
                  {confidenceLevels.map((c) => (
                    <option key={c} value={c}>
                      {c}
                    </option>
                  ))}
                </select>
              </label>
              <button
                type="button"
                className="button button--quiet button--small"
                onClick={() => renumber(rows.filter((_, i) => i !== index))}
              >
                Remove decision {index + 1}
              </button>
            </div>
            {fieldOf(index, "category") ? <p className="field-error">{fieldSentence("category", fieldOf(index, "category"))}</p> : null}
            {fieldOf(index, "confidence") ? (
              <p className="field-error">{fieldSentence("confidence", fieldOf(index, "confidence"))}</p>
            ) : null}
          </fieldset>
        ))}
        {fields.decisions ? <p className="field-error">{fieldSentence("decisions", fields.decisions)}</p> : null}
        <button type="button" className="button button--quiet button--small" onClick={() => renumber([...rows, row({})])}>
          Add a decision
        </button>
      </fieldset>

      {loaded.brains.length ? (
        <label>
          Brain
          <select name="brain" value={brain} onChange={(e) => {
              setBrain(e.target.value);
              forget(["brain"]);
            }} aria-invalid={!!fields.brain}>
            {loaded.brains.map((b) => (
              <option key={b.name} value={b.name}>
                {brainLabel(b)}
                {b.name === loaded.brain ? ", as before" : ""}
              </option>
            ))}
          </select>
        </label>
      ) : null}
      {fields.brain ? <p className="field-error">{fieldSentence("brain", fields.brain)}</p> : null}

      <div role="status" aria-live="polite">
        <Warnings warnings={warnings} title="Before you start:" />
      </div>

      <div className="rerun__actions">
        <button type="submit" className="button" disabled={busy}>
          {busy ? "Starting…" : "Start rerun"}
        </button>
        <button type="button" className="button button--quiet" onClick={onClose}>
          Cancel
        </button>
      </div>
    </form>
  );
}

// The button and the modal <dialog>: the browser traps focus inside it and Escape closes it;
// focus goes back to the button afterwards.
export function RerunButton({ live, canWrite }) {
  const config = useStore(live.store, (s) => s.config);
  const dialog = useRef(null);
  const opener = useRef(null);
  const [open, setOpen] = useState(false);

  useEffect(() => {
    const element = dialog.current;
    if (!element) return;
    if (open && !element.open) element.showModal();
    if (!open && element.open) element.close();
  }, [open]);

  if (!canWrite) return null;
  const close = () => {
    setOpen(false);
    if (opener.current) opener.current.focus();
  };
  return (
    <>
      <button type="button" ref={opener} className="button button--small" onClick={() => setOpen(true)}>
        Rerun…
      </button>
      <dialog ref={dialog} className="dialog" aria-labelledby="rerun-title" onClose={() => open && close()}>
        <div className="dialog__head">
          <h2 id="rerun-title">Rerun this session</h2>
          <button type="button" className="button button--quiet button--small" onClick={close} aria-label="Close">
            ×
          </button>
        </div>
        <p className="muted">
          A new session, linked to this one: the agents before the one you choose are copied, it and the ones after
          it run again with the decisions below.
        </p>
        {open ? <RerunForm config={config} onClose={close} /> : null}
      </dialog>
    </>
  );
}

// On a rerun's page: what the server warned about when it was started from the dialog.
export function RerunNotice({ live }) {
  const { sessionId } = useStore(live.store, (s) => s.config);
  const [warnings] = useState(() => {
    try {
      return JSON.parse(window.sessionStorage.getItem(WARNINGS_KEY + sessionId) || "[]");
    } catch (_) {
      return [];
    }
  });
  if (!warnings.length) return null;
  return <Warnings warnings={warnings} title="Started with warnings:" />;
}

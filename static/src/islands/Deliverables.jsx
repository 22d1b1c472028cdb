// Each agent's work as a readable document, one tab per agent: the architect's components and
// domain model, the endpoint table, the schema as SQL DDL, routes, screens and flows, the threat
// model and the deployment plan. Artifacts without a layout (a model brain may add some) are
// shown as lists or JSON; the raw output is one toggle away. The `models/design_pack.py`
// Markdown follows the same layout.
import { useState } from "react";
import { roleLabel, usageText } from "./api.js";
import { useStore } from "./store.js";

function CopyButton({ text, label }) {
  const [done, setDone] = useState("");
  async function copy() {
    try {
      await navigator.clipboard.writeText(text);
      setDone("Copied");
    } catch (_) {
      setDone("Select the text and copy it");
    }
    window.setTimeout(() => setDone(""), 2000);
  }
  return (
    <button type="button" className="button button--quiet button--small" onClick={copy} aria-label={`Copy ${label}`}>
      {done || "Copy"}
    </button>
  );
}

function Code({ text, label }) {
  return (
    <div className="code">
      <pre tabIndex={0} aria-label={label}>
        <code>{text}</code>
      </pre>
      <CopyButton text={text} label={label} />
    </div>
  );
}

function Table({ headers, rows, caption }) {
  if (!rows.length) return <p className="muted">None.</p>;
  return (
    <div className="table-scroll">
      <table className="table">
        {caption ? <caption className="visually-hidden">{caption}</caption> : null}
        <thead>
          <tr>
            {headers.map((h) => (
              <th key={h} scope="col">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, i) => (
            <tr key={i}>
              {row.map((cell, j) => (
                <td key={j}>{cell}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function List({ items }) {
  if (!items || !items.length) return <p className="muted">None.</p>;
  return (
    <ul>
      {items.map((item, i) => (
        <li key={i}>{typeof item === "string" ? item : JSON.stringify(item)}</li>
      ))}
    </ul>
  );
}

const text = (value) => (value == null ? "" : typeof value === "string" ? value : JSON.stringify(value));

// The DBA's tables and indexes as PostgreSQL DDL (models/design_pack.py `ddl` writes the same).
export function ddl(artifacts) {
  const statements = [];
  for (const table of artifacts.tables || []) {
    const columns = (table.columns || []).map((column) => {
      let line = `    ${column.name} ${column.type || "TEXT"}`;
      const key = String(column.key || "");
      if (key === "primary") line += " PRIMARY KEY";
      else if (key.startsWith("foreign")) {
        const target = key.split("->").pop().trim();
        const [tableName, columnName] = target.split(".");
        line += ` REFERENCES ${tableName} (${columnName || "id"})`;
      }
      if (column.null === false && key !== "primary") line += " NOT NULL";
      return line;
    });
    statements.push(`CREATE TABLE ${table.name} (\n${columns.join(",\n")}\n);`);
  }
  for (const index of artifacts.indexes || []) {
    const cols = index.columns || [];
    const name = `idx_${index.table}_${cols.join("_")}`;
    const body =
      index.kind === "fulltext"
        ? `CREATE INDEX ${name} ON ${index.table} USING GIN (to_tsvector('simple', ${cols[0] || "body"}))`
        : `CREATE ${index.unique ? "UNIQUE " : ""}INDEX ${name} ON ${index.table} (${cols.join(", ")})`;
    statements.push(`${body};${index.why ? `  -- ${index.why}` : ""}`);
  }
  return statements.join("\n\n");
}

// The security decision a threat produced (the same rules as models/design_pack.py).
export function threatDecision(threat, decisions) {
  const byKey = Object.fromEntries((decisions || []).map((d) => [d.key, d]));
  if (threat.decision && byKey[threat.decision]) return byKey[threat.decision];
  const title = String(threat.threat || "").toLowerCase();
  const found = (decisions || []).find((d) => title && String(d.text || "").toLowerCase().includes(title));
  if (found) return found;
  if (title.startsWith("insecure direct object")) return byKey["security.authz"] || null;
  if (String(threat.target || "").startsWith("table ")) return byKey["security.data"] || null;
  return null;
}

function DecisionLink({ decision }) {
  if (!decision) return null;
  return decision.id ? <a href={`#decision-${decision.id}`}>{decision.text}</a> : <span>{decision.text}</span>;
}

const LAYOUTS = {
  architect: {
    known: ["components", "patterns", "integration_points", "domain_model", "traits", "preferences"],
    render: (a) => (
      <>
        <h4>Components</h4>
        <Table
          caption="Components"
          headers={["Component", "Why", "How it is deployed"]}
          rows={(a.components || []).map((c) => [c.name, c.why, c.deploy])}
        />
        <h4>Patterns</h4>
        <List items={(a.patterns || []).map((p) => (typeof p === "string" ? p : `${p.name}: ${p.why}`))} />
        <h4>Integration points</h4>
        <List items={a.integration_points} />
        <h4>Domain model</h4>
        <ul>
          {(a.domain_model || []).map((entity) => (
            <li key={entity.entity}>
              <strong>{entity.entity}</strong>
              {entity.owner_scoped ? " (owned by a user)" : ""}:{" "}
              {(entity.fields || []).map((f) => (Array.isArray(f) ? `${f[0]} (${f[1]})` : text(f))).join(", ")}
            </li>
          ))}
        </ul>
      </>
    ),
  },
  backend_dev: {
    known: ["endpoints", "services"],
    render: (a) => (
      <>
        <h4>Endpoints</h4>
        <Table
          caption="Endpoints"
          headers={["Method", "Path", "Purpose", "Who may call it"]}
          rows={(a.endpoints || []).map((e) => [e.method, <code key="p">{e.path}</code>, e.purpose, e.auth])}
        />
        {(a.endpoints || []).length ? (
          <Code label="endpoint list" text={(a.endpoints || []).map((e) => `${e.method} ${e.path}`).join("\n")} />
        ) : null}
        <h4>Services</h4>
        <List items={(a.services || []).map((s) => `${s.name}: ${s.responsibility}`)} />
      </>
    ),
  },
  dba: {
    known: ["engine", "tables", "indexes", "migrations"],
    render: (a) => (
      <>
        <p>Engine: {a.engine || "postgresql"}.</p>
        <h4>Schema (SQL DDL)</h4>
        <Code label="SQL DDL" text={ddl(a)} />
      </>
    ),
  },
  frontend_dev: {
    known: ["framework", "routes", "forms", "components"],
    render: (a) => (
      <>
        <p>Framework: {a.framework}.</p>
        <h4>Routes</h4>
        <Table
          caption="Routes"
          headers={["Path", "Component", "Loads"]}
          rows={(a.routes || []).map((r) => [<code key="p">{r.path}</code>, r.component, r.loads])}
        />
        <h4>Forms</h4>
        <Table caption="Forms" headers={["Component", "Submits"]} rows={(a.forms || []).map((f) => [f.component, f.submits])} />
        <h4>Components</h4>
        <List items={a.components} />
      </>
    ),
  },
  ui_ux: {
    known: ["screens", "flows", "accessibility_checks"],
    render: (a) => (
      <>
        <h4>Screens</h4>
        <Table
          caption="Screens"
          headers={["Screen", "Path", "States"]}
          rows={(a.screens || []).map((s) => [s.name, <code key="p">{s.path}</code>, (s.states || []).join(", ")])}
        />
        <h4>Flows</h4>
        <ul>
          {(a.flows || []).map((flow) => (
            <li key={flow.name}>
              <strong>{flow.name}</strong>: {(flow.steps || []).join(" → ")}
            </li>
          ))}
        </ul>
        <h4>Accessibility checklist</h4>
        <ul className="checklist">
          {(a.accessibility_checks || []).map((check) => (
            <li key={check}>{check}</li>
          ))}
        </ul>
      </>
    ),
  },
  security: {
    known: ["threats"],
    render: (a, output) => (
      <>
        <h4>Threat model</h4>
        <Table
          caption="Threat model"
          headers={["Threat", "Asset", "Severity", "Mitigation", "Decision"]}
          rows={(a.threats || []).map((t) => [
            t.threat,
            <code key="t">{t.target}</code>,
            <span key="s" className={`severity--${t.severity}`}>
              {t.severity}
            </span>,
            t.mitigation,
            <DecisionLink key="d" decision={threatDecision(t, output.decisions)} />,
          ])}
        />
      </>
    ),
  },
  it_admin: {
    known: ["target", "units", "backups", "pipeline", "environment"],
    render: (a) => (
      <>
        <p>Target: {a.target}.</p>
        <h4>Units</h4>
        <Table
          caption="Units"
          headers={["Unit", "Runs", "Replicas", "Notes"]}
          rows={(a.units || []).map((u) => [u.name, u.runs, u.replicas ?? "", u.notes || ""])}
        />
        <h4>Delivery pipeline</h4>
        <ol>
          {(a.pipeline || []).map((step) => (
            <li key={step}>{step}</li>
          ))}
        </ol>
        <h4>Backups</h4>
        <p>{a.backups || "None."}</p>
        <h4>Environment</h4>
        <List items={(a.environment || []).map((name) => name)} />
      </>
    ),
  },
};

function Extra({ artifacts, known }) {
  const extra = Object.entries(artifacts).filter(([key]) => !known.includes(key));
  return extra.map(([key, value]) => (
    <div key={key}>
      <h4>{key.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase())}</h4>
      {Array.isArray(value) && value.every((v) => typeof v === "string") ? (
        <List items={value} />
      ) : typeof value === "string" ? (
        <p>{value}</p>
      ) : (
        <Code label={key} text={JSON.stringify(value, null, 2)} />
      )}
    </div>
  ));
}

function Document({ task }) {
  const [raw, setRaw] = useState(false);
  const output = task.output_data;
  if (!output) {
    const why =
      task.status === "running" ? "is working on it now" : task.status === "error" ? "failed" : "has not run yet";
    return <p className="muted">{roleLabel(task.agent_role)} {why}: its deliverable appears when it completes.</p>;
  }
  const layout = LAYOUTS[task.agent_role] || { known: [], render: () => null };
  const artifacts = output.artifacts || {};
  const usage = usageText(task.usage);
  return (
    <article className="doc" data-deliverable={task.agent_role} aria-label={`${roleLabel(task.agent_role)} deliverable`}>
      <div className="state-viewer__head">
        <p>
          <strong>{output.summary}</strong>
        </p>
        <button type="button" className="button button--quiet button--small" aria-pressed={raw} onClick={() => setRaw(!raw)}>
          {raw ? "Show document" : "Show raw JSON"}
        </button>
      </div>
      {usage ? <p className="muted">Model usage: {usage}</p> : null}
      {raw ? (
        <div className="raw">
          <Code label={`${roleLabel(task.agent_role)} raw output`} text={JSON.stringify(output, null, 2)} />
        </div>
      ) : (
        <>
          {layout.render(artifacts, output)}
          <Extra artifacts={artifacts} known={layout.known} />
          {(output.concerns || []).length ? (
            <>
              <h4>Concerns</h4>
              <List items={output.concerns} />
            </>
          ) : null}
        </>
      )}
    </article>
  );
}

export default function Deliverables({ live }) {
  const tasks = useStore(live.store, (s) => s.tasks);
  const selectedId = useStore(live.store, (s) => s.selectedTaskId);
  const loaded = useStore(live.store, (s) => s.loaded);
  const { pipeline } = useStore(live.store, (s) => s.config);
  const byRole = {};
  for (const task of Object.values(tasks)) byRole[task.agent_role] = task;
  const roles = pipeline.flat().filter((role) => byRole[role]);
  if (!loaded) return <p className="muted">Loading what the agents wrote…</p>;
  if (!roles.length) return <p className="muted">No agents yet.</p>;

  // The tab follows the selected agent (`?agent=`), else the first agent.
  const chosen = (selectedId && tasks[selectedId]) || byRole[roles[0]];
  return (
    <div className="deliverables">
      <div className="tabs" role="tablist" aria-label="Agents">
        {roles.map((role) => {
          const task = byRole[role];
          const current = task.id === chosen.id;
          return (
            <button
              key={role}
              type="button"
              role="tab"
              id={`deliverable-tab-${role}`}
              aria-selected={current}
              aria-controls="deliverable-panel"
              tabIndex={current ? 0 : -1}
              data-role={role}
              onClick={() => live.select(task.id)}
              onKeyDown={(event) => {
                const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
                if (!step) return;
                const next = roles[(roles.indexOf(role) + step + roles.length) % roles.length];
                live.select(byRole[next].id);
                document.getElementById(`deliverable-tab-${next}`)?.focus();
              }}
            >
              {roleLabel(role)}
            </button>
          );
        })}
      </div>
      <div role="tabpanel" id="deliverable-panel" aria-labelledby={`deliverable-tab-${chosen.agent_role}`} tabIndex={0}>
        <Document key={chosen.id} task={chosen} />
      </div>
    </div>
  );
}

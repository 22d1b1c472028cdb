// Model usage: the session's brain and totals, and each agent's calls, tokens, cost and latency.
// Totals are added up from the tasks while the session runs (every task event carries its
// usage), and taken from the session once it has ended; both follow the same rule: a cost that
// is unknown for any task (a model without a price) makes the total unknown.
import { roleLabel } from "./api.js";
import { useStore } from "./store.js";

export function usageTotals(tasks) {
  const used = tasks.map((t) => t.usage).filter(Boolean);
  if (!used.length) return null;
  const total = { calls: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 };
  for (const u of used) {
    total.calls += u.calls;
    total.prompt_tokens += u.prompt_tokens;
    total.completion_tokens += u.completion_tokens;
    total.cost_usd = total.cost_usd === null || u.cost_usd === null ? null : total.cost_usd + u.cost_usd;
  }
  return total;
}

export function cost(value) {
  if (value === null || value === undefined) return "unknown";
  return value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;
}

const number = (value) => (value ?? 0).toLocaleString("en");

export default function ModelUsage({ live }) {
  const session = useStore(live.store, (s) => s.session);
  const tasks = useStore(live.store, (s) => s.tasks);
  const { pipeline } = useStore(live.store, (s) => s.config);
  if (!session) return null;
  const order = pipeline.flat();
  const list = Object.values(tasks).sort((a, b) => order.indexOf(a.agent_role) - order.indexOf(b.agent_role));
  const ended = session.status !== "active" && session.usage && session.usage.calls !== null;
  const totals = ended ? session.usage : usageTotals(list);
  const brain = session.brain || "knowledge-base";
  if (!totals) {
    return (
      <p className="muted" data-usage="none">
        Brain: <strong>{brain}</strong>
        {brain === "knowledge-base" ? " (offline: no model calls)" : " (no model calls yet)"}
      </p>
    );
  }
  return (
    <div className="usage" data-usage="model">
      <p>
        Brain: <strong>{brain}</strong> · <span data-usage-calls>{number(totals.calls)}</span> calls ·{" "}
        <span data-usage-tokens>
          {number(totals.prompt_tokens)} prompt + {number(totals.completion_tokens)} completion tokens
        </span>{" "}
        · cost <span data-usage-cost>{cost(totals.cost_usd)}</span>
      </p>
      <table className="table usage__table">
        <thead>
          <tr>
            <th scope="col">Agent</th>
            <th scope="col">Model</th>
            <th scope="col">Calls</th>
            <th scope="col">Prompt</th>
            <th scope="col">Completion</th>
            <th scope="col">Cost</th>
            <th scope="col">Model time</th>
          </tr>
        </thead>
        <tbody>
          {list
            .filter((t) => t.usage)
            .map((t) => (
              <tr key={t.id} data-role={t.agent_role}>
                <td>{roleLabel(t.agent_role)}</td>
                <td>{t.usage.model}</td>
                <td>{t.usage.calls}</td>
                <td>{number(t.usage.prompt_tokens)}</td>
                <td>{number(t.usage.completion_tokens)}</td>
                <td>{cost(t.usage.cost_usd)}</td>
                <td>{(t.usage.latency_ms / 1000).toFixed(1)} s</td>
              </tr>
            ))}
        </tbody>
      </table>
    </div>
  );
}

// fetch against the JSON API of docs/api.md; errors come back as {"error": {...}}.
export class ApiFailure extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.fields = error.fields || {};
  }
}

export async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let parsed = null;
  try {
    parsed = await response.json();
  } catch (_) {
    // an empty or non-JSON body
  }
  if (!response.ok) {
    throw new ApiFailure(response.status, (parsed && parsed.error) || {});
  }
  return parsed;
}

export const ROLE_LABELS = {
  architect: "Architect",
  backend_dev: "Backend developer",
  dba: "DBA",
  frontend_dev: "Frontend developer",
  ui_ux: "UI/UX designer",
  security: "Security engineer",
  it_admin: "IT admin",
};

export function roleLabel(role) {
  return ROLE_LABELS[role] || role;
}

export function seconds(value) {
  if (value == null || Number.isNaN(value)) return "–";
  // The built-in brain finishes in milliseconds: "0.0 s" would hide that it ran at all.
  if (value < 1) return `${Math.max(1, Math.round(value * 1000))} ms`;
  return value < 60 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

export function parseTime(iso) {
  return iso ? Date.parse(iso) : null;
}

// What a session's state means to a person: a session the user ended is "ended early", never
// a green "completed" (`end_reason` of docs/api.md).
export function sessionState(session) {
  if (!session) return "loading";
  if (session.status === "active") return "running";
  if (session.end_reason === "user") return "ended early";
  return session.status;
}

export function personName(config, userId) {
  if (userId == null) return "a former member";
  if (userId === config.userId) return "you";
  return (config.people && config.people[String(userId)]) || "a former member";
}

export function clock(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

// Model usage of a task or session (null on the knowledge base): "1,234 tokens · $0.0123".
export function usageText(usage) {
  if (!usage || (!usage.calls && !usage.prompt_tokens && !usage.completion_tokens)) return "";
  const tokens = (usage.prompt_tokens || 0) + (usage.completion_tokens || 0);
  const parts = [];
  if (usage.model) parts.push(usage.model);
  if (tokens) parts.push(`${tokens.toLocaleString()} tokens`);
  if (usage.cost_usd != null) parts.push(`$${Number(usage.cost_usd).toFixed(4)}`);
  return parts.join(" · ");
}

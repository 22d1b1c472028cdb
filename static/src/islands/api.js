// fetch against the JSON API of spec/API.md; errors come back as {"error": {...}}.
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

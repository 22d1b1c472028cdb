// Alpine components of the login, signup and dashboard pages. They post JSON with fetch and show
// the error envelope of docs/api.md ({"error": {"code", "message", "fields"}}) inline.

// The API's per-field reasons ("required", "must be at most 64 characters") as sentences to show
// beside each field ("Username must be at most 64 characters."), and one line for the top alert
// that points at them instead of repeating one field. Shared with dashboard.js (loaded after).
window.sageErrors = {
  labels: {
    username: "Username",
    email: "Email",
    password: "Password",
    name: "Team name",
    feature_name: "Feature name",
    description: "Description",
    decision_text: "Decision",
    rationale: "Rationale",
    category: "Category",
    confidence: "Confidence",
    role: "Role",
  },
  sentence(field, reason) {
    const label = this.labels[field] || field.charAt(0).toUpperCase() + field.slice(1).replace(/_/g, " ");
    const text = String(reason || "is not valid");
    if (text === "required") return `${label} is required.`;
    const verb = /^(must|is|has|are|can|may|should|needs)\b/.test(text) ? "" : "is ";
    return `${label} ${verb}${text}${/[.!?]$/.test(text) ? "" : "."}`;
  },
  fields(error) {
    const out = {};
    for (const [field, reason] of Object.entries((error && error.fields) || {})) out[field] = this.sentence(field, reason);
    return out;
  },
  summary(error, fields) {
    const count = Object.keys(fields).filter((f) => f !== "body").length;
    if (count === 1) return "Check the field marked below.";
    if (count > 1) return `Check the ${count} fields marked below.`;
    return error.message;
  },
};

document.addEventListener("alpine:init", () => {
  const postJson = (url, body) =>
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  const readError = async (response) => {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (_) {
      // not JSON: fall through
    }
    return { message: `Something went wrong (HTTP ${response.status}).`, fields: {} };
  };

  window.Alpine.data("authForm", (url, values) => ({
    values,
    fields: {},
    message: "",
    busy: false,
    next: "/dashboard",
    init() {
      // The server put a checked same-site path here (app.pages.safe_next).
      if (this.$root.dataset.next && this.$root.dataset.next.startsWith("/")) this.next = this.$root.dataset.next;
    },
    async submit() {
      this.busy = true;
      this.message = "";
      this.fields = {};
      try {
        const response = await postJson(url, this.values);
        if (response.ok) {
          window.location.assign(this.next);
          return;
        }
        const error = await readError(response);
        // Per-field sentences go beside their inputs; the alert points at them.
        this.fields = window.sageErrors.fields(error);
        this.message = window.sageErrors.summary(error, this.fields);
      } catch (_) {
        this.message = "The server cannot be reached. Check your connection and try again.";
      } finally {
        this.busy = false;
      }
    },
  }));

  window.Alpine.data("logoutButton", () => ({
    busy: false,
    async logout() {
      this.busy = true;
      try {
        await postJson("/auth/logout");
      } finally {
        window.location.assign("/login");
      }
    },
  }));
});

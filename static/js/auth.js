// Alpine components of the login, signup and dashboard pages. They post JSON with fetch and show
// the error envelope of spec/API.md ({"error": {"code", "message", "fields"}}) inline.
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
    async submit() {
      this.busy = true;
      this.message = "";
      this.fields = {};
      try {
        const response = await postJson(url, this.values);
        if (response.ok) {
          window.location.assign("/dashboard");
          return;
        }
        const error = await readError(response);
        this.fields = error.fields || {};
        // The message names the problem; per-field reasons go under their inputs.
        this.message = error.message;
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

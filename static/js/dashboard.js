// Alpine components of the dashboard and team pages. Data comes from the JSON API of
// docs/api.md with fetch; errors are the envelope {"error": {"code", "message", "fields"}}.
document.addEventListener("alpine:init", () => {
  const api = async (method, url, body) => {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("logged out");
    }
    if (response.status === 204) return { ok: true, status: 204, body: null };
    let parsed = null;
    try {
      parsed = await response.json();
    } catch (_) {
      // not JSON
    }
    if (!response.ok) {
      const error = (parsed && parsed.error) || { message: `Something went wrong (HTTP ${response.status}).` };
      return { ok: false, status: response.status, error: { fields: {}, ...error } };
    }
    return { ok: true, status: response.status, body: parsed };
  };
  const offline = "The server cannot be reached. Check your connection and try again.";

  window.Alpine.data("pageNotice", () => ({
    text: new URLSearchParams(window.location.search).get("notice") === "revoked"
      ? "Your access to that session's team was removed, so you have left the session."
      : "",
  }));

  window.Alpine.data("teamsDashboard", () => ({
    teams: [],
    filter: "all",
    loading: true,
    error: "",
    form: { name: "", description: "", busy: false, message: "", fields: {} },
    get counts() {
      const shared = this.teams.filter((t) => t.is_shared).length;
      return { all: this.teams.length, shared, personal: this.teams.length - shared };
    },
    get shown() {
      if (this.filter === "all") return this.teams;
      return this.teams.filter((t) => t.is_shared === (this.filter === "shared"));
    },
    async load() {
      try {
        const result = await api("GET", "/teams");
        if (result.ok) this.teams = result.body.teams;
        else this.error = result.error.message;
      } catch (_) {
        this.error = offline;
      } finally {
        this.loading = false;
      }
    },
    async create() {
      this.form.busy = true;
      this.form.message = "";
      this.form.fields = {};
      try {
        const body = { name: this.form.name };
        if (this.form.description.trim()) body.description = this.form.description;
        const result = await api("POST", "/teams", body);
        if (result.ok) {
          window.location.assign(`/dashboard/teams/${result.body.team.id}`);
          return;
        }
        this.form.fields = window.sageErrors.fields(result.error);
        this.form.message = window.sageErrors.summary(result.error, this.form.fields);
      } catch (_) {
        this.form.message = offline;
      } finally {
        this.form.busy = false;
      }
    },
  }));

  window.Alpine.data("startSession", (teamId) => ({
    values: { feature_name: "", description: "", brain: "" },
    brains: [], // the configured ones, from GET /brains
    busy: false,
    message: "",
    fields: {},
    async loadBrains() {
      try {
        const result = await api("GET", "/brains");
        if (!result.ok) return;
        this.brains = result.body.brains.filter((b) => b.configured);
        this.values.brain = result.body.default;
      } catch (_) {
        // The form still works without the list: the server's default brain is used.
      }
    },
    brainLabel(brain) {
      return brain.model ? `${brain.name} (${brain.model})` : `${brain.name} (offline)`;
    },
    async submit() {
      this.busy = true;
      this.message = "";
      this.fields = {};
      try {
        const body = { team_id: teamId, feature_name: this.values.feature_name };
        if (this.values.description.trim()) body.description = this.values.description;
        if (this.values.brain) body.brain = this.values.brain;
        const result = await api("POST", "/sessions", body);
        if (result.ok) {
          window.location.assign(`/dashboard/sessions/${result.body.session_id}`);
          return;
        }
        this.fields = window.sageErrors.fields(result.error);
        this.message = window.sageErrors.summary(result.error, this.fields);
      } catch (_) {
        this.message = offline;
      } finally {
        this.busy = false;
      }
    },
  }));

  window.Alpine.data("teamPage", (teamId, userId, canManage) => ({
    team: { is_shared: false },
    members: { list: [], error: "", busy: false },
    inviteForm: { who: "", role: "member", busy: false, message: "", done: "" },
    invitations: { list: [], error: "" },
    history: { list: [], status: "", nextBefore: null, loading: true, error: "" },
    async load() {
      await Promise.all([this.loadTeam(), this.loadSessions(true), this.loadInvitations()]);
    },
    async loadTeam() {
      try {
        const result = await api("GET", `/teams/${teamId}`);
        if (!result.ok) {
          this.members.error = result.error.message;
          return;
        }
        this.team = result.body.team;
        this.members.list = result.body.members;
      } catch (_) {
        this.members.error = offline;
      }
    },
    async loadSessions(reset) {
      this.history.loading = true;
      this.history.error = "";
      const params = new URLSearchParams();
      if (this.history.status) params.set("status", this.history.status);
      if (!reset && this.history.nextBefore) params.set("before", this.history.nextBefore);
      try {
        const result = await api("GET", `/teams/${teamId}/sessions?${params}`);
        if (!result.ok) {
          this.history.error = result.error.message;
          return;
        }
        this.history.list = reset ? result.body.sessions : this.history.list.concat(result.body.sessions);
        this.history.nextBefore = result.body.next_before;
      } catch (_) {
        this.history.error = offline;
      } finally {
        this.history.loading = false;
      }
    },
    async share() {
      if (!canManage) return;
      this.members.busy = true;
      try {
        const result = await api("POST", `/teams/${teamId}/share`);
        if (result.ok) await this.loadTeam();
        else this.members.error = result.error.message;
      } catch (_) {
        this.members.error = offline;
      } finally {
        this.members.busy = false;
      }
    },
    async invite() {
      const who = this.inviteForm.who.trim();
      this.inviteForm.message = "";
      this.inviteForm.done = "";
      if (!who) {
        this.inviteForm.message = "Give a username or an email address.";
        return;
      }
      this.inviteForm.busy = true;
      try {
        const body = { role: this.inviteForm.role, [who.includes("@") ? "email" : "username"]: who };
        const result = await api("POST", `/teams/${teamId}/invite`, body);
        if (result.ok) {
          // The answer is the same whether or not the name has an account: say only what was sent.
          const sent = result.body.invitation;
          this.inviteForm.done = `Invitation for ${sent.invitee} (${sent.role}) sent. They join when they accept it.`;
          this.inviteForm.who = "";
          await this.loadInvitations();
        } else {
          this.inviteForm.message = result.error.message;
        }
      } catch (_) {
        this.inviteForm.message = offline;
      } finally {
        this.inviteForm.busy = false;
      }
    },
    async loadInvitations() {
      if (!canManage) return;
      try {
        const result = await api("GET", `/teams/${teamId}/invitations`);
        if (result.ok) this.invitations.list = result.body.invitations;
        else this.invitations.error = result.error.message;
      } catch (_) {
        this.invitations.error = offline;
      }
    },
    async cancelInvitation(invitation) {
      this.invitations.error = "";
      try {
        const result = await api("DELETE", `/teams/${teamId}/invitations/${invitation.id}`);
        if (!result.ok) this.invitations.error = result.error.message;
        await this.loadInvitations();
      } catch (_) {
        this.invitations.error = offline;
      }
    },
    async setRole(member, role) {
      this.members.error = "";
      try {
        const result = await api("PATCH", `/teams/${teamId}/members/${member.user_id}`, { role });
        if (!result.ok) this.members.error = result.error.message;
        await this.loadTeam();
      } catch (_) {
        this.members.error = offline;
      }
    },
    async remove(member) {
      if (!window.confirm(`Remove ${member.username} from this team? Their open pages are closed at once.`)) return;
      try {
        const result = await api("DELETE", `/teams/${teamId}/members/${member.user_id}`);
        if (result.ok) await this.loadTeam();
        else this.members.error = result.error.message;
      } catch (_) {
        this.members.error = offline;
      }
    },
    when(iso) {
      return iso ? new Date(iso).toLocaleString() : "–";
    },
    // A session the user ended is "ended early", never a green "completed" (see end_reason).
    stateOf(s) {
      if (s.status === "active") return "running";
      if (s.end_reason === "user") return "ended early";
      return s.status;
    },
    endedBy(s) {
      const member = this.members.list.find((m) => m.user_id === s.ended_by);
      const who = s.ended_by == null ? "a former member" : member ? member.username : "a former member";
      const done = s.agents_done == null ? "" : `: ${s.agents_done} of 7 agents had finished`;
      return `by ${who}, ${this.when(s.ended_at)}${done}`;
    },
    stateClass(s) {
      return this.stateOf(s).replace(" ", "-");
    },
    // Small helpers the template calls: Alpine's CSP build evaluates no template literals.
    duration(session) {
      return session.duration_seconds == null ? "–" : `${session.duration_seconds.toFixed(1)} s`;
    },
  }));

  // The invitations waiting for the caller, on the dashboard: accept (membership begins) or decline.
  window.Alpine.data("myInvitations", () => ({
    list: [],
    error: "",
    done: "",
    async load() {
      try {
        const result = await api("GET", "/invitations");
        if (result.ok) this.list = result.body.invitations;
        else this.error = result.error.message;
      } catch (_) {
        this.error = offline;
      }
    },
    async answer(invitation, action) {
      this.error = "";
      this.done = "";
      try {
        const result = await api("POST", `/invitations/${invitation.id}/${action}`);
        if (!result.ok) {
          this.error = result.error.message;
        } else if (action === "accept") {
          window.location.assign(`/dashboard/teams/${result.body.team.id}`);
          return;
        } else {
          this.done = `You declined the invitation to ${invitation.team.name}.`;
        }
        await this.load();
      } catch (_) {
        this.error = offline;
      }
    },
    accept(invitation) {
      return this.answer(invitation, "accept");
    },
    decline(invitation) {
      return this.answer(invitation, "decline");
    },
  }));
});

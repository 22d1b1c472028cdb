// The session's live state: loaded once from GET /sessions/{id}/replay, then kept current by
// the WebSocket (`/ws/{id}?after=<last seq>`). Every (re)connect also reconciles against
// GET /sessions/{id}, merging monotonically (store.mergeTask), so a dropped socket, a 4008
// "too slow" close or a Redis restart never leaves a stale card on screen.
//
// A server that stops can leave the socket looking open for seconds, so while the socket is
// live the page also asks the server a tiny question every second (HEAD /favicon.ico, no
// database behind it); a failed or slow answer shows "connection lost" at once and reconnects.
import { api, ApiFailure } from "./api.js";
import { createStore, mergeSession, mergeTask } from "./store.js";

export const CLOSE_REVOKED = 4403;
export const CLOSE_TOO_SLOW = 4008;
const PROBE_EVERY_MS = 1000;
const PROBE_TIMEOUT_MS = 1000;

// The selected agent lives in the address (`?agent=dba`), so a link or a reload shows it again.
export function setQueryParam(name, value) {
  const url = new URL(window.location.href);
  if (value == null || value === "") url.searchParams.delete(name);
  else url.searchParams.set(name, value);
  if (url.href !== window.location.href) window.history.replaceState(window.history.state, "", url);
}

function byId(list) {
  const out = {};
  for (const item of list) out[item.id] = item;
  return out;
}

export function createLive(config) {
  const store = createStore({
    config,
    session: null,
    tasks: {}, // by task id
    snapshots: {}, // by task id
    retries: {}, // by task id: {error, retry_in_seconds, at}
    events: [], // every event seen, in seq order (the replay reads these)
    lastSeq: 0,
    loaded: false,
    loadError: "",
    connection: "connecting", // connecting | live | reconnecting | revoked | offline
    reconnects: 0,
    revoked: false,
    selectedTaskId: null,
    decisionsVersion: 0,
    progress: {}, // by task id: {text, completion_tokens} from ephemeral agent_task_progress
  });
  let socket = null;
  let attempts = 0;
  let timer = null;
  let probe = null;
  let left = false;

  function stopProbe() {
    window.clearInterval(probe);
    probe = null;
  }

  function startProbe() {
    stopProbe();
    let inFlight = false;
    probe = window.setInterval(async () => {
      if (inFlight || !socket) return;
      inFlight = true;
      const controller = new AbortController();
      const timeout = window.setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
      try {
        await fetch("/favicon.ico", { method: "HEAD", cache: "no-store", redirect: "manual", signal: controller.signal });
      } catch (_) {
        // Unreachable or too slow: say so now; the socket's close starts the reconnect loop.
        if (socket) {
          store.set({ connection: "reconnecting" });
          socket.close();
        }
      } finally {
        window.clearTimeout(timeout);
        inFlight = false;
      }
    }, PROBE_EVERY_MS);
  }

  function mergeTasks(state, tasks) {
    const merged = { ...state.tasks };
    for (const task of tasks) merged[task.id] = mergeTask(merged[task.id], task);
    return merged;
  }

  function apply(event) {
    store.set((state) => {
      if (typeof event.seq !== "number" || event.seq <= state.lastSeq) return null; // seen already
      const next = { lastSeq: event.seq, events: [...state.events, event] };
      switch (event.type) {
        case "session_started":
        case "session_completed":
          next.session = mergeSession(state.session, event.session);
          break;
        case "session_error":
          next.session = mergeSession(state.session, {
            ...state.session,
            status: "error",
            error_message: event.error,
            ended_at: state.session?.ended_at || event.at,
          });
          break;
        case "agent_task_started":
          next.tasks = mergeTasks(state, [event.task]);
          break;
        case "agent_task_retrying":
          next.tasks = mergeTasks(state, [event.task]);
          next.retries = {
            ...state.retries,
            [event.task.id]: { error: event.error, retry_in_seconds: event.retry_in_seconds, at: event.at },
          };
          break;
        case "agent_task_completed":
          next.tasks = mergeTasks(state, [event.task]);
          if (event.snapshot) next.snapshots = { ...state.snapshots, [event.task.id]: event.snapshot };
          next.decisionsVersion = state.decisionsVersion + 1;
          break;
        case "decision_created":
          next.decisionsVersion = state.decisionsVersion + 1;
          break;
        default:
          break;
      }
      return next;
    });
    if (event.type === "session_error") reconcile();
  }

  // Ephemeral: no seq, never stored; the latest text wins and the token count never goes down.
  function progress(event) {
    store.set((state) => {
      const held = state.progress[event.task_id];
      const tokens = Math.max(held ? held.completion_tokens : 0, event.completion_tokens || 0);
      return { progress: { ...state.progress, [event.task_id]: { text: event.text || "", completion_tokens: tokens } } };
    });
  }

  function leave() {
    if (left) return;
    left = true;
    clearTimeout(timer);
    stopProbe();
    store.set({ revoked: true, connection: "revoked" });
    if (socket) socket.close();
    window.setTimeout(() => window.location.assign("/dashboard?notice=revoked"), 2500);
  }

  function refused(error) {
    if (error instanceof ApiFailure && error.status === 401) {
      const here = window.location.pathname + window.location.search + window.location.hash;
      window.location.assign(`/login?next=${encodeURIComponent(here)}`);
      return true;
    }
    if (error instanceof ApiFailure && error.status === 404) {
      leave();
      return true;
    }
    return false;
  }

  async function reconcile() {
    try {
      const body = await api("GET", `/sessions/${config.sessionId}`);
      store.set((state) => ({
        session: mergeSession(state.session, body.session),
        tasks: mergeTasks(state, body.tasks),
      }));
    } catch (error) {
      refused(error);
    }
  }

  function connect() {
    if (left) return;
    const { lastSeq } = store.get();
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${window.location.host}/ws/${config.sessionId}?after=${lastSeq}`);
    socket.onopen = () => {
      attempts = 0;
      store.set({ connection: "live" });
      startProbe();
      reconcile();
    };
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (_) {
        return;
      }
      if (event.type === "access_revoked") {
        leave();
        return;
      }
      if (event.type === "agent_task_progress") {
        progress(event);
        return;
      }
      apply(event);
    };
    socket.onclose = (close) => {
      socket = null;
      stopProbe();
      if (left) return;
      if (close.code === CLOSE_REVOKED) {
        leave();
        return;
      }
      attempts += 1;
      // Too slow (4008): resume at once from the last seq; anything else: back off a little.
      const delay = close.code === CLOSE_TOO_SLOW ? 0 : Math.min(500 * 2 ** (attempts - 1), 8000);
      store.set((state) => ({ connection: "reconnecting", reconnects: state.reconnects + 1 }));
      timer = window.setTimeout(async () => {
        // A refused handshake looks like any other drop: ask the API why before retrying.
        try {
          await api("GET", `/sessions/${config.sessionId}`);
        } catch (error) {
          if (refused(error)) return;
        }
        connect();
      }, delay);
    };
  }

  async function start() {
    try {
      const body = await api("GET", `/sessions/${config.sessionId}/replay`);
      const snapshots = {};
      for (const task of body.tasks) if (task.snapshot) snapshots[task.id] = task.snapshot;
      const tasks = body.tasks.map(({ snapshot, ...task }) => task);
      const lastSeq = body.events.reduce((max, e) => Math.max(max, e.seq), 0);
      // A deep link (`?agent=dba`) selects that agent once its task is known.
      const wanted = new URLSearchParams(window.location.search).get("agent");
      const linked = wanted ? tasks.find((t) => t.agent_role === wanted) : null;
      store.set((state) => ({
        session: mergeSession(state.session, body.session),
        tasks: { ...byId(tasks), ...state.tasks },
        snapshots: { ...snapshots, ...state.snapshots },
        events: body.events,
        lastSeq: Math.max(lastSeq, state.lastSeq),
        loaded: true,
        selectedTaskId: state.selectedTaskId ?? (linked ? linked.id : null),
      }));
    } catch (error) {
      if (refused(error)) return;
      store.set({ loadError: error.message || "The session could not be loaded.", loaded: true });
    }
    connect();
  }

  return {
    store,
    start,
    apply,
    progress,
    select(taskId) {
      const task = taskId == null ? null : store.get().tasks[taskId];
      store.set({ selectedTaskId: taskId });
      setQueryParam("agent", task ? task.agent_role : null);
    },
    bumpDecisions() {
      store.set((state) => ({ decisionsVersion: state.decisionsVersion + 1 }));
    },
    async endSession() {
      const body = await api("POST", `/sessions/${config.sessionId}/end`);
      store.set((state) => ({ session: mergeSession(state.session, body.session) }));
    },
  };
}

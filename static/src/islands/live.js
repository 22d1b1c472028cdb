// The session's live state: loaded once from GET /sessions/{id}/replay, then kept current by
// the WebSocket (`/ws/{id}?after=<last seq>`). Every (re)connect also reconciles against
// GET /sessions/{id}, merging monotonically (store.mergeTask), so a dropped socket, a 4008
// "too slow" close or a Redis restart never leaves a stale card on screen.
//
// A server that stops can leave the socket looking open for seconds, so while the socket is
// live the page also asks the server a tiny question every second (HEAD /favicon.ico, no
// database behind it); a failed or slow answer shows "connection lost" at once and reconnects.
import { api, ApiFailure } from "./api.js";
import { applyEvent, applyProgress, applyReconcile, applyReplay } from "./events.js";
import { createStore, mergeSession } from "./store.js";
import { CLOSE, TYPE } from "./vocabulary.js";

const PROBE_EVERY_MS = 1000;
const PROBE_TIMEOUT_MS = 1000;

// The selected agent lives in the address (`?agent=dba`), so a link or a reload shows it again.
export function setQueryParam(name, value) {
  const url = new URL(window.location.href);
  if (value == null || value === "") url.searchParams.delete(name);
  else url.searchParams.set(name, value);
  if (url.href !== window.location.href) window.history.replaceState(window.history.state, "", url);
}

// How long to wait before reconnecting after the `attempts`-th close in a row: too slow (4008)
// resumes at once from the last seq; anything else backs off a little, up to 8 s.
export function reconnectDelay(code, attempts) {
  return code === CLOSE.TOO_SLOW ? 0 : Math.min(500 * 2 ** (attempts - 1), 8000);
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

  function apply(event) {
    store.set((state) => applyEvent(state, event));
    if (event.type === TYPE.SESSION_ERROR) reconcile();
  }

  function progress(event) {
    store.set((state) => applyProgress(state, event));
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
      store.set((state) => applyReconcile(state, body));
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
      if (event.type === TYPE.ACCESS_REVOKED) {
        leave();
        return;
      }
      if (event.type === TYPE.AGENT_TASK_PROGRESS) {
        progress(event);
        return;
      }
      apply(event);
    };
    socket.onclose = (close) => {
      socket = null;
      stopProbe();
      if (left) return;
      if (close.code === CLOSE.REVOKED) {
        leave();
        return;
      }
      attempts += 1;
      const delay = reconnectDelay(close.code, attempts);
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
      // A deep link (`?agent=dba`) selects that agent once its task is known.
      const wanted = new URLSearchParams(window.location.search).get("agent");
      store.set((state) => applyReplay(state, body, wanted));
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

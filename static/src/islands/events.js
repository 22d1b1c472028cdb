// What each message of the session's feed does to the session page's state (live.js holds the
// store and the socket). Every function here is pure: (state, message) -> a patch for the store,
// or null for "nothing changes"; tests/js/events.test.mjs runs them under `npm test`.
import { mergeSession, mergeTask } from "./store.js";
import { TYPE } from "./vocabulary.js";

function byId(list) {
  const out = {};
  for (const item of list) out[item.id] = item;
  return out;
}

// `tasks` (by id) with each of `incoming` merged in monotonically (store.mergeTask).
export function mergeTasks(tasks, incoming) {
  const merged = { ...tasks };
  for (const task of incoming) merged[task.id] = mergeTask(merged[task.id], task);
  return merged;
}

// An `agent_task_completed` carries each thing once (docs/api.md, "What events carry"): the
// agent's decisions only in `snapshot.decisions`, each shortened to what its row in
// `task.decisions` does not say; the task description, feature and description only in
// `task.input_data`. Put back what the views read from the stored rows
// (`task.output_data.decisions`, whole `snapshot.decisions` and `snapshot.context_state`), so live
// and loaded tasks look the same.
export function completedParts(task, snapshot) {
  if (!snapshot) return { task, snapshot };
  const rows = {};
  for (const row of task.decisions || []) rows[row.id] = row;
  const decisions = Array.isArray(snapshot.decisions)
    ? snapshot.decisions.map((d) => {
        const row = d && rows[d.id];
        if (!row || "text" in d) return d;
        const { decision_text: text, rationale, category, confidence, based_on } = row;
        return { ...d, text, rationale, category, confidence, based_on };
      })
    : snapshot.decisions;
  const output = task.output_data;
  const whole =
    output && typeof output === "object" && !("decisions" in output)
      ? { ...task, output_data: { ...output, decisions: decisions || [] } }
      : task;
  const shown = decisions === undefined ? { ...snapshot } : { ...snapshot, decisions };
  const context = snapshot.context_state;
  if (context && typeof context === "object") {
    const input = task.input_data || {};
    const given = {};
    for (const key of ["task_description", "feature_name", "description"]) if (key in input) given[key] = input[key];
    shown.context_state = { ...given, ...context };
  }
  return { task: whole, snapshot: shown };
}

// A stored event (it has a `seq`): applied once, in order; one at or below `lastSeq` is seen already.
export function applyEvent(state, event) {
  if (typeof event.seq !== "number" || event.seq <= state.lastSeq) return null;
  const next = { lastSeq: event.seq, events: [...state.events, event] };
  switch (event.type) {
    case TYPE.SESSION_STARTED:
    case TYPE.SESSION_COMPLETED:
      next.session = mergeSession(state.session, event.session);
      break;
    case TYPE.SESSION_ERROR:
      next.session = mergeSession(state.session, {
        ...state.session,
        status: "error",
        error_message: event.error,
        ended_at: state.session?.ended_at || event.at,
      });
      break;
    case TYPE.AGENT_TASK_STARTED:
      next.tasks = mergeTasks(state.tasks, [event.task]);
      break;
    case TYPE.AGENT_TASK_RETRYING:
      next.tasks = mergeTasks(state.tasks, [event.task]);
      next.retries = {
        ...state.retries,
        [event.task.id]: { error: event.error, retry_in_seconds: event.retry_in_seconds, at: event.at },
      };
      break;
    case TYPE.AGENT_TASK_COMPLETED: {
      const { task, snapshot } = completedParts(event.task, event.snapshot);
      next.tasks = mergeTasks(state.tasks, [task]);
      if (snapshot) next.snapshots = { ...state.snapshots, [task.id]: snapshot };
      next.decisionsVersion = state.decisionsVersion + 1;
      break;
    }
    case TYPE.DECISION_CREATED:
      next.decisionsVersion = state.decisionsVersion + 1;
      break;
    default:
      break;
  }
  return next;
}

// Ephemeral `agent_task_progress`: no seq, never stored; the latest text wins and the token
// count never goes down.
export function applyProgress(state, event) {
  const held = state.progress[event.task_id];
  const tokens = Math.max(held ? held.completion_tokens : 0, event.completion_tokens || 0);
  return { progress: { ...state.progress, [event.task_id]: { text: event.text || "", completion_tokens: tokens } } };
}

// The first load (GET /sessions/{id}/replay), merged under whatever the socket has already
// delivered. `wantedRole` is a deep link (`?agent=dba`): that agent is selected once its task is known.
export function applyReplay(state, body, wantedRole) {
  const snapshots = {};
  for (const task of body.tasks) if (task.snapshot) snapshots[task.id] = task.snapshot;
  const tasks = body.tasks.map(({ snapshot, ...task }) => task);
  const lastSeq = body.events.reduce((max, e) => Math.max(max, e.seq), 0);
  const linked = wantedRole ? tasks.find((t) => t.agent_role === wantedRole) : null;
  return {
    session: mergeSession(state.session, body.session),
    tasks: { ...byId(tasks), ...state.tasks },
    snapshots: { ...snapshots, ...state.snapshots },
    events: body.events,
    lastSeq: Math.max(lastSeq, state.lastSeq),
    loaded: true,
    selectedTaskId: state.selectedTaskId ?? (linked ? linked.id : null),
  };
}

// A REST reconcile (GET /sessions/{id}), merged monotonically so it never takes a card back.
export function applyReconcile(state, body) {
  return { session: mergeSession(state.session, body.session), tasks: mergeTasks(state.tasks, body.tasks) };
}

// The session page's one store, shared by every island of the page (they are bundled together,
// so they import the same module). State is replaced, never mutated, so selectors can compare
// by identity; `useStore` is React's useSyncExternalStore over it.
import { useSyncExternalStore } from "react";

export function createStore(initial) {
  let state = initial;
  const listeners = new Set();
  return {
    get: () => state,
    set(patch) {
      const next = typeof patch === "function" ? patch(state) : patch;
      if (!next) return;
      state = { ...state, ...next };
      listeners.forEach((listener) => listener());
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export function useStore(store, selector) {
  return useSyncExternalStore(store.subscribe, () => selector(store.get()));
}

// How far a task has got: a later attempt beats an earlier one, and within one attempt
// pending < running < completed/error. An update that is behind what we hold is stale (an
// event from before a REST reconcile, say) and is ignored, so the monitor never goes back.
const STATUS_RANK = { pending: 0, running: 1, completed: 2, error: 2 };

export function taskProgress(task) {
  const terminal = task.status === "completed" || task.status === "error";
  return [terminal ? 1 : 0, task.retry_count || 0, STATUS_RANK[task.status] ?? 0];
}

function compare(a, b) {
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

export function mergeTask(held, incoming) {
  if (!held) return incoming;
  if (compare(taskProgress(incoming), taskProgress(held)) < 0) return held;
  // Keep decisions we already have if the update came without them.
  return { ...incoming, decisions: incoming.decisions ?? held.decisions };
}

export function mergeSession(held, incoming) {
  if (!held) return incoming;
  if (held.status !== "active" && incoming.status === "active") return held;
  return { ...held, ...incoming };
}

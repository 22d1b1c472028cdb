// The session page's islands: each mounts into its own `[data-island]` element of
// templates/session.html and they share one live store (live.js).
import { createRoot } from "react-dom/client";
import AgentStateViewer from "./AgentStateViewer.jsx";
import DecisionTree from "./DecisionTree.jsx";
import Deliverables from "./Deliverables.jsx";
import { createLive } from "./live.js";
import ModelUsage from "./ModelUsage.jsx";
import { RerunButton, RerunNotice } from "./Rerun.jsx";
import SessionReplay from "./SessionReplay.jsx";
import { useStore } from "./store.js";
import TeamExecutionMonitor from "./TeamExecutionMonitor.jsx";

function RevokedNotice({ live }) {
  const revoked = useStore(live.store, (s) => s.revoked);
  if (!revoked) return null;
  return (
    <p className="alert alert--block" role="alert" id="access-revoked">
      Your access to this team was removed, so you have left this session. Taking you back to your dashboard…
    </p>
  );
}

const ISLANDS = {
  "revoked-notice": RevokedNotice,
  "execution-monitor": TeamExecutionMonitor,
  deliverables: Deliverables,
  "agent-state-viewer": AgentStateViewer,
  "session-replay": SessionReplay,
  "decision-tree": DecisionTree,
  "model-usage": ModelUsage,
  rerun: RerunButton,
  "rerun-notice": RerunNotice,
};

function boot() {
  const source = document.getElementById("session-config");
  if (!source) return;
  const config = JSON.parse(source.textContent);
  const live = createLive(config);
  for (const element of document.querySelectorAll("[data-island]")) {
    const Island = ISLANDS[element.dataset.island];
    if (!Island) continue;
    createRoot(element).render(<Island live={live} canWrite={element.dataset.canWrite === "true"} />);
  }
  window.sageLive = live; // for debugging from the console
  live.start();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();

// What a running agent's model has written so far, from the ephemeral `agent_task_progress`
// messages (live.js keeps the latest per task). Shown on the agent's card while it runs.
import { useStore } from "./store.js";

const SHOWN = 280; // characters of the answer's tail on the card

export default function AgentProgress({ live, taskId }) {
  const progress = useStore(live.store, (s) => s.progress[taskId]);
  if (!progress) return null;
  const tail = progress.text.length > SHOWN ? `…${progress.text.slice(-SHOWN)}` : progress.text;
  return (
    <span className="agent-card__progress" data-progress-tokens={progress.completion_tokens}>
      <span className="agent-card__tokens">{progress.completion_tokens} tokens so far</span>
      <code className="agent-card__stream">{tail}</code>
    </span>
  );
}

// A timeline (Gantt) of the tasks with a time axis, a scrubber and play/pause/speed. It rebuilds
// what the team knew at any moment by folding the stored events (GET /sessions/{id}/replay, then
// the live ones) up to that moment; nothing runs again.
//
// The window spans the run: from the session's start to the last task's end (or the session's
// end). Decisions added after that are listed after the run and do not stretch the bars. The
// default speed fits any run into about 12 seconds of playback, so a 200 ms run and a
// 10 minute one are both watchable. The moment is in the address (`?t=<seq>`).
import { useEffect, useMemo, useRef, useState } from "react";
import { parseTime, roleLabel, seconds } from "./api.js";
import { setQueryParam } from "./live.js";
import { autoSpeed, describe, foldEvents, SPEEDS, speedLabel, splitRun, taskBars, ticks } from "./replay.js";
import { useStore } from "./store.js";

export default function SessionReplay({ live }) {
  const rawEvents = useStore(live.store, (s) => s.events);
  const session = useStore(live.store, (s) => s.session);
  const loaded = useStore(live.store, (s) => s.loaded);
  const { pipeline } = useStore(live.store, (s) => s.config);
  const roles = pipeline.flat();
  const active = !session || session.status === "active";

  const all = useMemo(
    () => [...rawEvents].sort((a, b) => a.seq - b.seq).map((e) => ({ ...e, _t: parseTime(e.at) })),
    [rawEvents],
  );
  const { run: events, late, end } = useMemo(() => splitRun(all, active), [all, active]);
  const start = events.length ? events[0]._t : 0;
  const total = Math.max(end - start, 1);

  const [position, setPosition] = useState(null); // ms from start; null: follow the end
  const [playing, setPlaying] = useState(false);
  const [speedChoice, setSpeedChoice] = useState("auto");
  const speed = speedChoice === "auto" ? autoSpeed(total) : Number(speedChoice);
  const [linked, setLinked] = useState(false);
  const frame = useRef(null);
  const chosen = useRef(false); // the user picked a moment: it goes into the address

  // `?t=<seq>`: open at the moment of that event, once the events are loaded. Set while
  // rendering (React's "adjusting state when a prop changes"), not in an effect, so the first
  // frame already shows that moment instead of the end and then jumping.
  if (!linked && loaded && all.length) {
    setLinked(true);
    const seq = Number(new URLSearchParams(window.location.search).get("t"));
    const event = seq ? all.find((e) => e.seq === seq) : null;
    if (event) setPosition(Math.min(event._t - start, total));
  }
  const at = position == null ? total : Math.min(position, total);

  useEffect(() => {
    if (!playing) return undefined;
    let previous = performance.now();
    const step = (now) => {
      const elapsed = (now - previous) * speed;
      previous = now;
      setPosition((p) => {
        const next = (p == null || p >= total ? 0 : p) + elapsed;
        if (next >= total) {
          setPlaying(false);
          return total;
        }
        return next;
      });
      frame.current = window.requestAnimationFrame(step);
    };
    frame.current = window.requestAnimationFrame(step);
    return () => window.cancelAnimationFrame(frame.current);
  }, [playing, speed, total]);

  const known = useMemo(() => foldEvents(events, start + at), [events, start, at]);

  // The moment in the address once the user picks one (not on every frame of playback).
  useEffect(() => {
    if (playing || position == null || !chosen.current) return;
    setQueryParam("t", known.last ? known.last.seq : null);
  }, [playing, position, known.last]);

  const bars = useMemo(() => taskBars(events, start), [events, start]);

  if (!loaded) return <p className="muted">Loading the recorded events…</p>;
  if (!events.length) return <p className="muted">No events recorded yet.</p>;

  const stepTo = (direction) => {
    chosen.current = true;
    const times = events.map((e) => e._t - start);
    const target =
      direction > 0 ? times.find((time) => time > at + 0.5) : [...times].reverse().find((time) => time < at - 0.5);
    setPlaying(false);
    setPosition(target == null ? (direction > 0 ? total : 0) : target);
  };
  const pct = (ms) => `${Math.max(0, Math.min(100, (ms / total) * 100))}%`;

  return (
    <div className="replay">
      <div className="replay__controls">
        <button
          type="button"
          className="button button--small"
          onClick={() => {
            chosen.current = true;
            if (!playing && at >= total) setPosition(0);
            setPlaying(!playing);
          }}
          aria-pressed={playing}
        >
          {playing ? "Pause" : "Play"}
        </button>
        <button type="button" className="button button--quiet button--small" onClick={() => stepTo(-1)} aria-label="Previous event">
          ◀ Event
        </button>
        <button type="button" className="button button--quiet button--small" onClick={() => stepTo(1)} aria-label="Next event">
          Event ▶
        </button>
        <label className="inline-label">
          Speed
          <select value={speedChoice} onChange={(e) => setSpeedChoice(e.target.value)}>
            <option value="auto">auto ({speedLabel(autoSpeed(total))})</option>
            {SPEEDS.map((s) => (
              <option key={s} value={s}>
                {speedLabel(s)}
              </option>
            ))}
          </select>
        </label>
        <span className="muted replay__clock" aria-live="off">
          {seconds(at / 1000)} of {seconds(total / 1000)} · event {known.count} of {events.length}
        </span>
      </div>
      <label className="replay__scrubber">
        <span className="visually-hidden">Replay position</span>
        <input
          type="range"
          min="0"
          max={Math.round(total)}
          step="1"
          value={Math.round(at)}
          aria-valuetext={`${seconds(at / 1000)}: ${describe(known.last)}`}
          onChange={(e) => {
            chosen.current = true;
            setPlaying(false);
            setPosition(Number(e.target.value));
          }}
        />
      </label>

      <div className="gantt" role="list" aria-label="Tasks over time">
        <div className="gantt__row gantt__row--axis" aria-hidden="true">
          <span />
          <div className="gantt__axis" data-ticks={ticks(total).length}>
            {ticks(total).map((t) => (
              <span key={t} className="gantt__tick" style={{ left: pct(t) }}>
                {t === 0 ? "0" : seconds(t / 1000)}
              </span>
            ))}
          </div>
        </div>
        {roles.map((role) => {
          const bar = bars[role];
          const task = known.tasks[role];
          const status = task ? (task.status === "pending" && task.retry_count ? "retrying" : task.status) : "pending";
          const from = bar && bar.from != null && bar.from <= at ? bar.from : null;
          const to = from == null ? null : bar.to != null && bar.to <= at ? bar.to : at;
          return (
            <div key={role} className="gantt__row" role="listitem">
              <button
                type="button"
                className="gantt__label"
                onClick={() => bar && live.select(bar.id)}
                disabled={!bar}
                data-role={role}
                data-replay-status={status}
              >
                {roleLabel(role)} <span className={`status status--${status}`}>{status}</span>
              </button>
              <div className="gantt__track">
                {from != null ? (
                  <span
                    className={`gantt__bar gantt__bar--${status}`}
                    data-width={((to - from) / total).toFixed(3)}
                    style={{ left: pct(from), width: `max(3px, ${pct(to - from)})` }}
                  />
                ) : null}
                <span className="gantt__cursor" style={{ left: pct(at) }} aria-hidden="true" />
              </div>
            </div>
          );
        })}
      </div>

      <div className="replay__known" aria-live="polite">
        <h3>At this moment</h3>
        <p data-replay-session-status={known.status === "ended early" ? "completed" : known.status} data-replay-state={known.status}>
          Session: <strong>{known.status}</strong>. {describe(known.last)}
        </p>
        <p className="muted" data-replay-known-decisions={known.decisions.length}>
          The team knew {known.decisions.length} decision{known.decisions.length === 1 ? "" : "s"}:
        </p>
        <ul className="replay__decisions" tabIndex={0} aria-label="Decisions known at this moment">
          {known.decisions.map((d) => (
            <li key={`${d.scope || "task"}:${d.id}`}>
              {d.agent_role ? <span className="badge">{roleLabel(d.agent_role)}</span> : <span className="badge">session</span>}{" "}
              {d.decision_text}
            </li>
          ))}
        </ul>
      </div>

      {late.length ? (
        <div className="replay__late" data-late-decisions={late.length}>
          <h3>After the run</h3>
          <p className="muted">Recorded after the last agent finished, so they are not on the timeline:</p>
          <ul className="replay__decisions">
            {late.map((e) => (
              <li key={e.seq}>
                <span className="badge">+{seconds((e._t - end) / 1000)}</span>{" "}
                {e.decision ? e.decision.decision_text : describe(e)}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </div>
  );
}

"""Read queries behind the session views. Each runs a fixed number of SQL queries, whatever
the size of the session (no N+1): rows of a kind are fetched in one query and joined in Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from peewee import JOIN, SQL, fn

from models.brains import session_usage_dict
from models.schema import (
    AGENT_ROLES,
    AgentSnapshot,
    AgentTask,
    ExecutionSession,
    SessionDecision,
    SessionEvent,
    TaskDecision,
    Team,
    TeamMembership,
    User,
)
from models.serialize import (
    event_dict,
    iso,
    session_decision_dict,
    session_dict,
    snapshot_dict,
    task_decision_dict,
    task_dict,
)

ROLE_ORDER: dict[str, int] = {role: index for index, role in enumerate(AGENT_ROLES)}


def pipeline_key(task: AgentTask) -> tuple[int, int]:
    """Sort key: stage, then the role's place in the pipeline."""
    return (task.stage, ROLE_ORDER[task.agent_role])


def _tasks(session_id: int) -> list[AgentTask]:
    rows = list(AgentTask.select().where(AgentTask.session == session_id))
    return sorted(rows, key=pipeline_key)


def _task_decisions(session_id: int) -> dict[int, list[TaskDecision]]:
    """Decisions of every task of the session, by task id (one query)."""
    rows = TaskDecision.select().join(AgentTask).where(AgentTask.session == session_id).order_by(TaskDecision.id)
    by_task: dict[int, list[TaskDecision]] = defaultdict(list)
    for row in rows:
        by_task[row.agent_task_id].append(row)
    return by_task


def _latest_snapshots(session_id: int) -> dict[int, AgentSnapshot]:
    """The latest snapshot of every task of the session, by task id (one query)."""
    rows = AgentSnapshot.select().join(AgentTask).where(AgentTask.session == session_id).order_by(AgentSnapshot.id)
    return {row.agent_task_id: row for row in rows}


def _session_decisions(session_id: int) -> list[SessionDecision]:
    return list(SessionDecision.select().where(SessionDecision.session == session_id).order_by(SessionDecision.id))


def session_reruns(session_id: int) -> list[dict[str, Any]]:
    """The sessions that rerun this one (`rerun_of` = it), oldest first (one query)."""
    rows = (
        ExecutionSession.select(
            ExecutionSession.id, ExecutionSession.feature_name, ExecutionSession.status, ExecutionSession.started_at
        )
        .where(ExecutionSession.rerun_of == session_id)
        .order_by(ExecutionSession.id)
    )
    return [
        {"id": r.id, "feature_name": r.feature_name, "status": r.status, "started_at": iso(r.started_at)} for r in rows
    ]


def session_detail(session: ExecutionSession) -> dict[str, Any]:
    """`GET /sessions/{id}`: the session, its decisions, its tasks with theirs, its reruns (4 queries)."""
    decisions = _task_decisions(session.id)
    return {
        "session": session_dict(session),
        "decisions": [session_decision_dict(d) for d in _session_decisions(session.id)],
        "tasks": [task_dict(t, decisions.get(t.id)) for t in _tasks(session.id)],
        "reruns": session_reruns(session.id),
    }


def _timeline_rows(
    session_id: int, tasks: list[AgentTask], decisions: dict[int, list[TaskDecision]]
) -> list[dict[str, Any]]:
    snapshots = _latest_snapshots(session_id)
    # Started tasks by start time (unstarted last), ties and unstarted in pipeline order.
    ordered = sorted(tasks, key=lambda t: (t.started_at is None, t.started_at or 0, pipeline_key(t)))
    return [{**task_dict(t, decisions.get(t.id)), "snapshot": snapshot_dict(snapshots.get(t.id))} for t in ordered]


def timeline(session: ExecutionSession) -> dict[str, Any]:
    """`GET /sessions/{id}/timeline`: tasks with their snapshot (3 queries)."""
    return {"timeline": _timeline_rows(session.id, _tasks(session.id), _task_decisions(session.id))}


def decision_tree(session: ExecutionSession) -> dict[str, Any]:
    """`GET /sessions/{id}/decisions`: session decisions, then each task's, with what they used.

    Each task lists `upstream`: the decisions (of the session or of earlier tasks) that its
    own decisions name in `based_on`, resolved without further queries.
    """
    return _decision_tree(session.id, _tasks(session.id), _task_decisions(session.id))


def _decision_tree(session_id: int, tasks: list[AgentTask], by_task: dict[int, list[TaskDecision]]) -> dict[str, Any]:
    session_decisions = [session_decision_dict(d) for d in _session_decisions(session_id)]
    task_decisions = {d.id: task_decision_dict(d) for rows in by_task.values() for d in rows}
    session_by_id = {d["id"]: d for d in session_decisions}
    entries = []
    for task in tasks:
        own = [task_decisions[d.id] for d in by_task.get(task.id, [])]
        used: dict[str, dict[str, Any]] = {}
        for decision in own:
            for ref in decision["based_on"]:
                resolved = resolve_reference(ref, task_decisions, session_by_id)
                if resolved is not None:
                    used[f"{resolved['kind']}:{resolved['decision']['id']}"] = resolved
        entries.append(
            {
                "task_id": task.id,
                "agent_role": task.agent_role,
                "stage": task.stage,
                "status": task.status,
                "decisions": own,
                "upstream": list(used.values()),
            }
        )
    return {"session_decisions": session_decisions, "tasks": entries}


def resolve_reference(
    ref: Any, task_decisions: dict[int, dict[str, Any]], session_decisions: dict[int, dict[str, Any]]
) -> dict[str, Any] | None:
    """Resolve one `based_on` entry: an int (a task decision id) or `{"kind", "id"}`."""
    if isinstance(ref, int):
        kind, ident = "task", ref
    elif isinstance(ref, dict) and isinstance(ref.get("id"), int):
        kind, ident = ("session" if ref.get("kind") == "session" else "task"), ref["id"]
    else:
        return None
    found = (session_decisions if kind == "session" else task_decisions).get(ident)
    return None if found is None else {"kind": kind, "decision": found}


def replay(session: ExecutionSession) -> dict[str, Any]:
    """`GET /sessions/{id}/replay`: everything needed to replay the session without running it."""
    events = SessionEvent.select().where(SessionEvent.session == session.id).order_by(SessionEvent.seq)
    tasks, decisions = _tasks(session.id), _task_decisions(session.id)  # read once, used twice
    return {
        "session": session_dict(session),
        "events": [event_dict(e) for e in events],
        "tasks": _timeline_rows(session.id, tasks, decisions),
        "decisions": _decision_tree(session.id, tasks, decisions),
    }


def team_sessions(
    team_id: int, status: str | None = None, limit: int = 50, before: int | None = None
) -> dict[str, Any]:
    """`GET /teams/{id}/sessions`: newest first, keyset-paginated by id (one query).

    Each session also carries `agents_done` (how many of its agents finished), so the history
    can say how far a session someone ended early got. The web's read runs the same page as
    prebuilt SQL (`team_sessions_items_sql`), with its access check; this is the Peewee form of
    it (SQLite's, and what the tests hold that one to).
    """
    query = ExecutionSession.select(ExecutionSession, _agents_done()).where(ExecutionSession.team == team_id)
    if status:
        query = query.where(ExecutionSession.status == status)
    if before is not None:
        query = query.where(ExecutionSession.id < before)
    rows: list[Any] = list(query.order_by(ExecutionSession.id.desc()).limit(limit + 1))  # with `agents_done`
    return team_sessions_page(rows, limit)


def team_sessions_page(rows: list[Any], limit: int) -> dict[str, Any]:
    """The list's body from up to `limit + 1` sessions carrying `agents_done`, newest first."""
    return _page([{**session_dict(s), "agents_done": s.agents_done} for s in rows], limit)


def _page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """The list's body from up to `limit + 1` items, newest first: the first `limit`, and the id
    to ask `before` for the next page when there is one more."""
    more = len(items) > limit
    items = items[:limit]
    return {"sessions": items, "next_before": items[-1]["id"] if more and items else None}


def _team_sessions_where(
    team_id: int, status: str | None, limit: int, before: int | None
) -> tuple[str, tuple[Any, ...]]:
    """The list's `WHERE ... ORDER BY ... LIMIT` over `execution_sessions AS s`: `limit + 1` rows."""
    where, params = "WHERE s.team_id = %s", list[Any]([team_id])
    if status:
        where = where + " AND s.status = %s"
        params.append(status)
    if before is not None:
        where = where + " AND s.id < %s"
        params.append(before)
    return where + " ORDER BY s.id DESC LIMIT %s", (*params, limit + 1)


# A list item's keys, in the order `app.json` sorts them, and the SQL of each value as the body
# has it: `session_dict` plus `agents_done`, the times already in `serialize.iso`'s form (to_char
# cost PostgreSQL 0.36 us a time; Python's `iso` 1.6 us, after psycopg2 made the datetime).
_ISO = '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\''  # milliseconds cut rather than rounded, and a Z
_LIST_ITEM = (
    ("agents_done", "(SELECT count(*) FROM agent_tasks AS a WHERE a.session_id = s.id AND a.status = 'completed')"),
    ("brain", "s.brain"),
    ("current_stage", "s.current_stage"),
    ("description", "s.description"),
    ("duration_seconds", "s.duration_seconds"),
    ("end_reason", "s.end_reason"),
    ("ended_at", f"to_char(s.ended_at, {_ISO})"),
    ("ended_by", "s.ended_by_id"),
    ("error_message", "s.error_message"),
    ("feature_name", "s.feature_name"),
    ("id", "s.id"),
    ("rerun_of", "s.rerun_of_id"),
    ("started_at", f"to_char(s.started_at, {_ISO})"),
    ("status", "s.status"),
    ("team_id", "s.team_id"),
    ("usage", "s.usage"),
    ("user_id", "s.user_id"),
)
_LIST_KEYS = tuple(key for key, _ in _LIST_ITEM)


def team_sessions_items_sql(
    team_id: int, status: str | None = None, limit: int = 50, before: int | None = None
) -> tuple[str, tuple[Any, ...]]:
    """`team_sessions`'s rows as prebuilt SQL (one text per combination of filters, so it can be
    prepared) and its parameters: up to `limit + 1` rows of the list item's values in
    `_LIST_KEYS` order; make the body with `team_sessions_items_page`."""
    where, params = _team_sessions_where(team_id, status, limit, before)
    return f"SELECT {', '.join(sql for _, sql in _LIST_ITEM)} FROM execution_sessions AS s {where}", params


def team_sessions_items_page(rows: list[tuple[Any, ...]], limit: int) -> dict[str, Any]:
    """`team_sessions_page` from `team_sessions_items_sql`'s rows, as the driver gives them: a
    page of 50 spent about 0.5 ms of a web process in converting rows to models and models to
    dicts (issue 13, fifth pass); each item is now its row zipped with the keys."""
    sessions = [dict(zip(_LIST_KEYS, row, strict=True)) for row in rows]
    for item in sessions:
        item["usage"] = session_usage_dict(item["usage"])
    return _page(sessions, limit)


def _agents_done() -> Any:
    """A correlated count of a session's completed tasks, selected as `agents_done`."""
    return (
        AgentTask.select(fn.COUNT(AgentTask.id))
        .where((AgentTask.session == ExecutionSession.id) & (AgentTask.status == "completed"))
        .alias("agents_done")
    )


def recent_sessions(user_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """The newest sessions across every team the user may see, with team and starter names (one query).

    Visibility is `models.teams.visible_teams`'s: owned teams, and shared teams with a membership.
    """
    mine = TeamMembership.alias("mine")
    starter = User.alias("starter")
    rows: Iterable[Any] = (  # sessions carrying the selected `team_name`, `started_by` and `agents_done`
        ExecutionSession.select(
            ExecutionSession,
            Team.name.alias("team_name"),
            starter.username.alias("started_by"),
            _agents_done(),
        )
        .join(Team, on=(ExecutionSession.team == Team.id))
        .join(mine, JOIN.LEFT_OUTER, on=((mine.team == Team.id) & (mine.user == user_id)))
        .join(starter, JOIN.LEFT_OUTER, on=(ExecutionSession.user == starter.id), src=ExecutionSession)
        .where((Team.owner == user_id) | (Team.is_shared & mine.id.is_null(False)))
        .order_by(ExecutionSession.id.desc())
        .limit(limit)
        .objects()
    )
    return [
        {
            **session_dict(row),
            "team_name": row.team_name,
            "started_by": row.started_by,
            "agents_done": row.agents_done,
        }
        for row in rows
    ]


# The rows each cached view is built from (`app.read_cache`), as `id:xmin` lists. PostgreSQL gives
# every row version a new `xmin` (the id of the transaction that wrote it), so the list changes
# whenever a row is inserted, updated (a cascade's SET NULL included) or deleted.
_VERSION_PARTS = {
    "session": "SELECT xmin::text FROM execution_sessions WHERE id = %s",
    "tasks": "SELECT string_agg(id || ':' || xmin::text, ',' ORDER BY id) FROM agent_tasks WHERE session_id = %s",
    "task_decisions": (
        "SELECT string_agg(d.id || ':' || d.xmin::text, ',' ORDER BY d.id) FROM task_decisions d"
        " JOIN agent_tasks t ON t.id = d.agent_task_id WHERE t.session_id = %s"
    ),
    "session_decisions": (
        "SELECT string_agg(id || ':' || xmin::text, ',' ORDER BY id) FROM session_decisions WHERE session_id = %s"
    ),
    "snapshots": (
        "SELECT string_agg(s.id || ':' || s.xmin::text, ',' ORDER BY s.id) FROM agent_snapshots s"
        " JOIN agent_tasks t ON t.id = s.agent_task_id WHERE t.session_id = %s"
    ),
    "events": ("SELECT string_agg(id || ':' || xmin::text, ',' ORDER BY id) FROM session_events WHERE session_id = %s"),
    "reruns": (
        "SELECT string_agg(id || ':' || xmin::text, ',' ORDER BY id) FROM execution_sessions WHERE rerun_of_id = %s"
    ),
}

#: What each session view reads (keep in step with the functions above).
VIEW_PARTS: dict[str, tuple[str, ...]] = {
    "detail": ("session", "tasks", "task_decisions", "session_decisions", "reruns"),
    "timeline": ("tasks", "task_decisions", "snapshots"),
    "replay": ("session", "tasks", "task_decisions", "session_decisions", "snapshots", "events"),
    "decisions": ("tasks", "task_decisions", "session_decisions"),
    "events": ("events",),
}


def session_version_sql(parts: tuple[str, ...]) -> str | None:
    """The SQL expression of `session_version_column`, with one `%s` (the session id) per part;
    None on a database other than PostgreSQL (SQLite has no `xmin`), which means "do not cache"."""
    from models.db import PostgresDatabase, db

    if not isinstance(db.obj, PostgresDatabase):
        return None
    # coalesce keeps every part's place, so rows cannot move from one part to the next unseen.
    columns = ", ".join(f"coalesce(({_VERSION_PARTS[part]}), '')" for part in parts)
    return f"md5(concat_ws('|', {columns}))"


def session_version_column(session_id: int, parts: tuple[str, ...]) -> Any:
    """A column `view_version`: a digest of the rows of `parts` of the session, equal digests for
    equal rows; to be selected by the query that loads the session (access checks it anyway).

    None on a database other than PostgreSQL, which means "do not cache". Select it in the same
    transaction as the view's queries (`read_db`'s snapshot), so they agree.
    """
    sql = session_version_sql(parts)
    return None if sql is None else SQL(sql, [session_id] * len(parts)).alias("view_version")

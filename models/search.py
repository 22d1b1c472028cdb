"""Search every decision ever made: features, session decisions, and agent decisions with their
rationale, across the teams a user can read (`GET /search`, docs/api.md).

Two PostgreSQL matchers run side by side, each backed by a GIN index of migration 007:
full-text search (`to_tsvector('english', ...)`, so "decisions" finds "decided") and trigram
word similarity from `pg_trgm` (`q <% text`), which tolerates typos ("sqlte" finds SQLite,
"postgress" finds PostgreSQL). A row matches if either does; its rank is the sum of the two
scores. Snippets are plain text with `[start, end]` highlight offsets, never HTML, so a client
cannot be handed markup to inject.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from typing import Any

from models.db import db

#: Word-similarity threshold of the `<%` operator: pg_trgm's default (0.6) misses one-letter
#: typos in short words ("sqlte" against "sqlite" scores 0.44).
WORD_SIMILARITY = 0.3
SNIPPET_CHARS = 180
KINDS = ("feature", "session_decision", "agent_decision")

# The indexed expressions: the query must repeat them exactly for the indexes to be used.
FEATURE_TEXT = "(s.feature_name || ' ' || coalesce(s.description, ''))"
SESSION_DECISION_TEXT = "sd.decision_text"
AGENT_DECISION_TEXT = "(td.decision_text || ' ' || coalesce(td.rationale, ''))"


@dataclass(frozen=True)
class Filters:
    """What narrows a search besides the teams the caller can read."""

    team_ids: tuple[int, ...]
    role: str | None = None
    category: str | None = None
    since: dt.date | None = None
    limit: int = 20


def _matcher(expr: str) -> tuple[str, str]:
    """(WHERE clause, rank expression) for one indexed text expression."""
    vector = f"to_tsvector('english', {expr})"
    return (
        f"({vector} @@ websearch_to_tsquery('english', %(q)s) OR %(q)s <%% {expr})",
        f"(ts_rank({vector}, websearch_to_tsquery('english', %(q)s)) + word_similarity(%(q)s, {expr}))",
    )


def _queries(filters: Filters) -> list[str]:
    parts = []
    since_sessions = " AND s.started_at >= %(since)s" if filters.since else ""
    if filters.role is None and filters.category is None:
        where, rank = _matcher(FEATURE_TEXT)
        parts.append(
            f"""(SELECT 'feature' AS kind, s.id AS session_id, NULL::bigint AS decision_id, s.team_id,
                       NULL::text AS agent_role, s.feature_name AS title, s.description AS body, {rank} AS rank
                FROM execution_sessions s
                WHERE s.team_id = ANY(%(teams)s) AND {where}{since_sessions}
                ORDER BY rank DESC LIMIT %(limit)s)"""
        )
    if filters.role is None:
        where, rank = _matcher(SESSION_DECISION_TEXT)
        category = " AND sd.category = %(category)s" if filters.category else ""
        since = " AND sd.created_at >= %(since)s" if filters.since else ""
        parts.append(
            f"""(SELECT 'session_decision' AS kind, s.id AS session_id, sd.id AS decision_id, s.team_id,
                       NULL::text AS agent_role, sd.decision_text AS title, NULL::text AS body, {rank} AS rank
                FROM session_decisions sd JOIN execution_sessions s ON s.id = sd.session_id
                WHERE s.team_id = ANY(%(teams)s) AND {where}{category}{since}
                ORDER BY rank DESC LIMIT %(limit)s)"""
        )
    where, rank = _matcher(AGENT_DECISION_TEXT)
    role = " AND t.agent_role = %(role)s" if filters.role else ""
    category = " AND td.category = %(category)s" if filters.category else ""
    since = " AND td.created_at >= %(since)s" if filters.since else ""
    parts.append(
        f"""(SELECT 'agent_decision' AS kind, s.id AS session_id, td.id AS decision_id, s.team_id,
                   t.agent_role::text AS agent_role, td.decision_text AS title, td.rationale AS body, {rank} AS rank
            FROM task_decisions td JOIN agent_tasks t ON t.id = td.agent_task_id
            JOIN execution_sessions s ON s.id = t.session_id
            WHERE s.team_id = ANY(%(teams)s) AND {where}{role}{category}{since}
            ORDER BY rank DESC LIMIT %(limit)s)"""
    )
    return parts


def search(q: str, filters: Filters) -> list[dict[str, Any]]:
    """Ranked results, best first, only from `filters.team_ids`."""
    if not filters.team_ids:
        return []
    union = " UNION ALL ".join(_queries(filters))
    sql = f"SELECT * FROM ({union}) AS hits ORDER BY rank DESC, session_id DESC LIMIT %(limit)s"
    params = {
        "q": q,
        "teams": list(filters.team_ids),
        "role": filters.role,
        "category": filters.category,
        "since": filters.since,
        "limit": filters.limit,
    }
    with db.atomic():
        # Local to this transaction: the threshold of `<%` for these queries only.
        db.execute_sql("SELECT set_config('pg_trgm.word_similarity_threshold', %s, true)", (str(WORD_SIMILARITY),))
        rows = db.execute_sql(sql, params).fetchall()
    results = []
    for kind, session_id, decision_id, team_id, agent_role, title, body, rank in rows:
        text = title if not body else f"{title} — {body}"
        snippet, highlights = snippet_for(text, q)
        results.append(
            {
                "kind": kind,
                "session_id": session_id,
                "decision_id": decision_id,
                "team_id": team_id,
                "agent_role": agent_role,
                "snippet": snippet,
                "highlights": highlights,
                "rank": round(float(rank), 6),
            }
        )
    return results


WORD = re.compile(r"\w+", re.UNICODE)


def _terms(q: str) -> list[str]:
    return [t.lower() for t in WORD.findall(q) if len(t) >= 2]


def _matches(word: str, term: str) -> bool:
    """Whether a word of the text answers a query term: same stem, or a near spelling."""
    word = word.lower()
    if word == term or (len(term) >= 3 and (word.startswith(term) or (term.startswith(word) and len(word) >= 3))):
        return True
    return len(term) >= 4 and difflib.SequenceMatcher(None, word, term).ratio() >= 0.75


def snippet_for(text: str, q: str, width: int = SNIPPET_CHARS) -> tuple[str, list[list[int]]]:
    """A window of `text` around its first match, with `[start, end]` offsets of matched words."""
    terms = _terms(q)
    spans = [(m.start(), m.end()) for m in WORD.finditer(text) if any(_matches(m.group(), t) for t in terms)]
    start = 0
    if spans and len(text) > width:
        start = max(0, min(spans[0][0] - width // 4, len(text) - width))
        # Begin at a word boundary so the snippet does not open mid-word.
        while start > 0 and text[start - 1].isalnum():
            start -= 1
    end = min(len(text), start + width)
    snippet = text[start:end]
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(text) else ""
    shift = len(prefix) - start
    highlights = [[a + shift, b + shift] for a, b in spans if a >= start and b <= end]
    return prefix + snippet + suffix, highlights

"""Search every decision ever made: features, session decisions, and agent decisions with their
rationale, across the teams a user can read (`GET /search`, docs/api.md).

Everything searchable has a row in `search_documents` (kept by the triggers of migration 007)
with its team, role, category, date, text and stored `tsvector`.

1. **Typos.** Each query word is looked up in `search_words`, the vocabulary of every document,
   through its `pg_trgm` trigram index: the word itself and the stored words most similar to it
   ("sqlte" → sqlite, "postgress" → postgresql) become alternatives. The vocabulary is small
   however many decisions there are, so this costs a millisecond.
2. **Matching.** The alternatives make one full-text query (`to_tsquery('english', ...)`: any
   alternative of every word, stemmed, so "decisions" finds "decided"), answered by the GIN index
   on the stored vectors, within the caller's teams and filters.
3. **Ranking.** The newest `CANDIDATES` matches (found newest-first among the most recent
   documents, then through the GIN index among older ones if needed) are ranked by `ts_rank`
   plus the trigram word similarity of the whole query, best first. A rare word is ranked over
   all its matches; a word in tens of thousands of decisions over its newest ones, which keeps
   a search fast at any size.

Snippets are plain text with `[start, end]` highlight offsets, never HTML, so a client cannot be
handed markup to inject.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from typing import Any

from models.db import db

#: Similarity (0..1) a stored word needs to stand in for a query word: one-letter typos in
#: short words score about 0.4 ("sqlte" against "sqlite": 0.44).
WORD_SIMILARITY = 0.3
#: Stored words tried per query word, best first.
ALTERNATIVES = 4
#: Newest matches ranked.
CANDIDATES = 300
SNIPPET_CHARS = 180
KINDS = ("feature", "session_decision", "agent_decision")


@dataclass(frozen=True)
class Filters:
    """What narrows a search besides the teams the caller can read."""

    team_ids: tuple[int, ...]
    role: str | None = None
    category: str | None = None
    since: dt.date | None = None
    limit: int = 20


def _safe(word: str) -> str:
    """A word as a tsquery lexeme: letters, digits and underscores only."""
    return re.sub(r"[^\w]", "", word.lower())


def tsquery_text(q: str) -> str | None:
    """The full-text query for `q`: every word, as itself or one of its nearest stored words.

    `(sqlte | sqlite) & (backup | backups)`; None when `q` has no word to search for.
    """
    groups = []
    for term in dict.fromkeys(_safe(t) for t in _terms(q)):
        if not term:
            continue
        rows = db.execute_sql(
            "SELECT word FROM search_words WHERE word %% %s ORDER BY word <-> %s, word LIMIT %s",
            (term, term, ALTERNATIVES),
        ).fetchall()
        alternatives = dict.fromkeys([term, *(_safe(w) for (w,) in rows)])
        groups.append("(" + " | ".join(a for a in alternatives if a) + ")")
    return " & ".join(groups) or None


#: How many of the newest documents are searched newest-first (an index scan that stops at
#: CANDIDATES matches); older ones are searched through the GIN index only when the newest did
#: not give enough. The split keeps both a very common word (many matches among the newest) and
#: a rare or absent one (a small bitmap) fast: a newest-first scan alone reads every document
#: for a word nothing contains.
RECENT_DOCUMENTS = 20_000

CANDIDATES_SQL = """
    SELECT id FROM search_documents
    WHERE {window} AND tsv @@ (to_tsquery('english', %(tsq)s) && %(scope)s::tsquery)
          AND team_id = ANY(%(teams)s){filters}
    ORDER BY {order} DESC LIMIT %(wanted)s
"""
# `id + 0` keeps PostgreSQL from walking the primary key backwards over the older documents.
WINDOWS = (("id > %(floor)s", "id"), ("id <= %(floor)s", "id + 0"))

RANK_SQL = """
    SELECT kind, session_id, decision_id, team_id, agent_role, title, body,
           ts_rank(tsv, to_tsquery('english', %(tsq)s))
           + word_similarity(%(q)s, title || ' ' || coalesce(body, '')) AS rank
    FROM search_documents WHERE id = ANY(%(ids)s)
    ORDER BY rank DESC, id DESC LIMIT %(limit)s
"""


def scope_query(filters: Filters) -> str:
    """The scope lexemes a document must carry (migration 007): one of the teams, and the filters.

    `team_id` is checked again in SQL as well: access never rests on the index alone.
    """
    parts = ["(" + " | ".join(f"'t:{int(team)}'" for team in filters.team_ids) + ")"]
    if filters.role is not None:
        parts.append(f"'r:{_safe(filters.role)}'")
    if filters.category is not None:
        parts.append(f"'c:{_safe(filters.category)}'")
    return " & ".join(parts)


def _filters(filters: Filters) -> str:
    clauses = []
    if filters.role is not None:
        clauses.append("agent_role = %(role)s")
    if filters.category is not None:
        clauses.append("category = %(category)s")
    if filters.since is not None:
        clauses.append("created_at >= %(since)s")
    return "".join(f" AND {c}" for c in clauses)


def _candidates(params: dict[str, Any], filters: Filters) -> list[int]:
    """The ids of the newest CANDIDATES matching documents."""
    (newest,) = db.execute_sql("SELECT coalesce(max(id), 0) FROM search_documents").fetchone()
    params = {**params, "floor": newest - RECENT_DOCUMENTS}
    ids: list[int] = []
    for window, order in WINDOWS:
        wanted = CANDIDATES - len(ids)
        if wanted <= 0 or (window.startswith("id <=") and params["floor"] <= 0):
            break
        sql = CANDIDATES_SQL.format(window=window, order=order, filters=_filters(filters))
        ids += [row[0] for row in db.execute_sql(sql, {**params, "wanted": wanted}).fetchall()]
    return ids


def search(q: str, filters: Filters) -> list[dict[str, Any]]:
    """Ranked results, best first, only from `filters.team_ids`."""
    if not filters.team_ids:
        return []
    with db.atomic():
        # Local to this transaction: the similarity threshold of the vocabulary's `%` operator.
        db.execute_sql("SELECT set_config('pg_trgm.similarity_threshold', %s, true)", (str(WORD_SIMILARITY),))
        tsq = tsquery_text(q)
        if tsq is None:
            return []
        params = {
            "q": q,
            "tsq": tsq,
            "teams": list(filters.team_ids),
            "role": filters.role,
            "category": filters.category,
            "since": filters.since,
            "limit": filters.limit,
            "scope": scope_query(filters),
        }
        ids = _candidates(params, filters)
        rows = db.execute_sql(RANK_SQL, {**params, "ids": ids}).fetchall() if ids else []
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

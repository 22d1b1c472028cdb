"""Search: full-text GIN indexes, and a vocabulary with a trigram index for typo tolerance.

Reviewed by hand. `GET /search` (`models/search.py`) finds rows with PostgreSQL full-text search
on the three indexed expressions below. Typos are corrected first against `search_words`, the
distinct words of everything searchable, through a `pg_trgm` trigram index: a table of words is
small however many decisions there are, so "sqlte" becomes "sqlite" in a millisecond instead of
a trigram scan over millions of decisions. Statement-level triggers keep the vocabulary current
(one INSERT ... ON CONFLICT per statement, whatever the number of rows). `pg_trgm` ships with
PostgreSQL and is a trusted extension (13+), so the database owner may create it.
"""

from __future__ import annotations

import peewee as pw
from peewee_migrate import Migrator

FEATURE = "(feature_name || ' ' || coalesce(description, ''))"
SESSION_DECISION = "decision_text"
AGENT_DECISION = "(decision_text || ' ' || coalesce(rationale, ''))"

FTS_INDEXES = {
    "idx_sessions_search_fts": ("execution_sessions", FEATURE),
    "idx_session_decisions_search_fts": ("session_decisions", SESSION_DECISION),
    "idx_task_decisions_search_fts": ("task_decisions", AGENT_DECISION),
}


def _words_of(text_sql: str, rows: str) -> str:
    """INSERT the distinct words (2-64 characters) of `text_sql` over `rows` into the vocabulary."""
    return f"""
        INSERT INTO search_words (word)
        SELECT DISTINCT w FROM {rows}, unnest(tsvector_to_array(to_tsvector('simple', {text_sql}))) AS w
        WHERE length(w) BETWEEN 2 AND 64
        ON CONFLICT (word) DO NOTHING
    """


TRIGGERS = {
    # table: (text expression over the inserted rows, trigger function name)
    "execution_sessions": (
        "(new_rows.feature_name || ' ' || coalesce(new_rows.description, ''))",
        "search_words_from_sessions",
    ),
    "session_decisions": ("new_rows.decision_text", "search_words_from_session_decisions"),
    "task_decisions": (
        "(new_rows.decision_text || ' ' || coalesce(new_rows.rationale, ''))",
        "search_words_from_task_decisions",
    ),
}


def migrate(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Extension, vocabulary, indexes, triggers, and the vocabulary of what is already stored."""
    migrator.sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    migrator.sql('CREATE TABLE "search_words" ("word" VARCHAR(64) NOT NULL PRIMARY KEY)')
    migrator.sql('CREATE INDEX "idx_search_words_trgm" ON "search_words" USING gin ("word" gin_trgm_ops)')
    for name, (table, expression) in FTS_INDEXES.items():
        migrator.sql(f'CREATE INDEX "{name}" ON "{table}" USING gin (to_tsvector(\'english\', {expression}))')
    for table, (text_sql, function) in TRIGGERS.items():
        migrator.sql(
            f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {_words_of(text_sql, "new_rows")};
                RETURN NULL;
            END $$
            """
        )
        for event in ("INSERT", "UPDATE"):
            migrator.sql(
                f'CREATE TRIGGER "{function}_{event.lower()}" AFTER {event} ON "{table}" '
                f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        migrator.sql(_words_of(text_sql.replace("new_rows.", f'"{table}".'), f'"{table}"'))


def rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Drop the triggers, functions, indexes and vocabulary (the extension stays)."""
    for table, (_, function) in TRIGGERS.items():
        for event in ("insert", "update"):
            migrator.sql(f'DROP TRIGGER IF EXISTS "{function}_{event}" ON "{table}"')
        migrator.sql(f"DROP FUNCTION IF EXISTS {function}()")
    for name in FTS_INDEXES:
        migrator.sql(f'DROP INDEX IF EXISTS "{name}"')
    migrator.sql('DROP TABLE IF EXISTS "search_words"')

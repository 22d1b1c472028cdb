"""Search indexes: full-text (English) and trigram (pg_trgm) GIN indexes on what `GET /search` reads.

Reviewed by hand. `pg_trgm` ships with PostgreSQL and is a trusted extension (13+), so the
database owner may create it. The indexed expressions are repeated exactly in `models/search.py`
(and declared in `models/schema.py`, which `tests/test_migrations.py` compares with this file).
"""

from __future__ import annotations

import peewee as pw
from peewee_migrate import Migrator

FEATURE = "(feature_name || ' ' || coalesce(description, ''))"
SESSION_DECISION = "decision_text"
AGENT_DECISION = "(decision_text || ' ' || coalesce(rationale, ''))"

INDEXES = {
    "idx_sessions_search_fts": ("execution_sessions", f"to_tsvector('english', {FEATURE})"),
    "idx_sessions_search_trgm": ("execution_sessions", f"{FEATURE} gin_trgm_ops"),
    "idx_session_decisions_search_fts": ("session_decisions", f"to_tsvector('english', {SESSION_DECISION})"),
    "idx_session_decisions_search_trgm": ("session_decisions", f"{SESSION_DECISION} gin_trgm_ops"),
    "idx_task_decisions_search_fts": ("task_decisions", f"to_tsvector('english', {AGENT_DECISION})"),
    "idx_task_decisions_search_trgm": ("task_decisions", f"{AGENT_DECISION} gin_trgm_ops"),
}


def migrate(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Create the extension and the six GIN indexes."""
    migrator.sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, expression) in INDEXES.items():
        migrator.sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin ({expression})')


def rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Drop the indexes (the extension stays: other databases' objects may use it)."""
    for name in INDEXES:
        migrator.sql(f'DROP INDEX IF EXISTS "{name}"')

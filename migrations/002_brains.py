"""Brains: the brain a session runs on, and model usage on tasks and sessions.

Reviewed by hand. `execution_sessions.brain` names the brain of every agent of the session
(existing sessions ran on the knowledge base); `agent_tasks.usage` and `execution_sessions.usage`
hold the summed model calls, tokens and cost (null when no model was called).
"""

from __future__ import annotations

import peewee as pw
from peewee_migrate import Migrator

STATEMENTS = [
    """
    ALTER TABLE "execution_sessions"
        ADD COLUMN "brain" VARCHAR(64) NOT NULL DEFAULT 'knowledge-base',
        ADD COLUMN "usage" JSONB
    """,
    """
    ALTER TABLE "agent_tasks" ADD COLUMN "usage" JSONB
    """,
]


def migrate(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Add the brain and usage columns."""
    for statement in STATEMENTS:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Drop them again."""
    migrator.sql('ALTER TABLE "agent_tasks" DROP COLUMN IF EXISTS "usage"')
    migrator.sql('ALTER TABLE "execution_sessions" DROP COLUMN IF EXISTS "usage", DROP COLUMN IF EXISTS "brain"')

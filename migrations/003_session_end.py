"""Who ended a session and why: `ended_by` and `end_reason` on execution sessions.

Reviewed by hand, like 001. `end_reason` is `completed` (every agent finished), `user` (ended
early by `ended_by`) or `error`; NULL while the session is active. Sessions that ended before
this migration get the reason their status implies (an early end was recorded as `completed`
then, and cannot be told apart now). Deleting the user who ended a session keeps the session.
"""

from __future__ import annotations

import peewee as pw
from peewee_migrate import Migrator

STATEMENTS = [
    """
    ALTER TABLE "execution_sessions"
        ADD COLUMN "ended_by_id" BIGINT REFERENCES "users" ("id") ON DELETE SET NULL,
        ADD COLUMN "end_reason" VARCHAR(20) CONSTRAINT "ck_sessions_end_reason"
            CHECK (end_reason IS NULL OR end_reason IN ('completed', 'user', 'error'))
    """,
    """
    CREATE INDEX "idx_sessions_ended_by" ON "execution_sessions" ("ended_by_id")
    """,
    """
    UPDATE "execution_sessions" SET "end_reason" = "status" WHERE "status" IN ('completed', 'error')
    """,
]


def migrate(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Add the columns, their index, and the reasons of sessions already ended."""
    for statement in STATEMENTS:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Drop the index and the columns."""
    migrator.sql('DROP INDEX IF EXISTS "idx_sessions_ended_by"')
    migrator.sql(
        'ALTER TABLE "execution_sessions" DROP COLUMN IF EXISTS "end_reason", DROP COLUMN IF EXISTS "ended_by_id"'
    )

"""Invitations that the invitee accepts (issue 14, finding 5).

Reviewed by hand. Membership used to begin when the owner invited; now `POST /teams/{id}/invite`
stores a pending invitation, and the membership row is written only when the invitee accepts.
Existing memberships are untouched. `tests/test_migrations.py` proves the result equals the models.
"""

from __future__ import annotations

import peewee as pw
from peewee_migrate import Migrator

STATEMENTS = [
    """
    CREATE TABLE "invitations" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "team_id" BIGINT NOT NULL,
        "invited_by_id" BIGINT NOT NULL,
        "invitee_id" BIGINT,
        "invitee_text" VARCHAR(255) NOT NULL,
        "role" VARCHAR(50) NOT NULL DEFAULT 'member' CONSTRAINT "ck_invitations_role" CHECK (role IN ('member', 'viewer')),
        "status" VARCHAR(50) NOT NULL DEFAULT 'pending' CONSTRAINT "ck_invitations_status" CHECK (status IN ('pending', 'accepted', 'declined', 'cancelled')),
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "responded_at" TIMESTAMP,
        FOREIGN KEY ("team_id") REFERENCES "teams" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("invited_by_id") REFERENCES "users" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("invitee_id") REFERENCES "users" ("id") ON DELETE CASCADE
    )
    """,
    """
    CREATE INDEX "idx_invitations_team_status" ON "invitations" ("team_id", "status")
    """,
    """
    CREATE INDEX "idx_invitations_invitee_status" ON "invitations" ("invitee_id", "status")
    """,
    """
    CREATE INDEX "idx_invitations_invited_by" ON "invitations" ("invited_by_id")
    """,
]


def migrate(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Create the invitations table and its indexes."""
    for statement in STATEMENTS:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Drop the invitations table."""
    migrator.sql('DROP TABLE IF EXISTS "invitations"')

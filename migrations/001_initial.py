"""Initial schema: the eight tables of the design plus the session event log.

Reviewed by hand. It is the DDL that `models.schema` describes, written out so that the schema
of record does not change when the models do; `tests/test_migrations.py` proves that migrating an
empty database gives exactly what the models declare (tables, columns, defaults, indexes and
constraints), and that rolling back leaves nothing behind.
"""

from __future__ import annotations

import peewee as pw
from peewee_migrate import Migrator

STATEMENTS = [
    """
    CREATE TABLE "users" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "username" VARCHAR(64) NOT NULL,
        "email" VARCHAR(255) NOT NULL,
        "password_hash" VARCHAR(255) NOT NULL,
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    )
    """,
    """
    CREATE UNIQUE INDEX "uq_users_username_lower" ON "users" (LOWER("username"))
    """,
    """
    CREATE UNIQUE INDEX "uq_users_email_lower" ON "users" (LOWER("email"))
    """,
    """
    CREATE TABLE "teams" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "name" VARCHAR(255) NOT NULL,
        "owner_id" BIGINT NOT NULL,
        "is_shared" BOOLEAN NOT NULL DEFAULT FALSE,
        "description" TEXT,
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY ("owner_id") REFERENCES "users" ("id") ON DELETE CASCADE
    )
    """,
    """
    CREATE INDEX "idx_teams_owner" ON "teams" ("owner_id")
    """,
    """
    CREATE INDEX "idx_teams_is_shared" ON "teams" ("is_shared")
    """,
    """
    CREATE TABLE "team_memberships" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "team_id" BIGINT NOT NULL,
        "user_id" BIGINT NOT NULL,
        "role" VARCHAR(50) NOT NULL DEFAULT 'member' CONSTRAINT "ck_memberships_role" CHECK (role IN ('owner', 'member', 'viewer')),
        "joined_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY ("team_id") REFERENCES "teams" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE
    )
    """,
    """
    CREATE UNIQUE INDEX "uq_memberships_team_user" ON "team_memberships" ("team_id", "user_id")
    """,
    """
    CREATE INDEX "idx_memberships_user" ON "team_memberships" ("user_id")
    """,
    """
    CREATE INDEX "idx_memberships_team" ON "team_memberships" ("team_id")
    """,
    """
    CREATE TABLE "execution_sessions" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "team_id" BIGINT NOT NULL,
        "user_id" BIGINT,
        "feature_name" VARCHAR(255) NOT NULL,
        "description" TEXT,
        "status" VARCHAR(50) NOT NULL DEFAULT 'active' CONSTRAINT "ck_sessions_status" CHECK (status IN ('active', 'completed', 'error')),
        "current_stage" INTEGER NOT NULL DEFAULT 0 CONSTRAINT "ck_sessions_stage" CHECK (current_stage >= 0),
        "last_seq" INTEGER NOT NULL DEFAULT 0,
        "celery_chain_id" VARCHAR(255),
        "error_message" TEXT,
        "rerun_of_id" BIGINT,
        "started_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "ended_at" TIMESTAMP,
        "duration_seconds" DOUBLE PRECISION,
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY ("team_id") REFERENCES "teams" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE SET NULL,
        FOREIGN KEY ("rerun_of_id") REFERENCES "execution_sessions" ("id") ON DELETE SET NULL
    )
    """,
    """
    CREATE INDEX "idx_sessions_team" ON "execution_sessions" ("team_id")
    """,
    """
    CREATE INDEX "idx_sessions_user" ON "execution_sessions" ("user_id")
    """,
    """
    CREATE INDEX "idx_sessions_status" ON "execution_sessions" ("status")
    """,
    """
    CREATE INDEX "idx_sessions_team_id" ON "execution_sessions" ("team_id", "id")
    """,
    """
    CREATE INDEX "idx_sessions_team_status_id" ON "execution_sessions" ("team_id", "status", "id")
    """,
    """
    CREATE INDEX "idx_sessions_rerun_of" ON "execution_sessions" ("rerun_of_id")
    """,
    """
    CREATE TABLE "session_decisions" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "session_id" BIGINT NOT NULL,
        "user_id" BIGINT,
        "decision_text" TEXT NOT NULL,
        "category" VARCHAR(100) CONSTRAINT "ck_session_decisions_category" CHECK (category IS NULL OR category IN ('architecture', 'technology', 'design', 'data', 'security', 'performance', 'infrastructure', 'testing', 'process', 'user_experience')),
        "confidence" VARCHAR(50) NOT NULL DEFAULT 'high' CONSTRAINT "ck_session_decisions_confidence" CHECK (confidence IN ('high', 'medium', 'low')),
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY ("session_id") REFERENCES "execution_sessions" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE SET NULL
    )
    """,
    """
    CREATE INDEX "idx_session_decisions_session" ON "session_decisions" ("session_id")
    """,
    """
    CREATE INDEX "idx_session_decisions_user" ON "session_decisions" ("user_id")
    """,
    """
    CREATE TABLE "agent_tasks" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "session_id" BIGINT NOT NULL,
        "agent_role" VARCHAR(100) NOT NULL CONSTRAINT "ck_agent_tasks_role" CHECK (agent_role IN ('architect', 'backend_dev', 'dba', 'frontend_dev', 'ui_ux', 'security', 'it_admin')),
        "stage" INTEGER NOT NULL DEFAULT 0 CONSTRAINT "ck_agent_tasks_stage" CHECK (stage >= 0),
        "task_description" TEXT NOT NULL,
        "input_data" JSONB,
        "output_data" JSONB,
        "status" VARCHAR(50) NOT NULL DEFAULT 'pending' CONSTRAINT "ck_agent_tasks_status" CHECK (status IN ('pending', 'running', 'completed', 'error')),
        "started_at" TIMESTAMP,
        "completed_at" TIMESTAMP,
        "duration_seconds" DOUBLE PRECISION,
        "error_message" TEXT,
        "retry_count" INTEGER NOT NULL DEFAULT 0 CONSTRAINT "ck_agent_tasks_retry_count" CHECK (retry_count >= 0),
        "celery_task_id" VARCHAR(255),
        "rerun_of_id" BIGINT,
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY ("session_id") REFERENCES "execution_sessions" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("rerun_of_id") REFERENCES "agent_tasks" ("id") ON DELETE SET NULL
    )
    """,
    """
    CREATE INDEX "idx_agent_tasks_session" ON "agent_tasks" ("session_id")
    """,
    """
    CREATE INDEX "idx_agent_tasks_role" ON "agent_tasks" ("agent_role")
    """,
    """
    CREATE INDEX "idx_agent_tasks_status" ON "agent_tasks" ("status")
    """,
    """
    CREATE UNIQUE INDEX "uq_agent_tasks_session_role" ON "agent_tasks" ("session_id", "agent_role")
    """,
    """
    CREATE INDEX "idx_agent_tasks_rerun_of" ON "agent_tasks" ("rerun_of_id")
    """,
    """
    CREATE TABLE "task_decisions" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "agent_task_id" BIGINT NOT NULL,
        "user_id" BIGINT,
        "source" VARCHAR(20) NOT NULL DEFAULT 'agent' CONSTRAINT "ck_task_decisions_source" CHECK (source IN ('agent', 'user')),
        "decision_text" TEXT NOT NULL,
        "rationale" TEXT,
        "category" VARCHAR(100) CONSTRAINT "ck_task_decisions_category" CHECK (category IS NULL OR category IN ('architecture', 'technology', 'design', 'data', 'security', 'performance', 'infrastructure', 'testing', 'process', 'user_experience')),
        "confidence" VARCHAR(50) CONSTRAINT "ck_task_decisions_confidence" CHECK (confidence IS NULL OR confidence IN ('high', 'medium', 'low')),
        "based_on" JSONB NOT NULL DEFAULT '[]',
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY ("agent_task_id") REFERENCES "agent_tasks" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE SET NULL
    )
    """,
    """
    CREATE INDEX "idx_task_decisions_task" ON "task_decisions" ("agent_task_id")
    """,
    """
    CREATE INDEX "idx_task_decisions_user" ON "task_decisions" ("user_id")
    """,
    """
    CREATE TABLE "agent_snapshots" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "agent_task_id" BIGINT NOT NULL,
        "agent_role" VARCHAR(100) NOT NULL CONSTRAINT "ck_agent_snapshots_role" CHECK (agent_role IN ('architect', 'backend_dev', 'dba', 'frontend_dev', 'ui_ux', 'security', 'it_admin')),
        "context_state" JSONB NOT NULL,
        "capabilities" JSONB NOT NULL,
        "decisions" JSONB NOT NULL,
        "execution_metadata" JSONB,
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY ("agent_task_id") REFERENCES "agent_tasks" ("id") ON DELETE CASCADE
    )
    """,
    """
    CREATE INDEX "idx_snapshots_task" ON "agent_snapshots" ("agent_task_id")
    """,
    """
    CREATE TABLE "session_events" (
        "id" BIGSERIAL NOT NULL PRIMARY KEY,
        "session_id" BIGINT NOT NULL,
        "seq" INTEGER NOT NULL CONSTRAINT "ck_session_events_seq" CHECK (seq >= 1),
        "type" VARCHAR(64) NOT NULL CONSTRAINT "ck_session_events_type" CHECK (type IN ('session_started', 'agent_task_started', 'agent_task_completed', 'agent_task_retrying', 'decision_created', 'session_completed', 'session_error')),
        "payload" JSONB NOT NULL,
        "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY ("session_id") REFERENCES "execution_sessions" ("id") ON DELETE CASCADE
    )
    """,
    """
    CREATE UNIQUE INDEX "uq_session_events_session_seq" ON "session_events" ("session_id", "seq")
    """,
]

TABLES = (
    "users",
    "teams",
    "team_memberships",
    "execution_sessions",
    "session_decisions",
    "agent_tasks",
    "task_decisions",
    "agent_snapshots",
    "session_events",
)


def migrate(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Create every table and index."""
    for statement in STATEMENTS:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Drop every table, children first."""
    for table in reversed(TABLES):
        migrator.sql(f'DROP TABLE IF EXISTS "{table}"')

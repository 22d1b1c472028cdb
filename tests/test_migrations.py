"""The hand-written migration builds exactly the schema the models declare, and rolls back."""

from __future__ import annotations

import importlib.util

import peewee as pw
import pytest
from conftest import TEST_DB_NAME, recreate_database

from models import ALL_MODELS
from models.db import make_database
from models.migrate import MIGRATIONS_DIR, router

# Every hand-written migration, in order (each engineer's branch adds its own number).
MIGRATIONS = sorted(p.stem for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.py"))

CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default,
               character_maximum_length
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'migratehistory'
        ORDER BY 1, 2
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'migratehistory'
        ORDER BY 1, 2
    """,
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'migratehistory'
        ORDER BY 1, 2
    """,
}


def catalog(database) -> dict[str, list[tuple]]:
    with database.connection_context():
        return {name: list(database.execute_sql(query).fetchall()) for name, query in CATALOG.items()}


@pytest.fixture
def scratch_databases():
    names = (f"{TEST_DB_NAME}_mig_a", f"{TEST_DB_NAME}_mig_b")
    for name in names:
        recreate_database(name)
    databases = [make_database(f"postgresql://root@127.0.0.1:5432/{name}", 2) for name in names]
    yield databases
    for database in databases:
        database.close_all()


def test_migrating_an_empty_database_gives_exactly_the_models_schema(scratch_databases):
    migrated, modelled = scratch_databases
    with migrated.connection_context():
        assert router(migrated).run() == MIGRATIONS
    with modelled.bind_ctx(ALL_MODELS), modelled.connection_context():
        modelled.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")  # the search indexes' operator class
        modelled.create_tables(ALL_MODELS)

    got, want = catalog(migrated), catalog(modelled)
    tables = {row[0] for row in want["columns"]}
    assert tables == {m._meta.table_name for m in ALL_MODELS}
    assert got["columns"] == want["columns"]
    assert got["indexes"] == want["indexes"]
    assert got["constraints"] == want["constraints"]
    # The listed design indexes and the integrity rules the architecture adds are all there.
    index_names = {row[1] for row in got["indexes"]}
    assert {
        "idx_teams_owner",
        "idx_teams_is_shared",
        "idx_memberships_user",
        "idx_memberships_team",
        "idx_sessions_team",
        "idx_sessions_user",
        "idx_sessions_status",
        "idx_agent_tasks_session",
        "idx_agent_tasks_role",
        "idx_agent_tasks_status",
        "idx_snapshots_task",
        "uq_agent_tasks_session_role",
        "uq_session_events_session_seq",
    } <= index_names
    checks = {row[1] for row in got["constraints"] if row[2] == "c"}
    assert {
        "ck_sessions_status",
        "ck_sessions_end_reason",
        "ck_agent_tasks_status",
        "ck_agent_tasks_role",
        "ck_memberships_role",
    } <= checks


def test_migrating_twice_changes_nothing(scratch_databases):
    migrated, _ = scratch_databases
    with migrated.connection_context():
        router(migrated).run()
        before = catalog(migrated)
        assert router(migrated).run() == []
    assert catalog(migrated) == before


def test_rollback_removes_every_table(scratch_databases):
    migrated, _ = scratch_databases
    with migrated.connection_context():
        router(migrated).run()
        while router(migrated).done:  # newest first, each migration's own rollback
            router(migrated).rollback()
        assert router(migrated).done == []
    assert catalog(migrated) == {"columns": [], "indexes": [], "constraints": []}
    with migrated.connection_context():
        assert router(migrated).run() == MIGRATIONS


def _compression(database) -> dict[tuple[str, str], str]:
    with database.connection_context():
        rows = database.execute_sql(
            "SELECT a.attrelid::regclass::text, a.attname, a.attcompression FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
        ).fetchall()
    return {(table, column): method for table, column, method in rows}


def _lz4_columns() -> dict[str, tuple[str, ...]]:
    """Migration 009's own list of columns (its file name is not an importable module name)."""
    spec = importlib.util.spec_from_file_location("migration_009", MIGRATIONS_DIR / "009_lz4_payloads.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.COLUMNS


def test_the_large_columns_store_new_values_with_lz4_and_roll_back_to_the_default(scratch_databases):
    migrated, _ = scratch_databases
    with migrated.connection_context():
        try:
            with migrated.atomic():
                migrated.execute_sql("CREATE TEMP TABLE lz4_probe (x text COMPRESSION lz4)")
        except pw.NotSupportedError:
            pytest.skip("this PostgreSQL was built without LZ4 (the migration leaves pglz, with a notice)")
        router(migrated).run()
    methods = _compression(migrated)
    large = {(table, column) for table, columns in _lz4_columns().items() for column in columns}
    # Every listed column, not just some: one that cannot be compressed would skip its whole table.
    assert len(large) == 12 and {methods[column] for column in large} == {"l"}
    assert methods[("session_events", "type")] == ""  # small columns keep the server's default
    with migrated.connection_context():
        # A value over the threshold is compressed with its column's method as it is stored.
        stored = migrated.execute_sql(
            "CREATE TEMP TABLE probe (LIKE session_events INCLUDING COMPRESSION); "
            "INSERT INTO probe (id, session_id, seq, type, payload, created_at) "
            "VALUES (1, 1, 1, 'session_started', jsonb_build_object('text', repeat('decision ', 2000)), now()); "
            "SELECT pg_column_compression(payload) FROM probe"
        ).fetchone()[0]
        assert stored == "lz4"
        while "009_lz4_payloads" in router(migrated).done:  # newest first, down to 009's own rollback
            router(migrated).rollback()
    assert {_compression(migrated)[column] for column in large} == {""}

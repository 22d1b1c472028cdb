"""The large JSON and text columns are compressed with LZ4 instead of pglz (issue 13).

Reviewed by hand. A value over about 2 kB is compressed as it is stored, and most events,
snapshots and task outputs are over it (an `agent_task_completed` event of a model brain is
about 14 kB of JSON). PostgreSQL's default, pglz, cost 0.28 ms of server CPU per such event
INSERT on the development machine; LZ4 cost 0.13 ms, and decompresses several times faster for
the read views, for values about 14% larger. Only the column option changes: no table is
rewritten, values already stored stay as they are (PostgreSQL reads both), and new values use
LZ4. A server built without LZ4 keeps pglz (the statement is skipped with a notice). Peewee's
models cannot declare a column's compression, so the schema they create keeps pglz; the catalog
the migration tests compare does not include it.
"""

from __future__ import annotations

import peewee as pw
from peewee_migrate import Migrator

#: The columns whose values are often over the compression threshold.
COLUMNS = {
    "session_events": ("payload",),
    "agent_snapshots": ("context_state", "capabilities", "decisions", "execution_metadata"),
    "agent_tasks": ("input_data", "output_data", "usage"),
    "execution_sessions": ("description", "usage"),
    "search_documents": ("body", "tsv"),
}


def _set(migrator: Migrator, method: str) -> None:
    for table, columns in COLUMNS.items():
        changes = ", ".join(f'ALTER COLUMN "{column}" SET COMPRESSION {method}' for column in columns)
        migrator.sql(
            f"""
            DO $$ BEGIN
                ALTER TABLE "{table}" {changes};
            EXCEPTION WHEN feature_not_supported THEN
                RAISE NOTICE 'compression {method} is not supported by this server: "{table}" keeps its own';
            END $$
            """
        )


def migrate(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """LZ4 for the large columns' new values."""
    _set(migrator, "lz4")


def rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """The server's default compression again (values stored meanwhile stay LZ4, and readable)."""
    _set(migrator, "default")

"""Planner statistics for tables that grow faster than autovacuum looks at them.

PostgreSQL plans a prepared statement (the lifecycle's `PREPARE sage_...`) and each query of a
PL/pgSQL trigger (the search index's) from the tables' statistics, and a connection keeps that
plan until the statistics change. A new install's tables start empty, and autovacuum analyzes at
most once a minute (`autovacuum_naptime`), so a burst of sessions in a database's first minute
runs on plans made for empty tables. Seen in `bench/llm_scale.py` (1,000 sessions on a new
database) with `auto_explain`: the search trigger of every decision INSERT scanned all of
`agent_tasks` (a hash join planned at 70 rows, run at 7,000), and the agent's context read
`agent_tasks` through its role index, a seventh of the table, rather than the (session, role)
key. PostgreSQL spent 34-38 ms of CPU per session; with this module, 21-23 ms.

`analyze_grown()` ANALYZEs each table of the schema whose live rows have at least doubled since
its statistics were taken (and number at least `MIN_ROWS`). A table growing from nothing is
analyzed at about 100, 200, 400... rows: log2 times in all, each cheap while the table is
small, and ANALYZE replans the statements that read it in every connection. A table that is
large already grows by its own size rarely, so from then on autovacuum's own rule (10 % changed)
comes first. Workers run it every few seconds, once across the fleet (`actors.sweeper`).
"""

from __future__ import annotations

import logging

import peewee

from models.db import db, driver_error

logger = logging.getLogger(__name__)

MIN_ROWS = 100
# ANALYZE waits for autovacuum's (or another ANALYZE's) lock on the table: give up on that table
# for this round instead, so the thread that also recovers lost messages is never held up.
LOCK_TIMEOUT_MS = 200
LOCK_NOT_AVAILABLE = "55P03"

# `reltuples` is -1 for a table never analyzed (PostgreSQL 14+) and 0 for one analyzed empty.
GROWN_SQL = """
    SELECT format('%%I.%%I', s.schemaname, s.relname)
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = current_schema() AND pg_has_role(c.relowner, 'USAGE')
      AND s.n_live_tup >= greatest(%s, 2 * c.reltuples)
    ORDER BY s.relname
"""


def grown_tables(min_rows: int = MIN_ROWS) -> list[str]:
    """The quoted names of the tables whose statistics are out of date by this rule."""
    return [row[0] for row in db.execute_sql(GROWN_SQL, (min_rows,)).fetchall()]


def analyze_grown(min_rows: int = MIN_ROWS) -> list[str]:
    """ANALYZE each grown table this role owns, one transaction each; return those analyzed
    (call inside a connection, outside a transaction). A table whose lock is not had within
    `LOCK_TIMEOUT_MS` is left for the next round."""
    analyzed = []
    for table in grown_tables(min_rows):
        try:
            with db.atomic():
                db.execute_sql(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                db.execute_sql(f"ANALYZE {table}")
        except peewee.OperationalError as exc:
            if getattr(driver_error(exc), "pgcode", None) != LOCK_NOT_AVAILABLE:
                raise
            logger.debug("not analyzed now, its lock is taken: %s", table)
            continue
        analyzed.append(table)
    if analyzed:
        logger.debug("analyzed %s", ", ".join(analyzed))
    return analyzed

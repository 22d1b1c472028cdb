"""Planner statistics refreshed for tables that grow faster than autovacuum looks (issue 13)."""

from __future__ import annotations

import time

import psycopg2
import pytest

from actors.sweeper import STATISTICS_LOCK_KEY, SweeperMiddleware
from models import statistics
from models.db import db

TABLE = "public.search_words"  # small, no foreign keys, and grown by every decision's trigger


@pytest.fixture(autouse=True)
def no_autovacuum():
    """Autovacuum's own ANALYZE of the table would move the figures these tests read."""
    db.execute_sql("ALTER TABLE search_words SET (autovacuum_enabled = false)")
    yield
    db.execute_sql("ALTER TABLE search_words RESET (autovacuum_enabled)")


def add_words(start: int, count: int) -> None:
    db.execute_sql(
        "INSERT INTO search_words (word) SELECT 'w' || n FROM generate_series(%s, %s) AS n",
        (start, start + count - 1),
    )


def live_rows_seen(count: int, wait) -> None:
    """Wait for the statistics collector to count `count` live rows (backends report within a second)."""
    if db.server_version >= 150000:
        db.execute_sql("SELECT pg_stat_force_next_flush()")  # else the report comes within a second or so
    wait(
        lambda: (
            db.execute_sql("SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'search_words'").fetchone()[0]
            >= count
        ),
        timeout=10,
    )


def analyzed_rows() -> float:
    return db.execute_sql("SELECT reltuples FROM pg_class WHERE oid = 'search_words'::regclass").fetchone()[0]


def test_a_table_is_analyzed_each_time_it_doubles(wait):
    add_words(0, statistics.MIN_ROWS - 1)
    live_rows_seen(statistics.MIN_ROWS - 1, wait)
    assert TABLE not in statistics.grown_tables()  # too small to matter

    add_words(statistics.MIN_ROWS, 201)
    live_rows_seen(300, wait)
    assert TABLE in statistics.analyze_grown()
    assert analyzed_rows() == 300
    assert TABLE not in statistics.grown_tables()  # analyzed: 300 rows are not twice 300

    add_words(1000, 250)
    live_rows_seen(550, wait)
    assert TABLE not in statistics.analyze_grown()
    assert analyzed_rows() == 300

    add_words(2000, 100)
    live_rows_seen(650, wait)
    assert TABLE in statistics.analyze_grown()
    assert analyzed_rows() == 650


def test_a_table_another_analyze_holds_is_left_for_the_next_round(settings, wait):
    add_words(0, 300)
    live_rows_seen(300, wait)
    other = psycopg2.connect(settings.database_url)
    try:
        other.cursor().execute("LOCK TABLE search_words IN SHARE UPDATE EXCLUSIVE MODE")  # as ANALYZE takes it
        started = time.monotonic()
        assert TABLE not in statistics.analyze_grown()
        assert time.monotonic() - started < 5
        assert not db.in_transaction()
    finally:
        other.close()
    assert TABLE in statistics.analyze_grown()
    assert analyzed_rows() == 300


def test_workers_refresh_statistics_once_per_interval_across_the_fleet(settings, redis_client, wait):
    sweeper = SweeperMiddleware(settings, recovery_interval=30)
    add_words(0, 300)
    live_rows_seen(300, wait)
    sweeper._refresh_statistics()
    assert analyzed_rows() == 300
    assert redis_client.pttl(STATISTICS_LOCK_KEY) > 20_000

    add_words(1000, 400)
    live_rows_seen(700, wait)
    SweeperMiddleware(settings, recovery_interval=30)._refresh_statistics()  # another worker, same interval
    assert analyzed_rows() == 300
    redis_client.delete(STATISTICS_LOCK_KEY)  # the interval has passed
    SweeperMiddleware(settings, recovery_interval=30)._refresh_statistics()
    assert analyzed_rows() == 700

"""Create the database if it is missing and apply the hand-written migrations."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import peewee
import psycopg2
from peewee_migrate import Router
from psycopg2 import sql

from models.db import db, make_database
from models.settings import ROOT

MIGRATIONS_DIR = ROOT / "migrations"


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named by `url` if it does not exist; True if created."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres"}:
        return False
    name = unquote(parts.path.lstrip("/"))
    conn = psycopg2.connect(
        dbname="postgres",
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        connect_timeout=5,
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg2.errors.DuplicateDatabase:
                return False  # created by a concurrent caller
            return True
    finally:
        conn.close()


def router(database: peewee.Database | None = None) -> Router:
    """The peewee-migrate router over `migrations/`."""
    return Router(database or db.obj, migrate_dir=str(MIGRATIONS_DIR), ignore=["basemodel"])


def migrate(url: str) -> list[str]:
    """Create the database if needed and apply pending migrations; return the names applied."""
    ensure_database(url)
    database = make_database(url, max_connections=2)
    try:
        with database.connection_context():
            return router(database).run()
    finally:
        close = getattr(database, "close_all", None) or database.close
        close()

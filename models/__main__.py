"""`python -m models migrate|rollback`: manage the schema of the database in DATABASE_URL."""

from __future__ import annotations

import argparse
import sys

import peewee
import psycopg2

from models.db import make_database
from models.migrate import migrate, router
from models.settings import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if missing and apply pending migrations")
    sub.add_parser("rollback", help="roll back the latest migration")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "migrate":
            applied = migrate(settings.database_url)
            print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
        else:
            database = make_database(settings.database_url, 2)
            with database.connection_context():
                router(database).rollback()
            print("rolled back the latest migration")
    except ConfigError as exc:
        print(f"sage-mode: configuration error: {exc}", file=sys.stderr)
        return 2
    except (peewee.OperationalError, psycopg2.OperationalError) as exc:
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        print(f"sage-mode: cannot reach the database: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

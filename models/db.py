"""Database setup: one `DatabaseProxy` bound at start-up to a pooled database chosen by URL.

Peewee keeps connections per thread, so nothing here may run on an asyncio event loop thread:
web code calls `unit_of_work` through `quart.run_sync` (see `app.db`), workers get a connection
per message from `actors.middleware.DatabaseMiddleware`.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import peewee
import psycopg2
import psycopg2.extensions
import psycopg2.extras
from playhouse.pool import PooledPostgresqlDatabase

from models.settings import check_database_url

db = peewee.DatabaseProxy()
logger = logging.getLogger(__name__)


P = ParamSpec("P")
R = TypeVar("R")


class DatabaseUnavailable(Exception):
    """The database could not be reached; the message is one readable line."""


_commits = threading.local()


class _TracksCommits(peewee.Database):
    """Counts each thread's COMMITs and remembers the one that failed, so that a retry knows
    whether a unit of work whose connection was lost may have written anything.

    A transaction begun with `read_only=True` (`db.atomic(read_only=True)`, `unit_of_work(func, read_only=True)`)
    cannot have written anything, so its COMMIT asks the database nothing first.
    """

    def _transaction_id(self) -> int | None:
        return None

    def _begin_read_only(self) -> None:
        super().begin()

    def begin(self, *args, read_only: bool = False, **kwargs):
        # Set before BEGIN runs, so a BEGIN that fails leaves no stale flag behind either.
        _commits.read_only = read_only
        if read_only:
            return self._begin_read_only()
        return self._begin_read_write(*args, **kwargs)

    def _begin_read_write(self, *args, **kwargs):
        return super().begin(*args, **kwargs)

    def known_transaction_id(self, xid: int | None) -> None:
        """The current transaction's id, as one of its own statements returned it (`txid_current()`
        beside a write): its COMMIT then does not ask for it again (one round trip fewer)."""
        _commits.xid = (xid,)

    def commit(self):
        # A read-only transaction wrote nothing, and an idempotent unit (see `reconnecting`) never
        # asks whether a lost commit was rolled back: neither needs the round trip that reads the
        # transaction id. Any other asks for its id (unless a statement of its own already
        # returned it), and that read fails (and counts nothing) if the connection is gone.
        known = getattr(_commits, "xid", None)
        _commits.xid = None
        skip = getattr(_commits, "read_only", False) or getattr(_commits, "idempotent", False)
        xid = None if skip else known[0] if known is not None else self._transaction_id()
        _commits.read_only = False
        _commits.count = getattr(_commits, "count", 0) + 1
        _commits.failed = None
        try:
            return super().commit()
        except Exception:
            _commits.failed = (xid,)
            raise

    def rollback(self):
        _commits.read_only = False
        _commits.xid = None
        return super().rollback()


_deferred = threading.local()
#: The names each connection has PREPAREd (`PostgresDatabase.execute_prepared`); a new connection
#: (a reconnect, a replaced pool member) starts with none.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PREPARED_SQL = "SELECT 1 FROM pg_prepared_statements WHERE name = %s"


class PostgresDatabase(_TracksCommits, PooledPostgresqlDatabase):
    """The pooled PostgreSQL database.

    A connection is checked out of the pool without a round trip (peewee's pool would send
    `SELECT 1` every time: one more round trip for every web request and every task). One that
    the server dropped while it sat in the pool fails at its unit's first statement, before
    anything can have been written, and `reconnecting` runs the unit again on a new connection
    after dropping the pool's other idle ones (a server that dropped one usually dropped all).

    A transaction's BEGIN is not a round trip of its own: it goes out in front of the
    transaction's first statement (`BEGIN; <statement>`, one message to the server), and a
    transaction that ran no statement sends neither BEGIN nor COMMIT. Every statement goes
    through `execute_sql` (Peewee's queries, savepoints and `SELECT txid_...` alike).
    """

    def _is_closed(self, conn) -> bool:
        if conn.closed:
            return True
        status = conn.get_transaction_status()
        if status == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN:
            return True
        if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            try:
                conn.rollback()
            except psycopg2.Error:
                return True
        return False

    def _begin_read_write(self, isolation_level=None):
        if isolation_level is None and not self._isolation_level and not self.is_closed():
            _deferred.conn, _deferred.sql = self._state.conn, "BEGIN; "
            return
        super()._begin_read_write(isolation_level)

    def _take_begin(self) -> str | None:
        """This connection's BEGIN if it is still to be sent (once: it is forgotten)."""
        conn = getattr(_deferred, "conn", None)
        if conn is None:
            return None
        _deferred.conn = None
        return _deferred.sql if conn is self._state.conn else None

    def execute_sql(self, sql, params=None):
        begin = self._take_begin()
        if begin:
            sql = begin + sql
        return super().execute_sql(sql, params)

    def commit(self):
        if self._take_begin():
            return None  # nothing ran: there is no transaction on the server to commit
        return super().commit()

    def rollback(self):
        if self._take_begin():
            return None
        return super().rollback()

    def _transaction_id(self) -> int | None:
        # NULL for a transaction that has written nothing; it assigns no id of its own.
        return self.execute_sql("SELECT txid_current_if_assigned()").fetchone()[0]

    def _begin_read_only(self) -> None:
        # PostgreSQL refuses any write in it (so skipping the txid read is safe), and REPEATABLE
        # READ gives every query of the unit one snapshot: a view's rows agree with each other.
        # As peewee's own begin(): its wrapper turns driver errors into peewee's (typeshed omits it).
        # Deferred like any BEGIN: it goes out in front of the unit's first statement.
        if self.is_closed():
            with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
                self.cursor().execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return
        _deferred.conn, _deferred.sql = self._state.conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "

    def execute_prepared(self, sql: str, params: tuple | list = ()):
        """Run `sql` (with `%s` placeholders, and no other `%`) as a server-side prepared statement
        of this connection: PREPAREd the first time the connection meets it, then EXECUTEd. For a
        hot statement whose planning costs more than its running (issue 13: a cached read's access
        and version query, 0.54 ms planned each time against 0.17 ms prepared): PostgreSQL plans
        it a few times, then keeps a generic plan.

        Returns the cursor, as `execute_sql`.
        """
        conn = self.connection()
        name = "sage_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
        placeholders = ", ".join(["%s"] * sql.count("%s"))
        execute = f"EXECUTE {name}({placeholders})" if placeholders else f"EXECUTE {name}"
        prepared = _prepared.setdefault(conn, set())
        if name not in prepared:
            # Asked first, not tried: a PREPARE refused as a duplicate (this record lost, the
            # connection's statement kept) would abort the transaction around it.
            if self.execute_sql(_PREPARED_SQL, (name,)).fetchone() is None:
                pieces = sql.split("%s")
                numbered = pieces[0] + "".join(f"${i}{piece}" for i, piece in enumerate(pieces[1:], 1))
                self.execute_sql(f"PREPARE {name} AS {numbered}")
            prepared.add(name)
        return self.execute_sql(execute, params)

    def transaction_status(self, xid: int) -> str:
        """'committed', 'aborted' or 'in progress' (PostgreSQL's `txid_status`)."""
        return self.execute_sql("SELECT txid_status(%s)", (xid,)).fetchone()[0]


@functools.lru_cache(maxsize=64)
def _row_type(model: Any, names: tuple[str, ...]) -> tuple[Any, tuple]:
    converters = []
    for name in names:
        field = model._meta.combined.get(name)  # by column name (`team_id`) or field name
        converters.append(None if field is None else field.python_value)
    return collections.namedtuple("Row", names), tuple(converters)


def execute_prepared(sql: str, params: Any = ()) -> Any:
    """`sql` (with `%s` placeholders: PostgreSQL's SQL) as a prepared statement where the database
    has them (`PostgresDatabase.execute_prepared`), else as a plain statement: for hot statements
    whose planning costs about what running them does. Returns the cursor."""
    prepared = getattr(db.obj, "execute_prepared", None)
    return prepared(sql, params) if prepared is not None else db.execute_sql(sql, params)


def rows_of(cursor: Any, model: Any) -> list[Any]:
    """The cursor's rows as named tuples, attributes named by the cursor's columns, each value
    converted by `model`'s field of that column as Peewee converts it (`python_value`), without a
    model instance per row (issue 13: a page of 51 sessions spent 24% of a read building them)."""
    row_type, converters = _row_type(model, tuple(column[0] for column in cursor.description))
    make = row_type._make
    return [make([v if c is None else c(v) for c, v in zip(converters, row, strict=True)]) for row in cursor]


class SqliteDatabase(_TracksCommits, peewee.SqliteDatabase):
    """SQLite for the single-process mode."""


def _commit_count() -> int:
    return getattr(_commits, "count", 0)


def _lost_commit_rolled_back(commits_before: int) -> bool:
    """After a connection error: did every COMMIT since `commits_before` fail without writing?

    True when there was none, or the only one failed and its transaction wrote nothing or is
    known (from a new connection) to have been rolled back. Then running the unit again cannot
    apply a write twice.
    """
    made = _commit_count() - commits_before
    if made == 0:
        return True
    failed = getattr(_commits, "failed", None)
    if made > 1 or failed is None:
        return False  # an earlier commit of this unit succeeded
    (xid,) = failed
    if xid is None:
        return True
    try:
        with db.connection_context():
            # A terminated backend marks its transaction aborted as it exits, which can be a
            # moment after its client saw the connection drop: ask again while "in progress".
            for _ in range(20):
                status = db.obj.transaction_status(xid)
                if status != "in progress":
                    return status == "aborted"
                time.sleep(0.05)
    except peewee.DatabaseError:
        pass
    return False


def make_database(url: str, max_connections: int = 20) -> peewee.Database:
    """Build (without connecting) the database that `url` names."""
    check_database_url(url)
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        return SqliteDatabase(path or ":memory:", pragmas={"foreign_keys": 1, "journal_mode": "wal"})
    return PostgresDatabase(
        unquote(parts.path.lstrip("/")),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        max_connections=max_connections,
        stale_timeout=300,
        timeout=10,
        connect_timeout=5,
        # Every connection speaks UTC, so naive timestamps in the database are UTC.
        options="-c timezone=UTC",
    )


def init_database(url: str, max_connections: int = 20) -> peewee.Database:
    """Point the shared proxy at the database named by `url` and return it."""
    if db.obj is not None:
        close_database()
    database = make_database(url, max_connections)
    db.initialize(database)
    return database


def close_database() -> None:
    """Close every pooled connection (used at shutdown and between test sessions)."""
    database = db.obj
    if database is None:
        return
    if hasattr(database, "close_all"):
        database.close_all()
    elif not database.is_closed():
        database.close()


def check_database(database: peewee.Database | peewee.DatabaseProxy | None = None) -> None:
    """Run `SELECT 1` on `database` (default: the bound one); raise DatabaseUnavailable with a
    one-line reason if it fails."""
    database = database or db
    try:
        with database.connection_context():
            database.execute_sql("SELECT 1")
    except peewee.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DatabaseUnavailable(first) from None


def driver_error(exc: BaseException) -> BaseException | None:
    """The psycopg2 error behind a Peewee one (Peewee keeps it as `orig`)."""
    return getattr(exc, "orig", None) or exc.__cause__


def is_connection_error(exc: BaseException) -> bool:
    """Did `exc` come from losing (or not getting) the database connection, rather than from
    the statement itself?"""
    if not isinstance(exc, peewee.OperationalError | peewee.InterfaceError):
        return False
    cause = driver_error(exc)
    if isinstance(cause, psycopg2.InterfaceError):
        return True  # "connection already closed"
    if not isinstance(cause, psycopg2.OperationalError):
        return False
    # No SQLSTATE: the client lost the server ("server closed the connection unexpectedly",
    # "could not connect"); class 08 is connection exceptions, 57P0x the server's shutdowns
    # (57P01 is what pg_terminate_backend sends).
    code = cause.pgcode
    return code is None or code.startswith("08") or code.startswith("57P")


def _replace_connection() -> None:
    """Drop this thread's broken connection and open a new one, keeping the caller's open
    `connection_context()`s (peewee forgets them when a connection is closed)."""
    database = db.obj
    state = database._state
    contexts = list(state.ctx)
    conn = state.conn
    state.reset()
    if conn is not None:
        if hasattr(database, "_in_use"):  # the pool: forget it rather than take it back
            with database._pool_lock:
                database._in_use.pop(database.conn_key(conn), None)
        conn.close()  # a no-op on a connection the driver already knows is closed
    database.connect()
    state.ctx = contexts


def reconnecting(func: Callable[P, R] | None = None, *, idempotent: bool = False):
    """Run `func`; when the database connection is lost, reconnect and run it once more.

    The retry happens when nothing of `func`'s can have committed: the connection failed before
    any COMMIT of this call (PostgreSQL rolls back a transaction whose connection dies), or at
    its one COMMIT whose transaction had written nothing or is reported rolled back on a new
    connection (`txid_status`), or `func` is `idempotent` (safe to run again even after a commit
    whose answer was lost). When the retry fails too, or a commit's outcome is unknown, raise
    DatabaseUnavailable (the web answers 503). Inside an outer transaction it only calls `func`:
    the outer unit retries.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if db.obj is None or db.in_transaction():
                return func(*args, **kwargs)
            # Commits skip the transaction id only while every enclosing unit is idempotent.
            outer = getattr(_commits, "idempotent", None)
            _commits.idempotent = idempotent if outer is None else (outer and idempotent)
            try:
                return attempt(*args, **kwargs)
            finally:
                _commits.idempotent = outer

        def attempt(*args: P.args, **kwargs: P.kwargs) -> R:
            commits = _commit_count()
            try:
                return func(*args, **kwargs)
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                if not is_connection_error(exc):
                    raise
                logger.warning("database connection lost in %s (%s); retrying once", func.__name__, exc)
                try:
                    if hasattr(db.obj, "close_idle"):
                        db.obj.close_idle()  # pooled without a check (`PostgresDatabase`): likely dropped too
                    if not db.is_closed():
                        _replace_connection()
                    if not idempotent and not _lost_commit_rolled_back(commits):
                        raise DatabaseUnavailable("the database connection was lost while committing") from exc
                except peewee.OperationalError as again:
                    raise DatabaseUnavailable("the database is unreachable") from again
            try:
                return func(*args, **kwargs)
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                if is_connection_error(exc):
                    raise DatabaseUnavailable("the database connection was lost twice") from exc
                raise

        return wrapper

    return decorate(func) if func is not None else decorate


def unit_of_work(func: Callable[P, R], *, read_only: bool = False) -> Callable[P, R]:
    """Run `func` in one connection and one transaction; for plain (thread) code only.

    A connection lost before the commit runs it once more in a new transaction (`reconnecting`).
    With `read_only`, the transaction is PostgreSQL's `REPEATABLE READ READ ONLY`: one snapshot
    for all of `func`'s queries, any write refused, and no transaction-id read before its COMMIT.
    """

    @reconnecting
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with db.connection_context():
            with db.atomic(read_only=read_only):
                return func(*args, **kwargs)

    return wrapper

"""Database engine: any SQLAlchemy URL, SQLite tuned for one writer beside many readers, migrations at open.

SQLite gets, on every connection: WAL journal (the app reads while ingest writes), a busy timeout,
foreign keys on, and explicit `BEGIN` handling so that transactions really are transactions in
pysqlite. Sessions made by `write_session` start with `BEGIN IMMEDIATE` (take the write lock first,
then read), so read-then-write steps such as claiming a video never fail with a busy snapshot;
plain sessions stay `DEFERRED` and never block the writer. Other databases (PostgreSQL) get none of
this: their default isolation does the same job through the same ORM code.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 60.0


class StoreError(RuntimeError):
    """An environment or data problem with the store; the message says what to do."""


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine for `url`; fails with a clear message on a malformed URL or a missing driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise StoreError(f"bad database URL {url!r}: {err}. Example: sqlite:///voco.db or "
                         "postgresql://user@host/dbname") from err
    if parsed.drivername == "postgresql":  # no driver named: psycopg 3, the one the `postgres` extra installs
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database not in (None, "", ":memory:"):
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})
            _tune_sqlite(engine)
            return engine
        return create_engine(parsed, pool_pre_ping=True)
    except (ImportError, ArgumentError) as err:
        raise StoreError(f"cannot use database URL {url!r}: {err}. Install its driver (for PostgreSQL: "
                         "pip install -e '.[postgres]') or check the URL.") from err


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


SessionFactory = Callable[[], AbstractContextManager[Session]]
"""What reader/writer functions take: `with factory() as session: ...`."""


class LockedSessions:
    """A session factory whose sessions also hold a process-wide lock (SQLite writers).

    Threads of one process then take turns on a Python lock, handed over at once, instead of
    polling SQLite's busy handler (which sleeps up to 100 ms a try); other processes still wait
    on the database lock with the busy timeout.
    """

    def __init__(self, maker: sessionmaker[Session]):
        self.maker = maker
        self.lock = threading.RLock()

    @contextmanager
    def __call__(self) -> Iterator[Session]:
        with self.lock, self.maker() as session:
            yield session


def session_factories(engine: Engine) -> tuple[SessionFactory, SessionFactory]:
    """(read sessions, write sessions); on SQLite write sessions begin IMMEDIATE, one thread at a time."""
    read = sessionmaker(engine, expire_on_commit=False)
    if not is_sqlite(engine):
        return read, sessionmaker(engine, expire_on_commit=False)
    return read, LockedSessions(sessionmaker(engine.execution_options(sqlite_begin="IMMEDIATE"),
                                             expire_on_commit=False))


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to the newest Alembic revision, or to `revision` (idempotent; safe with concurrent
    openers)."""
    _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision` (development, and tests of stores made by older code)."""
    _migrate(engine, "downgrade", revision)


def _migrate(engine: Engine, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if not is_sqlite(engine):
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return _migrate_sqlite(engine, config, action, revision)
        except OperationalError as err:
            # SQLite answers "database is locked" at once, without its busy wait, where waiting could deadlock:
            # e.g. two processes opening a new database, one switching it to WAL while the other holds a write
            # lock. Nothing was changed (the migration is one transaction), so wait a little and try again.
            if getattr(err.orig, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _migrate_sqlite(engine: Engine, config, action: str, revision: str) -> None:
    from alembic import command

    with engine.connect() as connection:
        # SQLite changes a constraint by rebuilding the table (copy, DROP, rename). With foreign keys on,
        # DROP TABLE deletes every row first and cascades: a rebuilt `videos` would take every segment
        # with it. The pragma only works outside a transaction, hence the raw connection; the check
        # before commit proves the rebuild kept every reference.
        raw = connection.connection.dbapi_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.execution_options(sqlite_begin="IMMEDIATE").begin():
                config.attributes["connection"] = connection
                getattr(command, action)(config, revision)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StoreError(f"the schema {action} to {revision} would break references {broken[:5]}; "
                                     "nothing was changed")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")

"""Database setup: the engine, SQLite's durability settings, and the schema (storage.migrate).

This is the one dialect-specific place. SQLite runs in WAL mode with
`synchronous=FULL` (a committed row survives power loss, which is what lets
SMTP answer 250 after a commit) and foreign keys on. Write transactions begin
with `BEGIN IMMEDIATE` so that two writers queue on the busy timeout instead of
one failing at once when it upgrades a read lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage import migrate
from storage.migrate import SchemaTooNew
from storage.models import Meta
from storage.writelock import TurnTaking

__all__ = ["Database", "SchemaTooNew", "open_database"]

# How long a writer waits for another to finish before giving up. Long enough
# for a group commit of many messages, short enough to surface a stuck lock.
SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "rootnotify_read_only"
# SQLite's page cache for a connection doing bulk inserts (certificate lists).
# A list's rows reach the unique indexes in key order (storage.certstage), so
# each chunk works on a few neighbouring pages of each index and the cache
# only has to hold those and the upper levels of the trees; the 64 MiB it
# had when rows arrived in random order is 48 MiB of peak memory for nothing.
# Only that one connection has it, and only while the bulk work lasts.
BULK_CACHE_KIB = 16 * 1024
# The page cache of the connection's temporary tables while bulk work lasts: a
# list's stage (storage.certstage) is written once and indexed once, and its
# index is sorted in memory of about this size. The stage keeps no rollback
# journal either (temp.journal_mode=OFF): a stage is never rolled back, only
# dropped, and its journal writes were a third of the staging time.
BULK_TEMP_CACHE_KIB = 16 * 1024
DEFAULT_CACHE_KIB = 2_000  # SQLite's own default (PRAGMA cache_size = -2000)
# The bulk connection checkpoints (copies the WAL into the database) itself,
# every BULK_CHECKPOINT_COMMITS commits, between transactions: not from inside
# a commit as SQLite's automatic checkpoint does, which made the chunk's
# commit, and so the write lock, wait for it. A list's chunk dirties thousands
# of pages of the unique indexes (its keys are random) and the next chunk
# dirties most of them again, so the fewer checkpoints, the fewer times each
# page is copied and synced. Storing a 1,000,000-row list in chunks of 5,000
# rows (~7,500 dirty pages each) took 36-38 s with an automatic checkpoint
# every 16,384 pages, 36 s checkpointing every 2 or 4 commits, 30-32 s every
# 8 (the WAL peaked at 233 MiB) and 29.5 s every 16 (461 MiB); in chunks of
# 10,000 rows (certificates.CHUNK_ROWS), 28.7 s every 4 commits (203 MiB) and
# 30.0 s every 6 (301 MiB). A checkpoint on its own thread, overlapping the
# parsing, was slower (37 s against 33 s: the two cores are shared).
BULK_CHECKPOINT_COMMITS = 4
DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 1_000  # SQLite's own default
# The bulk connection's chunk commits do not fsync the WAL (NORMAL, in WAL
# mode): each fsync cost ~50 ms on these disks, 200 of them a third of a
# 1,000,000-row list's time. Nothing durable is lost by it: a chunk carries
# its own progress row (CertificateListLoad), a power cut keeps a prefix of
# the commits (SQLite drops the WAL's torn tail), so rows and progress agree
# and a retry redoes the rest; and the message is marked done only by the act
# transaction on a FULL connection, whose fsync of the same WAL makes every
# chunk before it durable too. Checkpoints still sync the database file.
BULK_SYNCHRONOUS = "NORMAL"
DEFAULT_SYNCHRONOUS = "FULL"  # as _tune_sqlite sets on every connection

class FairLock:
    """A re-entrant lock granted in arrival order.

    threading.RLock lets the thread that just released it take it again at
    once, so a pipeline committing batch after batch starved the outbox
    sender: every acknowledgement left only after the whole backlog.
    """

    def __init__(self, processes: TurnTaking | None = None) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._owner: int | None = None
        self._depth = 0
        # Writers in other processes (storage.writelock): taken by the thread
        # that holds this lock, once, around its outermost transaction.
        self._processes = processes

    def __enter__(self) -> FairLock:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return self
            self._waiting.append(me)
            while self._owner is not None or self._waiting[0] != me:
                self._cond.wait()
            self._waiting.popleft()
            self._owner, self._depth = me, 1
        if self._processes is not None:
            try:
                self._processes.acquire()
            except BaseException:
                self._give_up()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._depth == 1 and self._processes is not None:
            self._processes.release()
        self._give_up()

    def _give_up(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory ones."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database_file = sqlite_file(url)
        if database_file is not None:
            database_file.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        _tune_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _tune_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # pysqlite's own transaction handling would BEGIN DEFERRED; take it over.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_schema(engine: Engine, read_engine: Engine | None = None) -> None:
    """Bring the schema to this rootnotify's revision (storage.migrate); refuse a newer one.

    `meta.schema_version` follows the revision's number for the rootnotify
    releases from before migrations, which refuse a database whose number is
    above theirs instead of running on a schema they do not know.
    """
    migrate.upgrade(engine, read_engine)
    version = str(int(migrate.head()))
    with Session(read_engine or engine) as session:
        row = session.get(Meta, "schema_version")
        if row is not None and row.value == version:
            return
    with engine.begin() as connection:
        # One statement, not get-then-add: processes starting together on a
        # new database all come here, and an INSERT racing another's fails.
        table = Meta.__table__  # type: ignore[attr-defined]
        connection.execute(insert_on_conflict(connection.dialect.name, table)
                           .values(key="schema_version", value=version)
                           .on_conflict_do_update(index_elements=[table.c.key],
                                                  set_={"value": version}))


def insert_on_conflict(dialect_name: str, table: sa.Table) -> Any:
    """An INSERT that takes ON CONFLICT clauses: SQLite's and PostgreSQL's have one form."""
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"no INSERT ... ON CONFLICT for the {dialect_name} dialect")


class Database:
    """The engine plus the two kinds of session rootnotify uses."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})
        database_file = sqlite_file(url)
        self._turns: TurnTaking | None = None
        if database_file is not None:
            try:
                self._turns = TurnTaking(database_file)
            except OSError:  # e.g. `status` reading a database it may not write
                self._turns = None
        self._writers = FairLock(self._turns)

    def create(self) -> Database:
        # Processes starting together on a new SQLite file take turns here: the
        # file is in rollback-journal mode until the first one's first commit
        # makes it WAL, and in that mode SQLite answers a reader that wants to
        # write "database is locked" at once, without its busy handler.
        with self._writers:
            create_schema(self.engine, self._read_engine)
        return self

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any error.

        Writers of one process queue on a lock here first: SQLite's own busy
        handler polls with sleeps of up to 100 ms, so two threads of the
        worker (pipeline and outbox) waiting on it lost far more time than
        the transactions took. Other processes still meet at SQLite's lock.
        """
        with self._writers, Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def bulk(self) -> Iterator[BulkWriter]:
        """One connection held for a run of short write transactions (a big list's chunks)."""
        with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # On the driver's connection: SQLAlchemy would open a transaction
                # first, inside which SQLite refuses to change the safety level.
                _driver(connection).execute(f"PRAGMA synchronous={BULK_SYNCHRONOUS}")
                connection.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
                connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                connection.exec_driver_sql(f"PRAGMA temp.cache_size=-{BULK_TEMP_CACHE_KIB}")
                connection.exec_driver_sql("PRAGMA temp.journal_mode=OFF")
                connection.commit()
            writer = BulkWriter(connection, self._writers,
                                BULK_CHECKPOINT_COMMITS if sqlite else 0)
            try:
                yield writer
            finally:
                if sqlite:
                    # Leave the WAL copied in: else the next commit of any
                    # connection (an SMTP arrival's) would pay for it.
                    writer.checkpoint()
                    connection.exec_driver_sql(f"PRAGMA cache_size=-{DEFAULT_CACHE_KIB}")
                    connection.exec_driver_sql(
                        f"PRAGMA wal_autocheckpoint={DEFAULT_WAL_AUTOCHECKPOINT_PAGES}")
                    connection.exec_driver_sql(f"PRAGMA temp.cache_size=-{DEFAULT_CACHE_KIB}")
                    connection.exec_driver_sql("PRAGMA temp.journal_mode=DELETE")
                    connection.commit()
                    _driver(connection).execute(f"PRAGMA synchronous={DEFAULT_SYNCHRONOUS}")

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self._read_engine, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self._turns is not None:
            self._turns.close()
            self._turns = None
            self._writers = FairLock()


def _driver(connection: sa.Connection) -> Any:
    """The DB-API connection under a SQLAlchemy one (pysqlite: autocommit, see _tune_sqlite)."""
    return connection.connection.dbapi_connection


class BulkWriter:
    """Short write transactions, one after another, on one held connection (cache kept warm)."""

    def __init__(self, connection: sa.Connection, writers: FairLock | None = None,
                 checkpoint_commits: int = 0) -> None:
        self.connection = connection
        self._writers = writers or FairLock()
        self._checkpoint_commits = checkpoint_commits  # 0: SQLite's automatic checkpoints
        self._commits = 0

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction (BEGIN IMMEDIATE): committed on success, else rolled back."""
        if self._checkpoint_commits and self._commits >= self._checkpoint_commits:
            # Before taking the lock: the other threads' writers go on meanwhile.
            self.checkpoint()
        with self._writers, self.connection.begin(), Session(
                bind=self.connection, expire_on_commit=False) as session:
            yield session
            session.flush()
        self._commits += 1

    @contextmanager
    def stage(self) -> Iterator[Any]:
        """A DB-API cursor in a transaction for this connection's temporary tables only.

        Not a write transaction on the database: on SQLite a deferred BEGIN
        that writes only temporary tables locks nothing other connections
        need, so the writers' lock is not taken either (storage.certstage).
        """
        driver = _driver(self.connection)
        if self.connection.dialect.name != "sqlite":
            with self.connection.begin():
                cursor = driver.cursor()
                try:
                    yield cursor
                finally:
                    cursor.close()
            return
        cursor = driver.cursor()
        cursor.execute("BEGIN")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        else:
            cursor.execute("COMMIT")
        finally:
            cursor.close()

    def checkpoint(self) -> None:
        """Copy the WAL into the database, outside any transaction.

        PASSIVE: other connections' readers and writers are not blocked; what
        they still need stays in the WAL for the next checkpoint.
        """
        _driver(self.connection).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self._commits = 0


def peek_revision(url: str) -> str | None:
    """The schema revision of the database at `url`, read without creating or changing it.

    None: the database is empty. FileNotFoundError: a SQLite file not made yet.
    """
    database_file = sqlite_file(url)
    if database_file is not None:
        if not database_file.is_file():
            raise FileNotFoundError(2, "not made yet", str(database_file))
        url = f"sqlite:///file:{database_file}?mode=ro&uri=true"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return migrate.revision_of(connection)[0]
    finally:
        engine.dispose()


def open_database(url: str) -> Database:
    return Database(url).create()

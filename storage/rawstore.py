"""The raw-message store: bytes in, a durable committed row out, duplicates recognised.

A message is durable when the transaction holding its bytes has committed
(SQLite WAL with synchronous=FULL). The `GroupCommitWriter` lets concurrent
SMTP sessions share one commit, as real MTAs share one fsync: a single writer
thread takes everything that is waiting, stores it in one transaction, and only
then wakes the sessions so they can answer 250.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from storage.batching import take_batch
from storage.db import Database
from storage.models import STATE_STORED, InboundMessage, RawMessage

log = logging.getLogger("rootnotify.rawstore")

# The most messages one group commit takes; bounds the transaction's size
# (25 MB messages × 64 would be a very large commit, so bytes are capped too).
GROUP_COMMIT_MAX_MESSAGES = 64
GROUP_COMMIT_MAX_BYTES = 64 * 1024 * 1024

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_ANGLE_ID = re.compile(rb"<[^<>\s]+>")


@dataclass(frozen=True)
class Fingerprint:
    dedup_key: str
    sha256: str
    message_id: str | None


@dataclass(frozen=True)
class StoreResult:
    id: int
    duplicate: bool


@dataclass(frozen=True)
class Arrival:
    raw: bytes
    channel: str
    received_at: datetime
    envelope_from: str | None = None
    envelope_to: Sequence[str] = ()


def fingerprint(raw: bytes) -> Fingerprint:
    """Message-ID plus a hash of the body with line endings folded.

    Trace headers differ between the SMTP copy and the IMAP copy of one mail
    (Received, Return-Path, Delivered-To), and IMAP servers may store LF where
    SMTP carried CRLF, so the key is the Message-ID and the body, not the raw
    bytes. A message without a Message-ID is keyed by all of its bytes.
    """
    whole = hashlib.sha256(raw).hexdigest()
    split = _HEADER_END.search(raw)
    head = raw[: split.start()] if split else raw
    found = _MESSAGE_ID.search(head)
    message_id = None
    if found:
        ids = _ANGLE_ID.findall(found.group(1))
        if ids:
            message_id = ids[0].decode("ascii", "replace")
    if message_id is None:
        return Fingerprint(dedup_key=whole, sha256=whole, message_id=None)
    body_hash = _folded_body_hash(raw, split.end() if split else len(raw))
    key = hashlib.sha256(f"{message_id}\0{body_hash}".encode()).hexdigest()
    return Fingerprint(dedup_key=key, sha256=whole, message_id=message_id)


# Bytes of a body hashed at a time: the body of a 100 MB list mail was copied
# twice whole (the slice, then the folded line endings), 230 MB at once.
FOLD_CHUNK_BYTES = 1 << 20


def _folded_body_hash(raw: bytes, start: int) -> str:
    """SHA-256 of raw[start:] with CRLF folded to LF and trailing LFs dropped, a chunk at a time.

    The same digest as hashing `raw[start:].replace(b"\\r\\n", b"\\n").rstrip(b"\\n")`.
    """
    end = len(raw)
    # The trailing line breaks the fold and strip would drop, walked back from the end.
    while end > start and raw[end - 1] == 0x0A:
        end -= 2 if end - 1 > start and raw[end - 2] == 0x0D else 1
    digest = hashlib.sha256()
    view = memoryview(raw)
    pos = start
    while pos < end:
        stop = min(pos + FOLD_CHUNK_BYTES, end)
        while stop < end and raw[stop - 1] == 0x0D:
            stop += 1  # a CR at the cut may begin a CRLF: the chunk takes what follows
        digest.update(bytes(view[pos:stop]).replace(b"\r\n", b"\n"))
        pos = stop
    return digest.hexdigest()


# From this size on, SQLite gets a message's bytes written into a zeroblob of
# its size a slice at a time (`_write_large_raws`) rather than bound to the
# INSERT: a bound blob is copied by SQLite, copied again into the row's
# record, and the copy stays with the cached statement until its next use,
# so a 115 MB mail held 230 MB more while stored and 115 MB after.
LARGE_RAW_BYTES = 1 << 20
RAW_WRITE_SLICE = 1 << 20


def _write_large_raws(driver: Any, rows: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Write the large rows' bytes through SQLite's incremental blob I/O; return the others.

    `driver` is the sqlite3 connection, inside the caller's write transaction.
    """
    small = []
    for row_id, data in rows:
        if len(data) < LARGE_RAW_BYTES:
            small.append((row_id, data))
            continue
        driver.execute("INSERT INTO raw_message (id, data) VALUES (?, zeroblob(?))",
                       (row_id, len(data)))
        view = memoryview(data)
        with driver.blobopen("raw_message", "data", row_id) as blob:
            for start in range(0, len(data), RAW_WRITE_SLICE):
                blob.write(view[start:start + RAW_WRITE_SLICE])
    return small


def store_batch(session: Session, arrivals: Sequence[Arrival]) -> list[StoreResult]:
    """Insert every arrival not seen before; count the others as duplicates. No commit.

    A fixed number of statements whatever the batch's size — one lookup of the
    known keys, one `executemany` each for the new inbound rows and their
    bytes, one read of the new ids, one for the duplicate counts — rather than
    two statements a message: at 50 messages a batch the per-statement cost
    of SQLAlchemy was most of the store's time (measured: 2,900 msg/s against
    ~10,000 with executemany). A message repeated inside the batch is stored
    once and counted as a duplicate of that row, as if it had come later.
    """
    prints = [fingerprint(a.raw) for a in arrivals]
    keys = {p.dedup_key for p in prints}
    known: dict[str, int] = dict(session.execute(  # type: ignore[arg-type]
        select(InboundMessage.dedup_key, InboundMessage.id)
        .where(col(InboundMessage.dedup_key).in_(keys))
    ).all())
    inbound = InboundMessage.__table__
    raw_table = RawMessage.__table__
    new_rows: dict[str, tuple[Arrival, Fingerprint]] = {}
    for arrival, fp in zip(arrivals, prints, strict=True):
        if fp.dedup_key not in known and fp.dedup_key not in new_rows:
            new_rows[fp.dedup_key] = (arrival, fp)
    if new_rows:
        session.execute(insert(inbound), [{
            "dedup_key": fp.dedup_key,
            "sha256": fp.sha256,
            "message_id": fp.message_id,
            "channel": arrival.channel,
            "received_at": arrival.received_at,
            "envelope_from": arrival.envelope_from,
            "envelope_to": ",".join(arrival.envelope_to),
            "size": len(arrival.raw),
            "duplicates": 0,
            "state": STATE_STORED,
            "attempts": 0,
            "quarantined": False,
        } for arrival, fp in new_rows.values()])
        ids: dict[str, int] = dict(session.execute(  # type: ignore[arg-type]
            select(InboundMessage.dedup_key, InboundMessage.id)
            .where(col(InboundMessage.dedup_key).in_(list(new_rows)))
        ).all())
        raws = [(ids[key], arrival.raw) for key, (arrival, _fp) in new_rows.items()]
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            small = _write_large_raws(connection.connection.dbapi_connection, raws)
        else:
            small = raws
        if small:
            session.execute(insert(raw_table), [{"id": row_id, "data": data}
                                                for row_id, data in small])
    else:
        ids = {}
    results: list[StoreResult] = []
    repeats: dict[int, int] = {}
    first_seen: set[str] = set()
    for fp in prints:
        key = fp.dedup_key
        if key in ids and key not in first_seen:
            first_seen.add(key)
            results.append(StoreResult(id=ids[key], duplicate=False))
            continue
        existing = known.get(key, ids.get(key))
        assert existing is not None
        repeats[existing] = repeats.get(existing, 0) + 1
        results.append(StoreResult(id=existing, duplicate=True))
    if repeats:
        session.execute(update(inbound).where(inbound.c.id == bindparam("row_id"))
                        .values(duplicates=inbound.c.duplicates + bindparam("extra")),
                        [{"row_id": row_id, "extra": n} for row_id, n in repeats.items()])
    return results


def store(db: Database, arrival: Arrival) -> StoreResult:
    """Store one message durably (its own transaction); for ingest and IMAP."""
    with db.write() as session:
        return store_batch(session, [arrival])[0]


def load_raw(session: Session, inbound_id: int) -> bytes:
    row = session.get(RawMessage, inbound_id)
    if row is None:
        raise KeyError(f"no raw message {inbound_id}")
    return row.data


def load_raws(session: Session, inbound_ids: Sequence[int]) -> dict[int, bytes]:
    """The raw bytes of several messages (those that exist), the small ones in one query."""
    if not inbound_ids:
        return {}
    table = RawMessage.__table__
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        rows = session.execute(select(table.c.id, table.c.data)
                               .where(table.c.id.in_(list(inbound_ids))))
        return {int(row_id): data for row_id, data in rows}
    # SQLite hands a selected blob over in a buffer of its own, which the
    # driver then copies: twice the message at once. A large one is read
    # through incremental blob I/O instead, straight into its bytes object.
    sizes = session.execute(select(table.c.id, sa.func.length(table.c.data))
                            .where(table.c.id.in_(list(inbound_ids)))).all()
    small = [int(row_id) for row_id, size in sizes if size < LARGE_RAW_BYTES]
    found: dict[int, bytes] = {}
    if small:
        found.update((int(row_id), data) for row_id, data in session.execute(
            select(table.c.id, table.c.data).where(table.c.id.in_(small))))
    driver = connection.connection.dbapi_connection
    for row_id, size in sizes:
        if size >= LARGE_RAW_BYTES:
            with driver.blobopen("raw_message", "data", int(row_id), readonly=True) as blob:
                found[int(row_id)] = blob.read()
    return found


class GroupCommitWriter:
    """One thread that commits whatever arrivals are waiting, together."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.Queue[tuple[Arrival, Future[StoreResult]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rawstore-writer", daemon=True)
        self._started = False
        self.commits = 0

    def start(self) -> None:
        if not self._started:
            self._thread.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._queue.put(None)
            self._thread.join()
            self._started = False

    async def store(self, arrival: Arrival) -> StoreResult:
        future: Future[StoreResult] = Future()
        self._queue.put((arrival, future))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = take_batch(self._queue, first, lambda item: len(item[0].raw),
                                         GROUP_COMMIT_MAX_MESSAGES, GROUP_COMMIT_MAX_BYTES)
            self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[tuple[Arrival, Future[StoreResult]]]) -> None:
        try:
            with self._db.write() as session:
                results = store_batch(session, [a for a, _ in batch])
        except Exception as exc:
            log.error("group commit of %d message(s) failed: %s", len(batch), exc)
            for _, future in batch:
                future.set_exception(exc)
            return
        self.commits += 1
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


# Columns `store_batch_direct` writes, in order; the same values `store_batch`
# gives them (the other columns stay NULL, as there).
_DIRECT_COLUMNS = ("dedup_key", "sha256", "message_id", "channel", "received_at",
                   "envelope_from", "envelope_to", "size", "duplicates", "state", "attempts",
                   "quarantined")
# Keys per `IN (...)` lookup: below SQLite's historical 999-variable limit, so a
# large configured batch still works on an old SQLite.
_DIRECT_LOOKUP_CHUNK = 500


def store_batch_direct(session: Session, arrivals: Sequence[Arrival]) -> list[StoreResult]:
    """`store_batch` on SQLite's own cursor, inside the session's transaction. No commit.

    The same rows, dedup and duplicate counts as `store_batch`, without
    SQLAlchemy's per-statement work (compiling, per-row parameter processing),
    which is most of `store_batch`'s time on a batch of small messages and runs
    under the GIL, where it competes with the IMAP fetch it is meant to overlap
    (measured: ~40 µs a message there against ~5 µs here). Times go through the
    column's own type (`UTCDateTime`), so they are stored exactly as SQLAlchemy
    stores them. Other dialects take `store_batch`.
    """
    connection = session.connection()  # begins the transaction (BEGIN IMMEDIATE)
    if connection.dialect.name != "sqlite":
        return store_batch(session, arrivals)
    inbound = InboundMessage.__table__
    dialect = connection.dialect
    to_db = inbound.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)
    cursor = connection.connection.cursor()
    try:
        prints = [fingerprint(a.raw) for a in arrivals]
        keys = list({p.dedup_key for p in prints})
        known: dict[str, int] = {}
        for start in range(0, len(keys), _DIRECT_LOOKUP_CHUNK):
            chunk = keys[start:start + _DIRECT_LOOKUP_CHUNK]
            cursor.execute("SELECT dedup_key, id FROM inbound_message WHERE dedup_key IN "
                           f"({','.join('?' * len(chunk))})", chunk)
            known.update(cursor.fetchall())
        insert_inbound = (f"INSERT INTO inbound_message ({', '.join(_DIRECT_COLUMNS)}) "
                          f"VALUES ({', '.join('?' * len(_DIRECT_COLUMNS))})")
        results: list[StoreResult] = []
        repeats: dict[int, int] = {}
        # A batch's arrivals mostly share their second (IMAP INTERNALDATE, or
        # the clock): each distinct time goes through the column type once.
        # Equal instants convert alike (the type stores them in UTC).
        stamps: dict[datetime, object] = {}
        raw_rows: list[tuple[int, bytes]] = []  # (inbound id, bytes) of the new messages
        for arrival, fp in zip(arrivals, prints, strict=True):
            existing = known.get(fp.dedup_key)
            if existing is not None:  # seen before, or earlier in this batch
                repeats[existing] = repeats.get(existing, 0) + 1
                results.append(StoreResult(id=existing, duplicate=True))
                continue
            when = arrival.received_at
            stamp = stamps.get(when)
            if stamp is None:
                stamp = stamps[when] = to_db(when) if to_db else when
            cursor.execute(insert_inbound, (
                fp.dedup_key, fp.sha256, fp.message_id, arrival.channel,
                stamp, arrival.envelope_from,
                ",".join(arrival.envelope_to), len(arrival.raw), 0, STATE_STORED, 0, False))
            row_id = int(cursor.lastrowid)  # type: ignore[arg-type]
            raw_rows.append((row_id, arrival.raw))
            known[fp.dedup_key] = row_id
            results.append(StoreResult(id=row_id, duplicate=False))
        # The bytes in multi-row INSERTs rather than one statement a message:
        # each statement releases and retakes the GIL, and in the IMAP pass
        # every retake waits on the fetching thread (measured ~30 µs a
        # statement there against ~9 µs alone).
        raw_rows = _write_large_raws(connection.connection.dbapi_connection, raw_rows)
        for start in range(0, len(raw_rows), _DIRECT_LOOKUP_CHUNK // 2):
            chunk = raw_rows[start:start + _DIRECT_LOOKUP_CHUNK // 2]
            cursor.execute("INSERT INTO raw_message (id, data) VALUES "
                           + ",".join(["(?, ?)"] * len(chunk)),
                           [value for row in chunk for value in row])
        if repeats:
            cursor.executemany("UPDATE inbound_message SET duplicates = duplicates + ? "
                               "WHERE id = ?", [(n, row_id) for row_id, n in repeats.items()])
        return results
    finally:
        cursor.close()

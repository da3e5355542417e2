"""The intake spool: SMTP mail made durable in an append-only file, imported later.

Why a spool: in `serve` the listener must make a message durable before it
answers 250, and with SQLite the worker process holds the database's write
lock while it acts on mail; waiting for that lock made the listener as slow
as the pipeline. Mail servers solve this with a queue directory; this is the
same idea with group commit: one writer thread appends every waiting message
to the current segment file with a single write and one `fdatasync`, and
only then are the SMTP sessions answered.

The worker imports records into the database in order; the position it
reached is committed in the same transaction as the imported rows, so each
record is imported exactly once, whatever crashes when. Segments are never
appended to after a restart (a torn tail from a crash is left behind and
skipped: it was never acknowledged), and a fully imported segment is deleted.

Record layout: MAGIC, then `struct HEADER` (meta length, raw length, CRC-32
of meta and raw), then the JSON meta, then the raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from storage.batching import take_batch
from storage.db import Database
from storage.models import Meta
from storage.rawstore import Arrival, StoreResult, store_batch_direct

log = logging.getLogger("rootnotify.spool")

MAGIC = b"RNS1"
HEADER = struct.Struct(">III")  # meta length, raw length, crc32
# A new segment is begun past this size, so that imported mail is freed in
# pieces rather than in one file that grows for ever.
SEGMENT_BYTES = 64 * 1024 * 1024
# Records taken by one group commit; bounds one write's size in memory.
GROUP_MAX_RECORDS = 256
GROUP_MAX_BYTES = 64 * 1024 * 1024
# Records imported into the database per transaction: short enough that the
# worker's own write lock is not held for long, large enough to share a sync.
IMPORT_BATCH = 200
POSITION_KEY = "spool_position"


def _segment_name(number: int) -> str:
    return f"segment-{number:010d}.spool"


def _segment_number(path: Path) -> int:
    return int(path.stem.split("-")[1])


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("segment-*.spool"), key=_segment_number)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode(arrival: Arrival) -> bytes:
    meta = json.dumps({
        "channel": arrival.channel,
        "received_at": arrival.received_at.isoformat(),
        "envelope_from": arrival.envelope_from,
        "envelope_to": list(arrival.envelope_to),
    }).encode()
    crc = zlib.crc32(arrival.raw, zlib.crc32(meta))
    return MAGIC + HEADER.pack(len(meta), len(arrival.raw), crc) + meta + arrival.raw


@dataclass(frozen=True)
class Record:
    segment: int
    end: int  # offset just past this record
    arrival: Arrival


def read_records(path: Path, offset: int) -> Iterator[Record]:
    """Whole, intact records of one segment from `offset`; stops at a torn or bad tail."""
    number = _segment_number(path)
    head_size = len(MAGIC) + HEADER.size
    with path.open("rb") as fh:
        fh.seek(offset)
        while True:
            head = fh.read(head_size)
            if len(head) < head_size or head[:4] != MAGIC:
                return
            meta_len, raw_len, crc = HEADER.unpack(head[4:])
            meta = fh.read(meta_len)
            raw = fh.read(raw_len)
            if len(meta) < meta_len or len(raw) < raw_len:
                return
            if zlib.crc32(raw, zlib.crc32(meta)) != crc:
                log.error("%s: record at %d fails its checksum; the rest of this segment is "
                          "skipped (it was never acknowledged)", path.name, offset)
                return
            fields = json.loads(meta)
            offset += head_size + meta_len + raw_len
            yield Record(number, offset, Arrival(
                raw=raw, channel=fields["channel"],
                received_at=datetime.fromisoformat(fields["received_at"]),
                envelope_from=fields["envelope_from"],
                envelope_to=tuple(fields["envelope_to"])))


class SpoolWriter:
    """The one thread that appends and syncs; SMTP sessions await their record's sync."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._queue: queue.Queue[_Waiting | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._fd: int | None = None
        self._size = 0
        self.syncs = 0

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open_next()
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def store(self, arrival: Arrival) -> StoreResult | None:
        """Durable on return; None because the database id is given at import."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Waiting(encode(arrival), future, loop))
        await future
        return None

    def _open_next(self) -> None:
        # Always a new segment, never appending after what a crash may have torn.
        existing = segments(self.folder)
        number = _segment_number(existing[-1]) + 1 if existing else 1
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.folder / _segment_name(number),
                           os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        _fsync_dir(self.folder)
        self._size = 0

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = take_batch(self._queue, first, lambda item: len(item.record),
                                         GROUP_MAX_RECORDS, GROUP_MAX_BYTES)
            self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[_Waiting]) -> None:
        try:
            assert self._fd is not None
            if self._size > SEGMENT_BYTES:
                self._open_next()
            data = b"".join(waiting.record for waiting in batch)
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            os.fdatasync(self._fd)
            self._size += len(data)
            self.syncs += 1
        except Exception as exc:
            log.error("spool write of %d message(s) failed: %s", len(batch), exc)
            # What was written may be torn; later records go to a fresh segment.
            try:
                self._open_next()
            except OSError as reopen:
                log.error("cannot open a new spool segment: %s", reopen)
            _answer(batch, exc)
            return
        _answer(batch, None)


@dataclass
class _Waiting:
    """One record waiting for its sync, and the session's future to settle then."""

    record: bytes
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


def _answer(batch: list[_Waiting], error: Exception | None) -> None:
    """Settle a group's futures with one wake-up of each event loop, not one per record."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for waiting in batch:
        by_loop.setdefault(waiting.loop, []).append(waiting.future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    for future in futures:
        if future.done():  # the session went away (cancelled)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def position_key(folder: Path, node_name: str = "") -> str:
    """The `meta` key of one spool's import position: its host's and its folder's.

    One key shared by the hosts of one database let a host that imported its
    own spool move the other's position on, and the other, restarted, skipped
    and deleted the mail it had answered 250 for.
    """
    return f"{POSITION_KEY}:{node_name}:{folder.resolve()}"


def _position(session, key: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    row = session.get(Meta, key)
    if row is None and session.connection().dialect.name == "sqlite":
        # A spool from before positions were per host: a SQLite database is
        # one host's, so the one shared row was this spool's. (Elsewhere it
        # may be another host's; reading a spool again from the start stores
        # nothing twice, the dedup key sees to that.)
        row = session.get(Meta, POSITION_KEY)
    if row is None:
        return 0, 0
    segment, _, offset = row.value.partition(":")
    return int(segment), int(offset)


def _set_position(session, key: str, segment: int, offset: int  # type: ignore[no-untyped-def]
                  ) -> None:
    row = session.get(Meta, key) or Meta(key=key, value="")
    row.value = f"{segment}:{offset}"
    session.add(row)
    legacy = session.get(Meta, POSITION_KEY)
    if legacy is not None and session.connection().dialect.name == "sqlite":
        session.delete(legacy)  # taken over by the per-host key


def import_spool(db: Database, folder: Path, node_name: str = "") -> int:
    """Import every whole record not yet imported; returns how many new messages were stored."""
    if not folder.is_dir():
        return 0
    key = position_key(folder, node_name)
    stored = 0
    while True:
        with db.read() as session:
            at_segment, at_offset = _position(session, key)
        files = [p for p in segments(folder) if _segment_number(p) >= at_segment]
        progressed = False
        for index, path in enumerate(files):
            number = _segment_number(path)
            offset = at_offset if number == at_segment else 0
            batch: list[Record] = []
            for record in read_records(path, offset):
                batch.append(record)
                if len(batch) >= IMPORT_BATCH:
                    break
            if batch:
                with db.write() as session:
                    if _position(session, key) != (at_segment, at_offset):
                        return stored  # another importer moved on; start over next time
                    results = store_batch_direct(session, [r.arrival for r in batch])
                    _set_position(session, key, number, batch[-1].end)
                stored += sum(1 for r in results if not r.duplicate)
                progressed = True
                break
            is_last = index == len(files) - 1
            if not is_last:
                # Nothing more in this older segment (the writer moved on): pass it.
                with db.write() as session:
                    if _position(session, key) == (at_segment, at_offset):
                        _set_position(session, key, _segment_number(files[index + 1]), 0)
                path.unlink(missing_ok=True)
                progressed = True
                break
        if not progressed:
            return stored


def pending_bytes(db: Database, folder: Path, node_name: str = "") -> int:
    """Bytes of the spool not yet imported (the intake backlog before the database)."""
    if not folder.is_dir():
        return 0
    with db.read() as session:
        at_segment, at_offset = _position(session, position_key(folder, node_name))
    total = 0
    for path in segments(folder):
        number = _segment_number(path)
        if number > at_segment:
            total += path.stat().st_size
        elif number == at_segment:
            total += max(path.stat().st_size - at_offset, 0)
    return total

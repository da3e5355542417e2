"""The intake spool: what was acknowledged is imported exactly once, whatever was torn."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime

from sqlmodel import select

from storage import spool
from storage.db import open_database
from storage.models import InboundMessage
from storage.rawstore import Arrival
from tests.harness import CA_CONTACT, WAIT_SECONDS, make_mail

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def arrival(i: int) -> Arrival:
    return Arrival(raw=make_mail(CA_CONTACT, f"mail {i}", f"body {i}",
                                 message_id=f"<m{i}@exampleca.test>"),
                   channel="smtp", received_at=AT, envelope_from=CA_CONTACT,
                   envelope_to=("rootnotify@program.test",))


async def spool_all(writer: spool.SpoolWriter, items: list[Arrival]) -> None:
    await asyncio.gather(*(writer.store(a) for a in items))


def stored_subjects(db) -> list[str]:  # type: ignore[no-untyped-def]
    with db.read() as session:
        rows = session.exec(select(InboundMessage).order_by(InboundMessage.id)).all()
    return [r.message_id for r in rows]


def test_spooled_mail_is_imported_once_in_order_with_its_envelope(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    writer = spool.SpoolWriter(tmp_path / "spool")
    writer.start()
    asyncio.run(spool_all(writer, [arrival(i) for i in range(5)]))
    writer.stop()
    assert writer.syncs >= 1

    assert spool.pending_bytes(db, tmp_path / "spool") > 0
    assert spool.import_spool(db, tmp_path / "spool") == 5
    assert spool.import_spool(db, tmp_path / "spool") == 0  # nothing twice
    assert spool.pending_bytes(db, tmp_path / "spool") == 0
    assert sorted(stored_subjects(db)) == sorted(f"<m{i}@exampleca.test>" for i in range(5))
    with db.read() as session:
        row = session.exec(select(InboundMessage)).first()
        assert row.channel == "smtp" and row.envelope_from == CA_CONTACT
        assert row.received_at == AT


def test_a_torn_tail_is_skipped_and_a_restart_writes_a_new_segment(tmp_path):
    folder = tmp_path / "spool"
    db = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    first = spool.SpoolWriter(folder)
    first.start()
    asyncio.run(spool_all(first, [arrival(1), arrival(2)]))
    first.stop()
    # A crash in the middle of a write leaves half a record (never acknowledged).
    segment = spool.segments(folder)[-1]
    torn = spool.encode(arrival(3))
    with segment.open("ab") as fh:
        fh.write(torn[: len(torn) // 2])

    second = spool.SpoolWriter(folder)
    second.start()
    asyncio.run(spool_all(second, [arrival(4)]))
    second.stop()
    assert len(spool.segments(folder)) == 2

    assert spool.import_spool(db, folder) == 3
    assert sorted(stored_subjects(db)) == ["<m1@exampleca.test>", "<m2@exampleca.test>",
                                           "<m4@exampleca.test>"]
    # The older segment, fully imported, is gone; the current one stays for the writer.
    assert len(spool.segments(folder)) == 1


def test_the_same_mail_spooled_twice_is_stored_once(tmp_path):
    folder = tmp_path / "spool"
    db = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    writer = spool.SpoolWriter(folder)
    writer.start()
    asyncio.run(spool_all(writer, [arrival(7), arrival(7)]))
    writer.stop()
    assert spool.import_spool(db, folder) == 1
    with db.read() as session:
        row = session.exec(select(InboundMessage)).one()
    assert row.duplicates == 1


def test_a_corrupted_record_stops_that_segment_but_not_the_next(tmp_path):
    folder = tmp_path / "spool"
    db = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    writer = spool.SpoolWriter(folder)
    writer.start()
    asyncio.run(spool_all(writer, [arrival(1)]))
    writer.stop()
    segment = spool.segments(folder)[-1]
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte in the raw mail: the checksum catches it
    segment.write_bytes(bytes(data))
    writer = spool.SpoolWriter(folder)
    writer.start()
    asyncio.run(spool_all(writer, [arrival(2)]))
    writer.stop()
    assert spool.import_spool(db, folder) == 1
    assert stored_subjects(db) == ["<m2@exampleca.test>"]


def test_a_session_is_answered_only_after_its_record_is_synced(tmp_path, monkeypatch):
    # The disk's sync is held until the test lets it go: the store must wait for it.
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def held_fdatasync(fd: int) -> None:
        entered.set()
        assert release.wait(WAIT_SECONDS)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", held_fdatasync)
    writer = spool.SpoolWriter(tmp_path / "spool")
    writer.start()

    async def scenario() -> None:
        store = asyncio.ensure_future(writer.store(arrival(1)))
        assert await asyncio.to_thread(entered.wait, WAIT_SECONDS)
        # The record is written and its sync is running: the session still waits.
        await asyncio.sleep(0)
        assert not store.done()
        assert writer.syncs == 0
        release.set()
        await asyncio.wait_for(store, WAIT_SECONDS)
        assert writer.syncs == 1

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        writer.stop()

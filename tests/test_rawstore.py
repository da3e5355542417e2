"""The raw store's batch insert: each message stored once, repeats counted, ids in order."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select

from storage.db import open_database
from storage.models import InboundMessage, RawMessage
from storage.rawstore import Arrival, store_batch
from tests.harness import CA_CONTACT, make_mail

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_batch_stores_each_message_once_and_counts_repeats_in_and_across_batches(
        tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    first, second, third = (make_mail(CA_CONTACT, f"mail {n}", "text\n",
                                      message_id=f"<m{n}@exampleca.test>") for n in range(3))
    with db.write() as session:
        earlier = store_batch(session, [Arrival(first, "smtp", NOW)])
    with db.write() as session:
        results = store_batch(session, [Arrival(raw, "imap", NOW)
                                        for raw in (second, first, third, second)])
    assert [r.duplicate for r in results] == [False, True, False, True]
    assert results[1].id == earlier[0].id  # known from the earlier batch
    assert results[3].id == results[0].id  # repeated inside the batch
    assert len({results[0].id, results[2].id, earlier[0].id}) == 3
    with db.read() as session:
        rows = {r.id: r for r in session.exec(select(InboundMessage)).all()}
        assert len(rows) == 3
        assert rows[earlier[0].id].duplicates == 1 and rows[results[0].id].duplicates == 1
        assert rows[results[2].id].duplicates == 0
        assert session.get(RawMessage, results[2].id).data == third  # type: ignore[union-attr]
        assert rows[results[0].id].channel == "imap"
    db.dispose()


def _reference_dedup_key(raw: bytes) -> str:
    """The dedup key as rawstore defines it, computed the obvious way (whole copies)."""
    import hashlib

    head, _, body = raw.partition(b"\r\n\r\n")
    message_id = head.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
    body_hash = hashlib.sha256(body.replace(b"\r\n", b"\n").rstrip(b"\n")).hexdigest()
    return hashlib.sha256(f"{message_id}\0{body_hash}".encode()).hexdigest()


def test_a_body_hashed_in_chunks_keys_the_message_as_the_whole_body_did(monkeypatch):
    import random

    import storage.rawstore as rawstore

    rng = random.Random(14)
    bodies = [b"", b"\n", b"\r\n\r\n", b"x\r", b"x\r\r\n", b"\n\r\n", b"a\r\n\nb\r\n\r\n",
              *(bytes(rng.choice(b"\r\na") for _ in range(rng.randrange(1, 40)))
                for _ in range(300))]
    for chunk in (1, 2, 3, 7, 1 << 20):
        monkeypatch.setattr(rawstore, "FOLD_CHUNK_BYTES", chunk)
        for body in bodies:
            raw = b"From: a@b.test\r\nMessage-ID: <m@b.test>\r\n\r\n" + body
            assert rawstore.fingerprint(raw).dedup_key == _reference_dedup_key(raw), (chunk, body)


def test_large_messages_are_kept_byte_for_byte_by_both_batch_stores(tmp_path: Path) -> None:
    import os

    from storage.rawstore import LARGE_RAW_BYTES, RAW_WRITE_SLICE, load_raws, store_batch_direct

    db = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    # Over the large-message size and not a whole number of write slices; one small beside.
    body = os.urandom(LARGE_RAW_BYTES + 2 * RAW_WRITE_SLICE + 12_345).hex()
    big = [make_mail(CA_CONTACT, f"big {n}", body[n:], message_id=f"<big{n}@exampleca.test>")
           for n in range(3)]
    small = make_mail(CA_CONTACT, "small", "text\n", message_id="<small@exampleca.test>")
    with db.write() as session:
        first = store_batch(session, [Arrival(big[0], "file", NOW), Arrival(small, "file", NOW)])
    with db.write() as session:
        second = store_batch_direct(session, [Arrival(big[1], "smtp", NOW),
                                              Arrival(big[2], "smtp", NOW),
                                              Arrival(big[0], "smtp", NOW)])
    assert [r.duplicate for r in first + second] == [False, False, False, False, True]
    with db.read() as session:
        stored = load_raws(session, [r.id for r in first + second[:2]])
    assert stored == {first[0].id: big[0], first[1].id: small,
                      second[0].id: big[1], second[1].id: big[2]}
    db.dispose()

"""A big certificate list is stored in short transactions before its mail is acted on.

The stories: while a CA's 200,000-row list is being stored, another mail to
the running bot is accepted (250) at once, not after the list; and a crash
between the list's chunks, or after all of them in the act, is retried to
the same certificates, domains and receipt numbers, with nothing twice.
"""

from __future__ import annotations

import csv
import email
import gzip
import io
import threading
import time
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select

import bot.decide.handlers.certificates as certificates
from bot.clock import FixedClock
from bot.config import load_config
from bot.context import make_context
from bot.service.pipeline import process_pending, requeue
from storage.db import open_database
from storage.models import (
    STATE_FAILED,
    STATE_PROCESSED,
    Certificate,
    CertificateListLoad,
    Domain,
    InboundMessage,
    OutboundMessage,
)
from storage.rawstore import Arrival, store
from tests.harness import (
    CA_CONTACT,
    COMPLETE_FORM,
    STAFF,
    RunningBot,
    Sink,
    free_port,
    make_mail,
    write_config,
)
from tests.story import notify, send
from tests.test_certificate_lists_e2e import list_mail, receipt

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# Big enough for 20 chunks of certificates.CHUNK_ROWS, small enough to keep the test
# near 10-20 s on a shared 2-core machine.
BIG_LIST_ROWS = 200_000
# The SMTP commit waits at most one chunk's transaction (~0.1-0.5 s) plus
# SQLite's busy-handler sleep (at most 0.1 s); the old single transaction made
# it wait for the whole list.
PROMPT_SECONDS = 3.0
# The list mail is ~3 MB; the test configuration's SMTP limit is 1 MiB.
BIG_MAIL_BYTES = 16 * 1024 * 1024


def gzip_csv(rows: int, start: int = 0) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["serial", "issuer", "crtsh_id", "dns_names"])
    for i in range(start, start + rows):
        writer.writerow([f"{i:032x}", "CN=Example Issuing CA 2", 9_000_000_000 + i,
                         f"host{i}.example.com www.host{i}.example.com"])
    return gzip.compress(text.getvalue().encode(), compresslevel=1)


def test_smtp_mail_is_accepted_promptly_while_a_big_list_is_stored(tmp_path, monkeypatch):
    chunks: list[int] = []
    storing = threading.Event()
    original = certificates.move_certificates

    def counting(*args: Any) -> int:
        inserted = original(*args)
        chunks.append(inserted)
        if len(chunks) == 2:
            storing.set()
        return inserted

    monkeypatch.setattr(certificates, "move_certificates", counting)
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=(sink := Sink().start()).port)
    path.write_text(path.read_text().replace("max_message_size = 1048576",
                                             f"max_message_size = {BIG_MAIL_BYTES}"))
    bot = RunningBot(load_config(path), FixedClock(NOW)).start()
    try:
        inc = notify(bot, sink)
        send(bot, list_mail(inc, "misissued.csv.gz", "application/gzip",
                            gzip_csv(BIG_LIST_ROWS)))
        assert storing.wait(60), "the list's chunks never started"
        began = time.perf_counter()
        refused = bot.send(make_mail(STAFF, "status please", "no commands here\n"))
        waited = time.perf_counter() - began
        chunks_at_250 = len(chunks)
        assert refused == {}
        body = receipt(sink).body
        total_chunks = len(chunks)
    finally:
        bot.stop()
        sink.stop()
    print(f"250 after {waited:.3f} s, at chunk {chunks_at_250} of {total_chunks}")
    assert chunks_at_250 < total_chunks, "the list was done before the mail: nothing shown"
    assert waited < PROMPT_SECONDS, f"250 after {waited:.2f} s while the list was stored"
    assert f"{BIG_LIST_ROWS:,} certificate row(s) read: {BIG_LIST_ROWS:,} new" in body
    assert f"{2 * BIG_LIST_ROWS:,} new unique domain(s)" in body


# ------------------------------------------------------------------ crash and retry


@pytest.fixture
def ctx(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = load_config(write_config(tmp_path, smtp_port=free_port(), relay_port=free_port()))
    db = open_database(config.storage_url)
    yield make_context(config, db, FixedClock(NOW))
    db.dispose()


def _ingest(ctx: Any, raw: bytes) -> int:
    inbound_id = store(ctx.db, Arrival(raw, "file", NOW)).id
    process_pending(ctx)
    return inbound_id


def _incident(ctx: Any) -> str:
    _ingest(ctx, make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM))
    with ctx.db.read() as session:
        return session.exec(select(InboundMessage.incident_id)
                            .where(col(InboundMessage.incident_id).is_not(None))).one()


def _state(ctx: Any, inbound_id: int) -> str:
    with ctx.db.read() as session:
        row = session.get(InboundMessage, inbound_id)
        assert row is not None
        return row.state


def _counts(ctx: Any, incident_id: str) -> tuple[int, int]:
    with ctx.db.read() as session:
        certs = session.exec(select(func.count()).select_from(Certificate)
                             .where(Certificate.incident_id == incident_id)).one()
        domains = session.exec(select(func.count()).select_from(Domain)
                               .where(Domain.incident_id == incident_id)).one()
    return certs, domains


def _receipt_text(ctx: Any, inbound_id: int) -> str:
    with ctx.db.read() as session:
        rows = session.exec(select(OutboundMessage).where(OutboundMessage.kind == "receipt")
                            .where(OutboundMessage.inbound_id == inbound_id)).all()
    assert len(rows) == 1, [r.subject for r in rows]
    message = email.message_from_bytes(rows[0].data, policy=default)
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


ROWS = 1_000
SMALL_CHUNK = 100  # rows or domains: 20 chunks of the 1,000-row list (2 domains a row)


def test_a_crash_after_the_chunks_committed_is_retried_without_storing_twice(ctx, monkeypatch):
    monkeypatch.setattr(certificates, "CHUNK_ROWS", SMALL_CHUNK)
    incident = _incident(ctx)
    _ingest(ctx, list_mail(incident, "first.csv.gz", "application/gzip", gzip_csv(300)))
    assert _counts(ctx, incident) == (300, 600)

    def crash(*_args: Any, **_kw: Any) -> None:
        raise RuntimeError("crash in the act, after the list's chunks committed")

    monkeypatch.setattr(certificates, "_receipt", crash)
    # 1,000 rows, 300 of which the incident has already: 700 new.
    mail = list_mail(incident, "second.csv.gz", "application/gzip", gzip_csv(ROWS))
    inbound_id = _ingest(ctx, mail)
    assert _state(ctx, inbound_id) == STATE_FAILED
    assert _counts(ctx, incident) == (ROWS, 2 * ROWS)  # the chunks are committed
    with ctx.db.read() as session:
        load = session.get(CertificateListLoad, (inbound_id, 0))
        assert load is not None and load.complete and load.new_certificates == 700

    monkeypatch.undo()
    monkeypatch.setattr(certificates, "CHUNK_ROWS", SMALL_CHUNK)
    stored_again: list[int] = []
    monkeypatch.setattr(certificates, "move_certificates",
                        lambda *args: stored_again.append(args[-1]) or 0)
    assert requeue(ctx, inbound_id) == 1
    process_pending(ctx)
    assert _state(ctx, inbound_id) == STATE_PROCESSED
    assert stored_again == []  # the complete list was not read into the database again
    assert _counts(ctx, incident) == (ROWS, 2 * ROWS)
    text = _receipt_text(ctx, inbound_id)
    assert f"{ROWS:,} certificate row(s) read: 700 new certificate(s) recorded, 300 already" in text
    assert "1,400 new unique domain(s)" in text
    assert f"now lists {ROWS:,} certificate(s) and {2 * ROWS:,} unique domain(s)" in text


def test_a_crash_between_chunks_is_retried_to_the_right_counts(ctx, monkeypatch):
    monkeypatch.setattr(certificates, "CHUNK_ROWS", SMALL_CHUNK)
    incident = _incident(ctx)
    original = certificates.move_certificates
    calls = [0]

    def crash_on_the_fourth_chunk(*args: Any) -> int:
        calls[0] += 1
        if calls[0] == 4:
            raise RuntimeError("crash between chunks")
        return original(*args)

    monkeypatch.setattr(certificates, "move_certificates", crash_on_the_fourth_chunk)
    inbound_id = _ingest(ctx, list_mail(incident, "list.csv.gz", "application/gzip",
                                        gzip_csv(ROWS)))
    assert _state(ctx, inbound_id) == STATE_FAILED
    # The first 3 chunks committed: certificates move first, in key ranges of
    # SMALL_CHUNK rows (the keys are distinct), their domains after them.
    assert _counts(ctx, incident) == (3 * SMALL_CHUNK, 0)

    monkeypatch.setattr(certificates, "move_certificates", original)
    assert requeue(ctx, inbound_id) == 1
    process_pending(ctx)
    assert _state(ctx, inbound_id) == STATE_PROCESSED
    assert _counts(ctx, incident) == (ROWS, 2 * ROWS)
    text = _receipt_text(ctx, inbound_id)
    # The rows the crashed pass stored were this mail's: still counted as new.
    assert f"{ROWS:,} certificate row(s) read: {ROWS:,} new certificate(s) recorded, 0 already" \
        in text
    assert f"{2 * ROWS:,} new unique domain(s)" in text

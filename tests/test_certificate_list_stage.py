"""A list goes through its stage (storage.certstage) and comes out as the list said.

The stories: a CA's list names one certificate twice, with different
subjects, far apart: the first row is the one kept, as it was before lists
were staged; a PEM list's validity dates are stored as the certificates
carry them; while a list is being staged another process writes to the
database without waiting; and a crash while the domains are moved is
retried to the right counts and receipt.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlmodel import select

import bot.decide.handlers.certificates as certificates
import storage.certstage as certstage
from bot.service.pipeline import process_pending, requeue
from storage.db import sqlite_file
from storage.models import STATE_FAILED, STATE_PROCESSED, Certificate
from tests.test_certificate_list_chunks import (
    NOW,
    _counts,
    _incident,
    _ingest,
    _receipt_text,
    _state,
    ctx,  # noqa: F401  (the fixture)
    gzip_csv,
)
from tests.test_certificate_lists_e2e import list_mail, make_cert

SMALL_CHUNK = 100  # rows a write transaction: a 1,000-row list moves in 10, its names in 20


def _csv(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["serial", "issuer", "subject"])
    writer.writerows(rows)
    return text.getvalue().encode()


def test_of_two_rows_with_one_key_the_first_in_the_list_is_kept(ctx, monkeypatch):  # noqa: F811
    monkeypatch.setattr(certificates, "CHUNK_ROWS", SMALL_CHUNK)
    incident = _incident(ctx)
    rows = [[f"{i:032x}", "CN=Example Issuing CA 2", f"CN=host{i}.example"] for i in range(500)]
    # Row 400 names row 3's certificate again (hex case and zeros aside), another subject.
    rows[400] = ["0" + rows[3][0].upper(), "CN=Example Issuing CA 2", "CN=the second row"]
    inbound_id = _ingest(ctx, list_mail(incident, "list.csv", "text/csv", _csv(rows)))
    assert _state(ctx, inbound_id) == STATE_PROCESSED
    with ctx.db.read() as session:
        kept = session.exec(select(Certificate.subject, Certificate.inbound_id)
                            .where(Certificate.serial == rows[3][0].lstrip("0"))).all()
    assert kept == [("CN=host3.example", inbound_id)]
    assert _counts(ctx, incident) == (499, 0)
    assert "500 certificate row(s) read: 499 new certificate(s) recorded, 1 already" \
        in _receipt_text(ctx, inbound_id)


def test_the_validity_dates_of_a_pem_list_are_stored_as_the_certificates_say(ctx):  # noqa: F811
    incident = _incident(ctx)
    certs = [make_cert(f"host{i}.example.com", [f"host{i}.example.com"]) for i in range(3)]
    bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    inbound_id = _ingest(ctx, list_mail(incident, "list.pem", "application/x-pem-file", bundle))
    assert _state(ctx, inbound_id) == STATE_PROCESSED
    with ctx.db.read() as session:
        stored = {row.serial: (row.not_before, row.not_after, row.dns_names)
                  for row in session.exec(select(Certificate))}
    assert stored == {format(c.serial_number, "x"): (
        NOW - timedelta(days=10), NOW + timedelta(days=80),
        c.subject.rfc4514_string().removeprefix("CN=")) for c in certs}
    # Stored as every other time is, so SQL compares them: all three expire then.
    with ctx.db.read() as session:
        expiring = session.exec(select(Certificate.serial).where(
            Certificate.not_after == NOW + timedelta(days=80))).all()
    assert sorted(expiring) == sorted(stored)


def test_another_process_writes_while_a_list_is_staged(ctx, monkeypatch):  # noqa: F811
    incident = _incident(ctx)
    database = sqlite_file(ctx.config.storage_url)
    assert database is not None
    written: list[int] = []
    original = certstage.ListStage.index

    def write_meanwhile(stage: Any) -> None:
        # The whole list is staged now, its transaction still open: a writer
        # elsewhere gets the database at once (timeout 0: no waiting at all).
        other = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO meta (key, value) VALUES ('stage-test', 'written')")
            other.execute("COMMIT")
            written.append(1)
        finally:
            other.close()
        original(stage)

    monkeypatch.setattr(certstage.ListStage, "index", write_meanwhile)
    inbound_id = _ingest(ctx, list_mail(incident, "list.csv.gz", "application/gzip",
                                        gzip_csv(1_000)))
    assert written == [1]
    assert _state(ctx, inbound_id) == STATE_PROCESSED
    assert _counts(ctx, incident) == (1_000, 2_000)


def test_a_crash_while_the_domains_move_is_retried_to_the_right_counts(ctx, monkeypatch):  # noqa: F811
    monkeypatch.setattr(certificates, "CHUNK_ROWS", SMALL_CHUNK)
    incident = _incident(ctx)
    original = certificates.move_domains
    calls = [0]

    def crash_on_the_third_names(*args: Any) -> int:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("crash between the domain chunks")
        return original(*args)

    monkeypatch.setattr(certificates, "move_domains", crash_on_the_third_names)
    inbound_id = _ingest(ctx, list_mail(incident, "list.csv.gz", "application/gzip",
                                        gzip_csv(1_000)))
    assert _state(ctx, inbound_id) == STATE_FAILED
    # Every certificate moved, and two chunks of names (the names are distinct).
    assert _counts(ctx, incident) == (1_000, 2 * SMALL_CHUNK)

    monkeypatch.setattr(certificates, "move_domains", original)
    assert requeue(ctx, inbound_id) == 1
    process_pending(ctx)
    assert _state(ctx, inbound_id) == STATE_PROCESSED
    assert _counts(ctx, incident) == (1_000, 2_000)
    text = _receipt_text(ctx, inbound_id)
    assert "1,000 certificate row(s) read: 1,000 new certificate(s) recorded, 0 already" in text
    assert "2,000 new unique domain(s)" in text


def test_a_large_list_is_stored_without_its_attachment_decoded_whole(ctx, monkeypatch):  # noqa: F811
    import bot.parse.mail.largeparts as largeparts

    incident = _incident(ctx)
    decoded_whole: list[int] = []
    decode = largeparts.LiftedParts.decode
    monkeypatch.setattr(largeparts.LiftedParts, "decode",
                        lambda parts, index: decoded_whole.append(index) or decode(parts, index))
    rows = [[f"{i:032x}", "CN=Example Issuing CA 2", f"CN=host{i}.example"]
            for i in range(5_000)]  # ~350 KB of CSV: lifted out of the message (under 1 MiB)
    inbound_id = _ingest(ctx, list_mail(incident, "list.csv", "text/csv", _csv(rows)))
    assert _state(ctx, inbound_id) == STATE_PROCESSED
    assert _counts(ctx, incident) == (5_000, 0)
    # Form, final report, list sniffing and storing all read it as a stream.
    assert decoded_whole == []

"""A mail to several recipients that reaches some: who has it, who does not, who gets it later.

The relay is a real SMTP server that refuses or defers chosen recipients at
RCPT (RFC 5321 4.2.5: each recipient has its own reply). The acknowledgement
goes to both contacts of the CA; staff must know which one it did not reach,
the one that has it must not get it twice, and a deferred one gets it later.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.clock import FixedClock
from bot.config import load_config
from bot.context import Context, make_context
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from bot.outbox.sender import deliver_due, transport_for
from storage.db import open_database
from storage.models import OUT_FAILED, OUT_QUEUED, OUT_SENT, OutboundMessage
from tests.harness import CA_CONTACT, CA_OTHER_CONTACT, STAFF, Sink, write_config

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def relay() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


@pytest.fixture
def ctx(tmp_path: Path, relay: Sink) -> Iterator[Context]:
    config = load_config(write_config(tmp_path, smtp_port=1, relay_port=relay.port))
    context = make_context(config, open_database(config.storage_url), FixedClock(NOW))
    yield context
    context.db.dispose()


def _acknowledge(ctx: Context) -> str:
    with ctx.db.write() as session:
        queued = enqueue(session, ctx, MailSpec(
            kind="acknowledgement", to=[CA_CONTACT, CA_OTHER_CONTACT],
            subject="[INC-2026-0001] Notification received", body="Received."))
    return queued.message_id


def _row(ctx: Context, message_id: str) -> OutboundMessage:
    with ctx.db.read() as session:
        return session.exec(select(OutboundMessage).where(
            OutboundMessage.message_id == message_id)).one()


def _alerts(ctx: Context) -> list[OutboundMessage]:
    with ctx.db.read() as session:
        return list(session.exec(select(OutboundMessage).where(
            OutboundMessage.kind == "alert").order_by(col(OutboundMessage.id))))


def _copies(relay: Sink, message_id: str) -> list[list[str]]:
    """The recipients of each copy of `message_id` the relay took."""
    return [r.recipients for r in relay.received if r.message["Message-ID"] == message_id]


def test_a_recipient_refused_for_good_is_failed_alone_and_staff_told_who_has_it(ctx, relay):
    relay.handler.rcpt_replies[CA_OTHER_CONTACT] = "550 5.1.1 <security@exampleca.test>: no " \
                                                   "such user"
    ack = _acknowledge(ctx)
    deliver_due(ctx, transport_for(ctx.config))

    assert _copies(relay, ack) == [[CA_CONTACT]]
    row = _row(ctx, ack)
    assert (row.status, row.failed_recipients, row.retry_recipients) == (
        OUT_SENT, CA_OTHER_CONTACT, None)
    assert "550 5.1.1" in (row.last_error or "")
    [alert] = _alerts(ctx)
    assert alert.subject == f"Delivery failed: acknowledgement to {CA_OTHER_CONTACT}"
    assert alert.recipients == STAFF
    body = alert.data.decode()
    assert "no such user" in body and f"It did reach {CA_CONTACT}." in body
    text = email.message_from_bytes(alert.data, policy=email.policy.default).get_content()
    text = text.replace("\r\n", "\n")
    assert text.startswith(f"The acknowledgement {row.message_id} (subject: ")
    assert f") could not be delivered to {CA_OTHER_CONTACT}.\n\nReason: " in text
    assert text.endswith(f"such user\n\nIt did reach {CA_CONTACT}.\n")

    ctx.clock.advance(hours=2)  # type: ignore[attr-defined]
    deliver_due(ctx, transport_for(ctx.config))
    assert _copies(relay, ack) == [[CA_CONTACT]]  # never sent again


def test_a_deferred_recipient_is_retried_alone_and_then_has_it(ctx, relay):
    relay.handler.rcpt_replies[CA_OTHER_CONTACT] = "450 4.2.0 greylisted, come back later"
    ack = _acknowledge(ctx)
    deliver_due(ctx, transport_for(ctx.config))

    row = _row(ctx, ack)
    assert (row.status, row.retry_recipients, row.failed_recipients) == (
        OUT_QUEUED, CA_OTHER_CONTACT, None)
    assert row.next_attempt_at is not None and row.next_attempt_at > NOW
    assert _copies(relay, ack) == [[CA_CONTACT]]

    deliver_due(ctx, transport_for(ctx.config))  # not before its time
    assert _copies(relay, ack) == [[CA_CONTACT]]

    del relay.handler.rcpt_replies[CA_OTHER_CONTACT]
    ctx.clock.set(row.next_attempt_at)  # type: ignore[attr-defined]
    deliver_due(ctx, transport_for(ctx.config))
    assert _copies(relay, ack) == [[CA_CONTACT], [CA_OTHER_CONTACT]]  # one copy each
    row = _row(ctx, ack)
    assert (row.status, row.retry_recipients, row.failed_recipients) == (OUT_SENT, None, None)
    assert not _alerts(ctx)


def test_a_deferred_recipient_refused_on_its_retry_is_failed_and_the_other_kept(ctx, relay):
    relay.handler.rcpt_replies[CA_OTHER_CONTACT] = "451 4.3.0 try again"
    ack = _acknowledge(ctx)
    deliver_due(ctx, transport_for(ctx.config))
    row = _row(ctx, ack)

    relay.handler.rcpt_replies[CA_OTHER_CONTACT] = "550 5.1.1 gone"
    ctx.clock.set(row.next_attempt_at)  # type: ignore[attr-defined]
    deliver_due(ctx, transport_for(ctx.config))
    row = _row(ctx, ack)
    assert (row.status, row.retry_recipients, row.failed_recipients) == (
        OUT_SENT, None, CA_OTHER_CONTACT)
    [alert] = _alerts(ctx)
    assert alert.subject == f"Delivery failed: acknowledgement to {CA_OTHER_CONTACT}"
    assert f"It did reach {CA_CONTACT}." in alert.data.decode()
    assert _copies(relay, ack) == [[CA_CONTACT]]


def test_a_to_refused_for_good_while_the_cc_is_deferred_is_failed_once_the_cc_has_it(ctx, relay):
    """The Cc's retry still happens (the mail stays queued for it), and when the Cc has
    it the mail is failed: its To never will (bot/outbox/verdict.py)."""
    relay.handler.rcpt_replies[CA_CONTACT] = "550 5.1.1 <incidents@exampleca.test>: no such user"
    relay.handler.rcpt_replies[CA_OTHER_CONTACT] = "450 4.2.0 greylisted, come back later"
    with ctx.db.write() as session:
        ack = enqueue(session, ctx, MailSpec(
            kind="acknowledgement", to=[CA_CONTACT], cc=[CA_OTHER_CONTACT],
            subject="[INC-2026-0001] Notification received", body="Received.")).message_id
    report = deliver_due(ctx, transport_for(ctx.config))
    # What `tick` prints: the acknowledgement deferred, and the staff alert about
    # its To (queued meanwhile) sent in the same pass.
    assert (report.sent, report.retried, report.failed) == (1, 1, 0)
    row = _row(ctx, ack)
    assert (row.status, row.failed_recipients, row.retry_recipients) == (
        OUT_QUEUED, CA_CONTACT, CA_OTHER_CONTACT)
    assert _copies(relay, ack) == []
    [alert] = _alerts(ctx)  # staff know now, not after two days of retries
    assert alert.subject == f"Delivery failed: acknowledgement to {CA_CONTACT}"
    assert "It did reach" not in alert.data.decode()

    del relay.handler.rcpt_replies[CA_OTHER_CONTACT]
    ctx.clock.set(row.next_attempt_at)  # type: ignore[attr-defined]
    report = deliver_due(ctx, transport_for(ctx.config))
    assert (report.sent, report.retried, report.failed) == (1, 0, 0)
    assert _copies(relay, ack) == [[CA_OTHER_CONTACT]]
    row = _row(ctx, ack)
    assert (row.status, row.failed_recipients, row.retry_recipients) == (
        OUT_FAILED, CA_CONTACT, None)
    assert len(_alerts(ctx)) == 1

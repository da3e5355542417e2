"""Messages acted on together in one transaction stay independent: one that fails halfway
leaves nothing of itself behind, is recorded as failed, and the others commit once."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from bot.clock import FixedClock
from bot.config import load_config
from bot.context import make_context
from bot.decide import route
from bot.decide.handlers import incidents
from bot.service.pipeline import TRANSACTION_BATCH, process_pending
from storage.db import open_database
from storage.models import (
    STATE_FAILED,
    STATE_PARKED,
    STATE_PROCESSED,
    InboundMessage,
    Incident,
    OutboundMessage,
    RawMessage,
)
from storage.rawstore import Arrival, store_batch
from tests.harness import CA_CONTACT, make_mail, numbered_form, write_config

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_message_failing_halfway_is_rolled_back_alone(tmp_path, monkeypatch):
    config = load_config(write_config(tmp_path, smtp_port=1, relay_port=1,
                                      outgoing_mode="maildir"))
    ctx = make_context(config, open_database(config.storage_url), FixedClock(NOW))
    count = TRANSACTION_BATCH - 2
    poisoned = f"<batch-{count // 2}@exampleca.test>"
    with ctx.db.write() as session:
        store_batch(session, [Arrival(make_mail(CA_CONTACT, f"Security incident {n}",
                                                numbered_form(n),
                                                message_id=f"<batch-{n}@exampleca.test>"),
                                      "smtp", NOW) for n in range(count)])

    opens = route.HANDLERS["notification"]

    def open_then_fail(session, ctx, inbound, analysis, cls):  # type: ignore[no-untyped-def]
        opens(session, ctx, inbound, analysis, cls)  # the incident and its acknowledgement
        if analysis.message.message_id == poisoned:
            raise RuntimeError("the disk said no")

    monkeypatch.setitem(route.HANDLERS, "notification", open_then_fail)
    report = process_pending(ctx)

    assert (report.processed, report.failed) == (count - 1, 1)
    with ctx.db.read() as session:
        rows = {r.message_id: r for r in session.exec(select(InboundMessage))}
        incidents = session.exec(select(Incident)).all()
        acks = session.exec(select(OutboundMessage).where(
            OutboundMessage.kind == "acknowledgement")).all()
    failed = rows.pop(poisoned)
    assert failed.state == STATE_FAILED and "the disk said no" in (failed.last_error or "")
    assert failed.incident_id is None and failed.attempts == 1
    assert all(r.state == STATE_PROCESSED for r in rows.values())
    # One incident and one acknowledgement for each other message; none for the failed one.
    assert sorted(i.thread_message_id for i in incidents) == sorted(rows)
    assert sorted(a.inbound_id for a in acks) == sorted(r.id for r in rows.values())
    # Numbered without a gap: the failed message's incident number was rolled back too.
    assert sorted(i.seq for i in incidents) == list(range(1, count))
    ctx.db.dispose()


def test_a_message_failing_inside_opening_its_incident_leaves_its_number_to_the_next(
        tmp_path, monkeypatch):
    """The failure is raised while the incident is being opened (its row written,
    its acknowledgement not yet queued), and the half-made incident is still held
    (here by the test; in life by a traceback an error reporter keeps): the next
    message must open the incident of that number all the same."""
    config = load_config(write_config(tmp_path, smtp_port=1, relay_port=1,
                                      outgoing_mode="maildir"))
    ctx = make_context(config, open_database(config.storage_url), FixedClock(NOW))
    with ctx.db.write() as session:
        store_batch(session, [Arrival(make_mail(CA_CONTACT, f"Security incident {n}",
                                                numbered_form(n),
                                                message_id=f"<inside-{n}@exampleca.test>"),
                                      "smtp", NOW) for n in range(3)])
    acknowledge = incidents.acknowledgement
    held = []

    def fail_for_the_first(session, ctx, incident, inbound, *rest):  # type: ignore[no-untyped-def]
        if inbound.message_id == "<inside-0@exampleca.test>":
            held.append(incident)
            raise RuntimeError("the template said no")
        return acknowledge(session, ctx, incident, inbound, *rest)

    monkeypatch.setattr(incidents, "acknowledgement", fail_for_the_first)
    report = process_pending(ctx)

    assert (report.processed, report.failed) == (2, 1)
    with ctx.db.read() as session:
        opened = {i.thread_message_id: i.id for i in session.exec(select(Incident))}
    assert opened == {"<inside-1@exampleca.test>": "INC-2026-0001",
                      "<inside-2@exampleca.test>": "INC-2026-0002"}
    ctx.db.dispose()


def test_a_message_whose_raw_bytes_are_gone_is_parked_at_once(tmp_path):
    """Retrying cannot bring lost raw bytes back: a person is asked at the first attempt."""
    config = load_config(write_config(tmp_path, smtp_port=1, relay_port=1,
                                      outgoing_mode="maildir"))
    ctx = make_context(config, open_database(config.storage_url), FixedClock(NOW))
    with ctx.db.write() as session:
        kept, lost = store_batch(session, [
            Arrival(make_mail(CA_CONTACT, f"Security incident {n}", numbered_form(n),
                              message_id=f"<raw-{n}@exampleca.test>"), "smtp", NOW)
            for n in range(2)])
        raw = session.get(RawMessage, lost.id)
        assert raw is not None
        session.delete(raw)

    report = process_pending(ctx)

    assert (report.processed, report.failed, report.parked) == (1, 0, 1)
    with ctx.db.read() as session:
        parked = session.get(InboundMessage, lost.id)
        done = session.get(InboundMessage, kept.id)
    assert parked is not None and done is not None
    assert (parked.state, parked.attempts, parked.next_attempt_at) == (STATE_PARKED, 1, None)
    assert parked.last_error == f"PermanentProcessingError: no raw message {lost.id}"
    assert done.state == STATE_PROCESSED
    ctx.db.dispose()

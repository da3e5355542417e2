"""The first story end to end: a CA mails the form and is acknowledged with an incident number."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

import pytest

from bot.operator.views import incident_json
from storage import queries
from storage.models import InboundMessage
from tests.harness import (
    BOT,
    CA_CONTACT,
    CA_OTHER_CONTACT,
    COMPLETE_FORM,
    STAFF,
    make_mail,
    running_bot,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def show(bot, incident_id: str) -> dict:  # type: ignore[no-untyped-def]
    with bot.ctx.db.read() as session:
        return incident_json(session, queries.incident(session, incident_id), bot.clock.now())


def test_ca_notifies_and_is_acknowledged_with_an_incident_number(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        mid = "<form-1@exampleca.test>"
        bot.send(make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM,
                           message_id=mid))

        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        msg = ack.message
        assert msg["Subject"].startswith("[INC-2026-0001] ")
        assert msg["In-Reply-To"] == mid
        assert mid in msg["References"]
        assert msg["Auto-Submitted"] == "auto-replied"
        assert msg["Message-ID"].endswith("@program.test>")
        assert CA_OTHER_CONTACT in msg["Cc"]
        body = ack.body
        assert "A CAA check skipped for IDN domains" in body
        # Incident at 2026-11-25 14:05 UTC: the 24 hours ended 2026-11-26 14:05; received 12:00.
        assert "met (received within 24 hours)" in body
        assert "All required answers are present" in body

        alert = sink.wait_for(sink.to(STAFF, "New incident"))[0]
        assert "INC-2026-0001" in alert.subject
        assert "Example CA" in alert.body

        data = show(bot, "INC-2026-0001")
        assert data["ca"] == "Example CA"
        assert data["status"] == "open"
        assert data["category"] == "mis-issuance"
        assert data["incident_at"] == "2026-11-25T14:05:00+00:00"
        assert data["discovered_at"] == "2026-11-26T09:30:00+00:00"
        assert data["notified_at"] == "2026-11-26T12:00:00+00:00"
        assert data["notification_deadline"] == "2026-11-26T14:05:00+00:00"
        assert data["notified_on_time"] is True
        assert data["form"]["root_cause"] == "A CAA check skipped for IDN domains"
        assert data["missing_fields"] == []
        kinds = {(m["direction"], m["kind"]) for m in data["messages"]}
        assert ("in", "notification") in kinds and ("out", "acknowledgement") in kinds


def test_late_notification_says_by_how_much_and_missing_fields_are_asked_for(tmp_path):
    late = datetime(2026, 11, 26, 17, 17, tzinfo=UTC)
    form = "\n".join(line for line in COMPLETE_FORM.splitlines()
                     if not line.startswith(("What the CA believes", "Remedial")))
    with running_bot(tmp_path, at=late) as (bot, sink):
        bot.send(make_mail(CA_CONTACT, "incident", form))
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert "late by 3 h 12 min" in ack.body
        assert "What the CA believes the underlying cause is:" in ack.body
        assert "Remedial measures taken or planned:" in ack.body
        data = show(bot, "INC-2026-0001")
        assert data["notified_on_time"] is False
        assert data["missing_fields"] == ["root_cause", "remediation"]

        # The CA answers only the missing questions in the thread; the form is complete.
        reply = make_mail(CA_CONTACT, "Re: [INC-2026-0001] Notification received",
                          "What the CA believes the underlying cause is: a bug\n"
                          "Remedial measures taken or planned: a fix\n\n> quoted text\n")
        bot.send(reply)
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Update recorded"))[0]
        assert "[INC-2026-0001]" in receipt.subject
        data = show(bot, "INC-2026-0001")
        assert data["missing_fields"] == []
        assert data["form"]["remediation"] == "a fix"
        assert any(e["kind"] == "field-recorded" and "a bug" in e["summary"]
                   for e in data["events"])


def test_a_notification_at_exactly_24_hours_is_on_time_and_one_second_later_is_late(tmp_path):
    # Incident at 2026-11-25 14:05:00 UTC: the window ends at 2026-11-26 14:05:00 UTC.
    deadline = datetime(2026, 11, 26, 14, 5, tzinfo=UTC)
    with running_bot(tmp_path, at=deadline) as (bot, sink):
        bot.send(make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM))
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert "24-hour window: met (received within 24 hours)\r\n" in ack.body
        data = show(bot, "INC-2026-0001")
        assert data["notified_at"] == data["notification_deadline"] == "2026-11-26T14:05:00+00:00"
        assert data["notified_on_time"] is True

        bot.clock.set(deadline + timedelta(seconds=1))
        other = COMPLETE_FORM.replace("Example Issuing CA 2", "Example Issuing CA 3")
        bot.send(make_mail(CA_OTHER_CONTACT, "Security incident notification", other))
        [late] = sink.wait_for(sink.to(CA_OTHER_CONTACT, "[INC-2026-0002] Notification received"))
        assert "24-hour window: missed: late by 1 s\r\n" in late.body
        assert show(bot, "INC-2026-0002")["notified_on_time"] is False
        assert sink.wait_for(sink.to(STAFF, "INC-2026-0002"))


def test_ruleset_2026_02_starts_the_clock_at_discovery(tmp_path):
    with running_bot(tmp_path, at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
                     ruleset="2026-02") as (bot, sink):
        bot.send(make_mail(CA_CONTACT, "incident", COMPLETE_FORM))
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        # Discovered 2026-11-26 09:30: deadline 2026-11-27 09:30, received 09:00.
        assert "24-hour window: met (received within 24 hours)\r\n" in ack.body
        data = show(bot, "INC-2026-0001")
        assert data["notification_deadline"] == "2026-11-27T09:30:00+00:00"
        assert data["notified_on_time"] is True
        assert set(data["missing_fields"]) == {"affected_certificate_count", "ca_requests"}


def test_only_the_intake_address_is_accepted(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, _sink):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            bot.send(make_mail(CA_CONTACT, "x", "y"), to="someone@program.test")
        code, text = refused.value.recipients["someone@program.test"]
        assert code == 550 and b"5.1.1" in text


def test_oversized_mail_is_refused_with_552(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, _sink):
        big = make_mail(CA_CONTACT, "big", "x" * (2 * 1024 * 1024))
        with pytest.raises(smtplib.SMTPException) as refused:
            bot.send(big)
        assert "552" in str(refused.value)
        with bot.ctx.db.read() as session:
            assert session.exec(__import__("sqlmodel").select(InboundMessage)).all() == []


def test_a_duplicate_is_accepted_and_processed_once(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        raw = make_mail(CA_CONTACT, "incident", COMPLETE_FORM, message_id="<dup@exampleca.test>")
        assert bot.send(raw) == {}
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"))
        assert bot.send(raw) == {}
        with bot.ctx.db.read() as session:
            rows = session.exec(__import__("sqlmodel").select(InboundMessage)).all()
            assert len(rows) == 1 and rows[0].duplicates == 1
            assert len(queries.incidents(session)) == 1


@pytest.mark.parametrize("body", ["", "Hello, who do I talk to about an incident?",
                                  "\udcff broken"])
def test_a_ca_mail_without_a_form_gets_the_blank_form_and_opens_nothing(tmp_path, body):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        raw = make_mail(CA_CONTACT, "question", body.encode("utf-8", "replace").decode())
        bot.send(raw)
        form = sink.wait_for(sink.to(CA_CONTACT, "notification form"))[0]
        assert "When the CA discovered the incident:" in form.body
        names = [p.get_filename() for p in form.message.iter_attachments()]
        assert names == ["notification-form.txt"]
        with bot.ctx.db.read() as session:
            assert queries.incidents(session) == []


def test_unknown_senders_are_stored_quarantined_and_never_answered(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        bot.send(make_mail("mallory@evil.test", "incident", COMPLETE_FORM))
        # A CA mail sent afterwards is answered: so the first was processed and not answered.
        bot.send(make_mail(CA_CONTACT, "question", "hello"))
        sink.wait_for(sink.to(CA_CONTACT, "notification form"))
        assert not [r for r in sink.received if "mallory@evil.test" in r.recipients]
        with bot.ctx.db.read() as session:
            q = queries.quarantined(session)
            assert [m.from_address for m in q] == ["mallory@evil.test"]
            assert queries.incidents(session) == []


def test_undecodable_bytes_are_stored_and_the_service_goes_on(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        raw = (b"From: " + CA_CONTACT.encode() + b"\r\nTo: " + BOT.encode() +
               b"\r\nSubject: \xff\xfe\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64\xff\r\n")
        bot.send(raw, sender=CA_CONTACT)
        bot.send(make_mail(CA_CONTACT, "incident", COMPLETE_FORM))
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"))
        with bot.ctx.db.read() as session:
            states = queries.message_state_counts(session)
        assert states == {"processed": 2}


def test_a_form_without_any_time_is_acknowledged_as_not_judgeable_and_asked_for_it(tmp_path):
    form = "\n".join(line for line in COMPLETE_FORM.splitlines()
                     if not line.startswith(("When did the incident occur",
                                             "When the CA discovered")))
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        bot.send(make_mail(CA_CONTACT, "Security incident notification", form))
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert ("24-hour window: cannot be judged: the form gives no time of the incident "
                "or of its discovery\r\n") in ack.body
        assert "When the CA discovered the incident:" in ack.body  # asked for
        data = show(bot, "INC-2026-0001")
        assert data["notification_deadline"] is None and data["notified_on_time"] is None
        assert data["missing_fields"] == ["discovered_at"]

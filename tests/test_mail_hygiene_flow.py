"""Mail hygiene end to end: bounces mark our mail failed, machines and strangers get no answer.

Real listener, real relay sink: bounces built as RFC 3464 reports and the
corpus's real DSNs rewritten to point at one of our outgoing mails, the
corpus's auto-replies, a peer that will not stop writing, a stranger, another
CA's contact, hostile header values, and a mail past the parsing limits.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from datetime import UTC, datetime

from sqlmodel import col, select

from bot.operator.views import incident_json
from bot.outbox.render import Renderer, safe_filename
from bot.parse.automatic import LOOP_HEADER
from bot.parse.bounces import parse_bounce
from bot.parse.mail.message import parse_message
from bot.service.scheduler import run_scheduler
from storage.models import (
    OUT_FAILED,
    OUT_QUEUED,
    OUT_SENT,
    STATE_PROCESSED,
    Event,
    InboundMessage,
    Incident,
    OutboundMessage,
)
from storage.rawstore import Arrival, store
from tests.corpus import every_file, own_files
from tests.harness import (
    BOT,
    CA_CONTACT,
    CA_OTHER_CONTACT,
    COMPLETE_FORM,
    OTHER_CA_CONTACT,
    ROOTNOTIFY,
    STAFF,
    eventually,
    make_mail,
    running_bot,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def all_processed(bot, count: int) -> None:  # type: ignore[no-untyped-def]
    def done() -> bool:
        with bot.ctx.db.read() as session:
            rows = list(session.exec(select(InboundMessage)))
        return len(rows) >= count and all(r.state == STATE_PROCESSED for r in rows)
    eventually(f"{count} message(s) processed", done)


def outbox_settled(bot) -> None:  # type: ignore[no-untyped-def]
    """Wait until every mail the processed messages caused was handed to the relay.

    Every outgoing mail is an outbox row written with the decision that caused
    it; once all mail is processed and no row is queued, nothing more will be
    sent, so "nothing more was sent" is checked without sleeping.
    """
    def settled() -> bool:
        with bot.ctx.db.read() as session:
            return not session.exec(select(OutboundMessage).where(
                OutboundMessage.status == OUT_QUEUED)).first()
    eventually("the outbox handed to the relay", settled)


def crlf(raw: bytes) -> bytes:
    """Line ends as an MTA sends them (smtplib passes bare LF in bytes through)."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


def deliver(bot, raw: bytes, envelope_from: str = "", to: str = BOT) -> None:  # type: ignore[no-untyped-def]
    """Store `raw` as the listener does and wake the pipeline: for corpus mail whose
    lines are longer than SMTP allows (RFC 5321 4.5.3.1.6)."""
    store(bot.ctx.db, Arrival(raw=raw, channel="smtp", received_at=bot.clock.now(),
                              envelope_from=envelope_from, envelope_to=(to,)))
    bot.loop.call_soon_threadsafe(bot.service.stored.set)


def inbound_rows(bot) -> list[InboundMessage]:  # type: ignore[no-untyped-def]
    with bot.ctx.db.read() as session:
        return list(session.exec(select(InboundMessage).order_by(col(InboundMessage.id))))


def outbound_rows(bot, kind: str | None = None) -> list[OutboundMessage]:  # type: ignore[no-untyped-def]
    """Outgoing mail but the daily digest (`serve` starts after the digest hour)."""
    with bot.ctx.db.read() as session:
        query = select(OutboundMessage).order_by(col(OutboundMessage.id))
        if kind:
            query = query.where(OutboundMessage.kind == kind)
        return [r for r in session.exec(query) if not is_digest(r.subject)]


def is_digest(subject: str) -> bool:
    return subject.startswith("Daily digest")


def replies(sink) -> list:  # type: ignore[no-untyped-def]
    return [r for r in sink.received if not is_digest(r.subject)]


def events(bot, incident_id: str) -> list[Event]:  # type: ignore[no-untyped-def]
    with bot.ctx.db.read() as session:
        return list(session.exec(select(Event).where(Event.incident_id == incident_id)))


def notify(bot, sink):  # type: ignore[no-untyped-def]
    """A CA notification; returns the acknowledgement as the relay received it."""
    bot.send(make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM))
    return sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]


def dsn(original_id: str, recipient: str, *, action: str = "failed", status: str = "5.1.1",
        to: str = BOT) -> bytes:
    """An RFC 3464 report, as Postfix writes them."""
    diagnostic = ("smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown"
                  if status.startswith("5") else "smtp; 451 4.4.1 Connection timed out")
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.exampleca.test>
To: {to}
Subject: {"Undelivered Mail Returned to Sender" if action == "failed" else "Delayed Mail"}
Date: Thu, 26 Nov 2026 12:01:00 +0000
Message-ID: <{uuid.uuid4().hex}@mx.exampleca.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="R"

--R
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.exampleca.test.

--R
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.exampleca.test
Arrival-Date: Thu, 26 Nov 2026 12:00:30 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic.format(r=recipient)}

--R
Content-Type: text/rfc822-headers

From: Root Program <{BOT}>
To: {recipient}
Message-ID: {original_id}
Subject: [INC-2026-0001] Notification received

--R--
""".replace("\n", "\r\n").encode()


def test_permanent_bounce_by_verp_marks_the_mail_failed_tells_staff_and_is_never_answered(
        tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        ack = notify(bot, sink)
        ack_id = ack.message["Message-ID"]
        assert ack.envelope_from.startswith("rootnotify+bounce-")
        # The report names no Message-ID we know: only the VERP return path links it.
        report = dsn("<unrelated@elsewhere.test>", "nobody@nowhere.test", to=ack.envelope_from)
        assert bot.send(report, sender="", to=ack.envelope_from) == {}

        alert = sink.wait_for(sink.to(STAFF, "Delivery failed"))[0]
        assert "acknowledgement" in alert.subject and "5.1.1" in alert.body
        [row] = outbound_rows(bot, "acknowledgement")
        assert row.message_id == ack_id and row.status == OUT_FAILED
        assert "5.1.1" in (row.last_error or "")
        bounce = inbound_rows(bot)[-1]
        assert bounce.kind == "bounce" and bounce.incident_id == "INC-2026-0001"
        assert "found by VERP return path" in (bounce.note or "")
        kinds = {e.kind for e in events(bot, "INC-2026-0001")}
        assert {"bounce-received", "mail-failed"} <= kinds
        # Never answered: nothing went to the reporting MTA or the null path.
        outbox_settled(bot)
        assert not [r for r in sink.received if "mailer-daemon" in ",".join(r.recipients).lower()]
        assert all(r.recipients for r in sink.received)


def test_a_bounce_for_one_contact_fails_the_mail_for_that_contact_only(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        ack = notify(bot, sink)
        ack_id = ack.message["Message-ID"]
        assert sorted(ack.recipients) == sorted([CA_CONTACT, CA_OTHER_CONTACT])
        eventually("sent", lambda: outbound_rows(bot, "acknowledgement")[0].status == OUT_SENT)

        bot.send(dsn(ack_id, CA_OTHER_CONTACT), sender="")
        alert = sink.wait_for(sink.to(STAFF, "Delivery failed"))[0]
        assert alert.subject.endswith(f"Delivery failed: acknowledgement to {CA_OTHER_CONTACT}")
        assert f"It did reach {CA_CONTACT}." in alert.body
        [row] = outbound_rows(bot, "acknowledgement")
        assert (row.status, row.failed_recipients) == (OUT_SENT, CA_OTHER_CONTACT)
        assert f"failed for {CA_OTHER_CONTACT}" in (inbound_rows(bot)[-1].note or "")
        with bot.ctx.db.read() as session:  # what `rootnotify show --json` prints
            shown = incident_json(session, session.get(Incident, "INC-2026-0001"), NOW)
        [mail] = [m for m in shown["messages"] if m["message_id"] == ack_id]
        assert (mail["status"], mail["failed_to"], mail["retrying_to"]) == (
            "sent", [CA_OTHER_CONTACT], [])

        bot.send(dsn(ack_id, CA_OTHER_CONTACT), sender="")  # the same news again: noted only
        all_processed(bot, 3)
        bot.send(dsn(ack_id, CA_CONTACT), sender="")  # now neither contact has it
        sink.wait_for(sink.to(STAFF, "Delivery failed"), count=2)
        [row] = outbound_rows(bot, "acknowledgement")
        assert row.status == OUT_FAILED
        assert set((row.failed_recipients or "").split(",")) == {CA_CONTACT, CA_OTHER_CONTACT}
        second = [r for r in sink.received if "Delivery failed" in r.subject][1]
        assert second.subject.endswith(f"Delivery failed: acknowledgement to {CA_CONTACT}")
        assert "It did reach" not in second.body
        all_processed(bot, 4)
    assert len([r for r in sink.received if "Delivery failed" in r.subject]) == 2


def test_delayed_report_is_only_noted(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        ack = notify(bot, sink)
        eventually("sent", lambda: outbound_rows(bot, "acknowledgement")[0].status == OUT_SENT)
        bot.send(dsn(ack.message["Message-ID"], CA_CONTACT, action="delayed", status="4.4.1"),
                 sender="")
        all_processed(bot, 2)
        [row] = outbound_rows(bot, "acknowledgement")
        assert row.status == OUT_SENT
        assert "delayed report about acknowledgement" in (inbound_rows(bot)[-1].note or "")
        alerts = [r.subject for r in outbound_rows(bot, "alert")]
        assert not [s for s in alerts if "Delivery failed" in s]


def _rewritten(raw: bytes, original: str, ours: str) -> bytes:
    """A corpus DSN made to report on our mail: its returned Message-ID replaced by ours."""
    return raw.replace(original.encode(), ours.encode())


def test_real_dsns_rewritten_to_our_mail_are_linked_by_the_returned_message_id(tmp_path):
    cases = []
    for path in every_file("dsn"):
        raw = path.read_bytes()
        report = parse_bounce(raw, parse_message(raw))
        if report is not None and report.permanent and report.original_message_id:
            cases.append((path.name, raw, report.original_message_id))
    # Our own corpus alone has eight (Postfix, Exim, Exchange, Gmail); the shared one adds a dozen.
    assert len(cases) >= 8, [p.name for p in every_file("dsn")]
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        ack_id = notify(bot, sink).message["Message-ID"]
        for _name, raw, original in cases:
            deliver(bot, _rewritten(raw, original, ack_id))
        all_processed(bot, 1 + len(cases))
        bounces = inbound_rows(bot)[1:]
        unlinked = [(name, b.note) for (name, _, _), b in zip(cases, bounces, strict=True)
                    if "found by returned Message-ID" not in (b.note or "")]
        assert not unlinked
        assert all(b.kind == "bounce" and b.incident_id == "INC-2026-0001" for b in bounces)
        assert outbound_rows(bot, "acknowledgement")[0].status == OUT_FAILED
        # Staff are told once, not once per report.
        sink.wait_for(sink.to(STAFF, "Delivery failed"))
        outbox_settled(bot)
        assert len([r for r in sink.received if "Delivery failed" in r.subject]) == 1


def test_corpus_auto_replies_and_bounces_are_never_answered(tmp_path):
    files = every_file("autoreply") + every_file("dsn")
    assert len(files) >= len(own_files("autoreply")) + len(own_files("dsn")) >= 20
    with running_bot(tmp_path, at=NOW) as (bot, _sink):
        for path in files:
            deliver(bot, path.read_bytes(), envelope_from="someone@remote.test")
        all_processed(bot, len(files))
        assert outbound_rows(bot) == []
        kinds = {r.kind for r in inbound_rows(bot)}
        assert kinds <= {"auto-reply", "bounce", "other"}


def test_a_misbehaving_peer_gets_at_most_the_daily_cap_of_automatic_replies(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        cap = bot.config.bot.max_auto_replies_per_day
        assert cap == 40
        for i in range(cap + 1):
            # Each a new mail outside any incident with no form: each would get the blank form.
            bot.send(make_mail(CA_CONTACT, f"question {i}", "How do I report an incident?"))
        all_processed(bot, cap + 1)
        outbox_settled(bot)
        forms = [r for r in sink.received if CA_CONTACT in r.recipients]
        assert len(forms) == cap
        assert len(outbound_rows(bot, "form")) == cap


def test_our_own_loop_marker_is_never_answered_and_every_mail_we_send_carries_it(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        marker = bot.config.bot.loop_marker
        ack = notify(bot, sink)
        sink.wait_for(sink.to(STAFF, "New incident"))
        # Our acknowledgement, reflected back by a broken forwarder as if the CA wrote it.
        echoed = make_mail(CA_CONTACT, "Re: " + ack.subject, "fwd",
                           headers={LOOP_HEADER: marker})
        bot.send(echoed)
        bot.send(make_mail(CA_CONTACT, "hello", "no form here", headers={LOOP_HEADER: marker}))
        all_processed(bot, 3)
        outbox_settled(bot)
        # The acknowledgement and the staff alert, nothing more.
        assert len(replies(sink)) == 2, [r.subject for r in sink.received]
        assert [r.kind for r in inbound_rows(bot)][1:] == ["auto-reply", "auto-reply"]
        for mail in sink.received:
            msg = mail.message
            assert msg["Auto-Submitted"] in ("auto-replied", "auto-generated")
            assert msg[LOOP_HEADER] == marker
            assert msg["X-Auto-Response-Suppress"] == "All"


def test_unknown_sender_is_quarantined_listed_and_in_the_digest_never_answered(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        bot.send(make_mail("stranger@spam.test", "Security incident notification",
                           COMPLETE_FORM))
        all_processed(bot, 1)
        out = subprocess.run(
            [*ROOTNOTIFY, "--config", str(bot.config.path), "quarantine",
             "--json"], capture_output=True, text=True, timeout=60, check=True)
        [row] = json.loads(out.stdout)
        assert row["from"] == "stranger@spam.test"
        assert outbound_rows(bot) == [] or all(
            "stranger@spam.test" not in r.recipients for r in outbound_rows(bot))
        # The next day's digest lists it.
        bot.clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
        run_scheduler(bot.ctx)
        bot.service.queued_soon()
        digest = sink.wait_for(lambda r: STAFF in r.recipients and "stranger@spam.test" in r.body)
        assert digest
        assert not [r for r in sink.received if "stranger@spam.test" in r.recipients]


def test_another_cas_contact_in_a_thread_changes_nothing_and_staff_are_told(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        ack = notify(bot, sink)
        with bot.ctx.db.read() as session:
            before = [e.kind for e in session.exec(select(Event))]
        bot.send(make_mail(OTHER_CA_CONTACT, "Re: " + ack.subject,
                           "Remedial measures taken or planned: none, close it",
                           in_reply_to=ack.message["Message-ID"]))
        alert = sink.wait_for(sink.to(STAFF, "wrote in Example CA's incident"))[0]
        assert OTHER_CA_CONTACT in alert.body
        intruder = inbound_rows(bot)[-1]
        assert intruder.kind == "other" and intruder.incident_id == "INC-2026-0001"
        with bot.ctx.db.read() as session:
            from storage.models import FormValue
            remediation = [v.value for v in session.exec(
                select(FormValue).where(FormValue.key == "remediation"))]
            after = [e.kind for e in session.exec(select(Event))]
        assert remediation == ["Fixed the check; revoking 12 certificates"]
        added = after[len(before):]
        assert "other-received" in added and not [k for k in added if "form" in k]
        outbox_settled(bot)
        assert not [r for r in sink.received if OTHER_CA_CONTACT in r.recipients]
        assert not [r for r in outbound_rows(bot) if OTHER_CA_CONTACT in r.recipients]


INJECTED_SUBJECT = "=?utf-8?q?Incident=0D=0ABcc:_victim@evil.test=0D=0AX-Evil:_1?="
INJECTED_NAME = "=?utf-8?q?Eve=0D=0ABcc:_victim2@evil.test?="


def test_values_from_incoming_mail_never_break_a_header(tmp_path):
    raw = make_mail(CA_CONTACT, "placeholder", COMPLETE_FORM)
    raw = raw.replace(b"Subject: placeholder", f"Subject: {INJECTED_SUBJECT}".encode())
    raw = raw.replace(f"From: {CA_CONTACT}".encode(),
                      f"From: {INJECTED_NAME} <{CA_CONTACT}>".encode())
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        bot.send(crlf(raw), sender=CA_CONTACT)
        ack = sink.wait_for(sink.to(CA_CONTACT, "INC-2026-0001"))[0]
        sink.wait_for(sink.to(STAFF, "New incident"))
        for mail in sink.received:
            assert not any("evil.test" in r for r in mail.recipients)
            head = mail.data.split(b"\r\n\r\n", 1)[0]
            assert not re.search(rb"^(bcc|x-evil):", head, re.IGNORECASE | re.MULTILINE)
            assert "evil" not in " ".join(mail.message.keys()).lower()
            for line in head.split(b"\r\n"):
                assert len(line) <= 998 and b"\r" not in line and b"\n" not in line
        assert ack.message["Bcc"] is None


def test_non_ascii_subjects_are_encoded_and_folded(tmp_path):
    subject = "Sicherheitsvorfall – Überprüfung der Zertifikate ☃ " * 3
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        bot.send(make_mail(CA_CONTACT, subject, "no form, just a question"))
        form = sink.wait_for(sink.to(CA_CONTACT))[0]
        head = form.data.split(b"\r\n\r\n", 1)[0]
        assert head.isascii()  # RFC 2047 encoded, not raw UTF-8
        assert all(len(line) <= 78 for line in head.split(b"\r\n") if line.startswith(b"Subj"))
        assert str(form.message["Subject"]).strip()
        # The attachment we send has a plain, safe name.
        [part] = [p for p in form.message.iter_attachments()]
        assert part.get_filename() == "notification-form.txt"


def test_attachment_names_and_html_templates_are_safe():
    assert safe_filename("../../etc/passwd\r\nX-Evil: 1.txt") == "_.._etc_passwdX-Evil: 1.txt"
    assert "/" not in safe_filename("/abs/name") and safe_filename("...") == "attachment"
    assert len(safe_filename("a" * 500)) == 100
    assert '"' not in safe_filename('a"; filename="b.exe')
    renderer = Renderer()
    assert renderer.env.autoescape("alert.html.j2") is True
    assert renderer.env.autoescape("alert.txt.j2") is False
    html = renderer.env.from_string("{{ v }}", globals={}).render(v="<b>")
    assert html == "<b>"  # text templates are not escaped; HTML ones are (above)


def test_a_mail_past_the_limits_is_processed_and_the_ca_told_what_was_not_read(tmp_path):
    from email.message import EmailMessage
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = CA_CONTACT, BOT, "Security incident notification"
    msg["Message-ID"] = "<limits-1@exampleca.test>"
    msg.set_content(COMPLETE_FORM)
    for i in range(8):
        msg.add_attachment(f"note {i}".encode(), maintype="text", subtype="plain",
                           filename=f"note-{i}.txt")
    with running_bot(tmp_path, at=NOW, extra="[limits]\nmax_attachments = 5\n") as (bot, sink):
        bot.send(crlf(msg.as_bytes()))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "was not read"))[0]
        assert "attachments: 8 exceeds the limit of 5" in receipt.body
        assert receipt.subject.startswith("[INC-2026-0001]")
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"))
        [row] = inbound_rows(bot)
        assert row.state == STATE_PROCESSED and "limits passed" in (row.note or "")
        assert "limits-exceeded" in {e.kind for e in events(bot, "INC-2026-0001")}


def test_parse_message_never_raises_on_header_objects():
    message = parse_message(b"From: a@b.c\nDate: Mon, 1 Jan 2024 \xff\n\nhi\n")
    assert message.from_address == "a@b.c" and message.date is None

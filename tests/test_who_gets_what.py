"""Who gets what, and what a bounce means: DESIGN.md's mail rules, held end to end.

A team of two staff (alice sends the commands, bob never does) and a CA with
two contacts. Each row of "Who gets what" is checked at the relay: the exact
envelope recipients (RCPT TO), the To and Cc headers, the incident's tag in
the subject (none in the digest). Then the bounce rule: an acknowledgement
whose To bounces, or is refused for good, is `failed` in `show --json`; one
whose Cc alone bounces stays `sent`, the Cc in `failed_to`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses

import pytest
from sqlmodel import select

from storage.models import OutboundMessage
from tests.harness import (
    BOT,
    CA_CONTACT,
    CA_OTHER_CONTACT,
    COMPLETE_FORM,
    OTHER_STAFF,
    STAFF,
    Received,
    Sink,
    eventually,
    make_mail,
)
from tests.story import ROOT_NAME, command, notify, send, show, story_bot, tick
from tests.test_mail_hygiene_flow import dsn

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TEAM = (STAFF, OTHER_STAFF)
CONTACTS = [CA_CONTACT, CA_OTHER_CONTACT]  # in the order the config lists them


def team_bot(tmp_path, at: datetime = NOW):  # type: ignore[no-untyped-def]
    """Two staff addresses, S/MIME-authenticated commands, Example CA with two contacts."""
    return story_bot(tmp_path, at, staff_auth="smime", staff=TEAM)


def addressed(mail: Received) -> tuple[list[str], list[str], list[str]]:
    """(envelope recipients, To, Cc) of a mail as the relay took it."""
    msg = mail.message

    def header(name: str) -> list[str]:
        return [a for _n, a in getaddresses([str(v) for v in msg.get_all(name, [])])]

    return sorted(mail.recipients), header("To"), header("Cc")


def copies(sink: Sink, message_id: str) -> list[Received]:
    return [r for r in sink.received if r.message["Message-ID"] == message_id]


def delivered(bot, sink: Sink, inc: str, kind: str, count: int = 1) -> list[Received]:  # type: ignore[no-untyped-def]
    """The relay's copy of each of the incident's outgoing mails of `kind`, oldest first;
    each was handed over exactly once."""
    def ids() -> list[str]:
        out = [m["message_id"] for m in show(bot, inc)["messages"]
               if m["direction"] == "out" and m["kind"] == kind]
        return out if len(out) >= count else []

    found = []
    for message_id in eventually(f"{count} {kind} mail(s) in {inc}", ids):  # type: ignore[union-attr]
        sink.wait_for(lambda r, m=message_id: r.message["Message-ID"] == m)
        [copy] = copies(sink, message_id)
        found.append(copy)
    return found


def kinds_received_by(bot, sink: Sink, address: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The kinds (as the outbox records them) of every mail the relay took for `address`."""
    with bot.ctx.db.read() as session:
        kind_of = {o.message_id: o.kind for o in session.exec(select(OutboundMessage))}
    return sorted(kind_of[r.message["Message-ID"]] for r in sink.received
                  if address in r.recipients)


def every_subject_is_tagged(bot, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    """Every mail about an incident has its tag in the subject; any other (the digest) none."""
    with bot.ctx.db.read() as session:
        incident_of = {o.message_id: o.incident_id for o in session.exec(select(OutboundMessage))}
    for r in sink.received:
        incident = incident_of[r.message["Message-ID"]]
        if incident:
            assert f"[{incident}]" in r.subject, r.subject
        else:
            assert "[INC-" not in r.subject, r.subject


# --------------------------------------------------------------------------
# Who gets what, row by row
# --------------------------------------------------------------------------


@pytest.mark.parametrize("sender", [CA_CONTACT, CA_OTHER_CONTACT])
def test_the_acknowledgement_goes_to_the_sender_with_the_other_contact_in_cc(tmp_path, sender):
    with team_bot(tmp_path) as (bot, sink, _pki):
        send(bot, make_mail(sender, "Security incident notification", COMPLETE_FORM))
        other = CA_OTHER_CONTACT if sender == CA_CONTACT else CA_CONTACT
        ack = sink.wait_for(sink.to(sender, "Notification received"))[0]
        inc = ack.subject.split("[", 1)[1].split("]", 1)[0]
        [ack] = delivered(bot, sink, inc, "acknowledgement")
        assert addressed(ack) == (sorted(CONTACTS), [sender], [other])
        assert ack.subject.startswith(f"[{inc}] Notification received")
        every_subject_is_tagged(bot, sink)


def test_the_alert_of_a_new_incident_goes_to_every_staff_address(tmp_path):
    with team_bot(tmp_path) as (bot, sink, _pki):
        inc = notify(bot, sink)
        [alert] = delivered(bot, sink, inc, "alert")
        assert addressed(alert) == (sorted(TEAM), list(TEAM), [])
        assert alert.subject.startswith(f"[{inc}] New incident")
        every_subject_is_tagged(bot, sink)


@pytest.mark.parametrize("line", ["/request certificate-list due 2026-12-05",
                                  "/request final-report due 2026-12-20",
                                  "/request reports every 7d"])
def test_a_request_goes_to_every_contact_and_its_confirmation_to_alice_alone(tmp_path, line):
    with team_bot(tmp_path) as (bot, sink, pki):
        inc = notify(bot, sink)
        command(bot, sink, line, inc, signer=pki.alice)
        [request] = delivered(bot, sink, inc, "request")
        assert addressed(request) == (sorted(CONTACTS), CONTACTS, [])
        assert request.subject.startswith(f"[{inc}] Request:")
        [confirmation] = delivered(bot, sink, inc, "confirmation")
        assert addressed(confirmation) == ([STAFF], [STAFF], [])
        assert confirmation.subject.startswith(f"[{inc}] Done:") and line in confirmation.subject
        # bob has the new-incident alert and nothing of alice's commands.
        assert "confirmation" not in kinds_received_by(bot, sink, OTHER_STAFF)
        assert set(kinds_received_by(bot, sink, OTHER_STAFF)) == {"alert"}
        every_subject_is_tagged(bot, sink)


def test_the_error_for_a_refused_notice_goes_to_alice_alone(tmp_path):
    with team_bot(tmp_path) as (bot, sink, pki):
        inc = notify(bot, sink)
        command(bot, sink, f"/notice revoke-root {ROOT_NAME} on 2026-11-28", inc,
                signer=pki.alice, expect="Command error")
        [error] = delivered(bot, sink, inc, "error")
        assert addressed(error) == ([STAFF], [STAFF], [])
        assert error.subject == f"[{inc}] Command error in {inc}: nothing was changed"
        assert "less than 7 days away" in error.body
        assert set(kinds_received_by(bot, sink, OTHER_STAFF)) == {"alert"}
        assert set(kinds_received_by(bot, sink, CA_CONTACT)) == {"acknowledgement"}
        every_subject_is_tagged(bot, sink)


def test_a_notice_goes_to_every_contact_and_its_confirmation_to_alice_alone(tmp_path):
    with team_bot(tmp_path) as (bot, sink, pki):
        inc = notify(bot, sink)
        command(bot, sink, f"/notice revoke-root {ROOT_NAME} on 2026-12-04", inc,
                signer=pki.alice)
        [notice] = delivered(bot, sink, inc, "notice")
        assert addressed(notice) == (sorted(CONTACTS), CONTACTS, [])
        assert f"[{inc}]" in notice.subject
        [confirmation] = delivered(bot, sink, inc, "confirmation")
        assert addressed(confirmation) == ([STAFF], [STAFF], [])
        # The evidence kept with the notice (M1) names the same recipients.
        [kept] = show(bot, inc)["notices"]
        assert kept["recipients"] == CONTACTS
        assert set(kinds_received_by(bot, sink, OTHER_STAFF)) == {"alert"}
        every_subject_is_tagged(bot, sink)


def test_reminders_go_to_every_contact_and_the_escalation_to_every_staff_address(tmp_path):
    due = datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)
    with team_bot(tmp_path) as (bot, sink, pki):
        inc = notify(bot, sink)
        command(bot, sink, "/request certificate-list due 2026-11-29", inc, signer=pki.alice)
        tick(bot, due - timedelta(hours=20))  # due soon
        [soon] = delivered(bot, sink, inc, "reminder")
        assert addressed(soon) == (sorted(CONTACTS), CONTACTS, [])
        assert soon.subject.startswith(f"[{inc}] Reminder")
        tick(bot, due + timedelta(seconds=1))  # overdue: the CA again, and staff once
        overdue = delivered(bot, sink, inc, "reminder", count=2)[1]
        assert addressed(overdue) == (sorted(CONTACTS), CONTACTS, [])
        assert overdue.subject.startswith(f"[{inc}] Overdue")
        [escalation] = delivered(bot, sink, inc, "escalation")
        assert addressed(escalation) == (sorted(TEAM), list(TEAM), [])
        assert escalation.subject.startswith(f"[{inc}] Escalation")
        assert set(kinds_received_by(bot, sink, OTHER_STAFF)) == {"alert", "escalation"}
        every_subject_is_tagged(bot, sink)


def test_the_digest_goes_to_every_staff_address_without_a_tag(tmp_path):
    early = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # before the digest hour (8)
    with team_bot(tmp_path, early) as (bot, sink, pki):
        inc = notify(bot, sink)
        command(bot, sink, "/request certificate-list due 2026-11-27", inc, signer=pki.alice)
        tick(bot, datetime(2026, 11, 28, 9, 0, tzinfo=UTC))
        [digest] = sink.wait_for(lambda r: "Daily digest 2026-11-28" in r.subject)
        assert addressed(digest) == (sorted(TEAM), list(TEAM), [])
        assert "[INC-" not in digest.subject
        assert f"{inc}: the list of mis-issued certificates" in digest.body
        every_subject_is_tagged(bot, sink)


# --------------------------------------------------------------------------
# What a bounce means for the mail's status
# --------------------------------------------------------------------------


def the_mail(bot, inc: str, message_id: str) -> Callable[[], dict]:  # type: ignore[no-untyped-def]
    def find() -> dict:
        [mail] = [m for m in show(bot, inc)["messages"] if m["message_id"] == message_id]
        return mail
    return find


def bounced(bot, sink: Sink, recipient: str) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    """The CA notifies; the acknowledgement is sent, then a DSN for `recipient` comes back to
    its return path. Returns the incident and the acknowledgement as `show --json` has it."""
    inc = notify(bot, sink)
    [ack] = delivered(bot, sink, inc, "acknowledgement")
    mail = the_mail(bot, inc, ack.message["Message-ID"])
    eventually("the acknowledgement marked sent", lambda: mail()["status"] == "sent")
    assert bot.send(dsn(ack.message["Message-ID"], recipient), sender="",
                    to=ack.envelope_from) == {}
    alert = sink.wait_for(sink.to(OTHER_STAFF, "Delivery failed"))[0]
    assert alert.subject == f"[{inc}] Delivery failed: acknowledgement to {recipient}"
    assert sorted(alert.recipients) == sorted(TEAM)
    return inc, mail()


def test_a_dsn_naming_the_to_fails_the_acknowledgement(tmp_path):
    with team_bot(tmp_path) as (bot, sink, _pki):
        inc, ack = bounced(bot, sink, CA_CONTACT)
        assert (ack["status"], ack["failed_to"], ack["retrying_to"]) == (
            "failed", [CA_CONTACT], [])
        assert "mail-failed" in [e["kind"] for e in show(bot, inc)["events"]]
        # Failed for its To, the mail may still bounce for its Cc: that is news too.
        bot.send(dsn(ack["message_id"], CA_OTHER_CONTACT), sender="", to=BOT)
        sink.wait_for(sink.to(OTHER_STAFF, "Delivery failed"), count=2)
        mail = the_mail(bot, inc, ack["message_id"])()
        assert (mail["status"], mail["failed_to"]) == ("failed", CONTACTS)


def test_a_dsn_naming_only_the_cc_leaves_the_acknowledgement_sent(tmp_path):
    with team_bot(tmp_path) as (bot, sink, _pki):
        inc, ack = bounced(bot, sink, CA_OTHER_CONTACT)
        assert (ack["status"], ack["failed_to"], ack["retrying_to"]) == (
            "sent", [CA_OTHER_CONTACT], [])
        assert "mail-failed" in [e["kind"] for e in show(bot, inc)["events"]]


def test_a_to_refused_for_good_by_the_relay_fails_the_acknowledgement(tmp_path):
    with team_bot(tmp_path) as (bot, sink, _pki):
        sink.handler.rcpt_replies[CA_CONTACT] = "550 5.1.1 <incidents@exampleca.test>: no such user"
        send(bot, make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM))
        ack = sink.wait_for(sink.to(CA_OTHER_CONTACT, "Notification received"))[0]
        assert ack.recipients == [CA_OTHER_CONTACT]  # the Cc has it
        inc = ack.subject.split("[", 1)[1].split("]", 1)[0]
        mail = the_mail(bot, inc, ack.message["Message-ID"])
        eventually("the acknowledgement judged", lambda: mail()["status"] != "queued")
        assert (mail()["status"], mail()["failed_to"], mail()["retrying_to"]) == (
            "failed", [CA_CONTACT], [])

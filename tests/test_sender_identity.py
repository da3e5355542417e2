"""Who sent a mail: a From with two authors, or from another domain than its envelope, is nobody's.

Nothing authenticates a CA's From. A From naming Other CA's contact first and
Example CA's second, sent with Example CA's envelope, was recorded as Other
CA's update. Such mail is quarantined now, answered with nothing, and staff
are told why.
"""

from __future__ import annotations

from datetime import UTC, datetime

from storage import queries
from tests.harness import (
    CA_CONTACT,
    COMPLETE_FORM,
    OTHER_CA_CONTACT,
    STAFF,
    make_mail,
    running_bot,
)
from tests.story import show

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def quarantine_alerts(sink):  # type: ignore[no-untyped-def]
    return sink.wait_for(lambda r: "Quarantined: a From that is not its sender" in r.subject)


def test_a_from_with_two_addresses_and_no_sender_is_quarantined_and_staff_told(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        bot.send(make_mail(OTHER_CA_CONTACT, "Security incident notification",
                           COMPLETE_FORM.replace("Example CA", "Other CA")))
        ack = sink.wait_for(sink.to(OTHER_CA_CONTACT, "Notification received"))[0]
        other = ack.subject.split("[", 1)[1].split("]", 1)[0]
        two = make_mail(f"{OTHER_CA_CONTACT}, {CA_CONTACT}", f"Re: [{other}] update",
                        "Root cause: nothing happened, please close.\n",
                        in_reply_to=str(ack.message["Message-ID"]))
        bot.send(two, sender=CA_CONTACT)
        alert = quarantine_alerts(sink)[0]
        assert alert.recipients == [STAFF]
        assert (f"From names 2 addresses ({OTHER_CA_CONTACT}, {CA_CONTACT}) and no Sender says "
                f"which sent it") in alert.body
        with bot.ctx.db.read() as session:
            held = queries.quarantined(session)
        assert [m.from_address for m in held] == [OTHER_CA_CONTACT]
        data = show(bot, other)
        assert [m["kind"] for m in data["messages"] if m["direction"] == "in"] \
            == ["notification", "other"]  # kept beside the thread, not taken as an update
        assert data["form"]["root_cause"] == "A CAA check skipped for IDN domains"
        assert not [r for r in sink.received if "Update recorded" in r.subject]


def test_a_from_whose_domain_is_not_the_envelopes_is_no_contact(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        bot.send(make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM),
                 sender="mallory@evil.test")
        alert = quarantine_alerts(sink)[0]
        assert (f"From {CA_CONTACT} is of exampleca.test, but the envelope sender "
                f"<mallory@evil.test> is of evil.test") in alert.body
        with bot.ctx.db.read() as session:
            assert queries.incidents(session) == []
            assert [m.envelope_from for m in queries.quarantined(session)] == [
                "mallory@evil.test"]
        # A mail server of the CA's own subdomain is the CA's: that notification opens an incident.
        bot.send(make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM),
                 sender="relay-7@mta.exampleca.test")
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"))
        assert not [r for r in sink.received if CA_CONTACT in r.recipients
                    and "Notification received" not in r.subject]

"""Ruleset 2026-02: the CA is asked for its Bugzilla disclosure, and the link is recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.operator.views import incident_json
from storage import queries
from tests.harness import CA_CONTACT, COMPLETE_FORM, OTHER_CA_CONTACT, make_mail, running_bot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def show(bot) -> dict:  # type: ignore[no-untyped-def]
    with bot.ctx.db.read() as session:
        return incident_json(session, queries.incident(session, "INC-2026-0001"),
                             bot.clock.now())


def test_2026_02_asks_for_the_bug_and_records_it_from_the_thread(tmp_path):
    with running_bot(tmp_path, at=NOW, ruleset="2026-02") as (bot, sink):
        bot.send(make_mail(CA_CONTACT, "incident", COMPLETE_FORM))
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert "disclose this incident publicly on" in ack.body

        # Another CA's contact cannot set it; the incident's own CA can.
        bot.send(make_mail(OTHER_CA_CONTACT, "Re: [INC-2026-0001] bug",
                           "see https://bugzilla.mozilla.org/show_bug.cgi?id=1999999"))
        bot.send(make_mail(CA_CONTACT, "Re: [INC-2026-0001] Notification received",
                           "Our public report: https://bugzilla.mozilla.org/show_bug.cgi?id=2000001"))
        sink.wait_for(sink.to(CA_CONTACT, "Update recorded"))
        with bot.ctx.db.read() as session:
            incident = queries.incident(session, "INC-2026-0001")
            assert incident.public_disclosure == (
                "https://bugzilla.mozilla.org/show_bug.cgi?id=2000001")
        events = [e for e in show(bot)["events"] if e["kind"] == "public-disclosure"]
        assert len(events) == 1 and "2000001" in events[0]["summary"]


def test_2019_03_does_not_ask_for_it(tmp_path):
    with running_bot(tmp_path, at=NOW) as (bot, sink):
        bot.send(make_mail(CA_CONTACT, "incident", COMPLETE_FORM))
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert "Bugzilla" not in ack.body

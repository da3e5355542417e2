"""The same form re-sent is one incident; staff join two that are one with `/merge`.

The CA mails its form twice under new Message-IDs (its client sent again, a
colleague mailed it too): within a day, with every answer the same, the
second mail is recorded in the first incident and staff are told. A form
with an answer changed, or sent a day later, is a new incident. What slipped
through, staff merge by replying `/merge INC-…` in the thread to keep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.harness import CA_CONTACT, COMPLETE_FORM, OTHER_CA_CONTACT, STAFF, make_mail
from tests.story import command, count, deadline, notify, send, show, story_bot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FIRST_ID = "<form-1@exampleca.test>"
AGAIN_ID = "<form-2@exampleca.test>"


def acks(sink) -> int:  # type: ignore[no-untyped-def]
    return count(sink, lambda r: CA_CONTACT in r.recipients and "Notification received"
                 in r.subject)


def incident_ids(bot) -> list[str]:  # type: ignore[no-untyped-def]
    from storage import queries

    with bot.ctx.db.read() as session:
        return [i.id for i in queries.incidents(session)]


def notify_as(bot, sink, sender: str, form: str) -> str:  # type: ignore[no-untyped-def]
    """`sender` mails `form`; the incident id of the new acknowledgement to them."""
    before = count(sink, sink.to(sender, "Notification received"))
    send(bot, make_mail(sender, "Security incident notification", form))
    ack = sink.wait_for(sink.to(sender, "Notification received"), count=before + 1)[-1]
    return ack.subject.split("[", 1)[1].split("]", 1)[0]


def send_form(bot, form: str, message_id: str) -> None:  # type: ignore[no-untyped-def]
    send(bot, make_mail(CA_CONTACT, "Security incident notification", form,
                        message_id=message_id))


def test_the_same_form_again_within_a_day_is_recorded_in_the_first_incident(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        send_form(bot, COMPLETE_FORM, FIRST_ID)
        inc = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0].subject \
            .split("[", 1)[1].split("]", 1)[0]
        bot.clock.set(NOW + timedelta(hours=23, minutes=59))
        # Re-sent by another client: other line ends and wrapping change no answer.
        send_form(bot, COMPLETE_FORM.replace(": A CAA", ":   A CAA"), AGAIN_ID)
        alert = sink.wait_for(lambda r: "The same notification again" in r.subject)[0]

        assert sorted(alert.recipients) == [STAFF]
        assert alert.subject.endswith(f"[{inc}] The same notification again")
        assert FIRST_ID in alert.body and AGAIN_ID in alert.body
        assert "/merge INC-YYYY-NNNN" in alert.body
        assert incident_ids(bot) == [inc]
        data = show(bot, inc)
        inbound = [(m["message_id"], m["kind"]) for m in data["messages"]
                   if m["direction"] == "in"]
        assert inbound == [(FIRST_ID, "notification"), (AGAIN_ID, "notification")]
        again = [e for e in data["events"] if e["kind"] == "duplicate-notification"]
        assert len(again) == 1 and AGAIN_ID in again[0]["summary"] \
            and FIRST_ID in again[0]["summary"]
        assert again[0]["at"] == "2026-11-27T11:59:00+00:00"
        assert acks(sink) == 1  # the CA is not acknowledged twice


def test_a_changed_answer_or_a_day_later_or_another_ca_is_a_new_incident(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        first = notify(bot, sink)
        changed = notify(bot, sink, COMPLETE_FORM.replace("revoking 12", "revoking 13"))
        bot.clock.set(NOW + timedelta(days=1))
        a_day_later = notify(bot, sink)
        # Another CA's contact sending that very text (it names Example CA): its own incident.
        theirs = notify_as(bot, sink, OTHER_CA_CONTACT, COMPLETE_FORM)
        other_ca = COMPLETE_FORM.replace("CA name: Example CA", "CA name: Other CA")
        their_own = notify_as(bot, sink, OTHER_CA_CONTACT, other_ca)
        send(bot, make_mail(OTHER_CA_CONTACT, "Security incident notification", other_ca))
        sink.wait_for(lambda r: "The same notification again" in r.subject)

        assert len({first, changed, a_day_later, theirs, their_own}) == 5
        assert len(incident_ids(bot)) == 5  # the Other CA's second form opened nothing
        assert acks(sink) == 3
        assert show(bot, theirs)["ca"] == "Other CA"
        assert [e for e in show(bot, first)["events"]
                if e["kind"] == "duplicate-notification"] == []


def test_merge_moves_the_other_incident_here_and_closes_it_with_a_pointer(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        keep = notify(bot, sink)
        command(bot, sink, "/request certificate-list due 2026-12-05\n"
                           "/request info due 2026-12-04: who signed off?", keep)
        other = notify(bot, sink, COMPLETE_FORM.replace("none", "re-sent by our CISO"))
        command(bot, sink, "/request certificate-list due 2026-12-06\n"
                           "/request final-report due 2026-12-20\n/note second copy", other)
        moved_in = show(bot, other)
        done = command(bot, sink, f"/merge {other}", keep)

        assert sorted(done.recipients) == [STAFF]
        assert f"{other} was merged into {keep}: 2 message(s)" in done.body
        kept, gone = show(bot, keep), show(bot, other)
        assert gone["status"] == "closed" and gone["merged_into"] == keep
        assert gone["messages"] == [] and gone["deadlines"] == []
        assert [e["kind"] for e in gone["events"]] == ["incident-merged-away"]
        assert kept["status"] == "open" and kept["merged_into"] is None
        ids = {m["message_id"] for m in kept["messages"]}
        assert {m["message_id"] for m in moved_in["messages"]} <= ids
        assert any(e["kind"] == "note" and "second copy" in e["summary"]
                   for e in kept["events"])
        assert any(e["kind"] == "incident-merged" and e["command"] == f"/merge {other}"
                   for e in kept["events"])
        # Its own certificate-list request stays; the other's is cancelled, not doubled.
        assert [d["due_at"] for d in deadline(kept, "certificate-list", "open")] == [
            "2026-12-05T23:59:59+00:00"]
        assert [d["due_at"] for d in deadline(kept, "certificate-list", "cancelled")] == [
            "2026-12-06T23:59:59+00:00"]
        assert [d["due_at"] for d in deadline(kept, "final-report", "open")] == [
            "2026-12-20T23:59:59+00:00"]
        assert len(deadline(kept, "info", "open")) == 1
        # The kept answers stay current; the other's are earlier answers.
        assert kept["form"]["other_info"] == "none"
        # The merged-away form re-sent finds the kept incident.
        send(bot, make_mail(CA_CONTACT, "Security incident notification",
                            COMPLETE_FORM.replace("none", "re-sent by our CISO")))
        alert = sink.wait_for(lambda r: "The same notification again" in r.subject)[0]
        assert f"[{keep}]" in alert.subject
        assert len(incident_ids(bot)) == 2


def test_merge_refuses_an_unknown_the_same_or_another_cas_incident(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        keep = notify(bot, sink)
        theirs = notify_as(bot, sink, OTHER_CA_CONTACT,
                           COMPLETE_FORM.replace("CA name: Example CA", "CA name: Other CA"))
        for line, error in ((f"/merge {keep}", f"{keep} is this incident"),
                            ("/merge INC-2026-0099", "there is no incident INC-2026-0099"),
                            ("/merge yesterday's", "is not an incident id"),
                            ("/merge", "malformed /merge: expected /merge INC-YYYY-NNNN"),
                            (f"/merge {theirs}", f"{theirs} is an incident of Other CA")):
            reply = command(bot, sink, line, keep, expect="Command error")
            assert sorted(reply.recipients) == [STAFF]
            assert error in reply.body, (line, reply.body)
        assert show(bot, theirs)["status"] == "open"
        assert show(bot, theirs)["merged_into"] is None
        assert not any(e["kind"] == "incident-merged" for e in show(bot, keep)["events"])

"""Notice before acting (P1, M1) and the CA's alternative (M2).

Staff give notice to revoke a root; a date sooner than 7 days is refused
unless the incident is exceptional; the notice mail is kept as evidence; the
CA proposes another course, staff see it and answer; the end of the notice
period reminds staff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes

from bot.rules.rulesets import RULESET_2019_03
from tests.harness import CA_CONTACT, CA_OTHER_CONTACT, COMPLETE_FORM, STAFF, make_mail
from tests.story import (
    ROOT_NAME,
    command,
    count,
    deadline,
    notify,
    send,
    show,
    story_bot,
    tick,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_notice_is_refused_under_7_days_then_given_kept_and_answered(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        error = command(bot, sink, f'/notice revoke-root "{ROOT_NAME}" on 2026-12-02', inc,
                        expect="Command error")
        assert "less than 7 days away" in error.body and "/exceptional on" in error.body
        assert show(bot, inc)["notices"] == []

        done = command(bot, sink, "/notice revoke-root example root r1 on 2026-12-03", inc)
        assert "Notice given to Example CA" in done.body
        notice = sink.wait_for(sink.to(CA_CONTACT, "Notice"))[0]
        assert CA_OTHER_CONTACT in notice.recipients  # every contact of the CA
        assert "intends to revoke" in notice.body and ROOT_NAME in notice.body
        data = show(bot, inc)
        kept = data["notices"][0]
        assert kept["action"] == "revoke-root" and kept["target"] == ROOT_NAME
        assert kept["effective_at"] == "2026-12-03T23:59:59+00:00"
        assert kept["sent_at"] == "2026-11-26T12:00:00+00:00"
        assert kept["message_id"] == notice.message["Message-ID"]
        assert set(kept["recipients"]) == {CA_CONTACT, CA_OTHER_CONTACT}
        assert deadline(data, "notice-period", "open")[0]["rule"] == "P1"

        # M2: the CA replies to the notice with an alternative.
        send(bot, make_mail(CA_CONTACT, notice.subject.replace("Notice", "Re: Notice"),
                            "Instead of revoking, we propose to cross-sign with R2 and "
                            "distrust R1 by 2027-01-31.\n\n> quoted notice",
                            in_reply_to=notice.message["Message-ID"]))
        forward = sink.wait_for(sink.to(STAFF, "Proposal from Example CA"))[0]
        assert "cross-sign with R2" in forward.body and "quoted notice" not in forward.body
        sink.wait_for(sink.to(CA_CONTACT, "Proposal recorded"))
        assert show(bot, inc)["proposals"][0]["state"] == "open"

        tick(bot, datetime(2026, 11, 27, 9, 0, tzinfo=UTC))  # the digest lists it as open
        digest = sink.wait_for(sink.to(STAFF, "Daily digest 2026-11-27"))[0]
        assert "cross-sign with R2" in digest.body.split("Open proposals")[1]

        command(bot, sink, "/note Proposal accepted: cross-sign by 2027-01-31", inc)
        assert show(bot, inc)["proposals"][0]["state"] == "answered"

        tick(bot, datetime(2026, 12, 4, 0, 0, tzinfo=UTC))  # the notice period has ended
        ended = sink.wait_for(sink.to(STAFF, "Notice period ended"))[0]
        assert ROOT_NAME in ended.subject
        tick(bot, datetime(2026, 12, 5, 0, 0, tzinfo=UTC))
        assert count(sink, lambda r: "Notice period ended" in r.subject) == 1
        assert count(sink, lambda r: CA_CONTACT in r.recipients and "notice period"
                     in r.subject.lower()) == 0  # staff are reminded, not the CA


def test_exceptional_circumstances_allow_immediate_notice_by_fingerprint(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, pki):
        inc = notify(bot, sink)
        sha = pki.roots[ROOT_NAME].cert.fingerprint(hashes.SHA256()).hex()
        colons = ":".join(sha[i:i + 2] for i in range(0, len(sha), 2)).upper()
        command(bot, sink, f"/exceptional on\n/notice revoke-root {colons} on 2026-11-27", inc)
        notice = sink.wait_for(sink.to(CA_CONTACT, "Notice"))[0]
        assert "Exceptional Circumstance" in notice.body
        data = show(bot, inc)
        assert data["exceptional"] is True and data["notices"][0]["exceptional"] is True
        # A unique prefix of 8 hex digits names the root too; a new notice answers proposals.
        command(bot, sink, f"/notice revoke-root {sha[:8]}", inc)
        assert len(show(bot, inc)["notices"]) == 2


def test_an_unknown_root_is_an_error(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        error = command(bot, sink, "/notice revoke-root Nonexistent Root on 2027-01-10", inc,
                        expect="Command error")
        assert "unknown root 'Nonexistent Root'" in error.body and ROOT_NAME in error.body
        assert show(bot, inc)["notices"] == []


def test_2026_02_notices_say_remove_and_or_disallow(tmp_path):
    with story_bot(tmp_path, NOW, ruleset="2026-02") as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, f"/notice revoke-root {ROOT_NAME}", inc)
        notice = sink.wait_for(sink.to(CA_CONTACT, "Notice"))[0]
        assert "remove and/or disallow" in notice.body
        assert show(bot, inc)["notices"][0]["effective_at"] == (
            (NOW + timedelta(days=7)).isoformat())


def test_a_notice_exactly_7_days_after_the_command_is_given_one_second_sooner_is_refused(
        tmp_path):
    # The staff command arrives 2026-11-26 12:00 UTC: the earliest action is 2026-12-03 12:00.
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        sooner = command(bot, sink, f'/notice revoke-root "{ROOT_NAME}" on 2026-12-03T11:59:59Z',
                         inc, expect="Command error")
        assert "the earliest is 2026-12-03 12:00 UTC (P1)" in sooner.body
        assert show(bot, inc)["notices"] == []
        done = command(bot, sink, f'/notice revoke-root "{ROOT_NAME}" on 2026-12-03T12:00:00Z',
                       inc)
        assert "Notice given to Example CA" in done.body
        [kept] = show(bot, inc)["notices"]
        assert kept["effective_at"] == "2026-12-03T12:00:00+00:00"


def test_one_incidents_notice_and_final_report_stay_in_it(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        first = notify(bot, sink)
        send(bot, make_mail(CA_CONTACT, "Another security incident",
                            "\n".join(line.replace("Example Issuing CA 2", "Example Sub CA 9")
                                      for line in COMPLETE_FORM.splitlines())))
        second = "INC-2026-0002"
        sink.wait_for(sink.to(CA_CONTACT, f"[{second}] Notification received"))
        command(bot, sink, "/notice revoke-root example root r1 on 2026-12-03\n"
                           "/request final-report due 2026-12-20", first)
        report = "\n".join(f"{n}. {item.title}\nOur answer.\n" for n, item in
                           enumerate(RULESET_2019_03.final_report_items, 1))
        send(bot, make_mail(CA_CONTACT, f"Re: [{first}] Final report", report))
        sink.wait_for(sink.to(CA_CONTACT, f"Final report received: {first} (complete)"))

        mine, other = show(bot, first), show(bot, second)
        assert [n["target"] for n in mine["notices"]] == [ROOT_NAME]
        assert mine["final_report"]["received"] is True
        assert other["notices"] == []
        assert other["final_report"]["received"] is False
        assert other["deadlines"] == []

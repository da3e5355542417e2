"""Deadlines the bot watches so nobody has to: requests, reminders, escalation, R3 per ruleset.

The stories: the CA notifies, staff request a certificate list due in three
days, time moves (as `rootnotify tick --now`), the CA is reminded before the
due date and after it, staff are escalated once, and a second tick (or a
second scheduler racing the first) sends nothing twice.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot.service.scheduler import run_scheduler
from storage.db import open_database
from storage.models import OutboundMessage, ReminderLog
from tests.harness import CA_CONTACT, STAFF, make_mail, running_bot
from tests.postgres import postgres_cluster, postgres_database  # noqa: F401  (fixtures)
from tests.story import command, count, deadline, notify, send, show, story_bot, tick
from tests.together import ROOT

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DUE_DAY = "2026-11-29"  # three days on; due 2026-11-29 23:59:59 UTC
DUE = datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)


def reminders(sink, word: str = "") -> int:  # type: ignore[no-untyped-def]
    return count(sink, lambda r: CA_CONTACT in r.recipients
                 and ("Reminder" in r.subject or "Overdue" in r.subject) and word in r.subject)


def test_a_requested_list_is_reminded_escalated_once_and_never_sent_twice(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        done = command(bot, sink, f"/request certificate-list due {DUE_DAY}", inc)
        assert "Requested from Example CA" in done.body
        request = sink.wait_for(sink.to(CA_CONTACT, "Request"))[0]
        assert f"[{inc}]" in request.subject and "2026-11-29 23:59 UTC" in request.body
        assert deadline(show(bot, inc), "certificate-list", "open")[0]["rule"] == "R2"

        tick(bot, DUE - timedelta(days=2))  # nothing due yet
        tick(bot, DUE - timedelta(hours=20))  # "due soon": one day before
        sink.wait_for(lambda r: CA_CONTACT in r.recipients and "Reminder" in r.subject)
        assert "is due" in sink.wait_for(sink.to(CA_CONTACT, "Reminder"))[0].body

        # A second tick at the same time, and two schedulers racing, send nothing more.
        tick(bot, DUE - timedelta(hours=20))
        racers = [threading.Thread(target=run_scheduler, args=(bot.ctx,)) for _ in range(2)]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        tick(bot, DUE + timedelta(seconds=1))  # overdue: the CA and, once, staff
        sink.wait_for(lambda r: "Escalation" in r.subject)
        tick(bot, DUE + timedelta(days=1, seconds=1))  # the next day: overdue again, no escalation
        sink.wait_for(lambda r: CA_CONTACT in r.recipients and "Overdue" in r.subject, count=2)
        tick(bot, DUE + timedelta(days=1, seconds=1))
        # The outbox is the record: every mail queued is a row, sent or not yet.
        out = [m for m in show(bot, inc)["messages"] if m["direction"] == "out"]
        assert [m["subject"].split("]")[1].split(":")[0].strip() for m in out
                if m["kind"] == "reminder"] == ["Reminder", "Overdue", "Overdue"]
        assert len([m for m in out if m["kind"] == "escalation"]) == 1
        overdue = sink.wait_for(sink.to(CA_CONTACT, "Overdue"))[0]
        assert "overdue by" in overdue.body and overdue.message["In-Reply-To"]
        data = show(bot, inc)
        assert any(e["kind"] == "escalated" for e in data["events"])


def test_the_certificate_list_satisfies_the_deadline(tmp_path):
    pem = (tmp_path / "cert.pem")
    from tests.smime_factory import make_ca
    from tests.smime_factory import pem as to_pem

    pem.write_bytes(to_pem(make_ca("leaf.example.com", slot=5).cert))
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, f"/request certificate-list due {DUE_DAY}", inc)
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["From"], msg["To"] = CA_CONTACT, "rootnotify@program.test"
        msg["Subject"] = f"Re: [{inc}] certificate list"
        msg.set_content("The list is attached.")
        msg.add_attachment(pem.read_bytes(), maintype="application",
                           subtype="x-pem-file", filename="certs.pem")
        send(bot, msg.as_bytes())
        sink.wait_for(lambda r: CA_CONTACT in r.recipients and "Request" not in r.subject
                      and "Notification" not in r.subject)
        assert deadline(show(bot, inc), "certificate-list", "satisfied")


def test_an_update_satisfies_an_information_request_and_the_receipt_says_so(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, f"/request info due {DUE_DAY}: the number of affected subscribers",
                inc)
        request = sink.wait_for(sink.to(CA_CONTACT, "Request"))[0]
        assert "the number of affected subscribers" in request.body
        send(bot, make_mail(CA_CONTACT, f"Re: [{inc}] Request", "About 40 subscribers.\n"))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Update recorded"))[0]
        assert "This satisfies: the information requested" in receipt.body
        assert deadline(show(bot, inc), "info", "satisfied")
        tick(bot, DUE + timedelta(days=3))
        assert reminders(sink) == 0


def test_an_investigative_report_is_recognised_by_its_name(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, "/request investigative-report", inc)
        send(bot, make_mail(CA_CONTACT, f"Re: [{inc}] progress", "Still looking.\n"))
        sink.wait_for(sink.to(CA_CONTACT, "Update recorded"))
        assert deadline(show(bot, inc), "investigative-report", "open")
        send(bot, make_mail(CA_CONTACT, f"Re: [{inc}] Investigative report", "Our findings…\n"))
        sink.wait_for(sink.to(CA_CONTACT, "Update recorded"), count=2)
        assert deadline(show(bot, inc), "investigative-report", "satisfied")


def test_2019_03_after_24_hours_without_a_request_the_ca_reports_as_it_discovers(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        tick(bot, NOW + timedelta(hours=23))
        assert show(bot, inc)["reports_mode"] is None
        tick(bot, NOW + timedelta(hours=24, minutes=1))
        data = show(bot, inc)
        assert data["reports_mode"] == "as-discovered"
        assert any(e["kind"] == "reports-as-discovered" and e["rule"] == "R3"
                   for e in data["events"])
        assert data["deadlines"] == []


def test_2019_03_periodic_reports_every_7_days_the_next_due_when_one_arrives(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, "/request reports every 7d", inc)
        first = deadline(show(bot, inc), "periodic-report", "open")
        assert first[0]["due_at"] == "2026-12-03T12:00:00+00:00"
        tick(bot, NOW + timedelta(days=2))
        assert show(bot, inc)["reports_mode"] == "every"  # the request came within 24 h
        send(bot, make_mail(CA_CONTACT, f"Re: [{inc}] weekly report", "All revoked.\n"))
        sink.wait_for(sink.to(CA_CONTACT, "Update recorded"))
        data = show(bot, inc)
        assert len(deadline(data, "periodic-report", "satisfied")) == 1
        nxt = deadline(data, "periodic-report", "open")
        assert nxt[0]["due_at"] == "2026-12-05T12:00:00+00:00"  # 7 days after the report


def test_2026_02_an_update_is_due_every_24_hours_until_closed(tmp_path):
    with story_bot(tmp_path, NOW, ruleset="2026-02") as (bot, sink, _pki):
        inc = notify(bot, sink)
        tick(bot, NOW + timedelta(minutes=1))
        data = show(bot, inc)
        assert data["reports_mode"] == "daily-update"
        assert deadline(data, "update", "open")[0]["due_at"] == "2026-11-27T12:00:00+00:00"
        tick(bot, NOW + timedelta(hours=24))
        sink.wait_for(sink.to(CA_CONTACT, "Overdue: the daily update"))
        sink.wait_for(sink.to(STAFF, "Escalation"))
        send(bot, make_mail(CA_CONTACT, f"Re: [{inc}] update", "Revocation finished.\n"))
        receipt = sink.wait_for(sink.to(CA_CONTACT, "Update recorded"))[0]
        assert "the daily update" in receipt.body
        data = show(bot, inc)
        assert deadline(data, "update", "open")[0]["due_at"] == "2026-11-28T12:00:00+00:00"
        command(bot, sink, "/close", inc)
        assert deadline(show(bot, inc), "update", "open") == []
        before = reminders(sink)
        tick(bot, NOW + timedelta(days=5))
        assert reminders(sink) == before


def test_the_daily_digest_lists_overdue_and_due_soon_without_an_incident_tag(tmp_path):
    early = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # before the digest hour (8)
    with story_bot(tmp_path, early) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, "/request certificate-list due 2026-11-27", inc)
        command(bot, sink, "/request final-report due 2026-12-01", inc)
        tick(bot, datetime(2026, 11, 28, 9, 0, tzinfo=UTC))
        digest = sink.wait_for(sink.to(STAFF, "Daily digest 2026-11-28"))[0]
        assert "[INC-" not in digest.subject
        overdue, _, soon = digest.body.partition("Due within a week")
        assert f"{inc}: the list of mis-issued certificates" in overdue
        assert f"{inc}: the final incident report" in soon
        tick(bot, datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # once a day
        assert count(sink, lambda r: "Daily digest 2026-11-28" in r.subject) == 1


# A scheduler process that reads the due deadline, then waits at the barrier
# just before it writes its reminder's row: released together, both have read
# the deadline as due and neither has committed. Each prints the mails it queued.
RACING_SCHEDULER = """
import sys
from datetime import datetime
from sqlalchemy import event
from sqlmodel import Session
from bot.clock import FixedClock
from bot.config import load_config
from bot.context import make_context
from bot.decide.incident.reminders import remind_due
from storage.db import open_database
from storage.models import ReminderLog

config = load_config(sys.argv[1])
at = datetime.fromisoformat(sys.argv[2])
db = open_database(config.storage_url)
waited = []

@event.listens_for(Session, "before_flush")
def barrier(session, _context, _instances):
    if not waited and any(isinstance(o, ReminderLog) for o in session.new):
        waited.append(True)
        print("at the barrier", flush=True)
        sys.stdin.readline()

print(remind_due(make_context(config, db, FixedClock(at)), at), flush=True)
"""


def test_two_scheduler_processes_racing_on_one_due_reminder_send_it_once(tmp_path,
                                                                       postgres_url):
    with running_bot(tmp_path, at=NOW, storage_url=postgres_url) as (bot, sink):
        inc = notify(bot, sink)
        command(bot, sink, f"/request certificate-list due {DUE_DAY}", inc)
        sink.wait_for(sink.to(CA_CONTACT, "Request"))
    config_path = tmp_path / "config.toml"
    at = DUE - timedelta(hours=20)  # the "due soon" reminder is due
    racers = [subprocess.Popen([sys.executable, "-c", RACING_SCHEDULER, str(config_path),
                                at.isoformat()], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    try:
        arrived = [r.stdout.readline() for r in racers]  # type: ignore[union-attr]
        assert arrived == ["at the barrier\n"] * 2, [r.communicate()[1][-2000:] for r in racers]
        for r in racers:
            r.stdin.write("go\n")  # type: ignore[union-attr]
            r.stdin.flush()  # type: ignore[union-attr]
        results = [r.communicate(timeout=60) for r in racers]
    finally:
        for r in racers:
            if r.poll() is None:
                r.kill()
                r.wait()
    assert [r.returncode for r in racers] == [0, 0], [err[-2000:] for _out, err in results]
    assert sorted(int(out.split()[-1]) for out, _err in results) == [0, 1]
    db = open_database(postgres_url)
    with db.read() as session:
        queued = [m.subject for m in session.exec(select(OutboundMessage).where(
            OutboundMessage.kind == "reminder"))]
        stages = [r.stage for r in session.exec(select(ReminderLog))]
    db.dispose()
    assert stages == ["due-soon"]
    assert len(queued) == 1 and queued[0].startswith(f"[{inc}] Reminder")


def out_kinds(bot, inc: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The outgoing mails of the incident, as the outbox recorded them (sent or not yet)."""
    return [m["kind"] for m in show(bot, inc)["messages"] if m["direction"] == "out"]


def test_reminders_fall_exactly_one_day_before_and_exactly_at_the_due_time(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, f"/request certificate-list due {DUE_DAY}", inc)
        before = out_kinds(bot, inc)
        tick(bot, DUE - timedelta(days=1, seconds=1))
        assert out_kinds(bot, inc) == before  # one second too early
        tick(bot, DUE - timedelta(days=1))  # the configured `due_soon` of 1 d, to the second
        sink.wait_for(sink.to(CA_CONTACT, "Reminder"))
        tick(bot, DUE - timedelta(seconds=1))
        assert out_kinds(bot, inc) == [*before, "reminder"]
        tick(bot, DUE)  # due now: overdue at the due time, escalated once
        sink.wait_for(sink.to(CA_CONTACT, "Overdue"))
        sink.wait_for(lambda r: STAFF in r.recipients and "Escalation" in r.subject)
        assert out_kinds(bot, inc) == [*before, "reminder", "reminder", "escalation"]


@pytest.mark.parametrize("hours", [12, 24])  # 24: set exactly at its "due soon" time
def test_a_request_due_within_a_day_gets_no_due_soon_reminder_only_the_overdue(tmp_path, hours):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        due = NOW + timedelta(hours=hours)
        command(bot, sink, f"/request info due {due.isoformat()}: the HSM serial numbers", inc)
        before = out_kinds(bot, inc)
        tick(bot, due - timedelta(hours=6))  # the request itself said it was due soon
        assert out_kinds(bot, inc) == before
        tick(bot, due)
        sink.wait_for(sink.to(CA_CONTACT, "Overdue"))
        assert out_kinds(bot, inc) == [*before, "reminder", "escalation"]


def test_a_notice_period_reminds_staff_at_its_end_and_never_the_ca_before(tmp_path):
    with story_bot(tmp_path, NOW) as (bot, sink, _pki):
        inc = notify(bot, sink)
        command(bot, sink, "/notice revoke-root example root r1 on 2026-12-03T12:00:00Z", inc)
        before = out_kinds(bot, inc)
        end = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
        tick(bot, end - timedelta(hours=20))  # no "due soon" about our own notice
        assert out_kinds(bot, inc) == before
        tick(bot, end)
        [ended] = sink.wait_for(sink.to(STAFF, "Notice period ended"))
        assert f"Notice period ended in {inc} (Example CA)" in ended.subject
        assert out_kinds(bot, inc) == [*before, "reminder"]

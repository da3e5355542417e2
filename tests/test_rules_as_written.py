"""The rules as the text says them, tried as a new user would (issue 16).

Every story goes through the command line: mail is taken in with `rootnotify
ingest` (its receipt time is the `Received:` stamp it carries, days away from
the wall clock the command runs at), the scheduler and the outbox run with
`rootnotify tick --now`, and what a user checks is `rootnotify show --json`
and the mail that landed in the maildir outbox.
"""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.harness import CA_CONTACT, STAFF, free_port, make_mail, write_config

INCIDENT = "INC-2026-0001"
DISCOVERY_FORM = """\
CA name: Example CA
Incident type: mis-issuance
When did the incident occur: {incident_at}
Who detected the incident: An external researcher
When the CA discovered the incident: {discovered_at}
Where the incident occurred: Example Issuing CA 2
Which roots (and end-entity certificates, if requested) were affected: Example Root R1
Which sub-CAs were affected: Example Issuing CA 2
What the CA believes the underlying cause is: A CAA check skipped for IDN domains
Remedial measures taken or planned: Fixed the check; revoking 12 certificates
Number of end-entity certificates affected: 12
Information or actions the CA asks the program to take: none
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Desk:
    """One rootnotify installation driven through its command line, as an operator does."""

    tmp_path: Path
    config: Path
    sent: list[str] = field(default_factory=list)  # Message-IDs of mail ingested, in order
    runner: CliRunner = field(default_factory=CliRunner)

    def run(self, *args: str) -> str:
        result = self.runner.invoke(app, ["--config", str(self.config), *args])
        if result.exit_code != 0:
            raise AssertionError(f"rootnotify {' '.join(args)} exited {result.exit_code}:\n"
                                 f"{result.output}\n{result.exception!r}")
        return result.stdout

    def ingest(self, sender: str, subject: str, body: str, received: str,
               in_reply_to: str | None = None) -> str:
        """A mail received at `received` (its Received: stamp), taken in by `ingest`."""
        when = at(received)
        raw = make_mail(sender, subject, body, date=when, in_reply_to=in_reply_to,
                        headers={"Received": "from mx.sender.test by mx.program.test; "
                                             + format_datetime(when)})
        path = self.tmp_path / f"mail-{len(self.sent)}.eml"
        path.write_bytes(raw)
        message_id = email.message_from_bytes(raw)["Message-ID"]
        self.sent.append(message_id)
        out = self.run("ingest", str(path))
        assert "1 stored" in out and "1 processed" in out, out
        return message_id

    def notify(self, form: str, received: str) -> str:
        return self.ingest(CA_CONTACT, "Security incident notification", form, received)

    def reply(self, body: str, received: str, sender: str = CA_CONTACT,
              subject: str = f"Re: [{INCIDENT}] Notification received") -> str:
        return self.ingest(sender, subject, body, received, in_reply_to=self.sent[0])

    def command(self, body: str, received: str) -> str:
        return self.reply(body, received, sender=STAFF)

    def tick(self, now: str) -> str:
        # The mails' receipt times lie ahead of the wall clock on purpose: --force.
        return self.run("tick", "--now", now, "--force")

    def show(self) -> dict[str, Any]:
        return json.loads(self.run("show", INCIDENT, "--json"))

    def outbox(self) -> list[email.message.EmailMessage]:
        """Every mail delivered so far, oldest first (by its Date: the decision's time)."""
        box = mailbox.Maildir(self.tmp_path / "var" / "outbox", create=False)
        mails = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
                 for m in box]
        return sorted(mails, key=lambda m: m["Date"].datetime)  # type: ignore[return-value]

    def mails(self, to: str, subject_part: str) -> list[Any]:
        return [m for m in self.outbox() if to in str(m["To"]) + str(m.get("Cc", ""))
                and subject_part in str(m["Subject"])]


def body(mail: Any) -> str:
    return mail.get_body(preferencelist=("plain",)).get_content()


@pytest.fixture
def desk_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(ruleset: str = "2019-03", roots: bool = False) -> Desk:
        config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                              ruleset=ruleset, outgoing_mode="maildir")
        if roots:  # Example CA's enrolled roots, for /notice revoke-root
            from tests.story import _edit_config, make_pki

            _edit_config(config, make_pki(), "none")
        return Desk(tmp_path, config)
    return make


def deadlines(data: dict[str, Any], kind: str) -> list[tuple[str | None, str]]:
    return [(d["due_at"], d["state"]) for d in data["deadlines"] if d["kind"] == kind]


# ------------------------------------------------------------------ point 2


def test_due_dates_run_from_the_receipt_of_the_command_not_from_the_processing_clock(
        desk_factory):
    """R3, R5: a request's due date derives from the command mail's receipt time."""
    desk = desk_factory()
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                      discovered_at="2026-12-10T02:00Z"),
                received="2026-12-10T08:00Z")
    desk.command("/request reports every 7d", received="2026-12-11T09:00Z")
    desk.command("/request investigative-report", received="2026-12-11T09:05Z")
    desk.tick("2026-12-11T10:00Z")

    data = desk.show()
    assert deadlines(data, "periodic-report") == [("2026-12-18T09:00:00+00:00", "open")]
    # An undated request has no due date (neither ruleset gives one) and no reminders.
    assert deadlines(data, "investigative-report") == [(None, "open")]
    desk.tick("2027-02-01T10:00Z")  # long after any invented due date
    reminders = desk.mails(CA_CONTACT, "investigative")
    assert [str(m["Subject"]) for m in reminders] == [
        f"[{INCIDENT}] Request: the investigative and technical report"]
    assert not desk.mails(STAFF, "Overdue: the investigative")
    assert [d["state"] for d in desk.show()["deadlines"]
            if d["kind"] == "investigative-report"] == ["open"]


# ------------------------------------------------------------------ point 3


def test_mail_queued_by_an_ingested_message_is_sent_by_a_tick_at_its_receipt_time(
        desk_factory):
    """DESIGN: time is injectable; the acknowledgement is stamped with the receipt time."""
    desk = desk_factory()
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-03-01T01:00Z",
                                      discovered_at="2026-03-01T02:00Z"),
                received="2026-03-01T08:00Z")
    desk.tick("2026-03-01T08:00:05Z")
    ack = desk.mails(CA_CONTACT, "Notification received")
    assert len(ack) == 1
    assert len(desk.mails(STAFF, "New incident")) == 1
    assert ack[0]["Date"].datetime == at("2026-03-01T08:00Z")


# ------------------------------------------------------------------ point 7


def report_text(ruleset_name: str) -> str:
    """A complete final report numbered as `ruleset_name`'s list, under the seed's questions."""
    from bot.rules.rulesets import get_ruleset

    items = get_ruleset(ruleset_name).final_report_items
    return "\n\n".join(f"{n}. {item.question}\n\nOur answer on {item.title.lower()}."
                       for n, item in enumerate(items, 1))


@pytest.mark.parametrize(("ruleset", "written_as", "count"), [
    ("2026-02", "2019-03", 14), ("2019-03", "2026-02", 15), ("2026-02", "2026-02", 14)])
def test_final_report_checklist_numbers_by_the_incidents_ruleset(desk_factory, ruleset,
                                                                 written_as, count):
    """R4: the checklist runs 1..N of the incident's ruleset; a report numbered the
    other ruleset's way is matched by its headings."""
    from bot.rules.rulesets import get_ruleset

    desk = desk_factory(ruleset)
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                      discovered_at="2026-12-10T02:00Z"),
                received="2026-12-10T08:00Z")
    desk.reply(report_text(written_as), received="2026-12-20T08:00Z",
               subject=f"Re: [{INCIDENT}] Final report")
    desk.tick("2026-12-20T08:01Z")
    receipt = desk.mails(CA_CONTACT, "Final report received")
    assert len(receipt) == 1
    text = body(receipt[0])
    lines = [ln for ln in text.splitlines() if ln.startswith("[")]
    items = get_ruleset(ruleset).final_report_items
    # A 2026-02 report has no log files (item 9 of 2019-03): only that is missing.
    missing = {"log_files"} if (ruleset, written_as) == ("2019-03", "2026-02") else set()
    assert lines == [f"[{' ' if item.key in missing else 'x'}] {n}. {item.title} — "
                     f"{'MISSING' if item.key in missing else 'present'}"
                     for n, item in enumerate(items, 1)]
    assert len(lines) == count
    assert desk.show()["final_report"]["missing"] == sorted(missing)


# ------------------------------------------------------------------ point 1


def test_a_reply_answering_the_one_missing_question_is_recorded(desk_factory):
    """R1a: the natural answer to "you are missing X" is the one line "X: …"."""
    desk = desk_factory()
    form = DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                 discovered_at="2026-12-10T02:00Z")
    form = "\n".join(ln for ln in form.splitlines() if not ln.startswith("Remedial"))
    desk.notify(form, received="2026-12-10T08:00Z")
    assert desk.show()["missing_fields"] == ["remediation"]
    desk.reply("Remedial measures taken or planned: reverted and revoking\n\n"
               "On 10 Dec 2026, Root Program wrote:\n> What is missing\n",
               received="2026-12-10T11:00Z")
    desk.tick("2026-12-10T11:01Z")

    data = desk.show()
    assert data["missing_fields"] == []
    assert data["form"]["remediation"] == "reverted and revoking"
    receipt = desk.mails(CA_CONTACT, "Update recorded")
    assert len(receipt) == 1
    text = body(receipt[0])
    assert "Remedial measures taken or planned: reverted and revoking" in text
    assert "Still missing" not in text


def test_one_label_outside_any_thread_opens_no_incident(desk_factory):
    """A mail with a single label outside any incident is no notification: the blank form."""
    desk = desk_factory()
    desk.ingest(CA_CONTACT, "question", "Remedial measures taken or planned: none yet",
                received="2026-12-10T08:00Z")
    assert json.loads(desk.run("incidents", "--json")) == []


# ------------------------------------------------------------------ point 6


def test_a_form_time_after_the_receipt_cannot_be_judged_until_corrected(desk_factory):
    """R1: an incident 'after' the mail arrived is flagged, never 'on time'."""
    desk = desk_factory()
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-12T00:00Z",
                                      discovered_at="2026-12-12T01:00Z"),
                received="2026-12-10T00:00Z")
    desk.tick("2026-12-10T00:01Z")
    data = desk.show()
    assert data["notified_on_time"] is None
    ack = body(desk.mails(CA_CONTACT, "Notification received")[0])
    assert ("24-hour window: cannot be judged until the form's times are corrected: the time "
            "of the incident (2026-12-12 00:00 UTC) is after the notification was received "
            "(2026-12-10 00:00 UTC)") in ack.replace("\n", " ").replace("  ", " ")
    assert "Please check and correct" in ack
    alert = desk.mails(STAFF, "New incident")
    assert [str(m["Subject"]) for m in alert] == [
        f"[{INCIDENT}] New incident {INCIDENT} from Example CA: mis-issuance (to check)"]
    assert "the time of the incident (2026-12-12 00:00 UTC) is after" in body(alert[0])

    # The CA corrects both times: now the verdict can be given.
    desk.reply("When did the incident occur: 2026-12-09T01:00Z\n"
               "When the CA discovered the incident: 2026-12-09T02:00Z\n",
               received="2026-12-10T03:00Z")
    data = desk.show()
    assert data["notified_on_time"] is True
    assert data["notification_deadline"] == "2026-12-10T01:00:00+00:00"


def test_a_discovery_before_the_incident_is_flagged(desk_factory):
    desk = desk_factory("2026-02")
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-09T10:00Z",
                                      discovered_at="2026-12-09T09:00Z"),
                received="2026-12-09T12:00Z")
    desk.tick("2026-12-09T12:01Z")
    assert desk.show()["notified_on_time"] is None
    ack = body(desk.mails(CA_CONTACT, "Notification received")[0])
    assert ("- the discovery (2026-12-09 09:00 UTC) is before the incident "
            "(2026-12-09 10:00 UTC)") in ack


# ------------------------------------------------------------------ point 8


def test_the_alert_of_an_undated_form_is_not_called_late(desk_factory):
    desk = desk_factory()
    form = "\n".join(ln for ln in DISCOVERY_FORM.splitlines() if not ln.startswith("When"))
    desk.notify(form, received="2026-12-10T08:00Z")
    desk.tick("2026-12-10T08:01Z")
    alert = desk.mails(STAFF, "New incident")
    assert [str(m["Subject"]) for m in alert] == [
        f"[{INCIDENT}] New incident {INCIDENT} from Example CA: mis-issuance"]
    assert "24-hour window: cannot be judged" in body(alert[0])


def test_a_notice_period_is_satisfied_once_it_ended_and_staff_were_told(desk_factory):
    """P1/M1: after the 7 days, staff are told once and the deadline is no longer open."""
    from tests.story import ROOT_NAME

    desk = desk_factory(roots=True)
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                      discovered_at="2026-12-10T02:00Z"),
                received="2026-12-10T08:00Z")
    desk.command(f"/notice revoke-root {ROOT_NAME}", received="2026-12-10T09:00Z")
    desk.tick("2026-12-10T09:01Z")
    assert deadlines(desk.show(), "notice-period") == [("2026-12-17T09:00:00+00:00", "open")]
    desk.tick("2026-12-17T09:00Z")
    desk.tick("2026-12-18T09:00Z")
    assert deadlines(desk.show(), "notice-period") == [("2026-12-17T09:00:00+00:00",
                                                        "satisfied")]
    assert len(desk.mails(STAFF, "Notice period ended")) == 1


# ------------------------------------------------------------------ point 9

# The requirement page's bullets (R1a), each on one line, answered below it.
SEED_BULLETS = """\
-   Who detected the incident.
    An external researcher
-   If available, who perpetrated the incident.
    unknown
-   When the CA discovered the incident.
    2026-12-10T02:00Z
-   Where the incident occurred.
    Example Issuing CA 2
-   Which Roots and, if requested by Microsoft, end-user certificates, were affected by the \
incident.
    Example Root R1
-   Which, if any, sub-CAs were affected.
    Example Issuing CA 2
-   What the CA believes to be the underlying cause of the incident.
    A CAA check skipped for IDN domains
-   What remedial measures the CA has taken or will take that the CA believes will address \
the underlying cause of the incident.
    Fixed the check; revoking 12 certificates
-   Any other information the CA believes to be appropriate.
    none
"""


def test_the_seeds_own_questions_answered_by_a_contact_need_no_ca_name(desk_factory):
    """R1a: the sender is a configured contact of Example CA: that is the CA's name."""
    desk = desk_factory()
    desk.notify(SEED_BULLETS, received="2026-12-10T08:00Z")
    desk.tick("2026-12-10T08:01Z")
    data = desk.show()
    assert data["missing_fields"] == []
    assert data["form"]["ca_name"] == "Example CA"
    ack = body(desk.mails(CA_CONTACT, "Notification received")[0])
    assert "CA name:\n    Example CA\n    [not on the form: taken from the configuration, " \
           "the sender is a contact of Example CA]" in ack
    assert "What is missing" not in ack


def test_a_form_naming_another_ca_than_its_sender_is_flagged(desk_factory):
    desk = desk_factory()
    desk.notify("CA name: Other Trust Services\n" + SEED_BULLETS, received="2026-12-10T08:00Z")
    desk.tick("2026-12-10T08:01Z")
    assert desk.show()["ca"] == "Example CA"
    flag = ("the form names the CA 'Other Trust Services', but the sender is a contact of "
            "Example CA; the incident is recorded for Example CA")
    assert f"- {flag}" in body(desk.mails(CA_CONTACT, "Notification received")[0])
    assert f"- {flag}" in body(desk.mails(STAFF, "New incident")[0])


# ------------------------------------------------------------------ point 5


def test_2026_02_the_public_disclosure_is_a_deadline_reminded_and_escalated(desk_factory):
    """2026-02: the Bugzilla link is due 72 h after the notification, reminded like the others."""
    desk = desk_factory("2026-02")
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                      discovered_at="2026-12-10T02:00Z"),
                received="2026-12-10T08:00Z")
    desk.tick("2026-12-10T08:01Z")
    assert deadlines(desk.show(), "public-disclosure") == [("2026-12-13T08:00:00+00:00", "open")]

    desk.tick("2026-12-13T08:00Z")
    what = "the link to the public disclosure of the incident on Bugzilla"
    assert [str(m["Subject"]) for m in desk.mails(CA_CONTACT, "Overdue: the link")] == [
        f"[{INCIDENT}] Overdue: {what} for {INCIDENT}"]
    assert [str(m["Subject"]) for m in desk.mails(STAFF, "Escalation: the link")] == [
        f"[{INCIDENT}] Escalation: {what} overdue in {INCIDENT} (Example CA)"]

    desk.reply("Our preliminary report: https://bugzilla.mozilla.org/show_bug.cgi?id=1999001",
               received="2026-12-13T10:00Z")
    desk.tick("2026-12-13T10:01Z")
    data = desk.show()
    assert deadlines(data, "public-disclosure") == [("2026-12-13T08:00:00+00:00", "satisfied")]
    receipt = body(desk.mails(CA_CONTACT, "Update recorded")[0])
    assert ("Public disclosure recorded: "
            "https://bugzilla.mozilla.org/show_bug.cgi?id=1999001") in receipt


def test_2019_03_has_no_public_disclosure_deadline(desk_factory):
    desk = desk_factory("2019-03")
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                      discovered_at="2026-12-10T02:00Z"),
                received="2026-12-10T08:00Z")
    assert deadlines(desk.show(), "public-disclosure") == []


# ------------------------------------------------------------------ point 4


def test_2026_02_resolving_ends_the_updates_and_opens_the_final_report(desk_factory):
    """R3/R4 (2026-02): updates every 24 h "until remediated", the final report "once resolved"."""
    desk = desk_factory("2026-02")
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                      discovered_at="2026-12-10T02:00Z"),
                received="2026-12-10T08:00Z")
    desk.tick("2026-12-10T08:01Z")
    data = desk.show()
    assert data["resolved_at"] is None and data["status"] == "open"
    assert deadlines(data, "update") == [("2026-12-11T08:00:00+00:00", "open")]

    # The CA says it is resolved: a proposal for staff, not the decision.
    desk.reply("The incident has been resolved: every affected certificate is revoked.",
               received="2026-12-11T07:00Z")
    desk.tick("2026-12-11T07:01Z")
    data = desk.show()
    assert data["resolved_at"] is None
    assert deadlines(data, "update") == [("2026-12-11T08:00:00+00:00", "satisfied"),
                                         ("2026-12-12T07:00:00+00:00", "open")]
    [proposed] = desk.mails(STAFF, "Example CA says INC-2026-0001 is resolved")
    assert body(proposed).replace("\r\n", "\n") == (
        f"{CA_CONTACT} wrote in {INCIDENT}:\n\n"
        "The incident has been resolved: every affected certificate is revoked.\n\n"
        "If so, reply in the thread with /resolved: the 24-hour updates end and the final "
        "report falls due.\n")
    assert "staff were asked to confirm" in body(desk.mails(CA_CONTACT, "Update recorded")[0])

    desk.command("/resolved", received="2026-12-11T12:00Z")
    desk.tick("2026-12-13T08:00Z")  # past the cancelled update's due time
    data = desk.show()
    assert data["resolved_at"] == "2026-12-11T12:00:00+00:00" and data["status"] == "open"
    assert deadlines(data, "update") == [("2026-12-11T08:00:00+00:00", "satisfied"),
                                         ("2026-12-12T07:00:00+00:00", "cancelled")]
    assert deadlines(data, "final-report") == [("2026-12-25T12:00:00+00:00", "open")]
    assert not desk.mails(CA_CONTACT, "Overdue: the daily update")
    desk.command("/status", received="2026-12-13T08:30Z")
    desk.tick("2026-12-13T08:31Z")
    assert "Resolved 2026-12-11 12:00 UTC" in body(desk.mails(STAFF, "Status")[-1])

    desk.command("/request final-report due 2026-12-20", received="2026-12-13T09:00Z")
    assert deadlines(desk.show(), "final-report") == [  # soonest first
        ("2026-12-20T23:59:59+00:00", "open"), ("2026-12-25T12:00:00+00:00", "cancelled")]

    # Closing without the final report is allowed, and never silent.
    desk.command("/close", received="2026-12-14T09:00Z")
    desk.tick("2026-12-14T09:01Z")
    confirmation = body(desk.mails(STAFF, "Done")[-1])
    assert (f"Warning: {INCIDENT} was closed without a complete final report (R4). "
            "If that was not meant, send /reopen.") in confirmation.replace("\n", " ")
    [closed] = desk.mails(STAFF, f"{INCIDENT} closed without a final report")
    assert body(closed).replace("\r\n", "\n") == (
        f"{STAFF} closed {INCIDENT} (Example CA) with no complete final report received or "
        "accepted (R4).\n")
    # Reopened, a resolved incident does not restart the 24-hour updates.
    desk.command("/reopen", received="2026-12-15T09:00Z")
    assert [d for d in desk.show()["deadlines"] if d["kind"] == "update"
            and d["state"] == "open"] == []


def test_2026_02_a_complete_final_report_ends_the_daily_updates(desk_factory):
    desk = desk_factory("2026-02")
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                      discovered_at="2026-12-10T02:00Z"),
                received="2026-12-10T08:00Z")
    desk.tick("2026-12-10T08:01Z")
    desk.reply(report_text("2026-02"), received="2026-12-11T07:00Z",
               subject=f"Re: [{INCIDENT}] Final report")
    desk.tick("2026-12-14T08:00Z")
    assert deadlines(desk.show(), "update") == [("2026-12-11T08:00:00+00:00", "satisfied"),
                                                ("2026-12-12T07:00:00+00:00", "cancelled")]
    assert not desk.mails(CA_CONTACT, "Overdue: the daily update")


def test_2026_02_an_incident_resolved_before_the_first_tick_owes_no_daily_update(desk_factory):
    desk = desk_factory("2026-02")
    desk.notify(DISCOVERY_FORM.format(incident_at="2026-12-10T01:00Z",
                                      discovered_at="2026-12-10T02:00Z"),
                received="2026-12-10T08:00Z")
    desk.command("/resolved", received="2026-12-10T09:00Z")
    desk.tick("2026-12-10T09:01Z")
    data = desk.show()
    assert deadlines(data, "update") == []
    assert deadlines(data, "final-report") == [("2026-12-24T09:00:00+00:00", "open")]

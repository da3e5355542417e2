"""The operator's view through the real command: incidents, show, status, reprocess, check-config.

The database is built by the real pipeline: mails are written as .eml files and
taken in with `rootnotify ingest`, as an operator would replay a mailbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from storage import migrate
from tests.harness import (
    CA_CONTACT,
    COMPLETE_FORM,
    OTHER_CA_CONTACT,
    STAFF,
    Sink,
    free_port,
    make_mail,
    write_config,
)
from tests.test_cli_and_ingest import received_header, rootnotify

INCIDENT = "INC-2026-0001"
FIRST_ID = "<form-1@exampleca.test>"
UPDATE_ID = "<update-1@exampleca.test>"
STAFF_ID = "<cmd-1@program.test>"
STRANGER_ID = "<hello@nowhere.test>"
CONTRACT_ROW = {"id": str, "ca": str, "status": str, "category": str, "notified_at": str}
SMIME = {"valid", "invalid", "untrusted", "expired", "unsigned", "encrypted"}
IN_KINDS = {"notification", "update", "certificate-list", "final-report", "proposal", "command",
            "form-request", "auto-reply", "bounce", "other"}
OUT_KINDS = {"acknowledgement", "receipt", "request", "reminder", "escalation", "notice",
             "confirmation", "error", "form", "alert"}


@dataclass
class Scenario:
    config: Path
    folder: Path


def _write(folder: Path, name: str, raw: bytes) -> Path:
    path = folder / name
    path.write_bytes(raw)
    return path


def build_scenario(tmp: Path, extra: str = "") -> Scenario:
    """A CA notifies on time, corrects one answer, a stranger writes; tick sends."""
    config = write_config(tmp, smtp_port=free_port(), relay_port=free_port(),
                          outgoing_mode="maildir", timezone="Europe/Berlin", extra=extra)
    mails = tmp / "mails"
    mails.mkdir()
    first = _write(mails, "1.eml", make_mail(
        CA_CONTACT, "Security incident notification", COMPLETE_FORM, message_id=FIRST_ID,
        headers={"Received": received_header("Thu, 26 Nov 2026 13:00:00 +0000")}))
    later = [
        _write(mails, "2.eml", make_mail(
            CA_CONTACT, f"Re: [{INCIDENT}] Notification received",
            COMPLETE_FORM.replace("revoking 12 certificates", "revoked all 12 | <b>now</b>"),
            message_id=UPDATE_ID, in_reply_to=FIRST_ID,
            headers={"Received": received_header("Fri, 27 Nov 2026 10:00:00 +0000")})),
        _write(mails, "4.eml", make_mail(
            "stranger@nowhere.test", "hello", "hi", message_id=STRANGER_ID,
            headers={"Received": received_header("Fri, 27 Nov 2026 12:00:00 +0000")})),
    ]
    rootnotify(config, "ingest", str(first))  # first, so the replies find their incident
    rootnotify(config, "ingest", *map(str, later))
    rootnotify(config, "tick")
    return Scenario(config=config, folder=tmp)


def staff_request(s: Scenario) -> bool:
    """Staff ask for the certificate list; False while staff commands cannot be processed yet."""
    mail = _write(s.folder / "mails", "3.eml", make_mail(
        STAFF, f"Re: [{INCIDENT}] New incident",
        "/request certificate-list due 2026-12-05\n", message_id=STAFF_ID,
        in_reply_to=FIRST_ID,
        headers={"Received": received_header("Fri, 27 Nov 2026 11:00:00 +0000")}))
    ok = rootnotify(s.config, "ingest", str(mail), check=False).returncode == 0
    rootnotify(s.config, "tick")
    return ok


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build_scenario(tmp_path_factory.mktemp("operator"))


def show_json(s: Scenario) -> dict:
    return json.loads(rootnotify(s.config, "show", INCIDENT, "--json").stdout)


def is_utc_iso(value: str | None) -> bool:
    return value is None or (value.endswith("+00:00") and datetime.fromisoformat(value)
                             is not None)


def test_incidents_json_keeps_the_contract_and_filters_narrow_it(scenario):
    rows = json.loads(rootnotify(scenario.config, "incidents", "--json").stdout)
    assert [r["id"] for r in rows] == [INCIDENT]
    row = rows[0]
    for key, kind in CONTRACT_ROW.items():
        assert isinstance(row[key], kind), key
    assert "next_due_at" in row and is_utc_iso(row["next_due_at"])
    assert row["ca"] == "Example CA" and row["status"] == "open"
    assert row["notified_at"] == "2026-11-26T13:00:00+00:00"
    assert row["notified_on_time"] is True and isinstance(row["overdue"], int)

    def ids(*args: str) -> list[str]:
        return [r["id"] for r in json.loads(
            rootnotify(scenario.config, "incidents", "--json", *args).stdout)]

    assert ids("--open") == [INCIDENT]
    assert ids("--ca", "example ca") == [INCIDENT]
    assert ids("--ca", "Other CA") == []
    assert row["overdue"] == 0 and ids("--overdue") == []  # nothing was requested


def table_row(out: str, incident_id: str) -> list[str]:
    """The cells of `incident_id`'s line in the `incidents` table."""
    [line] = [line for line in out.splitlines() if f" {incident_id} " in line]
    return [cell.strip() for cell in line.strip("│┃ ").split("│")]


def test_incidents_table_is_readable(scenario):
    out = rootnotify(scenario.config, "incidents").stdout
    assert out.startswith("Incidents (1); times in Europe/Berlin")
    # Notified 13:00 UTC (14:00 in Berlin), within 24 h of the incident; nothing requested.
    assert table_row(out, INCIDENT)[:6] == [INCIDENT, "Example CA", "mis-issuance", "open",
                                            "2026-11-26 14:00", "met"]
    assert table_row(out, INCIDENT)[7] == "0"
    assert "no incidents match" in rootnotify(scenario.config, "incidents", "--ca",
                                              "Other CA").stdout
    # A CA that is not configured is a mistake, not an empty list.
    assert rootnotify(scenario.config, "incidents", "--ca", "Nobody", check=False).returncode \
        == 2


def test_overdue_lists_only_the_incident_whose_request_has_passed(tmp_path):
    s = build_scenario(tmp_path)
    other = _write(s.folder / "mails", "5.eml", make_mail(
        OTHER_CA_CONTACT, "Security incident notification",
        COMPLETE_FORM.replace("Example CA", "Other CA"), message_id="<form-2@otherca.test>",
        headers={"Received": received_header("Fri, 27 Nov 2026 09:00:00 +0000")}))
    rootnotify(s.config, "ingest", str(other))
    staff = [_write(s.folder / "mails", f"cmd-{n}.eml", make_mail(
        STAFF, f"Re: [{incident}] New incident", f"/request certificate-list due {due}\n",
        message_id=f"<cmd-{n}@program.test>",
        headers={"Received": received_header("Fri, 27 Nov 2026 11:00:00 +0000")}))
        for n, incident, due in ((1, INCIDENT, "2026-11-28"), (2, "INC-2026-0002", "2099-01-01"))]
    rootnotify(s.config, "ingest", *map(str, staff))
    # INC-2026-0001's list was due 2026-11-28 23:59:59 Berlin; INC-2026-0002's in 2099.
    rows = {r["id"]: r for r in json.loads(rootnotify(s.config, "incidents", "--json").stdout)}
    assert rows[INCIDENT]["overdue"] == 1 and rows["INC-2026-0002"]["overdue"] == 0
    assert rows[INCIDENT]["next_due_at"] == "2026-11-28T22:59:59+00:00"
    overdue = json.loads(rootnotify(s.config, "incidents", "--json", "--overdue").stdout)
    assert [r["id"] for r in overdue] == [INCIDENT]
    out = rootnotify(s.config, "incidents", "--overdue").stdout
    assert table_row(out, INCIDENT)[6:] == ["certificate-list 2026-11-28 23:59", "1"]
    assert "INC-2026-0002" not in out


def test_show_json_has_every_contract_field_with_its_type(scenario):
    data = show_json(scenario)
    for key in ("id", "ca", "status", "category", "notified_at", "notification_deadline"):
        assert isinstance(data[key], str), key
    for key in ("incident_at", "discovered_at", "notified_at", "notification_deadline"):
        assert is_utc_iso(data[key]), key
    assert data["incident_at"] == "2026-11-25T14:05:00+00:00"
    assert data["notified_on_time"] is True
    assert isinstance(data["form"], dict) and all(isinstance(v, str)
                                                  for v in data["form"].values())
    assert data["missing_fields"] == []
    assert set(data["certificates"]) >= {"count", "unique_domains", "rejected"}
    assert all(isinstance(data["certificates"][k], int)
               for k in ("count", "unique_domains", "rejected"))
    assert set(data["final_report"]) >= {"received", "present", "missing"}
    assert data["final_report"]["received"] is False
    for d in data["deadlines"]:
        assert set(d) >= {"kind", "due_at", "state", "rule"} and is_utc_iso(d["due_at"])
        assert d["state"] in {"open", "satisfied", "cancelled"}
    for n in data["notices"]:
        assert set(n) >= {"action", "target", "effective_at", "exceptional", "sent_at",
                          "message_id"}
    for m in data["messages"]:
        assert set(m) >= {"message_id", "direction", "kind", "smime", "status", "at"}
        assert m["direction"] in {"in", "out"} and is_utc_iso(m["at"])
        assert m["kind"] in (IN_KINDS if m["direction"] == "in" else OUT_KINDS), m
        assert m["smime"] in SMIME
        if m["direction"] == "out":
            assert m["status"] in {"queued", "sent", "failed"}
    inbound = {m["message_id"]: m for m in data["messages"] if m["direction"] == "in"}
    assert inbound[FIRST_ID]["kind"] == "notification"
    assert inbound[UPDATE_ID]["kind"] == "update"
    assert STRANGER_ID not in inbound  # quarantined, in no incident
    assert any(m["direction"] == "out" and m["kind"] == "acknowledgement"
               and m["status"] == "sent" for m in data["messages"])


def test_show_json_keeps_every_answer_and_names_each_events_cause(scenario):
    data = show_json(scenario)
    remediation = [v for v in data["form_history"] if v["key"] == "remediation"]
    assert [(v["current"], v["message_id"]) for v in remediation] == [
        (False, FIRST_ID), (True, UPDATE_ID)]
    assert data["form"]["remediation"] == "Fixed the check; revoked all 12 | <b>now</b>"
    changed = [e for e in data["events"] if e["kind"] == "field-changed"]
    assert len(changed) == 1 and changed[0]["message_id"] == UPDATE_ID
    assert changed[0]["rule"] == "R1a" and changed[0]["smime"] == "unsigned"
    opened = next(e for e in data["events"] if e["kind"] == "incident-opened")
    assert opened["message_id"] == FIRST_ID and opened["at"] == "2026-11-26T13:00:00+00:00"


def test_show_text_has_history_deadlines_checklist_and_timeline_in_both_zones(scenario):
    out = rootnotify(scenario.config, "show", INCIDENT).stdout
    for heading in ("Form", "Deadlines", "Notices and proposals", "Certificates",
                    "Final-report checklist", "Timeline", "Messages"):
        assert f"\n{heading}" in out, heading
    # The form's own labels, not the internal keys.
    assert "  Remedial measures taken or planned: Fixed the check; revoked all 12 | <b>now</b>" \
        in out
    assert "remediation:" not in out
    assert "earlier (2026-11-26 13:00 UTC, mail #1): Fixed the check; revoking 12" in out
    # 13:00 UTC is 14:00 in Berlin in November.
    assert "2026-11-26 13:00 UTC  2026-11-26 14:00:00 CET  incident-opened [R1]" in out
    assert f"cause: mail #1 {FIRST_ID}, S/MIME unsigned" in out
    # The final-report checklist, nothing received yet: numbered, with the items' titles.
    assert "  ✗ missing   9. Log files\n" in out
    assert rootnotify(scenario.config, "show", "INC-2026-0099", check=False).returncode == 1


def test_status_reports_the_queues_and_exits_zero_when_all_is_well(scenario):
    result = rootnotify(scenario.config, "status", "--json", check=False)
    data = json.loads(result.stdout)
    assert result.returncode == 0, data["needs_attention"]
    assert data["needs_attention"] == []
    assert data["quarantined"] == 1
    assert data["last_received"]["file"] == "2026-11-27T12:00:00+00:00"
    assert data["outbox"]["queued"] == 0 and data["outbox"]["sent"] >= 2
    assert data["backlog"] == 0 and data["parked"] == 0
    assert data["scheduler_last_run"] is not None
    text = rootnotify(scenario.config, "status").stdout
    assert "OK: nothing needs a person" in text and "IMAP disabled" in text


def test_a_failed_message_shows_in_status_and_reprocess_recovers_it(tmp_path):
    """An operator's broken template makes processing fail; fixed, `reprocess --failed` runs it."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "acknowledgement.txt.j2").write_text("Subject: {{ no_such_variable }}\n\nx\n")
    config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                          outgoing_mode="maildir",
                          extra="")
    text = config.read_text().replace('ruleset = "2019-03"',
                                      'ruleset = "2019-03"\ntemplates_dir = "templates"')
    config.write_text(text)
    mail = _write(tmp_path, "form.eml", make_mail(
        CA_CONTACT, "notification", COMPLETE_FORM, message_id=FIRST_ID,
        headers={"Received": received_header("Thu, 26 Nov 2026 13:00:00 +0000")}))

    result = rootnotify(config, "ingest", str(mail), check=False)
    assert result.returncode == 1 and "1 failed" in result.stdout
    assert json.loads(rootnotify(config, "incidents", "--json").stdout) == []

    status = rootnotify(config, "status", "--json", check=False)
    data = json.loads(status.stdout)
    assert status.returncode == 1  # waiting since 26 November: a person must look
    assert data["failed"] == 1 and data["backlog"] == 1
    problem = data["problem_messages"][0]
    assert problem["id"] == 1 and "no_such_variable" in problem["last_error"]
    assert any("unprocessed" in line for line in data["needs_attention"])
    assert "message #1 failed after 1 attempt(s)" in rootnotify(config, "status",
                                                                check=False).stdout

    assert rootnotify(config, "reprocess", check=False).returncode == 2
    (templates / "acknowledgement.txt.j2").unlink()  # back to the packaged wording
    out = rootnotify(config, "reprocess", "--failed").stdout
    assert "1 message(s) requeued; 1 processed, 0 failed" in out
    assert [r["id"] for r in json.loads(rootnotify(config, "incidents", "--json").stdout)] \
        == [INCIDENT]
    assert rootnotify(config, "status", "--json", check=False).returncode == 0
    # A processed message is never run again (it would open its incident twice): an error.
    again = rootnotify(config, "reprocess", "1", check=False)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr == ("rootnotify: message 1 was processed (notification in "
                            f"{INCIDENT}); a processed message is never run again\n")


def test_check_config_reaches_the_relay_and_names_what_is_wrong(tmp_path):
    sink = Sink().start()
    try:
        config = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port)
        out = rootnotify(config, "check-config").stdout
        assert "answers EHLO" in out and "configuration is valid" in out
        assert "not made yet; serve makes it" in out  # check-config makes nothing
        rootnotify(config, "incidents")  # which does: the schema at head
        assert f"(schema revision {migrate.head()})" not in out
        out = rootnotify(config, "check-config").stdout
        assert f": schema revision {migrate.head()}\n" in out
    finally:
        sink.stop()
    # The same configuration with the relay gone and a staff certificate that is not one.
    (tmp_path / "alice.pem").write_text("not a certificate\n")
    text = config.read_text().replace('auth = "none"',
                                      'auth = "smime"\ncertificates = ["alice.pem"]')
    config.write_text(text)
    result = rootnotify(config, "check-config", check=False)
    assert result.returncode == 1
    assert "rootnotify: warning: [outgoing] relay" in result.stderr  # an outage warns
    assert "alice.pem: no certificate could be read" in result.stderr
    assert "1 problem(s), 1 warning(s)" in result.stdout


def test_log_json_gives_one_line_per_mail_and_per_state_change(tmp_path):
    config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                          outgoing_mode="maildir")
    mail = _write(tmp_path, "form.eml", make_mail(CA_CONTACT, "notification", COMPLETE_FORM,
                                                  message_id=FIRST_ID))
    result = rootnotify(config, "--log-json", "ingest", str(mail))
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    loggers = [entry["logger"] for entry in lines]
    assert "rootnotify.intake.files" in loggers  # the mail in
    decided = [e for e in lines if e["logger"] == "rootnotify.decide"]
    assert FIRST_ID in decided[0]["message"] and INCIDENT in decided[0]["message"]
    # The fields the README promises, on the decision line and on each mail's lines.
    assert (decided[0]["incident"], decided[0]["inbound"], decided[0]["message_id"]) \
        == (INCIDENT, 1, FIRST_ID)
    queued = [e for e in lines if e["message"].startswith("queued acknowledgement")]
    assert len(queued) == 1  # one line per mail out
    assert queued[0]["incident"] == INCIDENT and queued[0]["outbound"] == 1
    assert queued[0]["message_id"].startswith("<") and queued[0]["message_id"] \
        in queued[0]["message"]
    opened = [e for e in lines if e.get("event") == "incident-opened"]
    assert len(opened) == 1
    assert opened[0]["incident"] == INCIDENT and opened[0]["inbound"] == 1
    assert opened[0]["rule"] == "R1"
    # Events written in bulk (the outbox's "sent") are logged like the others.
    delivered = rootnotify(config, "--log-json", "tick")
    sent = [e for e in map(json.loads, filter(str.strip, delivered.stderr.splitlines()))
            if e.get("event") == "mail-sent:acknowledgement"]
    assert len(sent) == 1 and sent[0]["incident"] == INCIDENT and sent[0]["outbound"]
    line = next(e for e in map(json.loads, filter(str.strip, delivered.stderr.splitlines()))
                if e["message"].startswith("sent acknowledgement"))
    assert (line["incident"], line["outbound"], line["message_id"]) \
        == (INCIDENT, 1, queued[0]["message_id"])


def test_check_config_tries_the_imap_login_when_imap_is_enabled(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOTNOTIFY_IMAP_PASSWORD", "secret")
    config = write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                          outgoing_mode="maildir",
                          extra=f"\n[imap]\nenabled = true\nport = {free_port()}\nssl = false\n")
    result = rootnotify(config, "check-config", check=False)
    # Nothing listens there: an outage, which warns (it must not keep the listener down).
    assert result.returncode == 0
    assert "rootnotify: warning: [imap] server" in result.stderr
    assert "0 problem(s), 2 warning(s)" in result.stdout

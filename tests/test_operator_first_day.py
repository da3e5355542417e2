"""Issue 19: an operator's first day through the command line as typed — one line for every
expected failure, ingest that takes only mail, an end for failed and quarantined mail, and a
way to read a stored mail."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import pytest

from storage.migrate import HEAD
from tests.harness import (
    CA_CONTACT,
    COMPLETE_FORM,
    free_port,
    make_mail,
    numbered_form,
    write_config,
)
from tests.operator import cli, fails_with, ok, read_only

RECEIVED = {"Received": "from mx.exampleca.test by mx.program.test; "
                        "Thu, 26 Nov 2026 13:00:00 +0000"}
INCIDENT = "INC-2026-0001"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                        outgoing_mode="maildir")


def _eml(folder: Path, name: str, raw: bytes) -> Path:
    path = folder / name
    path.write_bytes(raw)
    return path


def _notified(config: Path, tmp_path: Path) -> None:
    ok(cli(config, "ingest", str(_eml(tmp_path, "form.eml", make_mail(
        CA_CONTACT, "Security incident notification", COMPLETE_FORM,
        message_id="<form-1@exampleca.test>", headers=RECEIVED)))))


def _messages(config: Path) -> list[dict]:
    status = json.loads(cli(config, "status", "--json").stdout)
    return status


# --- point 2: every expected failure is one line with its documented code -------------------

def test_each_command_answers_its_typical_mistakes_in_one_line(config, tmp_path):
    _notified(config, tmp_path)
    missing = str(tmp_path / "no-such.toml")
    cases = [
        (cli(None, "--config", missing, "incidents"), 2, [missing, "not found"]),
        (cli(config, "show", "INC-2026-9999"), 1, ["no incident INC-2026-9999"]),
        (cli(config, "export", INCIDENT, "-o", "/missing/dir/x.md"), 1,
         ["/missing/dir/x.md", "No such file or directory"]),
        (cli(config, "export", INCIDENT, "--format", "pdf"), 2, ["--format", "'pdf'"]),
        (cli(config, "tick", "--now", "tomorrow"), 2, ["--now"]),
        (cli(config, "reprocess", "999"), 1, ["no message 999"]),
        (cli(config, "reprocess"), 2, ["give a message number or --failed"]),
        (cli(config, "drop", "999", "--reason", "x"), 1, ["no message 999"]),
        (cli(config, "message", "999"), 1, ["no message 999"]),
        (cli(config, "quarantine", "release", "999"), 1, ["no message 999"]),
        (cli(config, "quarantine", "drop", "1"), 1, ["message 1 is not in quarantine"]),
        (cli(config, "ingest", str(tmp_path / "nothing-here.eml")), 1, []),
    ]
    for result, code, words in cases:
        if result.args[-1].endswith("nothing-here.eml"):
            assert result.returncode == 1 and "Traceback" not in result.stderr
            assert f"refused {tmp_path / 'nothing-here.eml'}: no such file or folder" \
                in result.stderr
            continue
        fails_with(result, code, *words)


@pytest.mark.parametrize("args", [["incidents"], ["status"], ["serve"], ["ingest", "MAIL"],
                                  ["show", INCIDENT]])
def test_a_read_only_data_dir_is_one_line_naming_it(config, tmp_path, args):
    _notified(config, tmp_path)
    mail = _eml(tmp_path, "later.eml", make_mail(CA_CONTACT, "hello", "a question"))
    data_dir = tmp_path / "var"
    args = [str(mail) if a == "MAIL" else a for a in args]
    result = cli(config, *args, prefix=read_only(data_dir))
    if result.returncode != 1 and "mount" in result.stderr:
        pytest.skip("no read-only bind mount here")
    fails_with(result, 1, f"data_dir {data_dir} is not writable")


# --- point 3: ingest refuses what is not mail; parked and failed mail get an end ------------

def test_ingest_refuses_what_is_not_mail_and_stores_nothing_of_it(config, tmp_path):
    readme = Path(__file__).parents[1] / "README.md"
    empty = _eml(tmp_path, "empty.eml", b"")
    noise = _eml(tmp_path, "noise.eml", bytes(range(256)) * 20)
    folder = tmp_path / "not-a-maildir"
    (folder / "deep").mkdir(parents=True)
    _eml(folder / "deep", "hidden.eml", make_mail(CA_CONTACT, "deep", "in a sub-folder"))
    (folder / "link").symlink_to("/etc")
    result = cli(config, "ingest", "--quiet", "/etc/passwd", str(readme), str(empty),
                 str(noise), str(folder))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "refused /etc/passwd: no mail header (From:, Date:, Subject: …), not a mail",
        f"refused {readme}: no mail header (From:, Date:, Subject: …), not a mail",
        f"refused {empty}: empty, not a mail",
        f"refused {noise}: no mail header (From:, Date:, Subject: …), not a mail",
        f"refused {folder}: a folder that is not a maildir (no cur/ or new/ inside); give "
        ".eml files, mbox files or maildirs",
    ]
    assert "0 stored, 0 duplicate(s), 5 refused" in result.stdout
    status = json.loads(cli(config, "status", "--json").stdout)
    assert status["messages"] == {}  # nothing stored, nothing to attend to


def test_a_maildir_and_an_mbox_are_taken_but_their_non_mail_entries_refused(config, tmp_path):
    box = mailbox.Maildir(tmp_path / "md", create=True)
    box.add(make_mail(CA_CONTACT, "question", "hello", message_id="<q-1@exampleca.test>"))
    box.add(b"just some words\n")
    result = cli(config, "ingest", str(tmp_path / "md"))
    assert result.returncode == 1
    assert "1 stored, 0 duplicate(s), 1 refused; 1 processed, 0 failed, 0 parked" \
        in result.stdout
    assert "no mail header" in result.stderr


def test_a_failed_message_is_read_then_dropped_with_who_and_why(config, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "acknowledgement.txt.j2").write_text("Subject: {{ no_such_variable }}\n\nx\n")
    config.write_text(config.read_text().replace(
        'ruleset = "2019-03"', 'ruleset = "2019-03"\ntemplates_dir = "templates"'))
    form = _eml(tmp_path, "form.eml", make_mail(CA_CONTACT, "Security incident notification",
                                                COMPLETE_FORM, message_id="<f@exampleca.test>",
                                                headers=RECEIVED))
    first = cli(config, "ingest", str(form))
    assert first.returncode == 1 and "1 failed" in first.stdout

    # A retry that fails again says so and exits 1.
    again = cli(config, "reprocess", "1")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "1 message(s) requeued; 0 processed, 1 failed, 0 parked" in again.stdout
    assert fails_with(again, 1).startswith("rootnotify: message 1 failed again: UndefinedError: "
                                           "'no_such_variable' is undefined")
    assert json.loads(cli(config, "status", "--json").stdout)["failed"] == 1

    # The operator reads it: headers, parts, what was understood, the error.
    view = ok(cli(config, "message", "1")).stdout
    assert "message 1: failed after 1 attempt(s)" in view
    assert "  From: incidents@exampleca.test" in view
    assert "  Message-ID: <f@exampleca.test>" in view
    assert "  text/plain" in view
    assert "last error: UndefinedError: 'no_such_variable' is undefined" in view
    assert ok(cli(config, "message", "1", "--raw")).stdout.encode() \
        == form.read_bytes().replace(b"\r\n", b"\n")  # text mode reads CRLF as LF

    dropped = ok(cli(config, "drop", "1", "--reason", "a test form", "--by", "carol"))
    assert "message 1 dropped: message 1 (failed) dropped by carol: a test form at " \
        in dropped.stdout
    status = cli(config, "status", "--json")
    data = json.loads(status.stdout)
    assert (status.returncode, data["failed"], data["dropped"], data["backlog"]) == (0, 0, 1, 0)
    assert data["needs_attention"] == []
    # Kept, raw bytes and all; never retried by reprocess --failed.
    assert ok(cli(config, "message", "1", "--raw")).stdout
    assert "0 message(s) requeued" in ok(cli(config, "reprocess", "--failed")).stdout
    message = json.loads(ok(cli(config, "message", "1", "--json")).stdout)
    assert message["state"] == "dropped"
    assert [(e["kind"], e["summary"]) for e in message["events"]] == [
        ("message-dropped", "message 1 (failed) dropped by carol: a test form")]
    fails_with(cli(config, "drop", "1", "--reason", "twice"), 1, "already dropped")


def test_message_shows_what_was_understood_and_the_decision(config, tmp_path):
    _notified(config, tmp_path)
    data = json.loads(ok(cli(config, "message", "1", "--json")).stdout)
    assert data["understood"]["kind"] == "notification"
    assert data["understood"]["incident"] == INCIDENT
    assert data["understood"]["form"]["ca_name"] == "Example CA"
    assert data["smime"] == {"result": "unsigned", "reason": data["smime"]["reason"]}
    assert [r["kind"] for r in data["replies"]] == ["acknowledgement", "alert"]
    text = ok(cli(config, "message", "1")).stdout
    assert f"understood: notification from incidents@exampleca.test (ca, Example CA) in " \
           f"{INCIDENT}" in text
    assert "S/MIME: unsigned" in text


# --- point 9: the quarantine as a table, released into an incident, or dropped -------------

def test_quarantine_table_release_into_an_incident_and_drop(config, tmp_path):
    assert ok(cli(config, "quarantine")).stdout == "quarantine is empty\n"
    _notified(config, tmp_path)
    for n in (1, 2):
        ok(cli(config, "ingest", str(_eml(tmp_path, f"s{n}.eml", make_mail(
            "stranger@nowhere.test", f"about your incident {n}", "I saw it too",
            message_id=f"<s-{n}@nowhere.test>")))))
    table = ok(cli(config, "quarantine")).stdout
    assert "Quarantine (2)" in table
    header = next(line for line in table.splitlines() if "received" in line)
    assert [w for w in header.replace("┃", " ").split()] == ["N", "received", "from",
                                                            "subject", "reason"]
    assert "stranger@nowhere.test" in table and "about your incident 1" in table
    assert "None" not in table

    released = ok(cli(config, "quarantine", "release", "2", "--incident", INCIDENT))
    assert released.stdout == f"message 2 released into {INCIDENT}\n"
    shown = json.loads(ok(cli(config, "show", INCIDENT, "--json")).stdout)
    assert "<s-1@nowhere.test>" in [m["message_id"] for m in shown["messages"]]
    assert any(e["kind"] == "message-released" for e in shown["events"])

    ok(cli(config, "quarantine", "drop", "3", "--reason", "spam", "--by", "dave"))
    rows = json.loads(ok(cli(config, "quarantine", "--json")).stdout)
    assert rows == []
    fails_with(cli(config, "quarantine", "release", "3"), 1, "message 3 is not in quarantine")


# --- point 5: tick --now ahead of the clock, on a database with mail -----------------------

def test_tick_in_the_future_is_refused_on_real_mail_and_dry_run_changes_nothing(config,
                                                                                tmp_path):
    _notified(config, tmp_path)  # 2026-11-26: an acknowledgement and an alert wait in the outbox
    ok(cli(config, "ingest", str(_eml(tmp_path, "cmd.eml", make_mail(
        "alice@program.test", f"Re: [{INCIDENT}] Notification received",
        "/request certificate-list due 2026-12-05", headers=RECEIVED)))))
    show = json.loads(ok(cli(config, "show", INCIDENT, "--json")).stdout)
    later = "2099-01-01T09:00:00Z"  # past the digest hour (8)

    refused = cli(config, "tick", "--now", later)
    line = fails_with(refused, 1, "--now 2099-01-01T09:00:00+00:00 is", "ahead of the clock",
                      "--dry-run", "--force")
    assert "future-dated events" in line

    dry = ok(cli(config, "tick", "--now", later, "--dry-run"))
    lines = dry.stdout.splitlines()
    assert lines[0].startswith("dry run at 2099-01-01T09:00:00+00:00: 0 message(s) would be "
                               "processed; ")
    assert lines[0].endswith("nothing was changed")
    # By then the list requested for 5 December is long overdue: the CA is reminded,
    # staff are told, and the day's digest says so.
    assert "  alert to alice@program.test: Daily digest 2099-01-01: 1 overdue, 0 due within a " \
           "week" in lines[1:], dry.stdout
    assert any(line.startswith("  reminder to incidents@exampleca.test,security@exampleca.test: "
                               f"[{INCIDENT}] Overdue") for line in lines[1:]), dry.stdout
    assert "timeline" not in dry.stderr  # the copy's events are not logged as real
    assert json.loads(ok(cli(config, "show", INCIDENT, "--json")).stdout) == show
    assert not (tmp_path / "var/outbox").exists()  # nothing delivered either
    assert ok(cli(config, "tick", "--now", later, "--dry-run")).stdout == dry.stdout

    forced = ok(cli(config, "tick", "--now", later, "--force"))
    assert "tick at 2099-01-01T09:00:00+00:00" in forced.stdout
    assert json.loads(ok(cli(config, "show", INCIDENT, "--json")).stdout) != show


# --- point 11: ingest's exit status is about the files given; a terminal sees no log flood -

def _on_a_terminal(config: Path, *args: str) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal, as an operator's shell does."""
    import os
    import subprocess
    import sys

    main, side = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(config), *args],
                            stdin=subprocess.DEVNULL, stdout=side, stderr=side)
    os.close(side)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    return proc.wait(timeout=120), out.decode(errors="replace")


def test_ingest_exits_on_the_files_given_and_keeps_a_terminal_readable(config, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "acknowledgement.txt.j2").write_text("Subject: {{ no_such_variable }}\n\nx\n")
    config.write_text(config.read_text().replace(
        'ruleset = "2019-03"', 'ruleset = "2019-03"\ntemplates_dir = "templates"'))
    old = _eml(tmp_path, "old.eml", make_mail(CA_CONTACT, "Security incident notification",
                                              COMPLETE_FORM, headers=RECEIVED))
    assert cli(config, "ingest", str(old)).returncode == 1  # an older message fails

    box = mailbox.mbox(tmp_path / "strangers.mbox")
    for n in range(30):
        box.add(make_mail(f"stranger{n}@nowhere.test", f"hello {n}", "hi",
                          message_id=f"<stranger-{n}@nowhere.test>"))
    box.flush()
    code, screen = _on_a_terminal(config, "ingest", str(tmp_path / "strangers.mbox"))
    assert code == 0, screen  # the files given went well; the old failure is only noted
    assert "30 stored, 0 duplicate(s), 0 refused; 30 processed, 0 failed, 0 parked" in screen
    assert "note: 1 older message(s) failed or parked; see rootnotify status" in screen
    assert "storing and processing" in screen  # one bar, over both halves
    assert " INFO " not in screen and "quarantined" not in screen  # no line per message
    assert "Traceback" not in screen

    box = mailbox.mbox(tmp_path / "more.mbox")
    box.add(make_mail("stranger99@nowhere.test", "hello", "hi", message_id="<s-99@nowhere.test>"))
    box.flush()
    code, screen = _on_a_terminal(config, "-v", "ingest", str(tmp_path / "more.mbox"))
    assert code == 0 and " INFO rootnotify.decide: message 32 " in screen  # -v: every line


# --- point 14: the smaller things an operator meets on day one ----------------------------

def test_help_has_examples_and_no_type_noise_on_flags(config):
    top = ok(cli(config, "--help")).stdout
    assert top.startswith("Usage: rootnotify [OPTIONS] COMMAND")
    assert "Examples:" in top and "Exit status: 0 done" in top
    for command in ("incidents", "ingest", "tick", "reprocess", "drop", "message"):
        text = ok(cli(config, command, "--help")).stdout
        assert "<bool>" not in text and "Example" in text, (command, text)


def test_incidents_pages_and_refuses_an_unknown_ca(config, tmp_path):
    for n in (1, 2, 3):
        ok(cli(config, "ingest", str(_eml(tmp_path, f"f{n}.eml", make_mail(
            CA_CONTACT, f"Security incident notification {n}", numbered_form(n),
            message_id=f"<form-{n}@exampleca.test>", headers=RECEIVED)))))
    page = ok(cli(config, "incidents", "--limit", "2", "--offset", "1")).stdout
    assert "INC-2026-0001" not in page
    assert "INC-2026-0002" in page and "INC-2026-0003" in page
    assert "next:" not in page  # the last page
    first = ok(cli(config, "incidents", "--limit", "1")).stdout
    assert first.splitlines()[-1] == "rows 1-1 of 3; next: --offset 1"
    assert [r["id"] for r in json.loads(ok(cli(config, "incidents", "--json", "--limit", "1",
                                                "--offset", "2")).stdout)] == ["INC-2026-0003"]
    assert fails_with(cli(config, "incidents", "--ca", "Nope"), 2) == (
        "rootnotify: --ca: 'Nope' is not a configured CA (the [[ca]] names: Example CA, "
        "Other CA)")


def test_the_sample_form_is_on_time_whenever_it_is_sent(config, tmp_path):
    from datetime import UTC, datetime

    form = ok(cli(config, "sample-form")).stdout
    assert form.startswith("CA name: Example CA\n")
    sent = _eml(tmp_path, "sample.eml", make_mail(CA_CONTACT, "Security incident notification",
                                                  form, date=datetime.now(UTC)))
    ok(cli(config, "ingest", str(sent)))
    (row,) = json.loads(ok(cli(config, "incidents", "--json")).stdout)
    assert row["notified_on_time"] is True
    shown = json.loads(ok(cli(config, "show", row["id"], "--json")).stdout)
    assert shown["missing_fields"] == []


def test_the_acknowledgement_and_the_staff_alert_say_what_comes_next(config, tmp_path):
    _notified(config, tmp_path)
    ok(cli(config, "tick"))
    import email
    import email.policy

    mails = {}
    for path in (tmp_path / "var/outbox/new").iterdir():
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        mails[msg["To"]] = (str(msg["Subject"]),
                            msg.get_body(("plain",)).get_content().replace("\r\n", "\n"))
    subject, body = mails[CA_CONTACT]
    assert subject == f"[{INCIDENT}] Notification received (mis-issuance)"  # the id once
    assert ("When did the incident occur:\n"
            "    2026-11-25 14:05 UTC   (as written: 2026-11-25T14:05:00Z)\n") in body
    assert ("When the CA discovered the incident:\n"
            "    2026-11-26 09:30 UTC   (as written: 2026-11-26T09:30:00Z)\n") in body
    assert "What happens next\n-----------------\n" in body
    subject, body = mails["alice@program.test"]
    assert subject == f"[{INCIDENT}] New incident {INCIDENT} from Example CA: mis-issuance"
    assert f"Reply in the incident's thread ([{INCIDENT}] in the subject)" in body
    for command in ("/request certificate-list [due DATE]", "/request final-report due DATE",
                    "/notice revoke-root ROOT [on DATE]", "/close   /reopen   /status"):
        assert f"\n  {command}" in body


def test_show_in_utc_gives_each_time_once(config, tmp_path):
    _notified(config, tmp_path)
    out = ok(cli(config, "show", INCIDENT)).stdout
    assert "\nTimeline (UTC)\n" in out
    opened = next(line for line in out.splitlines() if "incident-opened" in line)
    assert opened == "  2026-11-26 13:00 UTC  incident-opened [R1]"


def test_the_dossier_says_durations_as_everything_else_does(config, tmp_path):
    late_form = COMPLETE_FORM.replace("2026-11-25T14:05:00Z", "2026-11-18T14:05:00Z")
    ok(cli(config, "ingest", str(_eml(tmp_path, "late.eml", make_mail(
        CA_CONTACT, "Security incident notification", late_form, headers=RECEIVED)))))
    dossier = ok(cli(config, "export", INCIDENT)).stdout
    # Received 26 Nov 13:00, due 19 Nov 14:05: 6 d 22 h 55 min late, said as format_span does.
    assert "(late by 6 d 22 h)" in dossier, dossier
    assert " h 55 min" not in dossier.split("## Notification form")[0]
    assert "&lt;" not in dossier and "&gt;" not in dossier


def test_a_first_start_mails_no_empty_digest(config, tmp_path):
    from datetime import UTC, datetime

    at_nine = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    out = ok(cli(config, "tick", "--now", at_nine.isoformat()))  # an empty database
    assert "0 sent" in out.stdout
    assert "nothing to report, not sent" in out.stderr
    assert not [p for p in (tmp_path / "var").rglob("outbox/*/*")]  # no mail at all


def test_a_start_on_a_new_database_says_one_line_about_the_schema(config):
    result = ok(cli(config, "incidents"))
    assert "alembic" not in result.stderr
    assert [line.split(" INFO ", 1)[1] for line in result.stderr.splitlines()] == [
        "rootnotify.storage: upgrading the database schema from revision (empty) to "
        f"{HEAD}"]

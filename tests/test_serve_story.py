"""The incident's whole story against `rootnotify serve` as a process, driven as a user drives it.

`serve` runs as the operator starts it (its listener, worker and sender
processes, the system clock); mail goes to it over SMTP and its mail comes
out at a relay sink; time moves only through `rootnotify tick --now`, and
what the operator sees is read with `show --json` and `incidents --json`,
each a separate command. The story: the CA notifies and is acknowledged;
staff request the certificate list and the final report; the scheduler
reminds the CA before the list is due, then tells it it is overdue and
escalates to staff, once each although `serve` runs beside `tick`; the CA
sends the list and the final report; the deadlines are met, and `serve`
stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import smtplib
import socket
import subprocess
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from bot.rules.rulesets import RULESET_2019_03
from tests.harness import (
    BOT,
    CA_CONTACT,
    CA_OTHER_CONTACT,
    COMPLETE_FORM,
    ROOTNOTIFY,
    STAFF,
    WAIT_SECONDS,
    Sink,
    free_port,
    make_mail,
    write_config,
)
from tests.test_certificate_lists_e2e import list_mail, make_cert
from tests.test_final_report import report_lines

START_SECONDS = 30.0


def cli(config: Path, *args: str) -> str:
    done = subprocess.run([*ROOTNOTIFY, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"rootnotify {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def show(config: Path, incident_id: str) -> dict[str, Any]:
    return json.loads(cli(config, "show", incident_id, "--json"))


def smtp_send(port: int, raw: bytes) -> None:
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    sender = email_sender(raw)
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as smtp:
        smtp.sendmail(sender, [BOT], raw)


def email_sender(raw: bytes) -> str:
    match = re.search(rb"^From: (?:.*<)?([^>\s]+)>?\s*$", raw, re.M)
    assert match
    return match.group(1).decode()


def start_serve(config: Path, log: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*ROOTNOTIFY, "--config", str(config), "serve"], stdout=log,
                            stderr=log, start_new_session=True)
    port = int(re.search(r"port = (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"rootnotify serve exited {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("rootnotify serve did not start listening")


def subjects(sink: Sink, address: str) -> list[str]:
    return [r.subject for r in sink.received if address in r.recipients]


def test_the_incident_story_against_serve_with_tick_and_show_as_a_user_runs_them(tmp_path):
    sink = Sink().start()
    config = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port)
    port = int(re.search(r"port = (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
    log = (tmp_path / "serve.log").open("ab")
    proc = start_serve(config, log)
    try:
        # The CA notifies; serve acknowledges within seconds, the other contact in Cc.
        smtp_send(port, make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM,
                                  message_id="<story-form@exampleca.test>"))
        [ack] = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))
        inc = ack.subject.split("[", 1)[1].split("]", 1)[0]
        assert inc.startswith("INC-") and CA_OTHER_CONTACT in ack.message["Cc"]
        data = show(config, inc)
        notified = datetime.fromisoformat(data["notified_at"])
        assert data["status"] == "open" and data["form"]["ca_name"] == "Example CA"

        # Staff ask for the list (due in three days) and the final report (in ten).
        list_day = (notified + timedelta(days=3)).date()
        report_day = (notified + timedelta(days=10)).date()
        list_due = datetime.fromisoformat(f"{list_day}T23:59:59+00:00")
        smtp_send(port, make_mail(
            STAFF, f"Re: [{inc}] Notification received",
            f"/request certificate-list due {list_day}\n/request final-report due {report_day}\n"))
        sink.wait_for(sink.to(STAFF, "Done"))
        sink.wait_for(sink.to(CA_CONTACT, "Request"), count=2)
        deadlines = {d["kind"]: d for d in show(config, inc)["deadlines"]}
        assert deadlines["certificate-list"]["due_at"] == list_due.isoformat()
        assert deadlines["final-report"]["due_at"] == f"{report_day}T23:59:59+00:00"
        assert {d["state"] for d in deadlines.values()} == {"open"}

        # A day before: one reminder. At the due time: overdue, escalated to staff once.
        # Days ahead of the wall clock on a database with mail: tick wants --force.
        cli(config, "tick", "--force", "--now", (list_due - timedelta(hours=20)).isoformat())
        sink.wait_for(sink.to(CA_CONTACT, "Reminder"))
        cli(config, "tick", "--force", "--now", (list_due + timedelta(seconds=1)).isoformat())
        sink.wait_for(sink.to(CA_CONTACT, "Overdue"))
        sink.wait_for(lambda r: STAFF in r.recipients and "Escalation" in r.subject)
        cli(config, "tick", "--force", "--now", (list_due + timedelta(seconds=2)).isoformat())
        assert {d["kind"]: d["state"] for d in show(config, inc)["deadlines"]} \
            == {"certificate-list": "open", "final-report": "open"}  # late, still owed

        # The CA sends the list and the complete final report; each is receipted.
        pem = b"".join(make_cert(cn, [cn]).public_bytes(serialization.Encoding.PEM)
                       for cn in ("a.example.com", "b.example.com"))
        smtp_send(port, list_mail(inc, "misissued.pem", "application/x-pem-file", pem))
        [receipt] = sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"))
        assert "The incident now lists 2 certificate(s) and 2 unique domain(s)." in receipt.body
        report = EmailMessage()
        report["From"], report["To"] = CA_CONTACT, BOT
        report["Subject"] = f"Re: [{inc}] Final report"
        report.set_content("\n".join(report_lines(RULESET_2019_03.final_report_items)))
        smtp_send(port, report.as_bytes())
        sink.wait_for(sink.to(CA_CONTACT, f"Final report received: {inc} (complete)"))

        data = show(config, inc)
        states = {d["kind"]: d["state"] for d in data["deadlines"]}
        assert states == {"certificate-list": "satisfied", "final-report": "satisfied"}
        assert data["certificates"] == {"count": 2, "unique_domains": 2, "rejected": 0}
        assert data["final_report"]["missing"] == []
        [listed] = json.loads(cli(config, "incidents", "--json"))
        assert listed["id"] == inc and listed["overdue"] == 0 and listed["next_due_at"] is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
        sink.stop()
    assert code == 0
    # Everything the CA got, in order, each exactly once although serve ran beside tick.
    kinds = [s.split("]", 1)[1].split(":")[0].strip() for s in subjects(sink, CA_CONTACT)]
    assert kinds.count("Reminder") == 1 and kinds.count("Overdue") == 1
    assert len([s for s in subjects(sink, STAFF) if "Escalation" in s]) == 1
